"""QuotaService without a database: how a stream's hold grows, and what usage reports.

The claims' SQL (the lock, the counts, the holds) is exercised on SQLite and PostgreSQL
by tests/functional/test_project_quotas.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from glimpse.db.quotas import Hold, QuotaClaim
from glimpse.domain.errors import QuotaExceeded
from glimpse.policy.context import RequestContext
from glimpse.quota.base import StaticLimits
from glimpse.services.quotas import HOLD_STEP, QuotaService

MIB = 1024 * 1024


class FakeRepo:
    """Holds of one stream against one limit, granting as the SQL does (but all of
    the room: no other stream competes here)."""

    def __init__(self, limit: int, used: int = 0) -> None:
        self.limit, self.used = limit, used
        self.extends: list[Hold] = []

    async def extend(self, claim: QuotaClaim) -> dict[str, int]:
        (resource, hold), = claim.holds.items()
        self.extends.append(hold)
        if self.used + hold.need > self.limit:
            raise QuotaExceeded(resource, self.limit, self.used, hold.need)
        return {resource: min(hold.want, self.limit - self.used)}

    async def usage(self, project_id: str, resources: Sequence[str]) -> dict[str, int]:
        return {"image_size_total": 3 * MIB + 5, "image_stage_total": MIB - 1,
                "image_count_total": 4, "image_count_uploading": 1}


def claim(limit: int, need: int = 0) -> QuotaClaim:
    return QuotaClaim("p", {"image_size_total": limit},
                      holds={"image_size_total": Hold(need, need)},
                      image_id="i", holder="upload")


async def stream(count: int, size: int) -> AsyncIterator[bytes]:
    for i in range(count):
        yield bytes([i % 256]) * size


async def test_a_large_stream_takes_a_few_transactions_not_one_per_chunk() -> None:
    repo = FakeRepo(limit=10**12)
    service = QuotaService(repo, None)
    received = [c async for c in service.metered(claim(10**12), stream(512, MIB))]
    assert received == [bytes([i % 256]) * MIB for i in range(512)]
    # 512 MiB: held 0 -> 65 MiB -> 132 -> 266 -> 534 MiB, each time at least double.
    assert len(repo.extends) == 4
    assert repo.extends[0] == Hold(MIB, MIB + HOLD_STEP)


async def test_the_stream_stops_before_the_first_byte_over_the_limit() -> None:
    repo = FakeRepo(limit=250, used=50)
    service = QuotaService(repo, None)
    received = []
    with pytest.raises(QuotaExceeded) as refused:
        async for chunk in service.metered(claim(250), stream(10, 100)):
            received.append(chunk)
    assert sum(map(len, received)) == 200  # the third chunk would make 250 + 50
    assert (refused.value.usage, refused.value.delta) == (50, 300)


async def test_a_declared_size_is_held_from_the_start() -> None:
    repo = FakeRepo(limit=10**9)
    service = QuotaService(repo, None)
    chunks = [c async for c in service.metered(claim(10**9, need=10 * MIB), stream(10, MIB))]
    assert len(chunks) == 10 and repo.extends == []


async def test_no_claim_no_metering() -> None:
    service = QuotaService(FakeRepo(0), None)
    source = stream(1, 10)
    assert service.metered(None, source) is source


async def test_usage_in_mib_rounded_down_unlimited_kept() -> None:
    limits = {"image_size_total": 5 * MIB, "image_stage_total": -1,
              "image_count_total": 10, "image_count_uploading": 0}
    service = QuotaService(FakeRepo(0), StaticLimits(limits, unified=True))
    ctx = RequestContext(user_id="u", project_id="p", roles=("member",))
    assert await service.usage(ctx) == {
        "image_size_total": {"limit": 5, "usage": 3},
        "image_stage_total": {"limit": -1, "usage": 0},
        "image_count_total": {"limit": 10, "usage": 4},
        "image_count_uploading": {"limit": 0, "usage": 1},
    }


async def test_usage_is_empty_unless_limits_are_unified() -> None:
    ctx = RequestContext(user_id="u", project_id="p", roles=("member",))
    legacy = QuotaService(FakeRepo(0), StaticLimits({"user_storage_quota": 100}))
    assert await legacy.usage(ctx) == {}
    assert await QuotaService(FakeRepo(0), None).usage(ctx) == {}
