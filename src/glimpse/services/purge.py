"""Purging deleted rows for good (Glance's ``glance-manage db purge`` and
``db purge_images_table``).

A deleted image keeps its ``images`` row so that its id is never handed out again
(OSSN-0075: a new image under an old id would be taken for the old one by whoever
still refers to it: instances, volumes, other clouds' caches). ``purge`` therefore
removes everything else of images deleted long enough ago (locations and any leftover
properties, tags, members) and tasks expired that long ago; ``purge_images_table`` is
the separate, explicit step that also removes the ``images`` rows.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from glimpse.db.base import ImageRepository
from glimpse.domain.errors import InvalidInput

log = logging.getLogger(__name__)

_MAX_INT = 2**31 - 1


class Purger:
    def __init__(self, repo: ImageRepository) -> None:
        self.repo = repo

    async def purge(self, age_in_days: int, max_rows: int) -> dict[str, int]:
        """Rows removed per table; images rows are kept."""
        cutoff = check_purge_arguments(age_in_days, max_rows)
        counts = await self.repo.purge_deleted(cutoff, max_rows)
        for table, rows in counts.items():
            log.info("purged %d row(s) from %s (deleted more than %d day(s) ago)", rows,
                     table, age_in_days)
        return counts

    async def purge_images_table(self, age_in_days: int, max_rows: int) -> int:
        """Images rows removed (and whatever still referred to them)."""
        cutoff = check_purge_arguments(age_in_days, max_rows)
        rows = await self.repo.purge_images_table(cutoff, max_rows)
        log.warning("purged %d row(s) from images (deleted more than %d day(s) ago): their "
                    "ids may now be used again", rows, age_in_days)
        return rows


def check_purge_arguments(age_in_days: int, max_rows: int) -> datetime:
    """The deletion time before which rows are purged; InvalidInput for bad values."""
    if age_in_days < 1:
        raise InvalidInput(
            f"age_in_days must be a positive number of days, not {age_in_days}: rows of "
            "images deleted less than a day ago are never purged."
        )
    if age_in_days >= int(time.time()) // 86400:
        raise InvalidInput("age_in_days can be at most the number of days since 1970.")
    if max_rows == 0 or max_rows < -1:
        raise InvalidInput(
            f"max_rows must be a positive number of rows per batch (or -1: no batches), "
            f"not {max_rows}."
        )
    if max_rows > _MAX_INT:
        raise InvalidInput(f"max_rows can be at most {_MAX_INT}.")
    return datetime.now(UTC).replace(tzinfo=None) - timedelta(days=age_in_days)
