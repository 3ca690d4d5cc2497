"""The read-only http store and the locations API, as Glance's http store and its
``location_import`` task: the request is checked at once (4xx), the location is added
and its data hashed in the background, the image's tasks tell how it ended."""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import client_for, create_image

from glimpse.bootstrap import Node
from glimpse.config import Settings

CONFIG = """
[DEFAULT]
enabled_backends = central:file, web:http
{extra}

[glance_store]
default_backend = central

[central]
filesystem_store_datadir = {root}/central

[web]
store_description = Web servers

[import_filtering_opts]
allowed_hosts = 127.0.0.1
allowed_ports =
"""
DATA = bytes(range(256)) * 300
SHA256 = hashlib.sha256(DATA).hexdigest()
SHA512 = hashlib.sha512(DATA).hexdigest()
MD5 = hashlib.md5(DATA).hexdigest()


class _Endless(http.server.BaseHTTPRequestHandler):
    """Streams data slowly until the client goes away (a read still in flight)."""

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 30))
        self.end_headers()

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        try:
            while True:
                self.wfile.write(b"x" * 65536)
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            return

    def log_message(self, *args: Any) -> None:
        pass


def _serve(handler: Any) -> tuple[http.server.ThreadingHTTPServer, str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def web(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "image.raw").write_bytes(DATA)
    server, url = _serve(partial(http.server.SimpleHTTPRequestHandler, directory=str(root)))
    yield url
    server.shutdown()
    server.server_close()


@pytest.fixture
def endless() -> Iterator[str]:
    server, url = _serve(_Endless)
    yield f"{url}/endless.raw"
    server.shutdown()
    server.server_close()


@pytest.fixture
def make_web_node(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> Callable[..., Any]:
    async def make(extra: str = "") -> Node:
        config = CONFIG.format(root=tmp_path / "stores", extra=extra)
        result: Node = await make_node(make_settings(config))
        return result

    return make


@pytest.fixture
async def node(make_web_node: Callable[..., Any]) -> Node:
    result: Node = await make_web_node()
    return result


async def _add(
    client: httpx.AsyncClient, image_id: str, url: str, **validation: str
) -> httpx.Response:
    body: dict[str, Any] = {"url": url}
    if validation:
        body["validation_data"] = validation
    return await client.post(f"/v2/images/{image_id}/locations", json=body)


async def _tasks(client: httpx.AsyncClient, image_id: str) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = (await client.get(f"/v2/images/{image_id}/tasks")).json()[
        "tasks"
    ]
    return tasks


async def _settled(node: Node) -> None:
    await asyncio.wait_for(node.services.stores.importer.wait_idle(), 30)


async def test_http_store_is_listed_read_only(node: Node) -> None:
    async with client_for(node) as client:
        stores = (await client.get("/v2/info/stores")).json()["stores"]
        assert {"id": "web", "description": "Web servers", "read-only": "true"} in stores
        image = await create_image(client, name="x", disk_format="raw", container_format="bare")
        response = await client.put(
            f"/v2/images/{image['id']}/file", content=b"abc",
            headers={"content-type": "application/octet-stream", "x-image-meta-store": "web"},
        )
        assert response.status_code >= 400


async def test_location_on_a_web_server_is_hashed_in_a_task_and_read_through(
    node: Node, web: str, tmp_path: Path
) -> None:
    url = f"{web}/image.raw"
    async with client_for(node) as client:
        image = await create_image(client, name="x")
        response = await _add(client, image["id"], url)
        assert response.status_code == 202, response.text
        await _settled(node)
        [task] = await _tasks(client, image["id"])
        assert task["type"] == "location_import"
        assert task["status"] == "success"
        shown = (await client.get(f"/v2/images/{image['id']}")).json()
        assert shown["status"] == "active"
        assert shown["size"] == len(DATA)
        assert (shown["checksum"], shown["os_hash_algo"], shown["os_hash_value"]) == (
            MD5, "sha512", SHA512
        )
        assert shown["stores"] == "web"
        assert "os_glance_import_task" not in shown
        body = await client.get(f"/v2/images/{image['id']}/file")
        assert body.content == DATA
        ranged = await client.get(f"/v2/images/{image['id']}/file",
                                  headers={"range": "bytes=10-19"})
        assert ranged.content == DATA[10:20]
        assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 204
    assert (tmp_path / "www" / "image.raw").read_bytes() == DATA


async def test_matching_validation_data_makes_the_image_active(node: Node, web: str) -> None:
    async with client_for(node) as client:
        image = await create_image(client)
        response = await _add(client, image["id"], f"{web}/image.raw",
                              os_hash_algo="sha256", os_hash_value=SHA256)
        assert response.status_code == 202, response.text
        await _settled(node)
        [task] = await _tasks(client, image["id"])
        assert task["status"] == "success"
        assert task["result"] == {"image_id": image["id"]}
        shown = (await client.get(f"/v2/images/{image['id']}")).json()
        assert (shown["status"], shown["os_hash_algo"], shown["os_hash_value"]) == (
            "active", "sha256", SHA256
        )
        assert (shown["checksum"], shown["size"]) == (MD5, len(DATA))


async def test_wrong_hash_fails_the_task_and_leaves_the_image_queued(
    node: Node, web: str
) -> None:
    async with client_for(node) as client:
        image = await create_image(client)
        response = await _add(client, image["id"], f"{web}/image.raw",
                              os_hash_algo="sha512", os_hash_value="beefdead" * 16)
        assert response.status_code == 202, response.text
        await _settled(node)
        [task] = await _tasks(client, image["id"])
        assert task["status"] == "failure"
        assert "not matched" in task["message"]
        shown = (await client.get(f"/v2/images/{image['id']}")).json()
        assert shown["status"] == "queued"
        assert (shown["checksum"], shown["os_hash_algo"], shown["os_hash_value"]) == (
            None, None, None
        )
        # As Glance: an http location is not removed from the queued image.
        assert shown["stores"] == "web"
        assert "os_glance_import_task" not in shown
        assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 204


@pytest.mark.parametrize(
    ("validation", "fragment"),
    [
        ({"os_hash_algo": "sha512", "os_hash_value": "dbc9e0f80d131e64b94913a7b40bb5"},
         "not the correct size"),
        ({"os_hash_value": SHA512}, "needs both"),
        ({"os_hash_algo": "sha123", "os_hash_value": SHA512}, "must be one of"),
        ({"os_hash_algo": "sha512", "os_hash_value": SHA256}, "not the correct size"),
        ({"os_hash_algo": "sha256", "os_hash_value": "zz" * 32}, "not a valid hexadecimal"),
        ({"os_hash_algo": "sha256", "os_hash_value": SHA256, "checksum": MD5},
         "not allowed"),
    ],
)
async def test_bad_validation_data_is_refused_at_once(
    node: Node, web: str, validation: dict[str, str], fragment: str
) -> None:
    async with client_for(node) as client:
        image = await create_image(client)
        response = await _add(client, image["id"], f"{web}/image.raw", **validation)
        assert response.status_code == 400, response.text
        assert fragment in response.text
        assert await _tasks(client, image["id"]) == []
        shown = (await client.get(f"/v2/images/{image['id']}")).json()
        assert shown["status"] == "queued"
        assert "os_glance_import_task" not in shown


async def test_location_must_pass_the_import_filter(node: Node) -> None:
    async with client_for(node) as client:
        image = await create_image(client)
        response = await _add(client, image["id"], "http://10.0.0.1:8080/image.raw")
        assert response.status_code == 400
        assert "does not pass filtering" in response.text
        assert await _tasks(client, image["id"]) == []


async def test_unreachable_location_fails_the_task_and_keeps_the_image_queued(
    node: Node, web: str
) -> None:
    async with client_for(node) as client:
        image = await create_image(client)
        assert (await _add(client, image["id"], f"{web}/missing.raw")).status_code == 202
        await _settled(node)
        [task] = await _tasks(client, image["id"])
        assert task["status"] == "failure"
        assert "404" in task["message"]
        shown = (await client.get(f"/v2/images/{image['id']}")).json()
        assert shown["status"] == "queued"
        assert "stores" not in shown
        # The lock is gone: the caller may try another location.
        assert (await _add(client, image["id"], f"{web}/image.raw")).status_code == 202
        await _settled(node)
        assert (await client.get(f"/v2/images/{image['id']}")).json()["status"] == "active"


async def test_delete_stops_a_hash_in_progress(node: Node, endless: str) -> None:
    async with client_for(node) as client:
        image = await create_image(client)
        assert (await _add(client, image["id"], endless)).status_code == 202
        for _ in range(100):
            shown = (await client.get(f"/v2/images/{image['id']}")).json()
            if shown["status"] == "active":
                break
            await asyncio.sleep(0.05)
        # Active at once, the hash still being computed, the size from a HEAD.
        assert (shown["status"], shown["os_hash_algo"], shown["os_hash_value"]) == (
            "active", "sha512", None
        )
        assert shown["size"] == 1 << 30
        [task] = await _tasks(client, image["id"])
        assert task["status"] == "processing"
        started = time.monotonic()
        assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 204
        assert time.monotonic() - started < 10
        await _settled(node)
        assert (await client.get(f"/v2/images/{image['id']}")).status_code == 404


async def test_second_location_while_one_is_being_added_is_a_conflict(
    node: Node, endless: str, web: str
) -> None:
    async with client_for(node) as client:
        image = await create_image(client)
        assert (await _add(client, image["id"], endless, os_hash_algo="sha256",
                           os_hash_value=SHA256)).status_code == 202
        response = await _add(client, image["id"], f"{web}/image.raw")
        # importing (the data being checked) or still queued with the lock held
        assert response.status_code == 409, response.text
        assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 204
        await _settled(node)


async def test_interrupted_location_import_is_failed_on_recovery(
    node: Node, web: str
) -> None:
    importer = node.services.stores.importer
    importer.start = lambda task: None  # type: ignore[method-assign]
    async with client_for(node) as client:
        image = await create_image(client)
        assert (await _add(client, image["id"], f"{web}/image.raw")).status_code == 202
        assert await importer.recover(include_own=True) == 1
        [task] = await _tasks(client, image["id"])
        assert task["status"] == "failure"
        assert "interrupted" in task["message"]
        shown = (await client.get(f"/v2/images/{image['id']}")).json()
        assert shown["status"] == "queued"
        assert "os_glance_import_task" not in shown
        assert await importer.recover(include_own=True) == 0


async def test_without_secure_hash_validation_data_is_taken_as_given(
    make_web_node: Callable[..., Any], web: str
) -> None:
    node: Node = await make_web_node("do_secure_hash = false")
    async with client_for(node) as client:
        image = await create_image(client)
        response = await _add(client, image["id"], f"{web}/image.raw",
                              os_hash_algo="sha256", os_hash_value=SHA256)
        assert response.status_code == 202, response.text
        plain = await create_image(client)
        assert (await _add(client, plain["id"], f"{web}/image.raw")).status_code == 202
        await _settled(node)
        shown = (await client.get(f"/v2/images/{image['id']}")).json()
        assert (shown["status"], shown["os_hash_algo"], shown["os_hash_value"]) == (
            "active", "sha256", SHA256
        )
        assert (shown["checksum"], shown["size"]) == (None, len(DATA))
        shown = (await client.get(f"/v2/images/{plain['id']}")).json()
        assert (shown["status"], shown["checksum"], shown["os_hash_value"]) == (
            "active", None, None
        )
        assert shown["size"] == len(DATA)
        for i in (image, plain):
            [task] = await _tasks(client, i["id"])
            assert task["status"] == "success"
