"""The real ``glimpse scrub`` and ``glimpse db purge`` processes against the database and
store of a real ``glimpse serve`` process, and the scrubber that runs inside the server
when delayed_delete is on. SQLite and, with GLIMPSE_TEST_POSTGRES=1, PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update
from tests.live_server import BACKENDS, LiveServer, database_for, tool

from glimpse.config import load_settings, resolve_database_url
from glimpse.db.sql.session import Database
from glimpse.db.sql.tables import image_locations, images

MakeServer = Callable[..., LiveServer]


@pytest.fixture(params=BACKENDS)
def make_server(request: pytest.FixtureRequest, tmp_path: Path,
                worker_id: str) -> Iterator[MakeServer]:
    """A factory of noauth servers on this leg's backend, each with its own database."""
    servers: list[LiveServer] = []

    def make(name: str = "server", **defaults: str) -> LiveServer:
        database_url = database_for(str(request.param), f"glimpse_scrub_{worker_id}_{name}")
        workdir = tmp_path / name
        workdir.mkdir()
        server = LiveServer(workdir, database_url=database_url,
                            options={"DEFAULT": defaults} if defaults else None)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.stop()


def glimpse(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    """``glimpse ARGS`` on the server's configuration and data directory."""
    return subprocess.run(
        [tool("glimpse"), *args, "--config-file", str(server.config_file),
         "--data-dir", str(server.data_dir)],
        capture_output=True, text=True, timeout=120, env=dict(os.environ),
    )


def uploaded(server: LiveServer, data: bytes) -> str:
    response = httpx.post(f"{server.url}/v2/images", timeout=30, json={
        "name": "cli", "disk_format": "raw", "container_format": "bare"})
    assert response.status_code == 201, response.text
    image_id = str(response.json()["id"])
    response = httpx.put(f"{server.url}/v2/images/{image_id}/file", content=data, timeout=30,
                         headers={"content-type": "application/octet-stream"})
    assert response.status_code == 204, response.text
    return image_id


def delete(server: LiveServer, image_id: str) -> None:
    response = httpx.delete(f"{server.url}/v2/images/{image_id}", timeout=30)
    assert response.status_code == 204, response.text


def data_file(server: LiveServer, image_id: str) -> Path:
    return server.data_dir / "images" / image_id


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def on_database(server: LiveServer, work: Callable[[Database], object]) -> object:
    settings = load_settings([str(server.config_file)], {"data_dir": server.data_dir})

    async def run() -> object:
        db = Database(resolve_database_url(settings))
        try:
            return await work(db)  # type: ignore[misc]
        finally:
            await db.close()

    return asyncio.run(run())


def test_scrub_pass_and_restore(make_server: MakeServer) -> None:
    server = make_server(delayed_delete="true", wakeup_time="3600")
    gone, back = uploaded(server, b"scrub me"), uploaded(server, b"restore me")
    for image_id in (gone, back):
        delete(server, image_id)
        assert httpx.get(f"{server.url}/v2/images/{image_id}", timeout=30).status_code == 404
    assert data_file(server, gone).exists() and data_file(server, back).exists()

    restored = glimpse(server, "scrub", "--restore", back)
    assert restored.returncode == 0, restored.stderr
    assert f"image {back} restored: active" in restored.stdout

    scrubbed = glimpse(server, "scrub")
    assert scrubbed.returncode == 0, scrubbed.stderr
    assert "scrubbed 1 image(s); 0 left pending_delete" in scrubbed.stdout
    assert not data_file(server, gone).exists()
    shown = httpx.get(f"{server.url}/v2/images/{back}", timeout=30)
    assert shown.status_code == 200 and shown.json()["status"] == "active"
    assert httpx.get(f"{server.url}/v2/images/{back}/file", timeout=30).content == b"restore me"

    refused = glimpse(server, "scrub", "--restore", gone)
    assert refused.returncode == 1
    assert "Cannot restore image" in refused.stderr and "from deleted to active" in refused.stderr
    both = glimpse(server, "scrub", "--restore", back, "--daemon")
    assert both.returncode == 2 and "exclude each other" in both.stderr


def test_scrubber_in_the_server_and_as_a_daemon(make_server: MakeServer) -> None:
    # The server scrubs by itself every wakeup_time seconds.
    busy = make_server("busy", delayed_delete="true", wakeup_time="1")
    image_id = uploaded(busy, b"scrubbed by the server")
    delete(busy, image_id)
    assert wait_until(lambda: not data_file(busy, image_id).exists()), busy.log()

    # A server that leaves it to a `glimpse scrub --daemon` beside it.
    idle = make_server("idle", delayed_delete="true", wakeup_time="3600")
    daemon_config = idle.workdir / "scrubber.conf"
    daemon_config.write_text(idle.config_file.read_text().replace(
        "wakeup_time = 3600", "wakeup_time = 1"))
    log = (idle.workdir / "scrubber.log").open("w")
    daemon = subprocess.Popen(
        [tool("glimpse"), "scrub", "--daemon", "--config-file", str(daemon_config),
         "--data-dir", str(idle.data_dir)],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ), start_new_session=True,
    )
    try:
        image_id = uploaded(idle, b"scrubbed by the daemon")
        delete(idle, image_id)
        assert wait_until(lambda: not data_file(idle, image_id).exists()), (
            (idle.workdir / "scrubber.log").read_text())
    finally:
        os.kill(daemon.pid, signal.SIGTERM)
        try:
            status = daemon.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(daemon.pid, signal.SIGKILL)
            daemon.wait(10)
            raise
        log.close()
    assert status == 0, (idle.workdir / "scrubber.log").read_text()


def test_db_purge_and_purge_images_table(make_server: MakeServer) -> None:
    server = make_server()
    old, recent = uploaded(server, b"old"), uploaded(server, b"recent")
    for image_id in (old, recent):
        delete(server, image_id)
    long_ago = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=40)

    async def backdate(db: Database) -> None:
        await db.run_write(lambda conn: conn.execute(
            update(images).where(images.c.id == old).values(deleted_at=long_ago)))

    on_database(server, backdate)

    for bad, message in ((["--age-in-days", "0"], "positive number of days"),
                         (["--age-in-days", "-1"], "positive number of days"),
                         (["--max-rows", "0"], "positive number of rows")):
        refused = glimpse(server, "db", "purge", *bad)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr

    purged = glimpse(server, "db", "purge", "--age_in_days", "30", "--max_rows", "1")
    assert purged.returncode == 0, purged.stderr
    assert "image_locations: 1 row(s) purged" in purged.stdout

    async def locations(db: Database) -> list[str]:
        stmt = select(image_locations.c.image_id)
        return await db.run_read(lambda conn: list(conn.scalars(stmt)))

    assert on_database(server, locations) == [recent]
    # The image row stays: its id cannot be taken by a new image.
    again = httpx.post(f"{server.url}/v2/images", timeout=30, json={"id": old})
    assert again.status_code == 409, again.text

    purged = glimpse(server, "db", "purge-images-table", "--age-in-days", "30")
    assert purged.returncode == 0, purged.stderr
    assert "images: 1 row(s) purged" in purged.stdout
    assert httpx.post(f"{server.url}/v2/images", timeout=30, json={"id": old}).status_code == 201
