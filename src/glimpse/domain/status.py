"""The image status transition table: the one place that says which moves are legal."""

from __future__ import annotations

from glimpse.domain.errors import InvalidStatusTransition

TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"saving", "uploading", "importing", "active", "deleted"}),
    "saving": frozenset({"active", "killed", "deleted", "queued"}),
    "uploading": frozenset({"importing", "queued", "deleted"}),
    "importing": frozenset({"active", "deleted", "queued"}),
    "active": frozenset({"pending_delete", "deleted", "deactivated"}),
    "deactivated": frozenset({"active", "deleted"}),
    "pending_delete": frozenset({"deleted", "active"}),
    "killed": frozenset({"deleted"}),
    "deleted": frozenset(),
}

STATUSES = tuple(TRANSITIONS)


def check_transition(current: str, target: str) -> None:
    if target not in TRANSITIONS.get(current, frozenset()):
        raise InvalidStatusTransition(current, target)
