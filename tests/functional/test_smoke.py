"""The basic lifecycle, end to end in-process: create, upload, show, download, delete."""

from __future__ import annotations

import hashlib

import httpx
from tests.conftest import create_image, upload


async def test_lifecycle(client: httpx.AsyncClient) -> None:
    data = b"glimpse" * 300_000
    image = await create_image(client, name="cirros")
    assert image["status"] == "queued"
    response = await upload(client, image["id"], data)
    assert response.status_code == 204, response.text
    shown = (await client.get(f"/v2/images/{image['id']}")).json()
    assert shown["status"] == "active"
    assert shown["size"] == len(data)
    assert shown["checksum"] == hashlib.md5(data).hexdigest()
    assert shown["os_hash_algo"] == "sha512"
    assert shown["os_hash_value"] == hashlib.sha512(data).hexdigest()
    download = await client.get(f"/v2/images/{image['id']}/file")
    assert download.status_code == 200
    assert download.content == data
    assert download.headers["content-md5"] == shown["checksum"]
    assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 204
    assert (await client.get(f"/v2/images/{image['id']}")).status_code == 404
