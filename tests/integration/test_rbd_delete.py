"""Deleting an image whose RBD snapshot has a clone (a Cinder volume or a Nova disk made
from it) on a real Ceph cluster (issue #10): the data goes first, so the refusal is a
409 with the image still active and its data intact; once the clone is gone the delete
(or, with delayed_delete, the scrubber) finishes."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tests.backends import CephCluster
from tests.conftest import client_for, create_image, upload
from tests.integration.test_rbd_multistore import sha256_in

from glimpse.config import Settings

MIB = 1024 * 1024

CONFIG = """
[DEFAULT]
enabled_backends = central:rbd
show_multiple_locations = true
{extra}

[glance_store]
default_backend = central

[central]
rbd_store_ceph_conf = {conf}
rbd_store_pool = images
rbd_store_user = admin
rbd_store_chunk_size = 1
rados_connect_timeout = 10
"""


@contextmanager
def clone_of(cluster: CephCluster, image_id: str) -> Iterator[str]:
    """A copy-on-write clone of the image's protected snapshot, as Cinder and Nova make
    them; removed on leaving the block."""
    import rados
    import rbd

    name = f"volume-{image_id}"
    client = rados.Rados(conffile=cluster.conf, rados_id="admin")
    client.connect()
    try:
        with client.open_ioctx("images") as ioctx:
            rbd.RBD().clone(ioctx, image_id, "snap", ioctx, name,
                            features=int(rbd.RBD_FEATURE_LAYERING))
            try:
                yield name
            finally:
                rbd.RBD().remove(ioctx, name)
    finally:
        client.shutdown()


async def test_image_with_a_clone_is_refused_and_kept(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings],
    ceph_central: CephCluster,
) -> None:
    node = await make_node(make_settings(CONFIG.format(conf=ceph_central.conf, extra="")))
    data = os.urandom(2 * MIB + 5)
    digest = hashlib.sha256(data).hexdigest()
    async with client_for(node) as client:
        image = await create_image(client, name="golden")
        image_id = image["id"]
        assert (await upload(client, image_id, data)).status_code == 204
        with clone_of(ceph_central, image_id):
            response = await client.delete(f"/v2/images/{image_id}")
            assert response.status_code == 409, response.text
            assert "could not be deleted because it is in use" in response.text
            assert "clone" in response.text
            shown = await client.get(f"/v2/images/{image_id}")
            assert shown.status_code == 200
            assert shown.json()["status"] == "active"
            assert [loc["metadata"]["store"] for loc in shown.json()["locations"]] == ["central"]
            assert sha256_in(ceph_central, image_id) == digest
            assert (await client.get(f"/v2/images/{image_id}/file")).content == data

        assert (await client.delete(f"/v2/images/{image_id}")).status_code == 204
        assert (await client.get(f"/v2/images/{image_id}")).status_code == 404
        assert sha256_in(ceph_central, image_id) is None


async def test_scrubber_waits_for_the_clone_to_go(
    make_node: Callable[[Settings], Any], make_settings: Callable[..., Settings],
    ceph_central: CephCluster,
) -> None:
    config = CONFIG.format(conf=ceph_central.conf,
                           extra="delayed_delete = true\nwakeup_time = 3600")
    node = await make_node(make_settings(config))
    data = os.urandom(MIB + 3)
    digest = hashlib.sha256(data).hexdigest()
    assert node.scrubber is not None
    async with client_for(node) as client:
        image_id = (await create_image(client))["id"]
        assert (await upload(client, image_id, data)).status_code == 204
        with clone_of(ceph_central, image_id):
            assert (await client.delete(f"/v2/images/{image_id}")).status_code == 204
            report = await node.scrubber.scrub_once()
            assert report.failed == [image_id] and report.scrubbed == []
            assert sha256_in(ceph_central, image_id) == digest
            # Still pending_delete: it can be brought back whole.
            await node.scrubber.restore(image_id)
            assert (await client.get(f"/v2/images/{image_id}/file")).content == data
            assert (await client.delete(f"/v2/images/{image_id}")).status_code == 204
        report = await node.scrubber.scrub_once()
        assert report.scrubbed == [image_id] and report.failed == []
        assert sha256_in(ceph_central, image_id) is None
        assert (await client.get(f"/v2/images/{image_id}")).status_code == 404
