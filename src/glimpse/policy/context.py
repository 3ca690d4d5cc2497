"""Who is calling: the request context every service method receives."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RequestContext:
    user_id: str | None
    project_id: str | None
    roles: tuple[str, ...] = ()
    domain_id: str | None = None
    system_scope: str | None = None
    request_id: str = ""
    auth_token: str | None = None
    # The caller's Keystone service catalog (JSON, as auth_token hands it on).
    service_catalog: str | None = None
    service_roles: tuple[str, ...] = field(default=())
    # Whether Glance's "context_is_admin" rule holds for the caller, decided once per
    # request by the API (an operator's policy.yaml may redefine it); None: the role.
    admin: bool | None = None

    @property
    def is_admin(self) -> bool:
        if self.admin is not None:
            return self.admin
        return "admin" in self.roles

    def credentials(self) -> dict[str, object]:
        """The credential dict oslo.policy checks rules against."""
        return {
            "user_id": self.user_id,
            "project_id": self.project_id,
            "roles": list(self.roles),
            "domain_id": self.domain_id,
            "system_scope": self.system_scope,
            "is_admin": self.is_admin,
            "service_roles": list(self.service_roles),
        }
