"""Project quotas: which limits each operation is checked against, and usage.

Limits come from a :class:`LimitSource` (Keystone unified limits with
``use_keystone_limits``, else the legacy ``user_storage_quota``, else none). Each
operation turns them into a :class:`QuotaClaim` that the repository checks in the
transaction of the write it guards (creating the image, claiming it for an upload,
taking the import lock), under the project's quota lock. So unlike Glance, whose checks
read usage before the write and let concurrent requests pass together, a project's
requests are counted one after the other and never pass a limit together.

Bytes are counted as they arrive: an upload or stage *holds* bytes ahead of its data
(all of ``x-openstack-image-size`` when declared, else growing in steps). Glance checks
a unified size limit once, before the data (with a delta of 0 when the size is not
declared), and lets that upload finish over the limit; Tempest's unified-limits
scenario relies on it. Glimpse keeps that for one operation at a time: a stream may
run past ``image_size_total`` or ``image_stage_total`` only while no other upload,
stage or import of the project holds bytes of it, so concurrent streams share the room
left and the others stop with 413 at the first byte that does not fit. The project
ends at most one image over its limit, never one per concurrent request, and nothing
starts while it is over. ``user_storage_quota`` is hard, as in Glance: the stream
stops at the first byte over.

Where each limit applies, as in Glance:

============================  ===============================================
``image_count_total``         creating an image
``image_count_uploading``     upload, stage, web-download and copy-image starts
``image_size_total``          upload (while streaming), import start (the size
                              of the staged or copied data times the stores)
``image_stage_total``         stage (while streaming), copy-image start
``user_storage_quota``        as ``image_size_total``, when unified limits are off
============================  ===============================================
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from glimpse.db.quotas import HOLD_STAGE, HOLD_UPLOAD, Hold, QuotaClaim, QuotaRepository
from glimpse.domain.image import Image
from glimpse.domain.quotas import (
    BYTE_RESOURCES,
    IMAGE_COUNT_TOTAL,
    IMAGE_COUNT_UPLOADING,
    IMAGE_SIZE_TOTAL,
    IMAGE_STAGE_TOTAL,
    MIB,
    UNIFIED_RESOURCES,
    USER_STORAGE_QUOTA,
)
from glimpse.policy.context import RequestContext
from glimpse.quota.base import LimitSource

# A stream of unknown size holds at least this much more each time it outgrows its hold,
# and at least doubles it: a few transactions per upload, not one per chunk.
HOLD_STEP = 64 * MIB

_STORED = (IMAGE_SIZE_TOTAL, USER_STORAGE_QUOTA)


class QuotaService:
    def __init__(self, repo: QuotaRepository, source: LimitSource | None) -> None:
        self.repo = repo
        self.source = source

    # -- claims: what each operation is checked against --------------------------------

    async def for_create(self, owner: str) -> QuotaClaim | None:
        limits = await self._limits(owner, (IMAGE_COUNT_TOTAL,))
        if not limits:
            return None
        return QuotaClaim(owner, limits, adds={IMAGE_COUNT_TOTAL: 1})

    async def for_upload(self, image: Image, declared_size: int | None) -> QuotaClaim | None:
        limits = await self._limits(image.owner, (IMAGE_COUNT_UPLOADING, *_STORED))
        return _claim(image, limits, HOLD_UPLOAD, {
            r: declared_size or 0 for r in _STORED if r in limits
        }, counted=True)

    async def for_stage(self, image: Image, declared_size: int | None) -> QuotaClaim | None:
        limits = await self._limits(image.owner, (IMAGE_COUNT_UPLOADING, IMAGE_STAGE_TOTAL))
        held = {IMAGE_STAGE_TOTAL: declared_size or 0} if IMAGE_STAGE_TOTAL in limits else {}
        return _claim(image, limits, HOLD_STAGE, held, counted=True)

    async def for_import(
        self, image: Image, method: str, stores: Sequence[str], task_id: str
    ) -> QuotaClaim | None:
        """glance-direct and copy-image know their size: the import holds it (times the
        stores) from the start. A web-download's size is unknown until it has been
        downloaded: the project must not be over its limits when it starts."""
        size = image.size or 0
        stored = size * len(stores)
        if method == "glance-direct":
            limits = await self._limits(image.owner, _STORED)
            return _claim(image, limits, task_id, {r: stored for r in _STORED if r in limits})
        wanted = (IMAGE_COUNT_UPLOADING, IMAGE_STAGE_TOTAL, *_STORED)
        limits = await self._limits(image.owner, wanted)
        held: dict[str, int] = {}
        if method == "copy-image":
            held = {r: stored for r in _STORED if r in limits}
            if IMAGE_STAGE_TOTAL in limits:
                held[IMAGE_STAGE_TOTAL] = size
        return _claim(image, limits, task_id, held, counted=True)

    # -- streams -----------------------------------------------------------------------

    def metered(self, claim: QuotaClaim | None, chunks: AsyncIterator[bytes]) -> (
        AsyncIterator[bytes]
    ):
        """``chunks`` as they come, each only once the claim holds room for it: the hold
        grows ahead of the data, and QuotaExceeded stops the stream at the first byte
        the project may not take."""
        if claim is None or not claim.holds:
            return chunks
        return self._metered(claim, chunks)

    async def _metered(
        self, claim: QuotaClaim, chunks: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        held = min(hold.need for hold in claim.holds.values())
        limits = {r: claim.limits[r] for r in claim.holds}
        written = 0
        async for chunk in chunks:
            written += len(chunk)
            if written > held:
                want = max(written + HOLD_STEP, 2 * written)
                grown = await self.repo.extend(QuotaClaim(
                    claim.project_id, limits,
                    holds={r: Hold(written, want) for r in limits},
                    image_id=claim.image_id, holder=claim.holder, overdraw=True,
                ))
                held = min(grown.values())
            yield chunk

    # -- GET /v2/info/usage ------------------------------------------------------------

    async def usage(self, ctx: RequestContext) -> dict[str, dict[str, int]]:
        """The caller's project's unified limits and usage, sizes in MiB as Glance
        reports them; empty unless unified limits are on (as Glance)."""
        if self.source is None or not self.source.unified:
            return {}
        limits = await self.source.limits(ctx.project_id)
        used = (
            await self.repo.usage(ctx.project_id, UNIFIED_RESOURCES)
            if ctx.project_id is not None else {}
        )
        report = {}
        for resource in UNIFIED_RESOURCES:
            limit, usage = limits.get(resource, 0), used.get(resource, 0)
            if resource in BYTE_RESOURCES:
                limit = limit // MIB if limit > 0 else limit
                usage //= MIB
            report[resource] = {"limit": limit, "usage": usage}
        return report

    async def _limits(self, project_id: str, resources: Sequence[str]) -> dict[str, int]:
        if self.source is None:
            return {}
        limits = await self.source.limits(project_id)
        return {r: limits[r] for r in resources if r in limits}


def _claim(
    image: Image, limits: dict[str, int], holder: str, held: dict[str, int], *,
    counted: bool = False,
) -> QuotaClaim | None:
    """``counted``: the write makes the image count as uploading (it did not before)."""
    if not limits:
        return None
    return QuotaClaim(
        image.owner, limits,
        adds={IMAGE_COUNT_UPLOADING: 1} if counted else {},
        holds={r: Hold(amount, amount) for r, amount in held.items()},
        image_id=image.id, holder=holder,
    )
