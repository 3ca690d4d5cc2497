"""The one thing every auth strategy does: turn request headers into a RequestContext."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from glimpse.policy.context import RequestContext


class Authenticator(Protocol):
    async def authenticate(self, headers: Mapping[str, str], request_id: str) -> RequestContext:
        """Return who is calling, or raise ``Unauthenticated``."""
        ...
