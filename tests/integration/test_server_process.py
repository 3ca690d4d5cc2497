"""The real ``glimpse serve`` process: crash safety, cut-off uploads, bind refusal.

Uploads are streamed by hand over a socket (chunked, slowly) so that the test knows
the server is in the middle of writing when it kills the process or drops the
connection. Runs on SQLite and, with GLIMPSE_TEST_POSTGRES=1, on PostgreSQL.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from tests.live_server import BACKENDS, LiveServer, database_for, free_port, tool

CHUNK = 64 * 1024


@pytest.fixture(params=BACKENDS)
def make_server(request: pytest.FixtureRequest, tmp_path: Path,
                worker_id: str) -> Iterator[Callable[[], LiveServer]]:
    """A factory: the noauth server of this test, on the backend of this leg."""
    servers: list[LiveServer] = []

    def make() -> LiveServer:
        database_url = database_for(str(request.param), f"glimpse_proc_{worker_id}")
        server = LiveServer(tmp_path, database_url=database_url)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.stop()


def create_image(server: LiveServer) -> str:
    response = httpx.post(f"{server.url}/v2/images", timeout=30,
                          json={"name": "big", "disk_format": "raw", "container_format": "bare"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def get_image(server: LiveServer, image_id: str) -> dict[str, object]:
    response = httpx.get(f"{server.url}/v2/images/{image_id}", timeout=30)
    assert response.status_code == 200, response.text
    image: dict[str, object] = response.json()
    return image


def files_of(server: LiveServer, image_id: str) -> list[Path]:
    """Every file under the data directory that belongs to the image (data or partial)."""
    return [p for p in server.data_dir.rglob("*") if p.is_file() and image_id in p.name]


def temporary_files(server: LiveServer) -> list[Path]:
    return [p for p in server.data_dir.rglob("*") if p.is_file() and p.name.startswith(".tmp")]


class SlowUpload:
    """``PUT /v2/images/{id}/file`` written by hand over a socket, a chunk at a time."""

    def __init__(self, server: LiveServer, image_id: str, *, length: int | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        framing = (f"Content-Length: {length}" if length is not None
                   else "Transfer-Encoding: chunked")
        self.chunked = length is None
        self.sent = 0
        self.sock.sendall(
            f"PUT /v2/images/{image_id}/file HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Content-Type: application/octet-stream\r\nX-Auth-Token: x\r\n{framing}\r\n\r\n"
            .encode()
        )

    def send(self, data: bytes) -> None:
        if self.chunked:
            data = b"%x\r\n" % len(data) + data + b"\r\n"
        self.sock.sendall(data)
        self.sent += len(data)

    def until(self, condition: Callable[[], bool], limit: int = 256 * 1024 * 1024) -> None:
        """Stream slowly until ``condition()`` holds (e.g. the server is writing)."""
        while self.sent < limit:
            self.send(os.urandom(CHUNK))
            time.sleep(0.005)
            if condition():
                return
        raise AssertionError(f"condition not reached after sending {self.sent} bytes")

    def close(self) -> None:
        self.sock.close()


def writing(server: LiveServer, image_id: str, at_least: int) -> Callable[[], bool]:
    """True once the server has written ``at_least`` bytes of the image to disk."""

    def check() -> bool:
        candidates = files_of(server, image_id) + temporary_files(server)
        return any(p.exists() and p.stat().st_size >= at_least for p in candidates)

    return check


def wait_for_status(server: LiveServer, image_id: str, status: str,
                    timeout: float = 20) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        image = get_image(server, image_id)
        if image["status"] == status or time.monotonic() > deadline:
            return image
        time.sleep(0.05)


def upload_and_verify(server: LiveServer, image_id: str) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    response = httpx.put(f"{server.url}/v2/images/{image_id}/file", content=data, timeout=60,
                         headers={"content-type": "application/octet-stream"})
    assert response.status_code == 204, response.text
    image = get_image(server, image_id)
    assert image["status"] == "active", image
    assert image["size"] == len(data)
    assert image["checksum"] == hashlib.md5(data).hexdigest()
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
    download = httpx.get(f"{server.url}/v2/images/{image_id}/file", timeout=60)
    assert download.status_code == 200 and download.content == data


def test_kill_9_during_upload_then_restart(make_server: Callable[[], LiveServer]) -> None:
    server = make_server()
    image_id = create_image(server)
    upload = SlowUpload(server, image_id)
    try:
        upload.until(writing(server, image_id, at_least=1024 * 1024))
        assert get_image(server, image_id)["status"] == "saving"
        server.kill()
    finally:
        upload.close()
    partial = files_of(server, image_id) + temporary_files(server)
    assert partial, "the crash should have left a partial file behind to clean up"

    server.start()
    image = get_image(server, image_id)
    assert image["status"] == "queued", f"{image}\n{server.log()}"
    assert image["size"] is None and image["checksum"] is None, image
    assert files_of(server, image_id) == [], f"left behind: {files_of(server, image_id)}"
    assert temporary_files(server) == []
    upload_and_verify(server, image_id)


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_client_disconnect_mid_upload(make_server: Callable[[], LiveServer],
                                      framing: str) -> None:
    server = make_server()
    image_id = create_image(server)
    length = 64 * 1024 * 1024 if framing == "content-length" else None
    upload = SlowUpload(server, image_id, length=length)
    try:
        upload.until(writing(server, image_id, at_least=256 * 1024))
    finally:
        upload.close()

    image = wait_for_status(server, image_id, "queued")
    assert image["status"] == "queued", f"{image}\n{server.log()}"
    assert image["size"] is None and image["checksum"] is None, image
    deadline = time.monotonic() + 10
    while files_of(server, image_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert files_of(server, image_id) == [], f"left behind: {files_of(server, image_id)}"
    upload_and_verify(server, image_id)


@pytest.mark.parametrize("how", ["--host", "bind_host"])
def test_noauth_refuses_to_listen_on_every_address(tmp_path: Path, how: str) -> None:
    config = tmp_path / "glimpse-api.conf"
    args = [tool("glimpse"), "serve", "--port", str(free_port()),
            "--data-dir", str(tmp_path / "data")]
    if how == "--host":
        config.write_text("[DEFAULT]\nauth_strategy = noauth\n")
        args += ["--host", "0.0.0.0"]
    else:
        config.write_text("[DEFAULT]\nbind_host = 0.0.0.0\n")
    process = subprocess.Popen(
        [*args, "--config-file", str(config)], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )
    try:
        stdout, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, 9)
        process.communicate()
        raise AssertionError("glimpse serve started on 0.0.0.0 without authentication") from None
    assert process.returncode != 0, stdout + stderr
    # A clear message, not a traceback: what was refused, why, and the ways out.
    assert "Traceback" not in stderr, stderr
    assert "refus" in stderr.lower() and "0.0.0.0" in stderr, stderr
    assert "authentication" in stderr or "noauth" in stderr, stderr
    assert "allow_insecure_bind" in stderr and "auth_strategy" in stderr, stderr
    assert not (tmp_path / "data").exists() or not list((tmp_path / "data").rglob("*.db")), \
        "nothing should be set up before the refusal"
