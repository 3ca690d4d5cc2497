"""tokens: a static JSON file maps each token to a user, a project and roles.

File format::

    {"tokens": {"<token>": {"user_id": "alice", "project_id": "p1",
                            "roles": ["member", "reader"]}}}

It lets several projects use and test Glimpse without Keystone. Roles imply the
weaker ones as Keystone's default role hierarchy does (admin > member > reader).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from glimpse.domain.errors import Unauthenticated
from glimpse.policy.context import RequestContext

_IMPLIED = {"admin": ("member", "reader"), "member": ("reader",)}


class TokenFileAuth:
    def __init__(self, path: Path) -> None:
        self._contexts = _load(path)

    async def authenticate(self, headers: Mapping[str, str], request_id: str) -> RequestContext:
        token = headers.get("x-auth-token")
        if not token:
            raise Unauthenticated("This server could not verify that you are authorized.")
        entry = self._contexts.get(token)
        if entry is None:
            raise Unauthenticated("The token is not valid.")
        user_id, project_id, roles = entry
        return RequestContext(
            user_id=user_id,
            project_id=project_id,
            roles=roles,
            request_id=request_id,
            auth_token=token,
        )


def _load(path: Path) -> dict[str, tuple[str, str, tuple[str, ...]]]:
    data = json.loads(path.read_text())
    tokens = data.get("tokens", data)
    result: dict[str, tuple[str, str, tuple[str, ...]]] = {}
    for token, entry in tokens.items():
        roles: list[str] = []
        for role in entry.get("roles", []):
            for r in (role, *_IMPLIED.get(role, ())):
                if r not in roles:
                    roles.append(r)
        result[str(token)] = (str(entry["user_id"]), str(entry["project_id"]), tuple(roles))
    return result
