"""The limit source interface, and the static source of the legacy option (and tests)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class LimitSource(Protocol):
    # True for Keystone unified limits: GET /v2/info/usage reports them.
    unified: bool

    async def limits(self, project_id: str | None) -> dict[str, int]:
        """The project's limit per resource (``glimpse.domain.quotas``), sizes in bytes;
        negative means unlimited, an absent resource is not limited. ``None``: the
        defaults that apply to any project."""
        ...


class StaticLimits:
    """The same limits for every project: ``[DEFAULT] user_storage_quota``."""

    def __init__(self, limits: Mapping[str, int], *, unified: bool = False) -> None:
        self._limits = dict(limits)
        self.unified = unified

    async def limits(self, project_id: str | None) -> dict[str, int]:
        return dict(self._limits)
