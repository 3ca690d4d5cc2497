"""Stores as users see them: discovery, one copy removed, locations added by services."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass

from glimpse.db.base import ImageChanges, ImageRepository
from glimpse.domain.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    LimitExceeded,
    NotFound,
    StoreNotFound,
)
from glimpse.domain.image import Image, Location
from glimpse.policy.context import RequestContext
from glimpse.services.images import ImageService
from glimpse.stores.registry import ManagedStore, StoreRegistry

log = logging.getLogger(__name__)

_HASH_ALGOS = ("sha1", "sha256", "sha512", "md5")


@dataclass(frozen=True)
class StoreInfo:
    id: str
    type: str
    description: str | None
    default: bool
    read_only: bool
    weight: int
    properties: dict[str, object]


class StoreService:
    def __init__(
        self,
        images: ImageService,
        repo: ImageRepository,
        stores: StoreRegistry,
        location_quota: int,
    ) -> None:
        self.images = images
        self.repo = repo
        self.stores = stores
        self.location_quota = location_quota

    def list_stores(self) -> list[StoreInfo]:
        if not self.stores.multistore:
            raise NotFound("Multi backend is not supported at this site.")
        return [self._info(s) for s in self.stores.all()]

    def store_ids(self) -> list[str]:
        return [s.id for s in self.stores.all() if not s.read_only]

    def stores_detail(self, ctx: RequestContext) -> list[StoreInfo]:
        stores = self.list_stores()
        self.images.policy.authorize(ctx, "stores_info_detail", {"project_id": ctx.project_id})
        return stores

    def _info(self, store: ManagedStore) -> StoreInfo:
        return StoreInfo(
            id=store.id,
            type=store.type,
            description=store.description,
            default=store.id == self.stores.default_id,
            read_only=store.read_only,
            weight=store.weight,
            properties=store.driver.properties(),
        )

    async def delete_from_store(self, ctx: RequestContext, store_id: str, image_id: str) -> None:
        """Remove one copy; the image keeps its other copies and stays active."""
        if not self.stores.multistore:
            raise NotFound("Multi backend is not supported at this site.")
        try:
            store = self.stores.get(store_id)
        except StoreNotFound:
            raise Conflict(
                f"The selected store {store_id} is not available on this node."
            ) from None
        for _ in range(10):
            image = await self.images.get_image(ctx, image_id)
            target = await self.images.target(ctx, image)
            self.images.policy.authorize(ctx, "get_image_location", target)
            self.images.policy.authorize(ctx, "delete_image_location", target)
            if image.status != "active":
                raise Conflict(
                    "It's not allowed to remove image data from store if image status is "
                    "not 'active'"
                )
            copy = next((loc for loc in image.locations if loc.store == store_id), None)
            if copy is None:
                raise NotFound(f"Image {image_id} is not stored in store {store_id}.")
            if len(image.locations) == 1:
                raise Forbidden(
                    "Cannot delete image data from the only store containing it. Consider "
                    "deleting the image instead."
                )
            # Guarded on the version: two racing removals cannot take the last copy.
            updated = await self.repo.update(
                image_id, ImageChanges(remove_locations=(copy.url,)),
                expected_version=image.version,
            )
            if updated is not None:
                try:
                    await store.delete(copy.url)
                except Exception:
                    log.exception("copy of %s in %s left behind as an orphan", image_id, store_id)
                return
        raise Conflict(f"Image {image_id} kept changing; try again.")

    async def list_locations(self, ctx: RequestContext, image_id: str) -> list[Location]:
        image = await self.images.get_image(ctx, image_id)
        self.images.policy.authorize(
            ctx, "fetch_image_location", await self.images.target(ctx, image)
        )
        return image.locations

    async def add_location(
        self, ctx: RequestContext, image_id: str, url: str,
        validation_data: dict[str, str] | None,
    ) -> Image:
        """Attach data that already sits in one of our stores to a queued image."""
        image = await self.images.get_image(ctx, image_id)
        if image.status != "queued":
            raise Conflict(f"It's not allowed to add locations if image status is {image.status}.")
        target = await self.images.target(ctx, image)
        self.images.policy.authorize(ctx, "add_image_location", target)
        store = self.stores.for_location(None, url)
        if "service" not in ctx.roles and "service" not in ctx.service_roles and (
            store is None or store.type != "http"
        ):
            # As Glance: other callers may add only locations of a configured http store.
            raise Forbidden("http store must be enabled to use location API by normal user.")
        if 0 <= self.location_quota <= len(image.locations):
            raise LimitExceeded(
                f"Maximum number of locations exceeded: {self.location_quota}"
            )
        if store is None:
            raise InvalidInput(f"Invalid location: {url} is in none of this site's stores.")
        algo, expected = _validation(validation_data)
        size, checksum, hash_value = await _digest(store, url, algo or "sha512")
        if expected is not None and expected != hash_value:
            raise InvalidInput(
                f"os_hash_value {expected} does not match the data at the location "
                f"({algo} {hash_value})."
            )
        changes = ImageChanges(
            core={
                "status": "active", "size": size, "checksum": checksum,
                "os_hash_algo": algo or "sha512", "os_hash_value": hash_value,
            },
            add_locations=(Location(url=url, store=store.id, metadata={"store": store.id}),),
        )
        updated = await self.repo.update(image_id, changes, expected_status=["queued"])
        if updated is None:
            raise Conflict(f"Image {image_id} changed while its location was being added.")
        return updated

    async def orphans(self) -> list[tuple[str, str]]:
        """(store id, url) of stored data that no image record points at."""
        known = await self.repo.active_location_urls()
        found: list[tuple[str, str]] = []
        for store in self.stores.all():
            for url in await store.driver.list_locations():
                if url not in known:
                    found.append((store.id, url))
        return found


def _validation(data: dict[str, str] | None) -> tuple[str | None, str | None]:
    if not data:
        return None, None
    algo, value = data.get("os_hash_algo"), data.get("os_hash_value")
    if not algo or not value:
        raise InvalidInput("validation_data needs both os_hash_algo and os_hash_value.")
    if algo not in _HASH_ALGOS:
        raise InvalidInput(f"os_hash_algo must be one of {', '.join(_HASH_ALGOS)}")
    return algo, value.lower()


async def _digest(store: ManagedStore, url: str, algo: str) -> tuple[int, str, str]:
    md5 = hashlib.md5(usedforsecurity=False)
    multihash = hashlib.new(algo)
    size = 0
    async for chunk in store.read(url):
        size += len(chunk)
        await asyncio.gather(
            asyncio.to_thread(md5.update, chunk), asyncio.to_thread(multihash.update, chunk)
        )
    return size, md5.hexdigest(), multihash.hexdigest()
