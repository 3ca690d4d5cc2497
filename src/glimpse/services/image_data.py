"""Image bytes: upload (``PUT /file``) and download (``GET /file``).

Upload claims the image with a compare-and-set ``queued -> saving`` (so of two
concurrent uploads exactly one wins), streams into the store while hashing, size
limiting and inspecting, then commits ``saving -> active`` with the location in one
guarded write. Any failure removes the written data and puts the image back to
``queued``, as Glance does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from glimpse.cache.base import ByteReader, ImageCache, ImageKey
from glimpse.db.base import ImageChanges, ImageRepository
from glimpse.domain.errors import (
    Conflict,
    Forbidden,
    ImageGone,
    InvalidImageData,
    InvalidInput,
    LimitExceeded,
    RangeNotSatisfiable,
)
from glimpse.domain.image import Image, Location
from glimpse.formats.stream import FormatPolicy, StreamInspector
from glimpse.policy.context import RequestContext
from glimpse.services.images import ImageService
from glimpse.services.writers import abandoned, writer_id
from glimpse.stores.registry import ManagedStore, SizeLimit, StoreRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataLimits:
    image_size_cap: int


@dataclass(frozen=True)
class ByteRange:
    """A single ``Range: bytes=`` request: start and inclusive end, or a suffix."""

    start: int | None
    end: int | None


@dataclass(frozen=True)
class ImageData:
    """Where to read an image's bytes for one download."""

    image: Image
    store: ByteReader  # the store, decorated by the cache when this node has one
    location: str
    offset: int
    length: int
    total: int
    partial: bool


