"""What quota enforcement needs from the database: claims, holds, usage.

A project's usage is counted from the images themselves (their status, size and
locations) plus the *holds* of operations under way: bytes an upload, a stage or an
import keeps for itself before writing them. A hold counts only while its operation
is visibly running on the image (``upload``: the image is ``saving``; ``stage``: it is
``uploading`` with no size yet; an import: the image carries that task's import
lock), so the write that finishes or abandons the operation also ends its hold, in the
same transaction, and a crashed node leaves no hold behind once its image is reset.

Every check runs in a write transaction that first takes the project's quota lock:
checks of one project run one at a time, each seeing the others' results, so
concurrent requests cannot together pass a limit that each alone respects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

HOLD_UPLOAD = "upload"  # PUT /file
HOLD_STAGE = "stage"  # PUT /stage
# An import's holds are held by its task id (the value of its import lock).


@dataclass(frozen=True)
class Hold:
    """Bytes kept by one operation in one resource: ``need`` must fit or the claim
    fails; up to ``want`` is taken when there is room (near the limit, half of what is
    left, so that concurrent operations share it)."""

    need: int
    want: int


@dataclass(frozen=True)
class QuotaClaim:
    """Limits to check (resource -> limit in bytes or images; negative: unlimited) for
    one project, and the holds to record for ``image_id`` under ``holder``.

    Checked after the write it guards, in the same transaction: counts then include
    the image written, and ``adds`` says by how much this write grew each count (for
    the message of a refusal).
    """

    project_id: str
    limits: Mapping[str, int]
    adds: Mapping[str, int] = field(default_factory=dict)
    holds: Mapping[str, Hold] = field(default_factory=dict)
    image_id: str | None = None
    holder: str | None = None
    # A stream growing its hold: it may run past a unified size limit when no other
    # operation of the project holds bytes of that resource (see glimpse.services.quotas).
    overdraw: bool = False


class QuotaRepository(Protocol):
    async def extend(self, claim: QuotaClaim) -> dict[str, int]:
        """Under the project's quota lock: raise QuotaExceeded unless every hold's
        ``need`` fits; else set each hold to as much of ``want`` as fits. Returns the
        bytes now held per resource."""
        ...

    async def usage(self, project_id: str, resources: Sequence[str]) -> dict[str, int]:
        """What counts against each resource now (bytes or images), holds included."""
        ...
