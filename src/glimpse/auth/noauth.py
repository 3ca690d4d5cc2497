"""noauth: every caller is admin of one fixed project (the embedded default, localhost)."""

from __future__ import annotations

from collections.abc import Mapping

from glimpse.policy.context import RequestContext


class NoAuth:
    def __init__(self, project_id: str, user_id: str) -> None:
        self._project_id = project_id
        self._user_id = user_id

    async def authenticate(self, headers: Mapping[str, str], request_id: str) -> RequestContext:
        return RequestContext(
            user_id=self._user_id,
            project_id=self._project_id,
            roles=("admin", "member", "reader"),
            request_id=request_id,
        )
