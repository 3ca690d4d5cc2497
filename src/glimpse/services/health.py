"""Is this node able to serve: the database answers, which stores take writes, and (for
operators who ask for detail) the space left for staging and the image cache."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from glimpse.cache.base import ImageCache
from glimpse.db.base import ImageRepository
from glimpse.stores.registry import StoreRegistry


@dataclass(frozen=True)
class StoreState:
    readable: bool
    writable: bool
    detail: str = ""


@dataclass(frozen=True)
class Space:
    path: str
    free_bytes: int
    total_bytes: int


@dataclass(frozen=True)
class CacheState:
    space: Space
    max_size: int
    cached_images: int
    cached_bytes: int


@dataclass(frozen=True)
class Health:
    database_ok: bool
    database_ms: float
    stores: dict[str, StoreState]
    disabled: bool = False  # the operator's disable file exists: drain this node
    staging: Space | None = None
    cache: CacheState | None = None

    @property
    def ok(self) -> bool:
        return self.database_ok and not self.disabled


class HealthService:
    def __init__(
        self,
        repo: ImageRepository,
        stores: StoreRegistry,
        *,
        staging_dir: Path | None = None,
        cache: ImageCache | None = None,
        cache_dir: Path | None = None,
        cache_max_size: int = 0,
        disable_file: Path | None = None,
        detailed: bool = False,
    ) -> None:
        self.repo = repo
        self.stores = stores
        self.staging_dir = staging_dir
        self.cache = cache
        self.cache_dir = cache_dir
        self.cache_max_size = cache_max_size
        self.disable_file = disable_file
        self.detailed = detailed

    async def check(self) -> Health:
        started = time.perf_counter()
        try:
            await self.repo.ping()
            database_ok = True
        except Exception:
            database_ok = False
        database_ms = (time.perf_counter() - started) * 1000
        stores = {}
        for store in self.stores.all():
            state = await store.health()
            stores[store.id] = StoreState(state.ok, state.writable, state.detail)
        disabled = self.disable_file is not None and await asyncio.to_thread(
            os.path.exists, self.disable_file
        )
        health = Health(database_ok, database_ms, stores, disabled)
        if not self.detailed:
            return health
        staging = await _space(self.staging_dir) if self.staging_dir else None
        cache = None
        if self.cache is not None and self.cache_dir is not None:
            cached = await self.cache.cached()
            space = await _space(self.cache_dir)
            if space is not None:
                cache = CacheState(space, self.cache_max_size, len(cached),
                                   sum(c.size for c in cached))
        return Health(database_ok, database_ms, stores, disabled, staging, cache)


async def _space(path: Path) -> Space | None:
    try:
        usage = await asyncio.to_thread(shutil.disk_usage, path)
    except OSError:
        return None
    return Space(str(path), usage.free, usage.total)
