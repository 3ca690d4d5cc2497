"""The store interface's contract, run against the file store driver, plus what only the
file store promises: atomic commits, thin provisioning, and NFS safety."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from glimpse.domain.errors import RequestTooLarge, StoreUnavailable
from glimpse.stores.file import MARKER, FileStoreDriver
from glimpse.stores.registry import ManagedStore, SizeLimit

IMAGE_ID = "7a1b2c3d-0000-4000-8000-000000000001"


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def failing(after: int) -> AsyncIterator[bytes]:
    for _ in range(after):
        yield b"a" * 65536
    raise ConnectionError("client went away")


@pytest.fixture
def driver(tmp_path: Path) -> FileStoreDriver:
    d = FileStoreDriver([tmp_path / "images"], chunk_size=4096)
    d.prepare()
    return d


@pytest.fixture
def store(driver: FileStoreDriver) -> ManagedStore:
    return ManagedStore("file", driver)


async def read_all(store: ManagedStore, location: str, offset: int = 0,
                   length: int | None = None) -> bytes:
    return b"".join([c async for c in store.read(location, offset, length)])


async def test_add_returns_location_size_and_digests(store: ManagedStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    stored = await store.add(IMAGE_ID, chunks(data[:1000], data[1000:]))
    assert stored.size == len(data)
    assert stored.checksum == hashlib.md5(data).hexdigest()
    assert stored.hash_algo == "sha512"
    assert stored.hash_value == hashlib.sha512(data).hexdigest()
    assert stored.location.startswith("file://")
    assert await read_all(store, stored.location) == data


async def test_ranged_reads(store: ManagedStore) -> None:
    data = bytes(range(256)) * 100
    stored = await store.add(IMAGE_ID, chunks(data))
    assert await read_all(store, stored.location, 10, 20) == data[10:30]
    assert await read_all(store, stored.location, len(data) - 5) == data[-5:]
    assert await read_all(store, stored.location, 0, 0) == b""


async def test_delete_is_idempotent(store: ManagedStore, driver: FileStoreDriver) -> None:
    stored = await store.add(IMAGE_ID, chunks(b"x"))
    await store.delete(stored.location)
    await store.delete(stored.location)
    assert driver.stored_files() == []


async def test_failed_write_leaves_nothing(store: ManagedStore, driver: FileStoreDriver) -> None:
    with pytest.raises(ConnectionError):
        await store.add(IMAGE_ID, failing(after=40))
    assert list(driver.datadir.iterdir()) == [driver.datadir / MARKER]


async def test_size_limit_stops_the_stream(store: ManagedStore, driver: FileStoreDriver) -> None:
    limit = SizeLimit(100_000, "too big")
    with pytest.raises(RequestTooLarge, match="too big"):
        await store.add(IMAGE_ID, chunks(b"a" * 60_000, b"b" * 60_000), limits=(limit,))
    assert list(driver.datadir.iterdir()) == [driver.datadir / MARKER]


async def test_cancelled_write_leaves_nothing(store: ManagedStore, driver: FileStoreDriver) -> None:
    gate = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"a" * 2_000_000
        await gate.wait()
        yield b"never"

    task = asyncio.create_task(store.add(IMAGE_ID, slow()))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert list(driver.datadir.iterdir()) == [driver.datadir / MARKER]


async def test_observer_sees_every_byte(store: ManagedStore) -> None:
    seen = bytearray()
    data = os.urandom(2_500_000)
    await store.add(IMAGE_ID, chunks(data), observe=seen.extend)
    assert bytes(seen) == data


async def test_interrupted_write_leftovers_are_removed_at_start(driver: FileStoreDriver) -> None:
    leftover = driver.datadir / f".tmp-{IMAGE_ID}-dead"
    leftover.write_bytes(b"partial")
    assert driver.remove_temporary_files() == 1
    assert not leftover.exists()


async def test_a_restarting_node_leaves_other_nodes_writes_on_a_shared_store(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "share"
    node_a = FileStoreDriver([shared], node_id="api-a.example")
    node_b = FileStoreDriver([shared], node_id="api-b.example")
    node_a.prepare()
    node_b.prepare()
    started, release = asyncio.Event(), asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"x" * 1024
        started.set()
        await release.wait()
        yield b"y" * 1024

    writing = asyncio.create_task(ManagedStore("file", node_a).add(IMAGE_ID, slow()))
    await started.wait()
    await asyncio.sleep(0.2)
    live = [p for p in shared.iterdir() if p.name.startswith(".tmp-")]
    assert len(live) == 1
    (shared / ".tmp-api_b.example~dead-0000").write_bytes(b"partial")
    assert node_b.remove_temporary_files() == 1  # its own leftover only
    assert live[0].exists()
    release.set()
    stored = await writing
    assert stored.size == 2048
    assert (shared / IMAGE_ID).read_bytes() == b"x" * 1024 + b"y" * 1024


async def test_thin_provisioning_writes_zero_runs_as_holes(tmp_path: Path) -> None:
    driver = FileStoreDriver([tmp_path / "thin"], thin_provisioning=True)
    driver.prepare()
    store = ManagedStore("file", driver)
    mib = 1024 * 1024
    data_part = os.urandom(8 * mib)

    async def sparse() -> AsyncIterator[bytes]:
        yield data_part
        for _ in range(56):  # 56 MiB of zeros after 8 MiB of data: a 64 MiB image
            yield bytes(mib)

    stored = await store.add(IMAGE_ID, sparse())
    path = driver.datadir / IMAGE_ID
    assert stored.size == 64 * mib
    assert path.stat().st_size == 64 * mib
    allocated = path.stat().st_blocks * 512
    assert allocated < 12 * mib, f"{allocated} bytes allocated for 8 MiB of data"
    digest = hashlib.sha512(data_part + bytes(56 * mib)).hexdigest()
    assert stored.hash_value == digest
    assert hashlib.sha512(path.read_bytes()).hexdigest() == digest


async def test_thick_by_default(store: ManagedStore, driver: FileStoreDriver) -> None:
    stored = await store.add(IMAGE_ID, chunks(bytes(4 * 1024 * 1024)))
    path = driver.datadir / IMAGE_ID
    assert path.stat().st_blocks * 512 >= 4 * 1024 * 1024
    assert stored.size == 4 * 1024 * 1024


async def test_unmounted_share_refuses_writes_keeps_reads_and_recovers(
    store: ManagedStore, driver: FileStoreDriver
) -> None:
    stored = await store.add(IMAGE_ID, chunks(b"before"))
    (driver.datadir / MARKER).unlink()  # what an unmounted NFS share looks like
    with pytest.raises(StoreUnavailable, match="is the share mounted"):
        await store.add("7a1b2c3d-0000-4000-8000-000000000002", chunks(b"after"))
    health = await store.health()
    assert not health.writable and "marker" in health.detail
    assert await read_all(store, stored.location) == b"before"
    assert sorted(p.name for p in driver.datadir.iterdir()) == [IMAGE_ID]
    (driver.datadir / MARKER).write_text("back")
    await store.add("7a1b2c3d-0000-4000-8000-000000000002", chunks(b"after"))
    assert (await store.health()).writable


async def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    driver = FileStoreDriver([tmp_path / "gone"])
    store = ManagedStore("file", driver)
    with pytest.raises(StoreUnavailable, match="does not exist"):
        await store.add(IMAGE_ID, chunks(b"x"))
    assert not (tmp_path / "gone").exists()


async def test_priorities_pick_the_first_writable_directory(tmp_path: Path) -> None:
    driver = FileStoreDriver([tmp_path / "fast", tmp_path / "slow"])
    driver.prepare()
    store = ManagedStore("file", driver)
    first = await store.add(IMAGE_ID, chunks(b"one"))
    assert first.location == (tmp_path / "fast" / IMAGE_ID).as_uri()
    (tmp_path / "fast" / MARKER).unlink()
    second = await store.add("7a1b2c3d-0000-4000-8000-000000000002", chunks(b"two"))
    assert second.location.startswith((tmp_path / "slow").as_uri())
    assert await read_all(store, first.location) == b"one"


async def test_file_permissions(tmp_path: Path) -> None:
    driver = FileStoreDriver([tmp_path / "perm"], file_perm=0o640)
    driver.prepare()
    stored = await ManagedStore("file", driver).add(IMAGE_ID, chunks(b"x"))
    assert (tmp_path / "perm" / IMAGE_ID).stat().st_mode & 0o777 == 0o640
    assert stored.size == 1


async def test_locations_outside_the_store_are_refused(store: ManagedStore) -> None:
    with pytest.raises(StoreUnavailable):
        await read_all(store, "file:///etc/passwd")
    with pytest.raises(StoreUnavailable):
        await store.delete("file:///etc/passwd")
    assert Path("/etc/passwd").exists()


async def test_directory_vanishing_mid_write_is_a_clear_error(tmp_path: Path) -> None:
    import shutil

    driver = FileStoreDriver([tmp_path / "share"])
    driver.prepare()
    store = ManagedStore("file", driver)

    async def then_vanish() -> AsyncIterator[bytes]:
        yield b"a" * 2_000_000
        shutil.rmtree(tmp_path / "share")  # the share disappears under the writer
        yield b"b" * 2_000_000

    with pytest.raises(StoreUnavailable):
        await store.add(IMAGE_ID, then_vanish())
    assert not (tmp_path / "share").exists()  # nothing was written elsewhere
    assert not (await store.health()).ok


async def test_download_survives_a_concurrent_delete(store: ManagedStore) -> None:
    data = os.urandom(3 * 1024 * 1024)
    stored = await store.add(IMAGE_ID, chunks(data))
    reader = store.read(stored.location)
    first = await reader.__anext__()
    await store.delete(stored.location)  # another request removes this copy
    rest = b"".join([c async for c in reader])
    assert first + rest == data
