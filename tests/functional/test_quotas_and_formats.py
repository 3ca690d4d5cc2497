"""Configured formats (guide 3.4.2), image_size_cap, user_storage_quota and the per-image
quotas, set through glance-api.conf option names."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from tests.conftest import PATCH_TYPE, TOKENS, client_for, create_image, patch, upload

from glimpse.bootstrap import Node
from glimpse.config import Settings

MakeSettings = Callable[..., Settings]
MakeNode = Callable[[Settings], Any]


@asynccontextmanager
async def node_client(
    make_settings: MakeSettings, make_node: MakeNode, config: str, **overrides: Any
) -> AsyncIterator[tuple[Node, httpx.AsyncClient]]:
    node: Node = await make_node(make_settings(config, **overrides))
    async with client_for(node) as client:
        yield node, client


def store_files(node: Node) -> list[Path]:
    return sorted(
        p for driver in node.file_drivers for d in driver.datadirs if d.is_dir()
        for p in d.iterdir() if p.name != ".glimpse-store"
    )


async def chunked(data: bytes, size: int = 100) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def put_chunked(client: httpx.AsyncClient, image_id: str, data: bytes) -> httpx.Response:
    """Upload without Content-Length, so limits must be enforced while streaming."""
    return await client.put(
        f"/v2/images/{image_id}/file", content=chunked(data),
        headers={"content-type": "application/octet-stream"},
    )


async def status_and_size(client: httpx.AsyncClient, image_id: str) -> tuple[str, int | None]:
    shown = (await client.get(f"/v2/images/{image_id}")).json()
    return shown["status"], shown["size"]


# -- formats ------------------------------------------------------------------------


async def test_disk_formats_restricted_as_in_the_guide(
    make_settings: MakeSettings, make_node: MakeNode
) -> None:
    config = "[image_format]\ndisk_formats = raw,iso\n"
    async with node_client(make_settings, make_node, config) as (_, client):
        for fmt in ("raw", "iso"):
            await create_image(client, disk_format=fmt)
        for fmt in ("qcow2", "vmdk", "ami"):
            response = await client.post(
                "/v2/images", json={"disk_format": fmt, "container_format": "bare"}
            )
            assert response.status_code == 400, (fmt, response.text)
        image = await create_image(client, disk_format="raw")
        response = await patch(client, image["id"], [{"op": "replace", "path": "/disk_format",
                                                      "value": "qcow2"}])
        assert response.status_code == 400
        assert (await client.get(f"/v2/images/{image['id']}")).json()["disk_format"] == "raw"
        schema = (await client.get("/v2/schemas/image")).json()
        assert schema["properties"]["disk_format"]["enum"] == [None, "raw", "iso"]
        assert len((await client.get("/v2/images")).json()["images"]) == 3


async def test_container_formats_from_config(
    make_settings: MakeSettings, make_node: MakeNode
) -> None:
    config = "[image_format]\ncontainer_formats = bare,docker\n"
    async with node_client(make_settings, make_node, config) as (_, client):
        await create_image(client, container_format="docker")
        response = await client.post(
            "/v2/images", json={"disk_format": "raw", "container_format": "ova"}
        )
        assert response.status_code == 400
        schema = (await client.get("/v2/schemas/image")).json()
        assert schema["properties"]["container_format"]["enum"] == [None, "bare", "docker"]


async def test_default_formats_are_glances(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/v2/schemas/image")).json()
    assert schema["properties"]["disk_format"]["enum"] == [
        None, "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
    ]
    assert schema["properties"]["container_format"]["enum"] == [
        None, "ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed",
    ]


# -- image_size_cap -----------------------------------------------------------------


async def test_image_size_cap(make_settings: MakeSettings, make_node: MakeNode) -> None:
    config = "[DEFAULT]\nimage_size_cap = 1000\n"
    async with node_client(make_settings, make_node, config) as (node, client):
        image = await create_image(client)
        for send in (put_chunked, upload):  # streamed without a length, and with one
            response = await send(client, image["id"], b"x" * 1001)
            assert response.status_code == 413, response.text
            assert await status_and_size(client, image["id"]) == ("queued", None)
            assert store_files(node) == []
        # Declared too big: refused before any byte is stored.
        response = await client.put(
            f"/v2/images/{image['id']}/file", content=b"x" * 10,
            headers={"content-type": "application/octet-stream",
                     "x-openstack-image-size": "5000"},
        )
        assert response.status_code == 413
        assert await status_and_size(client, image["id"]) == ("queued", None)
        # Exactly the cap is fine.
        assert (await put_chunked(client, image["id"], b"x" * 1000)).status_code == 204
        assert await status_and_size(client, image["id"]) == ("active", 1000)
        assert [p.stat().st_size for p in store_files(node)] == [1000]


# -- user_storage_quota ---------------------------------------------------------------


async def test_user_storage_quota_is_per_project_and_enforced_while_streaming(
    make_settings: MakeSettings, make_node: MakeNode, tmp_path: Path
) -> None:
    token_file = tmp_path / "tokens.json"
    token_file.write_text(json.dumps({"tokens": TOKENS}))
    settings = make_settings("[DEFAULT]\nuser_storage_quota = 1KB\n", auth_strategy="tokens",
                             token_file=token_file)
    node: Node = await make_node(settings)
    async with client_for(node, "alice-token") as alice, client_for(node, "bob-token") as bob:
        first = await create_image(alice)
        assert (await put_chunked(alice, first["id"], b"a" * 600)).status_code == 204
        second = await create_image(alice)
        response = await put_chunked(alice, second["id"], b"b" * 600)
        assert response.status_code == 413, response.text
        assert await status_and_size(alice, second["id"]) == ("queued", None)
        assert [p.read_bytes() for p in store_files(node)] == [b"a" * 600]
        # What is left still fits; another project has its own quota.
        assert (await put_chunked(alice, second["id"], b"b" * 424)).status_code == 204
        other = await create_image(bob)
        assert (await put_chunked(bob, other["id"], b"c" * 1024)).status_code == 204
        # Deleting an image gives its space back.
        third = await create_image(alice)
        assert (await put_chunked(alice, third["id"], b"d")).status_code == 413
        assert (await alice.delete(f"/v2/images/{first['id']}")).status_code == 204
        assert (await put_chunked(alice, third["id"], b"d" * 600)).status_code == 204


# -- per-image quotas -------------------------------------------------------------------


async def test_image_property_quota(make_settings: MakeSettings, make_node: MakeNode) -> None:
    config = "[DEFAULT]\nimage_property_quota = 3\n"
    async with node_client(make_settings, make_node, config) as (_, client):
        response = await client.post("/v2/images", json={"a": "1", "b": "2", "c": "3", "d": "4"})
        assert response.status_code == 413, response.text
        image = await create_image(client, a="1", b="2", c="3")
        response = await patch(client, image["id"], [{"op": "add", "path": "/d", "value": "4"}])
        assert response.status_code == 413
        shown = (await client.get(f"/v2/images/{image['id']}")).json()
        assert "d" not in shown
        # Changing or swapping properties within the quota is fine.
        response = await patch(client, image["id"], [
            {"op": "replace", "path": "/a", "value": "changed"},
            {"op": "remove", "path": "/b"},
            {"op": "add", "path": "/d", "value": "4"},
        ])
        assert response.status_code == 200, response.text
        # Core fields and tags do not count.
        response = await patch(client, image["id"], [
            {"op": "replace", "path": "/name", "value": "n"},
            {"op": "replace", "path": "/tags", "value": ["t1", "t2", "t3", "t4"]},
        ])
        assert response.status_code == 200


async def test_image_tag_quota(make_settings: MakeSettings, make_node: MakeNode) -> None:
    config = "[DEFAULT]\nimage_tag_quota = 2\n"
    async with node_client(make_settings, make_node, config) as (_, client):
        response = await client.post("/v2/images", json={"tags": ["a", "b", "c"]})
        assert response.status_code == 413
        image = await create_image(client, tags=["a", "b"])
        url = f"/v2/images/{image['id']}"
        assert (await client.put(url + "/tags/c")).status_code == 413
        assert (await client.put(url + "/tags/a")).status_code == 204  # already there
        response = await client.patch(
            url, json=[{"op": "replace", "path": "/tags", "value": ["x", "y", "z"]}],
            headers={"content-type": PATCH_TYPE},
        )
        assert response.status_code == 413
        assert sorted((await client.get(url)).json()["tags"]) == ["a", "b"]
        assert (await client.delete(url + "/tags/a")).status_code == 204
        assert (await client.put(url + "/tags/c")).status_code == 204


async def test_image_member_quota(make_settings: MakeSettings, make_node: MakeNode) -> None:
    config = "[DEFAULT]\nimage_member_quota = 2\n"
    async with node_client(make_settings, make_node, config) as (_, client):
        image = await create_image(client)
        url = f"/v2/images/{image['id']}/members"
        for member in ("p1", "p2"):
            assert (await client.post(url, json={"member": member})).status_code == 200
        assert (await client.post(url, json={"member": "p3"})).status_code == 413
        members = (await client.get(url)).json()["members"]
        assert sorted(m["member_id"] for m in members) == ["p1", "p2"]
        assert (await client.delete(url + "/p1")).status_code == 204
        assert (await client.post(url, json={"member": "p3"})).status_code == 200


async def test_negative_quotas_mean_unlimited(
    make_settings: MakeSettings, make_node: MakeNode
) -> None:
    config = "[DEFAULT]\nimage_property_quota = -1\nimage_tag_quota = -1\n"
    async with node_client(make_settings, make_node, config) as (_, client):
        props = {f"p{i}": str(i) for i in range(200)}
        image = await create_image(client, tags=[f"t{i}" for i in range(200)], **props)
        shown = (await client.get(f"/v2/images/{image['id']}")).json()
        assert len(shown["tags"]) == 200 and shown["p199"] == "199"


async def test_default_quotas_are_glances(client: httpx.AsyncClient) -> None:
    props = {f"p{i}": "v" for i in range(128)}
    image = await create_image(client, tags=[f"t{i}" for i in range(128)], **props)
    response = await patch(client, image["id"], [{"op": "add", "path": "/one_more", "value": "x"}])
    assert response.status_code == 413
    assert (await client.put(f"/v2/images/{image['id']}/tags/one_more")).status_code == 413
