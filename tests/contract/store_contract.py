"""The store contract every network driver passes against its real server (the file
store's own suite is ``test_file_store.py``): add/get/range/delete, unknown sizes, size
caps, digests, failures and cancellation that leave nothing behind, concurrent reads,
listing, foreign locations, an unreachable server.

A driver's test module subclasses :class:`StoreContract` and provides a ``harness``
fixture (a :class:`Harness`) for its server.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Protocol

import pytest

from glimpse.domain.errors import RequestTooLarge, StoreUnavailable
from glimpse.stores.base import StoreDriver
from glimpse.stores.registry import ManagedStore, SizeLimit

MIB = 1024 * 1024


class Harness(Protocol):
    scheme: str  # how this store's locations begin
    foreign: str  # a location of the same kind that belongs to another store

    def driver(self) -> StoreDriver: ...

    def leftovers(self, image_id: str) -> list[str]:
        """Everything in the back end that carries ``image_id`` in its name."""
        ...

    def unreachable(self) -> StoreDriver:
        """A driver pointed at a server that is not there (short timeouts)."""
        ...


def new_id() -> str:
    return str(uuid.uuid4())


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def pieces(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def failing(after: int, piece: int = 65536) -> AsyncIterator[bytes]:
    for _ in range(after):
        yield os.urandom(piece)
    raise ConnectionError("client went away")


async def read_all(store: ManagedStore, location: str, offset: int = 0,
                   length: int | None = None) -> bytes:
    return b"".join([c async for c in store.read(location, offset, length)])


class StoreContract:
    @pytest.fixture
    def store(self, harness: Harness) -> ManagedStore:
        return ManagedStore("contract", harness.driver())

    async def test_add_returns_location_size_and_digests(
        self, store: ManagedStore, harness: Harness
    ) -> None:
        data = os.urandom(3 * MIB + 17)
        image_id = new_id()
        stored = await store.add(image_id, chunks(data[:1000], data[1000:]))
        assert stored.size == len(data)
        assert stored.checksum == hashlib.md5(data).hexdigest()
        assert stored.hash_value == hashlib.sha512(data).hexdigest()
        assert stored.location.startswith(harness.scheme)
        assert image_id in stored.location
        assert store.driver.owns(stored.location)
        assert await read_all(store, stored.location) == data
        await store.delete(stored.location)

    async def test_ranged_reads(self, store: ManagedStore) -> None:
        data = bytes(range(256)) * 100
        stored = await store.add(new_id(), chunks(data))
        assert await read_all(store, stored.location, 10, 20) == data[10:30]
        assert await read_all(store, stored.location, len(data) - 5) == data[-5:]
        assert await read_all(store, stored.location, len(data) - 5, 100) == data[-5:]
        assert await read_all(store, stored.location, 0, 0) == b""
        assert await read_all(store, stored.location, len(data) + 10) == b""
        await store.delete(stored.location)

    async def test_empty_image(self, store: ManagedStore) -> None:
        stored = await store.add(new_id(), chunks())
        assert stored.size == 0
        assert await read_all(store, stored.location) == b""
        await store.delete(stored.location)

    async def test_delete_is_idempotent_and_removes_everything(
        self, store: ManagedStore, harness: Harness
    ) -> None:
        image_id = new_id()
        stored = await store.add(image_id, chunks(b"x" * 1000))
        assert harness.leftovers(image_id)
        await store.delete(stored.location)
        await store.delete(stored.location)
        assert harness.leftovers(image_id) == []
        with pytest.raises(StoreUnavailable):
            await read_all(store, stored.location)

    async def test_failed_write_leaves_nothing(
        self, store: ManagedStore, harness: Harness
    ) -> None:
        image_id = new_id()
        with pytest.raises(ConnectionError):
            await store.add(image_id, failing(after=40))
        assert harness.leftovers(image_id) == []

    async def test_size_limit_stops_the_stream(
        self, store: ManagedStore, harness: Harness
    ) -> None:
        image_id = new_id()
        limit = SizeLimit(100_000, "too big")
        with pytest.raises(RequestTooLarge, match="too big"):
            await store.add(image_id, chunks(b"a" * 60_000, b"b" * 60_000), limits=(limit,))
        assert harness.leftovers(image_id) == []

    async def test_cancelled_write_leaves_nothing(
        self, store: ManagedStore, harness: Harness
    ) -> None:
        gate = asyncio.Event()
        image_id = new_id()

        async def slow() -> AsyncIterator[bytes]:
            yield os.urandom(2 * MIB)
            await gate.wait()
            yield b"never"

        task = asyncio.create_task(store.add(image_id, slow()))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert harness.leftovers(image_id) == []

    async def test_observer_sees_every_byte(self, store: ManagedStore) -> None:
        seen = bytearray()
        data = os.urandom(2_500_000)
        stored = await store.add(new_id(), pieces(data), observe=seen.extend)
        assert bytes(seen) == data
        await store.delete(stored.location)

    async def test_concurrent_reads(self, store: ManagedStore) -> None:
        data = os.urandom(3 * MIB)
        stored = await store.add(new_id(), pieces(data))
        results = await asyncio.gather(
            read_all(store, stored.location),
            read_all(store, stored.location, MIB, MIB),
            read_all(store, stored.location),
            read_all(store, stored.location, 5, 10),
        )
        assert results == [data, data[MIB : 2 * MIB], data, data[5:15]]
        await store.delete(stored.location)

    async def test_listing_shows_committed_images(self, store: ManagedStore) -> None:
        stored = await store.add(new_id(), chunks(b"listed"))
        assert stored.location in await store.driver.list_locations()
        await store.delete(stored.location)
        assert stored.location not in await store.driver.list_locations()

    async def test_locations_of_other_stores_are_refused(
        self, store: ManagedStore, harness: Harness
    ) -> None:
        assert not store.driver.owns(harness.foreign)
        assert not store.driver.owns("file:///etc/passwd")
        with pytest.raises(StoreUnavailable):
            await read_all(store, harness.foreign)
        with pytest.raises(StoreUnavailable):
            await store.delete(harness.foreign)

    async def test_health(self, store: ManagedStore) -> None:
        health = await store.health()
        assert health.ok and health.writable, health.detail

    async def test_unreachable_server_is_a_clear_error(self, harness: Harness) -> None:
        store = ManagedStore("gone", harness.unreachable())
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.add(new_id(), chunks(b"data"))
        health = await store.health()
        assert not health.ok and health.detail
        assert time.monotonic() - started < 30
