"""The image cache on the download path: fills, hits, faults, prune, clean, prefetch.

A node with ``image_cache_dir`` set, driven in-process. The store's file driver is
wrapped (``WatchedDriver``) where a test needs to count store reads or hold a read
in the middle; everything else is the real cache on a real directory.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import client_for, create_image, upload

from glimpse.bootstrap import Node
from glimpse.cache import disk
from glimpse.cache.disk import CacheDirectoryClaimed, DiskImageCache
from glimpse.config import Settings
from glimpse.db.base import ImageChanges
from glimpse.domain.errors import StoreUnavailable
from glimpse.domain.image import Location
from glimpse.policy.context import RequestContext

MIB = 1024 * 1024
DATA = os.urandom(3 * MIB + 12345)  # several store chunks, not a multiple of one
ADMIN = RequestContext(user_id="admin", project_id="admin", roles=("admin",))


class WatchedDriver:
    """A store driver that counts reads; ``hold()`` stops the next read after its first
    chunk until ``release()``; ``fail_after`` makes reads fail after that many chunks."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.reads = 0
        self.fail_after: int | None = None
        self._gate: asyncio.Event | None = None  # for the next read
        self._held: asyncio.Event | None = None  # the read holding now
        self.holding = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def hold(self) -> None:
        self._gate = asyncio.Event()

    def release(self) -> None:
        assert self._held is not None
        self._held.set()

    async def read(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        self.reads += 1
        gate, self._gate = self._gate, None
        sent = 0
        async for chunk in self.inner.read(location, offset, length):
            if self.fail_after is not None and sent >= self.fail_after:
                raise StoreUnavailable("the store went away in the middle of a read")
            yield chunk
            sent += 1
            if gate is not None and sent == 1:
                self._held = gate
                self.holding.set()
                await gate.wait()


def watch_store(node: Node) -> WatchedDriver:
    store = node.stores.get()
    watched = WatchedDriver(store.driver)
    store.driver = watched  # type: ignore[assignment]
    return watched


def cache_of(node: Node) -> DiskImageCache:
    assert node.cache is not None
    return node.cache


def store_dir(node: Node) -> Path:
    return Path(node.stores.get().driver.datadir)  # type: ignore[attr-defined]


def store_file(node: Node, image_id: str) -> Path:
    return store_dir(node) / image_id


def cache_files(node: Node) -> list[str]:
    cache = cache_of(node)
    names = [p.name for p in cache.directory.iterdir() if p.is_file()]
    return sorted(n for n in names if not n.startswith((".glimpse", "cache.db")))


def incomplete_files(node: Node) -> list[str]:
    return sorted(p.name for p in cache_of(node).incomplete.iterdir())


async def cached_ids(client: httpx.AsyncClient) -> list[str]:
    response = await client.get("/v2/cache")
    assert response.status_code == 200, response.text
    return [e["image_id"] for e in response.json()["cached_images"]]


async def new_image(client: httpx.AsyncClient, data: bytes = DATA) -> str:
    image = await create_image(client)
    response = await upload(client, image["id"], data)
    assert response.status_code == 204, response.text
    return str(image["id"])


async def download(client: httpx.AsyncClient, image_id: str, **headers: str) -> httpx.Response:
    return await client.get(f"/v2/images/{image_id}/file", headers=headers)


async def download_fails(client: httpx.AsyncClient, image_id: str) -> None:
    """The store failed once the response had started: the app raises (the in-process
    transport re-raises it; a real server cuts the connection short)."""
    with pytest.raises(RuntimeError, match="response already started"):
        await download(client, image_id)


@pytest.fixture
def cache_settings(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "image_cache_dir": tmp_path / "cache",
            "cache_prefetcher_interval": 3600,
        }
        values.update(overrides)
        return make_settings(**values)

    return make


@pytest.fixture
async def node(
    make_node: Callable[[Settings], Any], cache_settings: Callable[..., Settings]
) -> Node:
    result: Node = await make_node(cache_settings())
    return result


@pytest.fixture
async def client(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(node) as c:
        yield c


# -- read-through ----------------------------------------------------------------------


async def test_a_download_fills_the_cache_and_the_next_is_a_hit(
    client: httpx.AsyncClient, node: Node
) -> None:
    watched = watch_store(node)
    image_id = await new_image(client)
    first = await download(client, image_id)
    assert first.status_code == 200 and first.content == DATA
    assert cache_files(node) == [image_id]
    assert (cache_of(node).directory / image_id).read_bytes() == DATA
    assert incomplete_files(node) == []
    listed = (await client.get("/v2/cache")).json()["cached_images"]
    assert [(e["image_id"], e["size"], e["hits"]) for e in listed] == [(image_id, len(DATA), 0)]

    second = await download(client, image_id)
    assert second.content == DATA
    assert second.headers["content-md5"] == hashlib.md5(DATA).hexdigest()
    assert watched.reads == 1  # the hit did not touch the store
    again = (await client.get("/v2/cache")).json()["cached_images"][0]
    assert again["hits"] == 1
    assert again["last_accessed"] >= listed[0]["last_accessed"]


async def test_a_cached_image_is_served_while_its_store_file_is_gone(
    client: httpx.AsyncClient, node: Node
) -> None:
    cached = await new_image(client)
    uncached = await new_image(client)
    assert (await download(client, cached)).content == DATA
    store_file(node, cached).unlink()
    store_file(node, uncached).unlink()

    response = await download(client, cached)
    assert response.status_code == 200 and response.content == DATA
    # The store really is unable to serve: the image that is not cached fails, before
    # any of the response is sent.
    failed = await download(client, uncached)
    assert failed.status_code == 503 and "missing" in failed.text


async def test_a_cached_image_is_served_while_the_store_directory_is_unmounted(
    client: httpx.AsyncClient, node: Node
) -> None:
    image_id = await new_image(client)
    assert (await download(client, image_id)).content == DATA
    directory = store_dir(node)
    directory.rename(directory.with_name("unmounted"))  # marker and data gone with it
    try:
        response = await download(client, image_id)
        assert response.status_code == 200 and response.content == DATA
        ranged = await download(client, image_id, range="bytes=100-199")
        assert ranged.status_code == 206 and ranged.content == DATA[100:200]
    finally:
        directory.with_name("unmounted").rename(directory)


async def test_ranges_are_served_from_the_cache(client: httpx.AsyncClient, node: Node) -> None:
    watched = watch_store(node)
    image_id = await new_image(client)
    await download(client, image_id)
    cases = {
        "bytes=0-0": DATA[:1],
        f"bytes={MIB - 1}-{MIB + 1}": DATA[MIB - 1 : MIB + 2],
        "bytes=-10": DATA[-10:],
        f"bytes={len(DATA) - 5}-": DATA[-5:],
    }
    for header, expected in cases.items():
        response = await download(client, image_id, range=header)
        assert response.status_code == 206, header
        assert response.content == expected, header
    assert watched.reads == 1


async def test_a_ranged_miss_reads_the_store_and_does_not_fill(
    client: httpx.AsyncClient, node: Node
) -> None:
    image_id = await new_image(client)
    response = await download(client, image_id, range="bytes=10-19")
    assert response.status_code == 206 and response.content == DATA[10:20]
    assert cache_files(node) == [] and incomplete_files(node) == []
    assert await cached_ids(client) == []


async def test_concurrent_downloads_during_a_fill_read_the_store_and_get_every_byte(
    client: httpx.AsyncClient, node: Node
) -> None:
    image_id = await new_image(client)
    watched = watch_store(node)
    watched.hold()
    filler = asyncio.create_task(download(client, image_id))
    await asyncio.wait_for(watched.holding.wait(), 10)
    # The fill is stalled in the middle: others neither wait for it nor see its data.
    others = await asyncio.wait_for(
        asyncio.gather(*(download(client, image_id) for _ in range(4))), 20
    )
    assert [r.content == DATA for r in others] == [True] * 4
    assert len(incomplete_files(node)) == 1 and cache_files(node) == []
    assert await cached_ids(client) == []
    watched.release()
    assert (await filler).content == DATA
    assert watched.reads == 5  # one fill, four straight from the store
    assert cache_files(node) == [image_id] and incomplete_files(node) == []
    assert (await download(client, image_id)).content == DATA
    assert watched.reads == 5


async def test_data_that_does_not_match_the_checksum_is_never_cached(
    client: httpx.AsyncClient, node: Node
) -> None:
    image_id = await new_image(client)
    corrupt = bytearray(DATA)
    corrupt[MIB] ^= 0xFF
    store_file(node, image_id).write_bytes(bytes(corrupt))  # bit rot in the store
    await download(client, image_id)
    assert cache_files(node) == [] and incomplete_files(node) == []
    assert await cached_ids(client) == []


async def test_a_cached_file_changed_on_disk_is_not_served_and_is_replaced(
    client: httpx.AsyncClient, node: Node
) -> None:
    watched = watch_store(node)
    image_id = await new_image(client)
    await download(client, image_id)
    path = cache_of(node).directory / image_id
    garbage = os.urandom(len(DATA))
    path.write_bytes(garbage)  # same size, other bytes

    response = await download(client, image_id)
    assert response.content == DATA  # from the store, the bad copy dropped and refilled
    assert watched.reads == 2
    assert path.read_bytes() == DATA
    assert (await download(client, image_id)).content == DATA
    assert watched.reads == 2


async def test_a_truncated_or_missing_cached_file_is_not_served(
    client: httpx.AsyncClient, node: Node
) -> None:
    image_id = await new_image(client)
    await download(client, image_id)
    path = cache_of(node).directory / image_id
    with path.open("r+b") as f:
        f.truncate(MIB)
    assert (await download(client, image_id)).content == DATA
    assert path.read_bytes() == DATA
    path.unlink()
    assert (await download(client, image_id)).content == DATA
    assert path.read_bytes() == DATA


async def test_a_client_that_goes_away_leaves_no_partial_entry(node: Node) -> None:
    async with client_for(node) as client:
        image_id = await new_image(client)
    data = await node.services.image_data.download(ADMIN, image_id)
    assert data is not None
    stream = data.store.read(data.location, data.offset, data.length)
    assert isinstance(stream, AsyncIterator)
    first = await anext(stream)
    assert first == DATA[: len(first)]
    assert len(incomplete_files(node)) == 1
    await stream.aclose()  # type: ignore[attr-defined]
    assert incomplete_files(node) == [] and cache_files(node) == []
    async with client_for(node) as client:
        assert await cached_ids(client) == []
        assert (await download(client, image_id)).content == DATA
    assert cache_files(node) == [image_id]


async def test_a_client_that_hangs_up_after_the_last_byte_keeps_the_copy(node: Node) -> None:
    async with client_for(node) as client:
        image_id = await new_image(client)
    data = await node.services.image_data.download(ADMIN, image_id)
    assert data is not None
    stream = data.store.read(data.location, data.offset, data.length)
    received = bytearray()
    while len(received) < len(DATA):
        received += await anext(stream)  # type: ignore[call-overload]
    # Every byte is out; the server never resumes the stream (it was cancelled).
    await stream.aclose()  # type: ignore[attr-defined]
    for _ in range(200):
        if cache_files(node) == [image_id]:
            break
        await asyncio.sleep(0.01)
    assert bytes(received) == DATA
    assert cache_files(node) == [image_id] and incomplete_files(node) == []


async def test_a_cancelled_download_leaves_no_partial_entry(node: Node) -> None:
    async with client_for(node) as client:
        image_id = await new_image(client)
    data = await node.services.image_data.download(ADMIN, image_id)
    assert data is not None
    started = asyncio.Event()

    async def slow_client() -> None:
        async for _chunk in data.store.read(data.location, data.offset, data.length):
            started.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(slow_client())
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    for _ in range(200):
        if incomplete_files(node) == []:
            break
        await asyncio.sleep(0.01)
    assert incomplete_files(node) == [] and cache_files(node) == []


async def test_a_store_failing_mid_fill_leaves_nothing_and_the_next_download_caches(
    client: httpx.AsyncClient, node: Node
) -> None:
    image_id = await new_image(client)
    watched = watch_store(node)
    watched.fail_after = 2
    await download_fails(client, image_id)
    assert cache_files(node) == [] and incomplete_files(node) == []
    watched.fail_after = None
    assert (await download(client, image_id)).content == DATA
    assert cache_files(node) == [image_id]


async def test_a_full_disk_stops_caching_but_the_client_gets_every_byte(
    client: httpx.AsyncClient, node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    image_id = await new_image(client)
    real_write = disk._Fill.write

    def write_until_full(fill: Any, chunk: bytes) -> None:
        if fill.size + len(chunk) > MIB:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(fill, chunk)

    monkeypatch.setattr(disk._Fill, "write", write_until_full)
    response = await download(client, image_id)
    assert response.status_code == 200 and response.content == DATA
    assert cache_files(node) == [] and incomplete_files(node) == []
    monkeypatch.setattr(disk._Fill, "write", real_write)
    assert (await download(client, image_id)).content == DATA
    assert cache_files(node) == [image_id]


async def test_empty_images_and_images_larger_than_the_cache_are_not_cached(
    make_node: Callable[[Settings], Any], cache_settings: Callable[..., Settings]
) -> None:
    node = await make_node(cache_settings(image_cache_max_size=2 * MIB))
    async with client_for(node) as client:
        big = await new_image(client)
        empty = await new_image(client, b"")
        assert (await download(client, big)).content == DATA
        assert (await download(client, empty)).content == b""
        assert await cached_ids(client) == []
    assert cache_files(node) == []


# -- the image's life ------------------------------------------------------------------


async def test_deleting_an_image_removes_its_cached_copy(
    client: httpx.AsyncClient, node: Node
) -> None:
    image_id = await new_image(client)
    await download(client, image_id)
    assert (await client.delete(f"/v2/images/{image_id}")).status_code == 204
    assert cache_files(node) == []
    assert await cached_ids(client) == []
    assert (await download(client, image_id)).status_code == 404


async def test_deleting_an_image_while_it_is_served_from_the_cache(
    client: httpx.AsyncClient, node: Node
) -> None:
    image_id = await new_image(client)
    await download(client, image_id)
    data = await node.services.image_data.download(ADMIN, image_id)
    assert data is not None
    stream = data.store.read(data.location, data.offset, data.length)
    received = bytearray(await anext(stream))  # type: ignore[call-overload]
    assert (await client.delete(f"/v2/images/{image_id}")).status_code == 204
    assert cache_files(node) == []
    async for chunk in stream:
        received += chunk
    assert bytes(received) == DATA  # the reader that started gets every byte


async def test_deleting_an_image_while_it_is_being_cached(
    client: httpx.AsyncClient, node: Node
) -> None:
    image_id = await new_image(client)
    watched = watch_store(node)
    watched.hold()
    filler = asyncio.create_task(download(client, image_id))
    await asyncio.wait_for(watched.holding.wait(), 10)
    assert (await client.delete(f"/v2/images/{image_id}")).status_code == 204
    assert incomplete_files(node) == []
    watched.release()
    assert (await filler).content == DATA  # it had the store file open
    assert cache_files(node) == [] and incomplete_files(node) == []
    assert await cached_ids(client) == []


async def test_deactivating_removes_the_copy_and_reactivating_caches_again(
    client: httpx.AsyncClient, node: Node
) -> None:
    watched = watch_store(node)
    image_id = await new_image(client)
    await download(client, image_id)
    response = await client.post(f"/v2/images/{image_id}/actions/deactivate")
    assert response.status_code == 204
    assert cache_files(node) == []
    # An admin may still download a deactivated image: from the store, never cached.
    assert (await download(client, image_id)).content == DATA
    assert cache_files(node) == [] and watched.reads == 2
    assert (await client.post(f"/v2/images/{image_id}/actions/reactivate")).status_code == 204
    assert (await download(client, image_id)).content == DATA
    assert cache_files(node) == [image_id]


async def test_a_copy_of_older_data_is_not_served_after_the_data_changed(
    client: httpx.AsyncClient, node: Node
) -> None:
    image_id = await new_image(client)
    other = os.urandom(2 * MIB)
    other_id = await new_image(client, other)
    await download(client, image_id)
    # The image now points at other data (as a new location with other content would).
    repo = node.services.cache.repo
    old = await repo.get(image_id)
    assert old is not None
    new_location = Location(url=f"file://{store_dir(node)}/{other_id}", store="file")
    await repo.update(
        image_id,
        ImageChanges(
            core={"checksum": hashlib.md5(other).hexdigest(), "size": len(other)},
            add_locations=(new_location,),
            remove_locations=tuple(loc.url for loc in old.locations),
        ),
    )
    response = await download(client, image_id)
    assert response.content == other
    entry = (await client.get("/v2/cache")).json()["cached_images"]
    assert [(e["image_id"], e["size"]) for e in entry if e["image_id"] == image_id] == [
        (image_id, len(other))
    ]
    assert (cache_of(node).directory / image_id).read_bytes() == other


# -- pruner, cleaner, prefetcher -----------------------------------------------------------


async def test_the_cache_stays_under_its_size_least_recently_used_first(
    make_node: Callable[[Settings], Any], cache_settings: Callable[..., Settings]
) -> None:
    size = 2 * MIB
    node = await make_node(cache_settings(image_cache_max_size=int(2.5 * size)))
    async with client_for(node) as client:
        images = {}
        for name in ("a", "b", "c"):
            data = os.urandom(size)
            images[name] = (await new_image(client, data), data)
        a, b, c = (images[n][0] for n in "abc")
        await download(client, a)
        await download(client, b)
        await download(client, a)  # a is now more recently used than b
        await download(client, c)
        assert sorted(await cached_ids(client)) == sorted([a, c])
        assert sorted(cache_files(node)) == sorted([a, c])
        total = sum(e["size"] for e in (await client.get("/v2/cache")).json()["cached_images"])
        assert total <= 2.5 * size

        # A smaller limit takes effect on the next pruner run (here: the API's).
        cache_of(node).max_size = size
        response = await client.post("/v2/cache/prune")
        assert response.status_code == 200
        assert response.json() == {"total_files_pruned": 1, "total_bytes_pruned": size}
        assert await cached_ids(client) == [c]
        response = await client.post("/v2/cache/prune")
        assert response.json() == {"total_files_pruned": 0, "total_bytes_pruned": 0}


async def test_the_cleaner_removes_stalled_fills_and_the_client_still_gets_its_bytes(
    make_node: Callable[[Settings], Any], cache_settings: Callable[..., Settings]
) -> None:
    node = await make_node(cache_settings(image_cache_stall_time=60))
    async with client_for(node) as client:
        image_id = await new_image(client)
        watched = watch_store(node)
        watched.hold()
        stalled = asyncio.create_task(download(client, image_id))
        await asyncio.wait_for(watched.holding.wait(), 10)
        [name] = incomplete_files(node)
        assert (await client.post("/v2/cache/clean")).status_code == 200
        assert incomplete_files(node) == [name]  # written to just now: not stalled
        old = time.time() - 120
        os.utime(cache_of(node).incomplete / name, (old, old))
        assert (await client.post("/v2/cache/clean")).status_code == 200
        assert incomplete_files(node) == []
        watched.release()
        assert (await stalled).content == DATA
        # Its entry was taken away while it was stalled: it does not come back.
        assert cache_files(node) == [] and incomplete_files(node) == []
        assert await cached_ids(client) == []


async def test_a_fill_left_by_a_dead_process_is_cleaned_and_taken_over(
    client: httpx.AsyncClient, node: Node
) -> None:
    image_id = await new_image(client)
    cache = cache_of(node)
    dead = await asyncio.create_subprocess_exec("true")
    await dead.wait()
    (cache.incomplete / f"{image_id}.dead").write_bytes(DATA[:100])
    with sqlite3.connect(cache.index.path) as db:
        db.execute(
            "INSERT INTO cache_entries (image_id, checksum, size, state, last_modified, "
            "fill_name, fill_pid) VALUES (?, ?, ?, 'incomplete', ?, ?, ?)",
            (image_id, hashlib.md5(DATA).hexdigest(), len(DATA), time.time(),
             f"{image_id}.dead", dead.pid),
        )
    assert (await download(client, image_id)).content == DATA
    assert cache_files(node) == [image_id] and incomplete_files(node) == []

    other = await new_image(client)
    (cache.incomplete / "stray").write_bytes(b"x")
    (cache.directory / "not-an-entry").write_bytes(b"x")
    (cache.incomplete / f"{other}.dead").write_bytes(b"x")
    with sqlite3.connect(cache.index.path) as db:
        db.execute(
            "INSERT INTO cache_entries (image_id, checksum, size, state, last_modified, "
            "fill_name, fill_pid) VALUES (?, 'x', 1, 'incomplete', ?, ?, ?)",
            (other, time.time(), f"{other}.dead", dead.pid),
        )
    result = await node.services.cache.clean_once()
    assert (result.stalled, result.invalid) == (2, 1)
    assert incomplete_files(node) == [] and cache_files(node) == [image_id]


async def test_the_cleaner_removes_copies_of_images_deleted_through_another_node(
    client: httpx.AsyncClient, node: Node
) -> None:
    kept, gone, deactivated = [await new_image(client) for _ in range(3)]
    for image_id in (kept, gone, deactivated):
        await download(client, image_id)
    repo = node.services.cache.repo
    # Another node changed them: this node's hooks did not run.
    await repo.delete(gone)
    await repo.update(deactivated, ImageChanges(core={"status": "deactivated"}))
    result = await node.services.cache.clean_once()
    assert result.invalid == 2
    assert cache_files(node) == [kept]


async def test_the_prefetcher_fetches_every_queued_image(
    client: httpx.AsyncClient, node: Node
) -> None:
    ids = [await new_image(client, os.urandom(MIB + i)) for i in range(3)]
    queued_only = await create_image(client)  # no data: refused by the API, dropped here
    watched = watch_store(node)
    for image_id in [*ids, queued_only["id"], "0d4c3b2a-0000-4000-8000-000000000000"]:
        assert await cache_of(node).queue(image_id)
    result = await node.services.cache.prefetch_once()
    assert sorted(result.cached) == sorted(ids)
    assert sorted(result.dropped) == sorted([queued_only["id"],
                                              "0d4c3b2a-0000-4000-8000-000000000000"])
    assert watched.reads == 3
    assert sorted(cache_files(node)) == sorted(ids)
    assert (await client.get("/v2/cache")).json()["queued_images"] == []


async def test_a_failed_prefetch_stays_queued(client: httpx.AsyncClient, node: Node) -> None:
    image_id = await new_image(client)
    store_file(node, image_id).unlink()
    await cache_of(node).queue(image_id)
    result = await node.services.cache.prefetch_once()
    assert result.failed == [image_id]
    assert (await client.get("/v2/cache")).json()["queued_images"] == [image_id]


async def test_the_node_runs_the_prefetcher_on_its_interval(
    make_node: Callable[[Settings], Any], cache_settings: Callable[..., Settings]
) -> None:
    node = await make_node(cache_settings(cache_prefetcher_interval=1))
    async with client_for(node) as client:
        image_id = await new_image(client)
        await cache_of(node).queue(image_id)
        for _ in range(100):
            if cache_files(node) == [image_id]:
                break
            await asyncio.sleep(0.05)
        assert cache_files(node) == [image_id]
        assert (await client.get("/v2/cache")).json()["queued_images"] == []


# -- one directory, one node -----------------------------------------------------------------


async def test_two_nodes_cannot_share_a_cache_directory(
    make_node: Callable[[Settings], Any], cache_settings: Callable[..., Settings],
    node: Node,
) -> None:
    with pytest.raises(CacheDirectoryClaimed, match="belongs to node"):
        await make_node(cache_settings(node_id="another-node"))
    # The same node again (another worker process of it, a restart): allowed.
    again = await make_node(cache_settings())
    assert again.cache is not None
