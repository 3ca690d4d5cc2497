"""Stores by id, each driver wrapped once for hashing, limits and error normalisation."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from glimpse.domain.errors import RequestTooLarge, StoreFull, StoreNotFound, StoreUnavailable
from glimpse.stores.base import SizeProbe, StoredObject, StoreDriver, StoreHealth

CHUNK = 1024 * 1024
# Chunks received ahead of hashing and writing: the network, the hashes and the disk
# then work at the same time instead of taking turns (bounded: 4 MiB per transfer).
READ_AHEAD = 4


@dataclass(frozen=True)
class SizeLimit:
    """Bytes allowed and the error to raise past them (cap or quota)."""

    limit: int
    message: str


class ManagedStore:
    """A driver plus what every store needs: digests, size limits, clean errors."""

    def __init__(
        self,
        store_id: str,
        driver: StoreDriver,
        *,
        description: str | None = None,
        read_only: bool = False,
        weight: int = 0,
        hashing_algorithm: str = "sha512",
    ) -> None:
        self.id = store_id
        self.driver = driver
        self.description = description
        self.read_only = read_only
        self.weight = weight
        self.hashing_algorithm = hashing_algorithm

    @property
    def type(self) -> str:
        return self.driver.type

    async def add(
        self,
        image_id: str,
        chunks: AsyncIterator[bytes],
        *,
        limits: tuple[SizeLimit, ...] = (),
        observe: Callable[[bytes], None] | None = None,
    ) -> StoredObject:
        """Stream chunks into the store, hashing them (md5 and the multihash) on worker
        threads while the driver writes the previous chunk; ``observe`` (e.g. a format
        inspector) sees every chunk on a worker thread too.
        """
        if self.read_only:
            raise StoreUnavailable(f"Store {self.id} is read-only")
        md5 = hashlib.md5(usedforsecurity=False)
        multihash = hashlib.new(self.hashing_algorithm)
        size = 0

        def digest_and_observe(chunk: bytes) -> None:
            multihash.update(chunk)
            if observe is not None:
                observe(chunk)

        async def hashed() -> AsyncIterator[bytes]:
            nonlocal size
            pending: asyncio.Future[tuple[None, None]] | None = None
            try:
                async for chunk in read_ahead(rechunk(chunks, CHUNK), READ_AHEAD):
                    size += len(chunk)
                    for limit in limits:
                        if size > limit.limit:
                            raise RequestTooLarge(limit.message)
                    if pending is not None:
                        await pending
                    pending = asyncio.gather(
                        asyncio.to_thread(md5.update, chunk),
                        asyncio.to_thread(digest_and_observe, chunk),
                    )
                    yield chunk
                if pending is not None:
                    await pending
            finally:
                if pending is not None and not pending.done():
                    pending.cancel()
                    await asyncio.gather(pending, return_exceptions=True)

        # Drivers translate their own backend errors; the source's errors pass through.
        try:
            written = await self.driver.write(image_id, hashed())
        except (StoreUnavailable, StoreFull) as exc:
            raise self._named(exc) from exc
        return StoredObject(
            location=written.location,
            size=written.size,
            checksum=md5.hexdigest(),
            hash_algo=self.hashing_algorithm,
            hash_value=multihash.hexdigest(),
            metadata={"store": self.id},
        )

    async def read(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        chunks = self.driver.read(location, offset, length)
        try:
            async for chunk in chunks:
                yield chunk
        except StoreUnavailable as exc:
            raise self._named(exc) from exc
        finally:
            # Close the driver's stream (its connection, its thread) however reading ends.
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    async def size(self, location: str) -> int | None:
        """The size of a location's data without reading it, when the driver can tell."""
        if not isinstance(self.driver, SizeProbe):
            return None
        return await self.driver.size(location)

    async def delete(self, location: str) -> None:
        try:
            await self.driver.delete(location)
        except (StoreUnavailable, StoreFull) as exc:
            raise self._named(exc) from exc

    def _named(self, exc: StoreUnavailable | StoreFull) -> StoreUnavailable | StoreFull:
        """The same error, its message naming this store (with several, which one failed
        is the caller's first question)."""
        return type(exc)(f"Store {self.id}: {exc.message}")

    def local_path(self, location: str) -> Path | None:
        return self.driver.local_path(location)

    async def health(self) -> StoreHealth:
        try:
            return await self.driver.health()
        except Exception as exc:  # a broken backend is reported, not raised
            return StoreHealth(ok=False, writable=False, detail=str(exc))


class StoreRegistry:
    """The configured stores; built by bootstrap, fails start-up on a bad config."""

    def __init__(self, stores: list[ManagedStore], default_id: str, *, multistore: bool) -> None:
        self._stores = {s.id: s for s in stores}
        if default_id not in self._stores:
            raise ValueError(f"default store {default_id!r} is not among the enabled stores")
        self.default_id = default_id
        self.multistore = multistore

    def get(self, store_id: str | None = None) -> ManagedStore:
        key = store_id or self.default_id
        try:
            return self._stores[key]
        except KeyError:
            raise StoreNotFound(f"Unknown store {key}") from None

    def all(self) -> list[ManagedStore]:
        return list(self._stores.values())

    def for_location(self, store_id: str | None, url: str) -> ManagedStore | None:
        if store_id and store_id in self._stores:
            return self._stores[store_id]
        for store in self._stores.values():
            if store.driver.owns(url):
                return store
        return None


async def rechunk(chunks: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    """Regroup small network chunks into ``size`` blocks (fewer thread hops per byte)."""
    buffer = bytearray()
    async for chunk in chunks:
        if not buffer and len(chunk) >= size:
            yield bytes(chunk)
            continue
        buffer += chunk
        if len(buffer) >= size:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


async def read_ahead(chunks: AsyncIterator[bytes], depth: int) -> AsyncIterator[bytes]:
    """Yield ``chunks`` while a task keeps up to ``depth`` of them received ahead."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(depth)
    failure: BaseException | None = None

    async def pump() -> None:
        nonlocal failure
        try:
            async for chunk in chunks:
                await queue.put(chunk)
        except Exception as exc:  # handed to the consumer, raised there
            failure = exc
        await queue.put(None)

    task = asyncio.create_task(pump())
    try:
        while (item := await queue.get()) is not None:
            yield item
        if failure is not None:
            raise failure
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
