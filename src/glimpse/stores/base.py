"""The store interface: what every driver (file, rbd, swift, s3, http) provides.

Drivers only move bytes. Hashing, size limits, inspection callbacks and error
normalisation happen once, in :class:`glimpse.stores.registry.ManagedStore`, around
whichever driver is configured.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class StoredObject:
    """What an add produced: where the bytes are, how many, and their digests."""

    location: str
    size: int
    checksum: str  # md5, Glance's legacy checksum
    hash_algo: str
    hash_value: str
    metadata: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class WrittenData:
    """What a driver reports after writing: the location and the bytes it stored."""

    location: str
    size: int


@dataclass(frozen=True)
class StoreHealth:
    ok: bool
    writable: bool
    detail: str = ""


class StoreDriver(Protocol):
    """One backend. Raise ``StoreUnavailable``/``StoreFull`` for backend failures."""

    type: str

    async def write(self, image_id: str, chunks: AsyncIterator[bytes]) -> WrittenData:
        """Write all chunks under a temporary name, make them durable, then commit.

        On any exception nothing of this write may remain in the store.
        """
        ...

    def read(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Stream stored bytes from ``offset``, ``length`` bytes or to the end."""
        ...

    async def delete(self, location: str) -> None:
        """Remove the bytes; a location that is already gone is not an error."""
        ...

    def local_path(self, location: str) -> Path | None:
        """A local file holding exactly these bytes, for zero-copy sending, if any."""
        ...

    async def health(self) -> StoreHealth: ...

    def properties(self) -> dict[str, object]:
        """Driver details for ``GET /v2/info/stores/detail``."""
        ...

    async def list_locations(self) -> list[str]:
        """Every committed object's location, for finding orphans."""
        ...

    def owns(self, location: str) -> bool:
        """Whether a location URL belongs to this store."""
        ...


@runtime_checkable
class SizeProbe(Protocol):
    """A driver that can tell a location's size without reading the data (the http
    store: a HEAD request). Locations added through the API get their size from it."""

    async def size(self, location: str) -> int | None:
        """The size in bytes, None when the backend does not say; StoreUnavailable when
        the location cannot be reached."""
        ...
