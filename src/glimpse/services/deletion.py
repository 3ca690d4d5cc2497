"""Removing an image's stored data: the part DELETE and the scrubber share.

Whoever removes an image's data first claims the image in the database (a guarded
UPDATE with an expiry, renewed while the work lasts). Two DELETEs, a DELETE and a
scrubber, or two scrubbers on different nodes therefore never work on the same image
at once, and a holder that dies mid-way leaves the image to the next one once its
claim expires. Each location is marked deleted as soon as its data is gone, so the
record never points at data that no longer exists and never forgets data that still
does (the one exception: DELETE forgets a location in a store this node no longer has,
as Glance does, since nothing could remove that data).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from glimpse.db.base import ImageRepository
from glimpse.domain.errors import StoreUnavailable
from glimpse.domain.image import Image, Location
from glimpse.stores.registry import StoreRegistry

log = logging.getLogger(__name__)

# How long a claim lasts without renewal; the holder renews it every third of that. A
# node that dies holding one blocks deletes of that image for at most this long.
CLAIM_SECONDS = 60


@dataclass
class Claim:
    """An image claimed for removing its data: the image as claimed, and the token."""

    image: Image
    claimant: str


class DataRemover:
    def __init__(self, repo: ImageRepository, stores: StoreRegistry, node_id: str) -> None:
        self.repo = repo
        self.stores = stores
        self.node_id = node_id

    def new_claimant(self, role: str) -> str:
        # Unique per attempt: two requests on one node must not share a claim.
        return f"{self.node_id}/{role}/{uuid.uuid4().hex[:12]}"

    @asynccontextmanager
    async def holding(
        self, take: Callable[[str], Awaitable[Image | None]], role: str
    ) -> AsyncIterator[Claim | None]:
        """Try to take a claim with ``take(claimant)``; while the block runs the claim is
        renewed, and it is released afterwards (a no-op once the image was marked
        deleted or pending_delete, which releases it). None: not claimed."""
        claimant = self.new_claimant(role)
        image = await take(claimant)
        if image is None:
            yield None
            return
        renewer = asyncio.create_task(self._renew(image.id, claimant))
        try:
            yield Claim(image, claimant)
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            # Shielded: a cancelled request must not leave the claim to expire.
            try:
                await asyncio.shield(self.repo.release_claim(image.id, claimant))
            except Exception:
                log.exception("could not release the claim on image %s (it expires in "
                              "%d s)", image.id, CLAIM_SECONDS)

    async def _renew(self, image_id: str, claimant: str) -> None:
        while True:
            await asyncio.sleep(CLAIM_SECONDS / 3)
            try:
                if not await self.repo.renew_claim(image_id, claimant, CLAIM_SECONDS):
                    log.warning("lost the claim on image %s while removing its data",
                                image_id)
                    return
            except Exception:
                log.exception("could not renew the claim on image %s", image_id)

    async def remove(self, image_id: str, location: Location, *, unknown_store_ok: bool) -> None:
        """Remove one location's data, then mark the location deleted.

        Store errors pass through unchanged (``Conflict`` when the data is in use,
        ``StoreUnavailable`` when the store cannot be reached) and leave the location
        as it was. A location in no store configured here is forgotten when
        ``unknown_store_ok`` (as Glance does: nothing here could ever remove it), else
        refused as unavailable (another node with that store may scrub it).
        """
        store = self.stores.for_location(location.store, location.url)
        if store is None:
            if not unknown_store_ok:
                raise StoreUnavailable(
                    f"Store {location.store!r} of {location.url} is not configured on this "
                    "node"
                )
            log.error("image %s: location %s is in store %r, which this node does not have; "
                      "its data (if any) is left where it is", image_id, location.url,
                      location.store)
        else:
            await store.delete(location.url)
        await self.repo.remove_location(image_id, location.url)
