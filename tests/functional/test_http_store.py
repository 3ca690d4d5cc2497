"""The read-only http store: locations on web servers, as Glance's http store."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import client_for, create_image

from glimpse.bootstrap import Node
from glimpse.config import Settings

CONFIG = """
[DEFAULT]
enabled_backends = central:file, web:http

[glance_store]
default_backend = central

[central]
filesystem_store_datadir = {root}/central

[web]
store_description = Web servers
"""
DATA = bytes(range(256)) * 300


@pytest.fixture
def web(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "image.raw").write_bytes(DATA)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
async def node(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> Node:
    result: Node = await make_node(make_settings(CONFIG.format(root=tmp_path / "stores")))
    return result


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


async def test_location_on_a_web_server_is_read_through_the_http_store(
    node: Node, web: str, tmp_path: Path
) -> None:
    url = f"{web}/image.raw"
    async with client_for(node) as client:
        image = await create_image(client, name="x", disk_format="raw", container_format="bare")
        response = await client.post(f"/v2/images/{image['id']}/locations", json={"url": url})
        assert response.status_code == 202, response.text
        shown = (await client.get(f"/v2/images/{image['id']}")).json()
        assert shown["status"] == "active"
        assert shown["size"] == len(DATA)
        assert shown["checksum"] == hashlib.md5(DATA).hexdigest()
        assert shown["stores"] == "web"
        body = await client.get(f"/v2/images/{image['id']}/file")
        assert body.content == DATA
        ranged = await client.get(f"/v2/images/{image['id']}/file",
                                  headers={"range": "bytes=10-19"})
        assert ranged.content == DATA[10:20]
        assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 204
    assert (tmp_path / "www" / "image.raw").read_bytes() == DATA
