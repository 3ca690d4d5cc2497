"""The store contract against a real Ceph cluster (scripts/ceph), plus what only RBD
promises: Glance's image/snapshot layout and location, growth while writing, sparse
(thin-provisioned) uploads checked with diff_iterate, deletes refused while clones exist."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from tests.backends import CephCluster
from tests.contract.store_contract import (
    MIB,
    StoreContract,
    chunks,
    new_id,
    pieces,
    read_all,
)

from glimpse.domain.errors import Conflict, StoreUnavailable
from glimpse.stores.registry import ManagedStore


@contextmanager
def pool(cluster: CephCluster, name: str = "images") -> Iterator[Any]:
    import rados

    client = rados.Rados(conffile=cluster.conf, rados_id="admin")
    client.connect()
    try:
        with client.open_ioctx(name) as ioctx:
            yield ioctx
    finally:
        client.shutdown()


def rbd_driver(cluster: CephCluster, **options: Any) -> Any:
    from glimpse.stores.rbd import RbdStoreDriver

    options.setdefault("chunk_size", MIB)
    return RbdStoreDriver(conffile=cluster.conf, connect_timeout=10, **options)


class RbdHarness:
    scheme = "rbd://"

    def __init__(self, cluster: CephCluster, tmp_path: Path) -> None:
        self.cluster = cluster
        self.tmp_path = tmp_path
        self.foreign = f"rbd://{'0' * 8}-0000-0000-0000-{'0' * 12}/images/{new_id()}/snap"

    def driver(self) -> Any:
        return rbd_driver(self.cluster)

    def leftovers(self, image_id: str) -> list[str]:
        import rbd

        with pool(self.cluster) as ioctx:
            names = [n for n in rbd.RBD().list(ioctx) if image_id in n]
            names += [t["name"] for t in rbd.RBD().trash_list(ioctx) if image_id in t["name"]]
        return names

    def unreachable(self) -> Any:
        conf = self.tmp_path / "nowhere.conf"
        conf.write_text(
            "[global]\nmon host = 127.0.0.1:9\n"
            f"keyring = {Path(self.cluster.conf).parent / 'ceph.client.admin.keyring'}\n"
            "log to stderr = false\nerr to stderr = false\n"
        )
        from glimpse.stores.rbd import RbdStoreDriver

        return RbdStoreDriver(conffile=str(conf), chunk_size=MIB, connect_timeout=1)


@pytest.fixture
def harness(ceph_central: CephCluster, tmp_path: Path) -> RbdHarness:
    return RbdHarness(ceph_central, tmp_path)


class TestRbdContract(StoreContract):
    pass


# -- what only the RBD store does ------------------------------------------------------


def allocated_bytes(cluster: CephCluster, name: str) -> int:
    import rbd

    total = 0

    def count(offset: int, length: int, exists: bool) -> None:
        nonlocal total
        if exists:
            total += length

    with pool(cluster) as ioctx, rbd.Image(ioctx, name, snapshot="snap", read_only=True) as image:
        image.diff_iterate(0, image.size(), None, count)
    return total


async def test_layout_is_glances(ceph_central: CephCluster) -> None:
    import rbd

    store = ManagedStore("central", rbd_driver(ceph_central))
    image_id = new_id()
    data = os.urandom(5 * MIB + 123)  # not a whole number of chunks: trimmed at the end
    stored = await store.add(image_id, pieces(data, 300_000))
    assert stored.location == f"rbd://{ceph_central.fsid}/images/{image_id}/snap"
    with pool(ceph_central) as ioctx, rbd.Image(ioctx, image_id) as image:
        assert image.size() == len(data)
        assert [s["name"] for s in image.list_snaps()] == ["snap"]
        assert image.is_protected_snap("snap")
        assert image.stat()["order"] == 20  # rbd_store_chunk_size = 1 MiB
    assert await read_all(store, stored.location, 5 * MIB, 200) == data[5 * MIB :]
    await store.delete(stored.location)


async def test_thin_provisioning_skips_zero_chunks(ceph_central: CephCluster) -> None:
    store = ManagedStore("central", rbd_driver(ceph_central, thin_provisioning=True))
    image_id = new_id()
    head = os.urandom(3 * MIB)

    async def sparse() -> AsyncIterator[bytes]:
        yield head
        for _ in range(20):  # 20 MiB of zeros after 3 MiB of data
            yield bytes(MIB)
        yield b"end"

    stored = await store.add(image_id, sparse())
    assert stored.size == 23 * MIB + 3
    allocated = allocated_bytes(ceph_central, image_id)
    assert allocated < 5 * MIB, f"{allocated} bytes allocated for 3 MiB of data"
    data = head + bytes(20 * MIB) + b"end"
    assert await read_all(store, stored.location) == data
    await store.delete(stored.location)


async def test_thick_by_default(ceph_central: CephCluster) -> None:
    store = ManagedStore("central", rbd_driver(ceph_central))
    image_id = new_id()
    stored = await store.add(image_id, chunks(bytes(4 * MIB)))
    assert allocated_bytes(ceph_central, image_id) >= 4 * MIB
    await store.delete(stored.location)


async def test_delete_is_refused_while_a_clone_exists(ceph_central: CephCluster) -> None:
    import rbd

    store = ManagedStore("central", rbd_driver(ceph_central))
    image_id = new_id()
    stored = await store.add(image_id, chunks(b"parent data" * 1000))
    clone = f"volume-{image_id}"
    with pool(ceph_central) as ioctx:  # what Cinder or Nova does: a copy-on-write clone
        rbd.RBD().clone(ioctx, image_id, "snap", ioctx, clone, features=1)
    with pytest.raises(Conflict, match="clone"):
        await store.delete(stored.location)
    with pool(ceph_central) as ioctx, rbd.Image(ioctx, image_id) as image:
        assert image.is_protected_snap("snap")  # untouched
    assert await read_all(store, stored.location, 0, 11) == b"parent data"
    with pool(ceph_central) as ioctx:
        rbd.RBD().remove(ioctx, clone)
    await store.delete(stored.location)
    with pool(ceph_central) as ioctx:
        assert image_id not in rbd.RBD().list(ioctx)


async def test_an_existing_image_is_not_overwritten(ceph_central: CephCluster) -> None:
    store = ManagedStore("central", rbd_driver(ceph_central))
    image_id = new_id()
    first = await store.add(image_id, chunks(b"first"))
    with pytest.raises(Conflict, match="already exists"):
        await store.add(image_id, chunks(b"second"))
    harness = RbdHarness(ceph_central, Path("."))
    assert harness.leftovers(image_id) == [image_id]
    assert await read_all(store, first.location) == b"first"
    await store.delete(first.location)


async def test_properties_are_glances(ceph_central: CephCluster) -> None:
    driver = rbd_driver(ceph_central, thin_provisioning=True)
    await driver.health()
    assert driver.properties() == {
        "chunk_size": MIB, "pool": "images", "thin_provisioning": True,
        "fsid": ceph_central.fsid,
    }


async def test_a_missing_pool_is_a_clear_error(ceph_central: CephCluster) -> None:
    store = ManagedStore("central", rbd_driver(ceph_central, pool="no-such-pool"))
    with pytest.raises(StoreUnavailable, match="no-such-pool"):
        await store.add(new_id(), chunks(b"x"))


def test_missing_bindings_stop_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from glimpse.stores.rbd import RbdStoreDriver

    monkeypatch.setitem(sys.modules, "rbd", None)  # import rbd now raises ImportError
    with pytest.raises(ValueError, match="python3-rbd"):
        RbdStoreDriver(conffile="/nonexistent/ceph.conf")
