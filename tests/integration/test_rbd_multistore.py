"""RBD multi-store (guide chapter 5): two separate Ceph clusters, a central site and an
edge site, as the stores ``central:rbd`` and ``dcn0:rbd`` of one node, driven through the
API: upload to central, import to both, copy-image to the edge, delete from one store,
store details; and an edge cluster that stops answering mid-way and comes back."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.backends import CephCluster, start_ceph
from tests.conftest import client_for, create_image, upload

from glimpse.bootstrap import Node
from glimpse.config import Settings

MIB = 1024 * 1024

CONFIG = """
[DEFAULT]
enabled_backends = central:rbd, {edge}:rbd
show_multiple_locations = true
show_image_direct_url = true

[glance_store]
default_backend = central

[central]
store_description = Central site
rbd_store_ceph_conf = {central}
rbd_store_pool = images
rbd_store_user = admin
rbd_store_chunk_size = 1
rbd_thin_provisioning = true
rados_connect_timeout = {timeout}
weight = 100

[{edge}]
store_description = Edge site
rbd_store_ceph_conf = {edge_conf}
rbd_store_chunk_size = 1
rados_connect_timeout = {timeout}
"""


def config(central: CephCluster, edge: CephCluster, timeout: int = 10) -> str:
    return CONFIG.format(central=central.conf, edge=edge.name, edge_conf=edge.conf,
                         timeout=timeout)


@contextmanager
def opened(cluster: CephCluster, name: str) -> Iterator[Any]:
    """The committed RBD image ``name`` (its snapshot), or None when it is not there."""
    import rados
    import rbd

    client = rados.Rados(conffile=cluster.conf, rados_id="admin")
    client.connect()
    try:
        with client.open_ioctx("images") as ioctx:
            try:
                image = rbd.Image(ioctx, name, snapshot="snap", read_only=True)
            except rbd.ImageNotFound:
                yield None
                return
            with image:
                yield image
    finally:
        client.shutdown()


def sha256_in(cluster: CephCluster, name: str) -> str | None:
    with opened(cluster, name) as image:
        if image is None:
            return None
        return hashlib.sha256(image.read(0, image.size())).hexdigest()


@asynccontextmanager
async def exclusive(path: Path) -> AsyncIterator[None]:
    """Hold an flock on ``path``: one test at a time freezes the outage cluster, across
    xdist workers and test runs."""
    with open(path, "a") as lock:
        await asyncio.to_thread(fcntl.flock, lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


@pytest.fixture
async def two_sites(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings],
    ceph_central: CephCluster, ceph_dcn0: CephCluster,
) -> Node:
    node: Node = await make_node(make_settings(config(ceph_central, ceph_dcn0)))
    return node


async def show(client: httpx.AsyncClient, image_id: str) -> dict[str, Any]:
    response = await client.get(f"/v2/images/{image_id}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_store_details_show_each_cluster(
    two_sites: Node, ceph_central: CephCluster, ceph_dcn0: CephCluster
) -> None:
    async with client_for(two_sites) as client:
        stores = (await client.get("/v2/info/stores/detail")).json()["stores"]
    by_id = {s["id"]: s for s in stores}
    assert by_id["central"]["type"] == by_id["dcn0"]["type"] == "rbd"
    assert by_id["central"]["properties"] == {
        "chunk_size": MIB, "pool": "images", "thin_provisioning": True,
        "fsid": ceph_central.fsid,
    }
    assert by_id["dcn0"]["properties"]["fsid"] == ceph_dcn0.fsid != ceph_central.fsid
    assert by_id["central"]["weight"] == 100


async def test_upload_copy_to_the_edge_and_delete_from_one_store(
    two_sites: Node, ceph_central: CephCluster, ceph_dcn0: CephCluster
) -> None:
    data = os.urandom(3 * MIB + 11)
    digest = hashlib.sha256(data).hexdigest()
    async with client_for(two_sites) as client:
        image = await create_image(client, name="edge-image")
        image_id = image["id"]
        assert (await upload(client, image_id, data)).status_code == 204
        shown = await show(client, image_id)
        assert shown["status"] == "active" and shown["stores"] == "central"
        assert shown["direct_url"] == f"rbd://{ceph_central.fsid}/images/{image_id}/snap"
        assert sha256_in(ceph_central, image_id) == digest
        assert sha256_in(ceph_dcn0, image_id) is None

        response = await client.post(f"/v2/images/{image_id}/import", json={
            "method": {"name": "copy-image"}, "stores": ["dcn0"],
        })
        assert response.status_code == 202, response.text
        await two_sites.runner.wait_idle()
        shown = await show(client, image_id)
        assert shown["status"] == "active"
        assert sorted(shown["stores"].split(",")) == ["central", "dcn0"]
        urls = {loc["metadata"]["store"]: loc["url"] for loc in shown["locations"]}
        assert urls["dcn0"] == f"rbd://{ceph_dcn0.fsid}/images/{image_id}/snap"
        assert sha256_in(ceph_dcn0, image_id) == digest
        with opened(ceph_dcn0, image_id) as edge_copy:
            assert edge_copy.is_protected_snap("snap")

        download = await client.get(f"/v2/images/{image_id}/file")
        assert download.status_code == 200
        assert download.content == data
        ranged = await client.get(f"/v2/images/{image_id}/file",
                                  headers={"Range": "bytes=1048570-1048585"})
        assert ranged.status_code == 206 and ranged.content == data[1048570:1048586]

        assert (await client.delete(f"/v2/stores/dcn0/{image_id}")).status_code == 204
        assert (await show(client, image_id))["stores"] == "central"
        assert sha256_in(ceph_dcn0, image_id) is None
        assert sha256_in(ceph_central, image_id) == digest

        assert (await client.delete(f"/v2/images/{image_id}")).status_code == 204
        assert sha256_in(ceph_central, image_id) is None


async def test_import_to_both_sites(
    two_sites: Node, ceph_central: CephCluster, ceph_dcn0: CephCluster
) -> None:
    data = os.urandom(2 * MIB) + bytes(4 * MIB)  # a sparse tail: thin in central
    async with client_for(two_sites) as client:
        image = await create_image(client)
        image_id = image["id"]
        staged = await client.put(f"/v2/images/{image_id}/stage", content=data,
                                  headers={"content-type": "application/octet-stream"})
        assert staged.status_code == 204, staged.text
        response = await client.post(f"/v2/images/{image_id}/import", json={
            "method": {"name": "glance-direct"}, "stores": ["central", "dcn0"],
            "all_stores_must_succeed": True,
        })
        assert response.status_code == 202, response.text
        await two_sites.runner.wait_idle()
        shown = await show(client, image_id)
        assert shown["status"] == "active"
        assert sorted(shown["stores"].split(",")) == ["central", "dcn0"]
        digest = hashlib.sha256(data).hexdigest()
        assert sha256_in(ceph_central, image_id) == sha256_in(ceph_dcn0, image_id) == digest
        assert (await client.delete(f"/v2/images/{image_id}")).status_code == 204
    assert sha256_in(ceph_central, image_id) is None
    assert sha256_in(ceph_dcn0, image_id) is None


async def test_an_edge_cluster_that_stops_answering_and_comes_back(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings],
    ceph_central: CephCluster,
) -> None:
    """The edge's OSD is frozen (SIGSTOP) mid-way: uploads there fail cleanly with 503,
    central keeps working; once it runs again the same node serves it, no restart."""
    edge = start_ceph("outage")
    node: Node = await make_node(make_settings(config(ceph_central, edge, timeout=3)))
    osd_pid = int((Path(edge.conf).parent / "run" / "osd.0.pid").read_text().strip())
    async with exclusive(Path(edge.conf).parent / "freeze.lock"), client_for(node) as client:
        before = await create_image(client)
        put = await client.put(f"/v2/images/{before['id']}/file", content=b"edge bytes",
                               headers={"content-type": "application/octet-stream",
                                        "x-image-meta-store": "outage"})
        assert put.status_code == 204, put.text
        os.kill(osd_pid, signal.SIGSTOP)
        try:
            stuck = await create_image(client)
            put = await client.put(f"/v2/images/{stuck['id']}/file", content=b"x" * 100_000,
                                   headers={"content-type": "application/octet-stream",
                                            "x-image-meta-store": "outage"})
            assert put.status_code == 503, put.text
            assert (await show(client, stuck["id"]))["status"] == "queued"
            central = await create_image(client)
            assert (await upload(client, central["id"], b"central bytes")).status_code == 204
            assert (await client.get(f"/v2/images/{central['id']}/file")).content == (
                b"central bytes")
        finally:
            os.kill(osd_pid, signal.SIGCONT)
        assert (await client.get(f"/v2/images/{before['id']}/file")).content == b"edge bytes"
        put = await client.put(f"/v2/images/{stuck['id']}/file", content=b"y" * 100_000,
                               headers={"content-type": "application/octet-stream",
                                        "x-image-meta-store": "outage"})
        assert put.status_code == 204, put.text
        for image in (before, stuck, central):
            assert (await client.delete(f"/v2/images/{image['id']}")).status_code == 204
    import rados
    import rbd

    client_ = rados.Rados(conffile=edge.conf, rados_id="admin")
    client_.connect()
    try:
        with client_.open_ioctx("images") as ioctx:
            names = rbd.RBD().list(ioctx)
    finally:
        client_.shutdown()
    # The frozen upload's temporary image went when the cluster came back, or is named as
    # temporary (never a committed image); the committed ones were deleted.
    assert not [n for n in names if n in (before["id"], stuck["id"])]
