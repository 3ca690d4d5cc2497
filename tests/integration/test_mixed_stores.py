"""One node with central on Ceph RBD, one edge store on Swift and one on S3 (radosgw), all
real servers, driven through the API: import to all stores, copy-image, delete from one
store, downloads from each, store details; no credential shows anywhere."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.backends import CephCluster, S3Endpoint, SwiftEndpoint
from tests.conftest import client_for, create_image, upload

from glimpse.bootstrap import Node
from glimpse.config import Settings

MIB = 1024 * 1024

CONFIG = """
[DEFAULT]
enabled_backends = central:rbd, edge-swift:swift, edge-s3:s3
show_multiple_locations = true
show_image_direct_url = true

[glance_store]
default_backend = central

[central]
rbd_store_ceph_conf = {ceph_conf}
rbd_store_chunk_size = 1
rados_connect_timeout = 10

[edge-swift]
store_description = Edge site on Swift
swift_store_config_file = glance-swift.conf
default_swift_reference = ref1
swift_store_container = glimpse-mixed
swift_store_create_container_on_put = true
swift_store_large_object_size = 1
swift_store_large_object_chunk_size = 1

[edge-s3]
store_description = Edge site on S3
s3_store_host = {s3_url}
s3_store_access_key = {access_key}
s3_store_secret_key = {secret_key}
s3_store_bucket = glimpse-mixed
s3_store_create_bucket_on_put = true
s3_store_bucket_url_format = path
s3_store_large_object_size = 5
s3_store_large_object_chunk_size = 5
s3_store_thread_pools = 2
"""


@pytest.fixture
async def mixed(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings],
    tmp_path: Path, ceph_central: CephCluster, radosgw: S3Endpoint, swift_aio: SwiftEndpoint,
) -> Node:
    swift_aio.config_file(tmp_path)  # beside the node's config file: a relative path
    config = CONFIG.format(ceph_conf=ceph_central.conf, s3_url=radosgw.url,
                           access_key=radosgw.access_key, secret_key=radosgw.secret_key)
    node: Node = await make_node(make_settings(config))
    return node


async def show(client: httpx.AsyncClient, image_id: str) -> dict[str, Any]:
    response = await client.get(f"/v2/images/{image_id}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def assert_no_secrets(text: str, radosgw: S3Endpoint, swift: SwiftEndpoint) -> None:
    for secret in (radosgw.access_key, radosgw.secret_key, swift.key):
        assert secret not in text


async def test_import_to_all_stores_then_read_and_delete_from_each(
    mixed: Node, radosgw: S3Endpoint, swift_aio: SwiftEndpoint
) -> None:
    data = os.urandom(6 * MIB + 7)  # segmented in Swift, multipart in S3
    async with client_for(mixed) as client:
        image = await create_image(client)
        image_id = image["id"]
        staged = await client.put(f"/v2/images/{image_id}/stage", content=data,
                                  headers={"content-type": "application/octet-stream"})
        assert staged.status_code == 204
        response = await client.post(f"/v2/images/{image_id}/import", json={
            "method": {"name": "glance-direct"}, "all_stores": True,
        })
        assert response.status_code == 202, response.text
        await mixed.runner.wait_idle()
        shown = await show(client, image_id)
        assert shown["status"] == "active", shown
        assert sorted(shown["stores"].split(",")) == ["central", "edge-s3", "edge-swift"]
        assert shown["os_hash_value"] == hashlib.sha512(data).hexdigest()
        urls = {loc["metadata"]["store"]: loc["url"] for loc in shown["locations"]}
        assert urls["edge-swift"] == f"swift+config://ref1/glimpse-mixed/{image_id}"
        assert urls["edge-s3"].endswith(f"/glimpse-mixed/{image_id}")
        assert_no_secrets(json.dumps(shown), radosgw, swift_aio)

        for store_id in ("central", "edge-swift", "edge-s3"):
            store = mixed.stores.get(store_id)
            got = b"".join([c async for c in store.read(urls[store_id])])
            assert got == data, store_id
        download = await client.get(f"/v2/images/{image_id}/file")
        assert download.status_code == 200 and download.content == data

        # Each copy removed alone; the last one is refused (delete the image instead).
        assert (await client.delete(f"/v2/stores/edge-swift/{image_id}")).status_code == 204
        assert (await client.delete(f"/v2/stores/central/{image_id}")).status_code == 204
        assert (await show(client, image_id))["stores"] == "edge-s3"
        assert (await client.get(f"/v2/images/{image_id}/file")).content == data
        assert (await client.delete(f"/v2/stores/edge-s3/{image_id}")).status_code == 403
        assert (await client.delete(f"/v2/images/{image_id}")).status_code == 204
        for store_id in ("central", "edge-swift", "edge-s3"):
            store = mixed.stores.get(store_id)
            assert urls[store_id] not in await store.driver.list_locations(), store_id


async def test_copy_image_from_rbd_to_swift_and_s3(
    mixed: Node, radosgw: S3Endpoint, swift_aio: SwiftEndpoint
) -> None:
    data = os.urandom(2 * MIB + 3)
    async with client_for(mixed) as client:
        image = await create_image(client)
        image_id = image["id"]
        assert (await upload(client, image_id, data)).status_code == 204
        response = await client.post(f"/v2/images/{image_id}/import", json={
            "method": {"name": "copy-image"}, "stores": ["edge-swift", "edge-s3"],
        })
        assert response.status_code == 202, response.text
        await mixed.runner.wait_idle()
        shown = await show(client, image_id)
        assert sorted(shown["stores"].split(",")) == ["central", "edge-s3", "edge-swift"]
        for location in shown["locations"]:
            store = mixed.stores.get(location["metadata"]["store"])
            got = b"".join([c async for c in store.read(location["url"], MIB, 10)])
            assert got == data[MIB : MIB + 10]
        assert (await client.delete(f"/v2/images/{image_id}")).status_code == 204


async def test_store_details_name_each_type_without_secrets(
    mixed: Node, radosgw: S3Endpoint, swift_aio: SwiftEndpoint, ceph_central: CephCluster
) -> None:
    async with client_for(mixed) as client:
        response = await client.get("/v2/info/stores/detail")
    assert response.status_code == 200
    stores = {s["id"]: s for s in response.json()["stores"]}
    assert stores["central"]["type"] == "rbd"
    assert stores["central"]["properties"]["fsid"] == ceph_central.fsid
    assert stores["edge-swift"]["type"] == "swift"
    assert stores["edge-swift"]["properties"] == {
        "container": "glimpse-mixed", "large_object_size": MIB,
        "large_object_chunk_size": MIB,
    }
    assert stores["edge-s3"]["type"] == "s3"
    assert stores["edge-s3"]["properties"] == {
        "s3_store_large_object_size": 5 * MIB, "s3_store_large_object_chunk_size": 5 * MIB,
        "s3_store_thread_pools": 2,
    }
    assert_no_secrets(response.text, radosgw, swift_aio)
