"""The image cache as operators use it: the ``/v2/cache`` API and the cache's jobs.

API methods read top to bottom as Glance's cache controller: find the image (404),
authorize (``cache_list``, ``cache_image``, ``cache_delete``, ``cache_clean``,
``cache_prune``), then 404 if this node has no cache, then act. The jobs —
prefetcher (fetch every queued image, concurrently), cleaner (stalled fills, invalid
entries, copies of images deleted, deactivated or changed elsewhere) and pruner
(least recently used first, down to ``image_cache_max_size``) — run every
``cache_prefetcher_interval`` seconds inside ``glimpse serve`` and once from
``glimpse cache prefetch|clean|prune``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from glimpse.cache.base import CachedImage, CleanResult, ImageCache, ImageKey, PruneResult
from glimpse.db.base import ImageRepository
from glimpse.domain.errors import ImageNotFound, InvalidInput, NotFound
from glimpse.domain.image import Image
from glimpse.policy.context import RequestContext
from glimpse.services.images import ImageService
from glimpse.stores.registry import ManagedStore, StoreRegistry

log = logging.getLogger(__name__)

# Queued images fetched at once by one prefetcher run.
PREFETCH_CONCURRENCY = 8
CLEAR_TARGETS = ("", "both", "cache", "queue")


@dataclass(frozen=True)
class CacheState:
    cached: list[CachedImage]
    queued: list[str]


@dataclass(frozen=True)
class ClearResult:
    cache_deleted: int | None
    queue_deleted: int | None


@dataclass(frozen=True)
class PrefetchResult:
    cached: list[str]
    failed: list[str]
    dropped: list[str]  # gone, or no longer active: taken off the queue


class CacheService:
    def __init__(
        self,
        images: ImageService,
        repo: ImageRepository,
        stores: StoreRegistry,
        cache: ImageCache | None,
        *,
        job_interval: int,
    ) -> None:
        self.images = images
        self.repo = repo
        self.stores = stores
        self.cache = cache
        self.job_interval = job_interval
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def enabled(self) -> bool:
        return self.cache is not None

    # -- the /v2/cache API ----------------------------------------------------------

    async def state(self, ctx: RequestContext) -> CacheState:
        self.images.policy.authorize(ctx, "cache_list", {})
        cache = self._require_cache()
        return CacheState(await cache.cached(), await cache.queued())

    async def queue_image(self, ctx: RequestContext, image_id: str) -> None:
        """Queue an image and start caching it at once (202, as Glance since 2.16)."""
        image = await self.images.get_image(ctx, image_id)
        self.images.policy.authorize(ctx, "cache_image", await self.images.target(ctx, image))
        cache = self._require_cache()
        if image.status != "active":
            raise InvalidInput(
                f"Only images with status active can be targeted for queueing; image "
                f"{image_id} is {image.status}."
            )
        await cache.queue(image_id)
        self._spawn(self._prefetch_one(image_id))

    async def delete_entry(self, ctx: RequestContext, image_id: str) -> None:
        """Remove an image from the cache and from the queue."""
        try:
            image: Image | None = await self.images.get_image(ctx, image_id)
        except ImageNotFound:
            image = None
        target = await self.images.target(ctx, image) if image is not None else {}
        self.images.policy.authorize(ctx, "cache_delete", target)
        cache = self._require_cache()
        removed = await cache.remove(image_id)
        dequeued = await cache.dequeue(image_id)
        if image is None and not removed and not dequeued:
            raise ImageNotFound(image_id)

    async def clear(self, ctx: RequestContext, target: str) -> ClearResult:
        self.images.policy.authorize(ctx, "cache_delete", {})
        cache = self._require_cache()
        target = target.strip().lower()
        if target not in CLEAR_TARGETS:
            raise InvalidInput(
                "If provided 'x-image-cache-clear-target' must be 'cache', 'queue' or "
                "empty string."
            )
        cache_deleted = queue_deleted = None
        if target in ("", "both", "cache"):
            cache_deleted = await cache.clear_cached()
        if target in ("", "both", "queue"):
            queue_deleted = await cache.clear_queued()
        return ClearResult(cache_deleted, queue_deleted)

    async def clean(self, ctx: RequestContext) -> CleanResult:
        self.images.policy.authorize(ctx, "cache_clean", {})
        self._require_cache()
        return await self.clean_once()

    async def prune(self, ctx: RequestContext) -> PruneResult:
        self.images.policy.authorize(ctx, "cache_prune", {})
        return await self._require_cache().prune()

    def _require_cache(self) -> ImageCache:
        if self.cache is None:
            raise NotFound("Caching via API is not supported at this site.")
        return self.cache

    # -- jobs -------------------------------------------------------------------------

    async def prefetch_once(self) -> PrefetchResult:
        """Fetch every queued image into the cache, several at a time."""
        cache = self._require_cache()
        queued = await cache.queued()
        limit = asyncio.Semaphore(PREFETCH_CONCURRENCY)

        async def fetch(image_id: str) -> str:
            async with limit:
                return await self._prefetch_one(image_id)

        outcomes = await asyncio.gather(*(fetch(i) for i in queued))
        result = PrefetchResult([], [], [])
        for image_id, outcome in zip(queued, outcomes, strict=True):
            getattr(result, outcome).append(image_id)
        return result

    async def _prefetch_one(self, image_id: str) -> str:
        """Cache one queued image; "cached", "failed" (stays queued) or "dropped"."""
        cache = self._require_cache()
        image = await self.repo.get(image_id)
        source = self._source(image) if image is not None else None
        if image is None or image.status != "active" or source is None:
            why = "is gone" if image is None else (
                f"is {image.status}" if image.status != "active" else "has no readable data"
            )
            log.warning("image %s %s: taken off the cache queue", image_id, why)
            await cache.dequeue(image_id)
            return "dropped"
        key = ImageKey(image.id, image.checksum or "", image.size or 0)
        store, location = source
        try:
            cached = await cache.fill(key, store, location)
        except Exception as exc:
            log.warning("prefetching image %s failed (it stays queued): %s", image_id, exc)
            return "failed"
        if not cached:
            if not key.checksum or not 0 < key.size <= cache.max_size:
                log.warning("image %s cannot be cached (no checksum, empty, or larger "
                            "than image_cache_max_size): taken off the queue", image_id)
                await cache.dequeue(image_id)
                return "dropped"
            return "failed"
        await cache.dequeue(image_id)
        return "cached"

    def _source(self, image: Image) -> tuple[ManagedStore, str] | None:
        """The location downloads read: the highest-weight store this node has."""
        candidates = []
        for location in image.locations:
            store = self.stores.for_location(location.store, location.url)
            if store is not None:
                candidates.append((store, location.url))
        if not candidates:
            return None
        return max(candidates, key=lambda c: c[0].weight)

    async def clean_once(self) -> CleanResult:
        """Stalled fills, invalid files, and copies whose image is gone, not active or
        has other data now (deleted, deactivated or re-uploaded through another node)."""
        cache = self._require_cache()
        result = await cache.clean()
        invalid = result.invalid
        for entry in await cache.cached():
            image = await self.repo.get(entry.image_id)
            if image is None or image.status != "active" or image.checksum != entry.checksum:
                log.info("removing the cached copy of image %s: the image is %s", entry.image_id,
                         "gone" if image is None else f"{image.status} or changed")
                if await cache.remove(entry.image_id):
                    invalid += 1
        return CleanResult(result.stalled, invalid)

    async def prune_once(self) -> PruneResult:
        return await self._require_cache().prune()

    async def run_jobs_once(self) -> None:
        await self.clean_once()
        await self.prefetch_once()
        await self.prune_once()

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Run the jobs every ``job_interval`` seconds, until :meth:`stop`."""
        if self.cache is not None:
            self._spawn(self._run_jobs())

    async def _run_jobs(self) -> None:
        while True:
            await asyncio.sleep(self.job_interval)
            try:
                await self.run_jobs_once()
            except Exception:
                log.exception("image cache jobs failed; trying again in %ss",
                              self.job_interval)

    def _spawn(self, job: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("image cache job failed", exc_info=task.exception())

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.cache is not None:
            await self.cache.close()
