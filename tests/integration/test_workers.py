"""``workers = 2``: one node, several processes, and what happens when one of them dies.

uvicorn restarts a worker that dies; the restarted worker must reset the upload the
dead one was taking (the image returns to ``queued``) and leave its live sibling's
upload alone. A killed ``glimpse serve`` takes its workers with it, so it can be
started again on the same port.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.live_server import LiveServer

MiB = 1024 * 1024


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    node = LiveServer(tmp_path, options={"DEFAULT": {"workers": "2"}})
    node.start()
    try:
        yield node
    finally:
        node.stop()
        for pid in _workers(node):  # our own children, if any outlived the parent
            os.kill(pid, signal.SIGKILL)


def _workers(node: LiveServer) -> list[int]:
    """The worker processes of the server (children running the multiprocessing spawn)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == node.pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def _writer_of(node: LiveServer, image_id: str) -> int | None:
    """The worker that has the image's partial file open."""
    for pid in _workers(node):
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                if image_id in os.readlink(fd):
                    return pid
        except OSError:
            continue
    return None


class SlowUpload:
    """An upload that sends 1 MiB, then waits until released (or abandoned)."""

    def __init__(self, url: str, image_id: str) -> None:
        self.release = threading.Event()
        self.status: int | None = None
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._run, args=(url, image_id), daemon=True)
        self.thread.start()

    def _body(self) -> Iterator[bytes]:
        yield os.urandom(MiB)
        self.release.wait(60)
        yield os.urandom(MiB)

    def _run(self, url: str, image_id: str) -> None:
        try:
            response = httpx.put(f"{url}/v2/images/{image_id}/file", content=self._body(),
                                 headers={"content-type": "application/octet-stream"},
                                 timeout=60)
            self.status = response.status_code
        except Exception as exc:  # the worker serving it was killed
            self.error = exc


def _create(url: str) -> str:
    response = httpx.post(f"{url}/v2/images", json={
        "name": f"w-{uuid.uuid4().hex[:8]}", "disk_format": "raw", "container_format": "bare"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _status(url: str, image_id: str) -> str:
    return str(httpx.get(f"{url}/v2/images/{image_id}").json()["status"])


def _wait(predicate: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def _wait_for_workers(node: LiveServer, count: int = 2) -> list[int]:
    _wait(lambda: len(_workers(node)) == count)
    return _workers(node)


def test_a_restarted_worker_resets_only_the_upload_of_the_worker_that_died(
    server: LiveServer,
) -> None:
    _wait_for_workers(server)
    image_id = _create(server.url)
    upload = SlowUpload(server.url, image_id)
    _wait(lambda: _writer_of(server, image_id) is not None)
    writer = _writer_of(server, image_id)
    sibling = next(pid for pid in _workers(server) if pid != writer)

    # The other worker dies and is restarted: the upload in flight is not its business.
    os.kill(sibling, signal.SIGKILL)
    _wait(lambda: len(_workers(server)) == 2 and sibling not in _workers(server))
    _wait(lambda: httpx.get(f"{server.url}/healthcheck").status_code == 200)
    time.sleep(1)  # the new worker's start-up recovery has run
    assert _status(server.url, image_id) == "saving"
    upload.release.set()
    upload.thread.join(60)
    assert upload.status == 204, upload.error
    assert _status(server.url, image_id) == "active"

    # Now the writer itself dies mid-upload: its restarted successor resets the image.
    second = _create(server.url)
    upload = SlowUpload(server.url, second)
    _wait(lambda: _writer_of(server, second) is not None)
    dead = _writer_of(server, second)
    assert dead is not None
    os.kill(dead, signal.SIGKILL)
    _wait(lambda: _status(server.url, second) == "queued")
    upload.release.set()
    upload.thread.join(60)
    assert upload.status is None and upload.error is not None
    # And the image takes a new upload.
    response = httpx.put(f"{server.url}/v2/images/{second}/file", content=b"again",
                         headers={"content-type": "application/octet-stream"})
    assert response.status_code == 204, response.text


def test_workers_end_with_a_killed_server_which_starts_again(server: LiveServer) -> None:
    workers = _wait_for_workers(server)
    server.kill()
    _wait(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), timeout=30)
    port = server.port
    server.start()
    assert server.port == port
    assert httpx.get(f"{server.url}/healthcheck").text == "OK"
