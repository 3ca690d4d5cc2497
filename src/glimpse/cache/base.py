"""The image cache interface: what services see of a node's local copy of image data.

The cache decorates store reads: :meth:`ImageCache.reader` takes the store an image
would be read from and returns a reader with the same ``read(location, offset,
length)`` shape that serves a verified local copy when there is one, and otherwise
reads the store, filling the cache on the way when it can. The concrete cache
(``cache/disk.py``) is named only by ``bootstrap.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


class ByteReader(Protocol):
    """Anything image bytes are read from: a managed store, or the cache around one."""

    def read(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]: ...


@dataclass(frozen=True)
class ImageKey:
    """What a cached copy must match to be served: the image and its data's md5.

    A new upload or location with other data has another checksum, so a copy of
    the old data is never served for it.
    """

    image_id: str
    checksum: str
    size: int


@dataclass(frozen=True)
class CachedImage:
    """One complete, verified cache entry (``GET /v2/cache`` shows all but checksum)."""

    image_id: str
    checksum: str
    size: int
    hits: int
    last_accessed: float  # seconds since the epoch, as Glance
    last_modified: float


@dataclass(frozen=True)
class PruneResult:
    files: int
    bytes: int


@dataclass(frozen=True)
class CleanResult:
    stalled: int  # incomplete fills older than image_cache_stall_time (or orphaned)
    invalid: int  # entries whose file is missing or changed, and stray files


class ImageCache(Protocol):
    """A node's cache of image data, with its index and prefetch queue."""

    max_size: int

    def reader(self, key: ImageKey, source: ByteReader) -> ByteReader:
        """Reads served from the local copy of ``key`` when it is cached; otherwise
        from ``source``, filling the cache when the whole image is read."""
        ...

    async def fill(self, key: ImageKey, source: ByteReader, location: str) -> bool:
        """Read the whole image from ``source`` into the cache (prefetch); True when
        it is cached afterwards (also when it already was)."""
        ...

    async def cached(self) -> list[CachedImage]:
        """Complete entries, ordered by image id."""
        ...

    async def queued(self) -> list[str]:
        """Queued image ids, oldest first."""
        ...

    async def queue(self, image_id: str) -> bool:
        """Queue for prefetching; False when cached, being cached or queued already."""
        ...

    async def dequeue(self, image_id: str) -> bool: ...

    async def remove(self, image_id: str) -> bool:
        """Remove the cached copy (and any fill in progress); True if there was one."""
        ...

    async def forget(self, image_id: str) -> None:
        """The image was deleted or deactivated: drop its copy, fill and queue entry.
        Never raises (a failure is logged; the cleaner removes what is left)."""
        ...

    async def clear_cached(self) -> int: ...

    async def clear_queued(self) -> int: ...

    async def prune(self) -> PruneResult:
        """Remove least recently used entries until the cache is under max_size."""
        ...

    async def clean(self) -> CleanResult:
        """Remove stalled fills and invalid entries."""
        ...

    async def close(self) -> None: ...
