"""The scrubber: removes the data of pending_delete images (Glance's glance-scrubber).

With ``delayed_delete`` a DELETE only hides an image as pending_delete. A pass takes
every pending_delete image deleted at least ``scrub_time`` seconds ago, claims it (so
scrubbers on several nodes never work on the same image), removes the data of each of
its pending_delete locations, and only when all of them are gone marks the image
deleted. A location whose store refuses or cannot be reached keeps the image
pending_delete with the claim released: the next pass tries again, other images go
on. ``restore`` brings a pending_delete image back to active (``glimpse scrub
--restore``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from glimpse.config import ScrubberSettings
from glimpse.db.base import ImageRepository
from glimpse.domain.image import Image
from glimpse.services.deletion import CLAIM_SECONDS, DataRemover
from glimpse.stores.registry import StoreRegistry

log = logging.getLogger(__name__)


@dataclass
class ScrubReport:
    """What one pass did: images scrubbed, images left pending_delete to retry."""

    scrubbed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class Scrubber:
    def __init__(
        self, repo: ImageRepository, stores: StoreRegistry, settings: ScrubberSettings,
        node_id: str,
    ) -> None:
        self.repo = repo
        self.settings = settings
        self.remover = DataRemover(repo, stores, node_id)

    async def scrub_once(self) -> ScrubReport:
        report = ScrubReport()
        cutoff = _utcnow() - timedelta(seconds=self.settings.scrub_time)
        pending = await self.repo.pending_delete_ids(cutoff)
        if not pending:
            return report
        log.info("scrubbing %d pending_delete image(s)", len(pending))
        slots = asyncio.Semaphore(self.settings.scrub_pool_size)

        async def one(image_id: str) -> None:
            async with slots:
                try:
                    scrubbed = await self._scrub_image(image_id, cutoff)
                except Exception:  # a database hiccup on one image: the others go on
                    log.exception("scrubbing image %s failed; it stays pending_delete",
                                  image_id)
                    scrubbed = False
                if scrubbed:
                    report.scrubbed.append(image_id)
                elif scrubbed is False:
                    report.failed.append(image_id)

        await asyncio.gather(*(one(image_id) for image_id in pending))
        return report

    async def _scrub_image(self, image_id: str, cutoff: datetime) -> bool | None:
        """True: scrubbed; False: left pending_delete; None: not ours to do (another
        scrubber has it, or it was restored meanwhile)."""
        async with self.remover.holding(
            lambda claimant: self.repo.claim_pending_delete(
                image_id, claimant, CLAIM_SECONDS, cutoff),
            "scrub",
        ) as claim:
            if claim is None:
                return None
            failures = 0
            for location in claim.image.locations:
                try:
                    await self.remover.remove(image_id, location, unknown_store_ok=False)
                except Exception as exc:
                    failures += 1
                    log.warning("image %s: could not remove its data at %s (%s); it stays "
                                "pending_delete and is retried next pass", image_id,
                                location.url, exc)
            if failures:
                return False
            if not await self.repo.mark_deleted(image_id, claim.claimant):
                log.warning("image %s changed while being scrubbed; retried next pass",
                            image_id)
                return False
            log.info("image %s scrubbed from %d location(s)", image_id,
                     len(claim.image.locations))
            return True

    async def run_forever(self) -> None:
        """A pass every ``wakeup_time`` seconds, the first one right away."""
        while True:
            try:
                report = await self.scrub_once()
                if report.failed:
                    log.warning("%d image(s) left pending_delete, retried in %d s",
                                len(report.failed), self.settings.wakeup_time)
            except Exception:
                log.exception("scrubber pass failed; retried in %d s",
                              self.settings.wakeup_time)
            await asyncio.sleep(max(1, self.settings.wakeup_time))

    async def restore(self, image_id: str) -> Image:
        """pending_delete -> active, locations and all (Glance's ``--restore``); refused
        while a scrubber is working on the image."""
        image = await self.repo.restore(image_id)
        log.info("image %s restored from pending_delete to active", image_id)
        return image


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
