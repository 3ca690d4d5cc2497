"""Quota usage, holds and checks in SQL (the rules are in ``glimpse.db.quotas``).

The project's quota lock: on PostgreSQL a transaction-scoped advisory lock on the
project, taken before the guarded write, so a second check of the same project waits
for the first transaction to commit and then counts its result. SQLite runs one write
transaction at a time anyway (``BEGIN IMMEDIATE``), which is that lock for every
project at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
)

from glimpse.db.quotas import HOLD_STAGE, HOLD_UPLOAD, Hold, QuotaClaim
from glimpse.db.sql.quota_tables import quota_holds
from glimpse.db.sql.session import Database
from glimpse.db.sql.tables import image_locations, image_properties, images
from glimpse.domain.errors import QuotaExceeded
from glimpse.domain.quotas import (
    IMAGE_COUNT_TOTAL,
    IMAGE_COUNT_UPLOADING,
    IMAGE_SIZE_TOTAL,
    IMAGE_STAGE_TOTAL,
    USER_STORAGE_QUOTA,
)

T = TypeVar("T")

# The import's lock and its list of stores still to write (image_import.runner's LOCK
# and IMPORTING): a copy-image under way shows only in the latter.
IMPORT_LOCK = "os_glance_import_task"
IMPORTING_TO_STORES = "os_glance_importing_to_stores"

_GONE = ("killed", "deleted", "pending_delete")
_UPLOADING = ("saving", "uploading", "importing")
_STAGED = ("uploading", "importing")
# Unified size limits are soft for one operation at a time (oslo.limit, as Glance uses
# it); the legacy user_storage_quota is a hard limit in Glance too.
_OVERDRAWN = (IMAGE_SIZE_TOTAL, IMAGE_STAGE_TOTAL)
# Any constant the nodes share; the second key is the project's.
_LOCK_CLASS = 0x71756F74  # "quot"


class SqlQuotaRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def extend(self, claim: QuotaClaim) -> dict[str, int]:
        def run(conn: Connection) -> dict[str, int] | QuotaExceeded:
            lock_project(conn, claim.project_id)
            try:
                return settle(conn, claim)
            except QuotaExceeded as exc:
                # The stream stops here: its hold goes now, in this transaction, not
                # when its image is reset, so the project's other streams can use
                # the room (else two that collide near a limit could both fail).
                conn.execute(delete(quota_holds).where(
                    quota_holds.c.image_id == claim.image_id,
                    quota_holds.c.holder == claim.holder,
                ))
                return exc

        granted = await self._db.run_write(run)
        if isinstance(granted, QuotaExceeded):
            raise granted
        return granted

    async def usage(self, project_id: str, resources: Sequence[str]) -> dict[str, int]:
        return await self._db.run_read(
            lambda conn: {r: usage_of(conn, r, project_id) for r in resources}
        )


def within_claim(
    claim: QuotaClaim | None, write: Callable[[Connection], T]
) -> Callable[[Connection], T]:
    """``write`` under the project's quota lock, then the claim's check in the same
    transaction (QuotaExceeded rolls the write back). A write that did not happen
    (it returned None or False: a compare-and-set lost) checks and holds nothing."""
    if claim is None:
        return write

    def run(conn: Connection) -> T:
        lock_project(conn, claim.project_id)
        result = write(conn)
        if result is not None and result is not False:
            settle(conn, claim)
        return result

    return run


def lock_project(conn: Connection, project_id: str) -> None:
    if conn.dialect.name == "postgresql":
        digest = hashlib.blake2b(project_id.encode(), digest_size=4).digest()
        key = int.from_bytes(digest, "big", signed=True)
        conn.execute(select(func.pg_advisory_xact_lock(_LOCK_CLASS, key)))


def settle(conn: Connection, claim: QuotaClaim) -> dict[str, int]:
    """Check every limit of the claim, then record its holds; the bytes held."""
    granted: dict[str, int] = {}
    for resource, limit in claim.limits.items():
        hold = claim.holds.get(resource)
        # The image's own earlier hold is replaced, so it does not count here.
        own = claim.image_id if hold is not None else None
        used = usage_of(conn, resource, claim.project_id, except_hold_of=own)
        added = claim.adds.get(resource, 0)
        need = hold.need if hold is not None else 0
        if 0 <= limit < used + need:
            if not (claim.overdraw and resource in _OVERDRAWN and hold is not None
                    and _held(conn, resource, _owned(claim.project_id), own) == 0):
                raise QuotaExceeded(resource, limit, used - added, added + need)
            # The project's only operation under way finishes over the limit, as in
            # Glance; the next one cannot start until usage is back under it.
            granted[resource] = hold.want
            continue
        if hold is not None:
            granted[resource] = _grant(hold, None if limit < 0 else limit - used)
    if granted:
        assert claim.image_id is not None and claim.holder is not None
        now = datetime.now(UTC).replace(tzinfo=None)
        conn.execute(
            delete(quota_holds).where(
                quota_holds.c.image_id == claim.image_id,
                quota_holds.c.resource.in_(list(granted)),
            )
        )
        conn.execute(
            insert(quota_holds),
            [
                {"image_id": claim.image_id, "resource": resource, "holder": claim.holder,
                 "amount": amount, "updated_at": now}
                for resource, amount in granted.items()
            ],
        )
    return granted


def _grant(hold: Hold, room: int | None) -> int:
    """What a hold gets: its need, plus up to ``want``, but at most half of the room
    left beyond the need, so concurrent streams near a limit share what remains
    instead of the first one taking it all."""
    if room is None:
        return hold.want
    spare = max(0, room - hold.need) // 2
    return hold.need + max(0, min(hold.want - hold.need, spare))


def _owned(project_id: str) -> list[ColumnElement[bool]]:
    return [images.c.owner == project_id, images.c.deleted.is_(False)]


def usage_of(
    conn: Connection, resource: str, project_id: str, *, except_hold_of: str | None = None
) -> int:
    owned = _owned(project_id)
    if resource == IMAGE_COUNT_TOTAL:
        stmt: Any = select(func.count()).where(*owned, images.c.status.not_in(_GONE))
        return int(conn.scalar(stmt) or 0)
    if resource == IMAGE_COUNT_UPLOADING:
        stmt = select(func.count()).where(
            *owned,
            or_(
                images.c.status.in_(_UPLOADING),
                and_(images.c.status.not_in(_GONE), _copying()),
            ),
        )
        return int(conn.scalar(stmt) or 0)
    if resource in (IMAGE_SIZE_TOTAL, USER_STORAGE_QUOTA):
        copies = (
            select(func.count())
            .where(image_locations.c.image_id == images.c.id,
                   image_locations.c.status == "active")
            .scalar_subquery()
        )
        stmt = select(func.coalesce(func.sum(images.c.size * copies), 0)).where(
            *owned, images.c.status.not_in(_GONE), images.c.size > 0
        )
    elif resource == IMAGE_STAGE_TOTAL:
        stmt = select(func.coalesce(func.sum(images.c.size), 0)).where(
            *owned,
            images.c.size > 0,
            or_(
                images.c.status.in_(_STAGED),
                and_(images.c.status.not_in((*_STAGED, *_GONE)), _copying()),
            ),
        )
    else:
        raise ValueError(f"unknown quota resource {resource!r}")
    return int(conn.scalar(stmt) or 0) + _held(conn, resource, owned, except_hold_of)


def _held(
    conn: Connection, resource: str, owned: list[ColumnElement[bool]], exclude: str | None
) -> int:
    live = or_(
        and_(quota_holds.c.holder == HOLD_UPLOAD, images.c.status == "saving"),
        and_(quota_holds.c.holder == HOLD_STAGE, images.c.status == "uploading",
             images.c.size.is_(None)),
        exists(
            select(literal(1)).where(
                image_properties.c.image_id == images.c.id,
                image_properties.c.name == IMPORT_LOCK,
                image_properties.c.value == quota_holds.c.holder,
            )
        ),
    )
    stmt = (
        select(func.coalesce(func.sum(quota_holds.c.amount), 0))
        .select_from(quota_holds)
        .join(images, images.c.id == quota_holds.c.image_id)
        .where(quota_holds.c.resource == resource, *owned, live)
    )
    if exclude is not None:
        stmt = stmt.where(quota_holds.c.image_id != exclude)
    return int(conn.scalar(stmt) or 0)


def _copying() -> ColumnElement[bool]:
    return exists(
        select(literal(1)).where(
            image_properties.c.image_id == images.c.id,
            image_properties.c.name == IMPORTING_TO_STORES,
            image_properties.c.value != "",
        )
    )