class ImageDataService:
    def __init__(
        self,
        images: ImageService,
        repo: ImageRepository,
        stores: StoreRegistry,
        limits: DataLimits,
        format_policy: FormatPolicy,
        node_id: str,
        cache: ImageCache | None = None,
    ) -> None:
        self.cache = cache
        self.images = images
        self.repo = repo
        self.stores = stores
        self.limits = limits
        self.format_policy = format_policy
        self.node_id = node_id

    async def upload(
        self,
        ctx: RequestContext,
        image_id: str,
        chunks: AsyncIterator[bytes],
        *,
        declared_size: int | None = None,
        store_id: str | None = None,
    ) -> Image:
        image = await self.images.get_image(ctx, image_id)
        self.images.policy.authorize(ctx, "upload_image", await self.images.target(ctx, image))
        if image.status != "queued":
            raise Conflict(f"Image status transition from {image.status} to saving is not allowed")
        if not image.disk_format or not image.container_format:
            raise InvalidInput(
                "Properties disk_format, container_format must be set prior to saving data."
            )
        store = self.stores.get(store_id)
        cap = self._size_cap()
        if declared_size is not None and declared_size > cap.limit:
            raise LimitExceeded(cap.message)
        # Project limits are checked in the claim's transaction, and the bytes while
        # they stream (services.quotas).
        quotas = self.images.quotas
        claim = await quotas.for_upload(image, declared_size) if quotas else None
        claimed = await self.repo.update(
            image_id,
            ImageChanges(core={"status": "saving", "data_node": writer_id(self.node_id)}),
            expected_status=["queued"],
            claim=claim,
        )
        if claimed is None:
            raise Conflict("Image status transition from queued to saving is not allowed: "
                           "another upload is in progress or the image changed.")
        inspector = StreamInspector(image.disk_format, image.container_format, self.format_policy)
        stored = None
        try:
            if quotas is not None:
                chunks = quotas.metered(claim, chunks)
            stored = await store.add(image_id, chunks, limits=(cap,), observe=inspector.feed)
            if declared_size is not None and stored.size != declared_size:
                raise InvalidImageData(
                    f"Image size {stored.size} does not match the declared size "
                    f"{declared_size} (x-openstack-image-size)."
                )
            result = await asyncio.to_thread(inspector.finish, stored.size)
            location = Location(url=stored.location, store=store.id, metadata=stored.metadata)
            activated = await self.repo.update(
                image_id,
                ImageChanges(
                    core={
                        "status": "active",
                        "size": stored.size,
                        "virtual_size": result.virtual_size,
                        "checksum": stored.checksum,
                        "os_hash_algo": stored.hash_algo,
                        "os_hash_value": stored.hash_value,
                        "data_node": None,
                    },
                    add_locations=(location,),
                ),
                expected_status=["saving"],
            )
        except BaseException:
            written = stored.location if stored else None
            await asyncio.shield(self._abandon(image_id, store, written))
            raise
        if activated is None:
            # Deleted (or reset) while we were writing: the data has no owner any more.
            await asyncio.shield(self._discard(store, stored.location))
            raise ImageGone(f"Image {image_id} could not be found after upload; "
                            "it was deleted during the upload.")
        return activated

    async def _abandon(self, image_id: str, store: ManagedStore, location: str | None) -> None:
        if location is not None:
            await self._discard(store, location)
        await self.repo.update(
            image_id,
            ImageChanges(core={"status": "queued", "data_node": None}),
            expected_status=["saving"],
        )

    async def _discard(self, store: ManagedStore, location: str) -> None:
        try:
            await store.delete(location)
        except Exception:
            log.exception("could not remove abandoned data at %s", location)

    def _size_cap(self) -> SizeLimit:
        cap = self.limits.image_size_cap
        return SizeLimit(cap, f"Image exceeds the storage limit: image_size_cap is {cap} bytes.")

    async def download(
        self, ctx: RequestContext, image_id: str, byte_range: ByteRange | None = None
    ) -> ImageData | None:
        """Where to stream from, or None when the image has no data (204)."""
        image = await self.images.get_image(ctx, image_id)
        self.images.policy.authorize(ctx, "download_image", await self.images.target(ctx, image))
        if image.status == "deactivated" and not ctx.is_admin:
            raise Forbidden(
                "The requested image has been deactivated. Image data download is prohibited."
            )
        if image.status not in ("active", "deactivated") or not image.locations:
            return None
        store, location = self._pick_location(image)
        total = image.size or 0
        offset, length = _resolve_range(byte_range, total)
        reader: ByteReader = store
        if self.cache is not None and image.status == "active":
            # Served from this node's verified copy when it has one (a deactivated
            # image's copy is never used); a whole-image read fills the cache.
            reader = self.cache.reader(ImageKey(image.id, image.checksum or "", total), store)
        return ImageData(
            image=image, store=reader, location=location, offset=offset, length=length,
            total=total, partial=byte_range is not None,
        )

    def _pick_location(self, image: Image) -> tuple[ManagedStore, str]:
        candidates = []
        for location in image.locations:
            store = self.stores.for_location(location.store, location.url)
            if store is not None:
                candidates.append((store, location.url))
        if not candidates:
            raise Conflict(f"Image {image.id} has data in no store that this node can read.")
        candidates.sort(key=lambda c: -c[0].weight)
        return candidates[0]

    async def recover_interrupted_uploads(self) -> int:
        """After a crash: images a dead process of this node was writing go back to
        ``queued``."""
        recovered = 0
        for image in await self.repo.images_in_status("saving", node_id=self.node_id):
            if not abandoned(image.data_node, self.node_id):
                continue
            reset = await self.repo.update(
                image.id,
                ImageChanges(core={"status": "queued", "data_node": None}),
                expected_status=["saving"],
            )
            if reset is not None:
                recovered += 1
        return recovered


def _resolve_range(byte_range: ByteRange | None, total: int) -> tuple[int, int]:
    if byte_range is None:
        return 0, total
    start, end = byte_range.start, byte_range.end
    if start is None:
        # Suffix range: the last `end` bytes.
        if end is None or end <= 0:
            raise RangeNotSatisfiable("Invalid suffix range", total)
        length = min(end, total)
        return total - length, length
    if start >= total or (end is not None and end < start):
        raise RangeNotSatisfiable(
            f"Requested range not satisfiable: image size is {total} bytes", total
        )
    last = total - 1 if end is None else min(end, total - 1)
    return start, last - start + 1
