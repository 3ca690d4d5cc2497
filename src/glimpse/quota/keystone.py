"""keystone: per-project limits from Keystone's unified limits (``use_keystone_limits``).

Configured as Glance configures oslo.limit, by the ``[oslo_limit]`` section of the same
config files: which endpoint's limits apply (``endpoint_id``, or
``endpoint_service_type`` / ``endpoint_service_name`` with ``endpoint_region_name`` and
``endpoint_interface``), and keystoneauth's session and auth options for the service
user (``auth_type = password``, ``auth_url``, ``username``, ``password``,
``user_domain_id``, ``system_scope = all``, ``cafile``, ``valid_interfaces``, ...),
read by keystoneauth itself.

The rules are oslo.limit's flat model: a project limit of the endpoint's service and
region wins over the registered (default) limit; a resource with neither has limit 0
(nothing allowed); -1 is unlimited. Sizes are MiB in Keystone and bytes here.

oslo.limit itself is not used: it reads the process-global ``cfg.CONF`` and keeps one
global connection, where Glimpse passes explicit settings; and it has no cache between
enforcements. Here limits are cached per project for ``keystone_limits_cache_time``
seconds, and Keystone is asked from a small thread pool of its own, never on the event
loop. Keystone unreachable, or refusing the service user, is 503 (never "no limit").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from keystoneauth1 import adapter, loading
from keystoneauth1 import exceptions as ksa_exceptions
from oslo_config import cfg

from glimpse.domain.errors import IdentityUnavailable
from glimpse.domain.quotas import BYTE_RESOURCES, MIB, UNIFIED_RESOURCES

log = logging.getLogger(__name__)

GROUP = "oslo_limit"


@dataclass(frozen=True)
class EndpointChoice:
    """Which image endpoint's limits apply (the oslo.limit ``endpoint_*`` options)."""

    endpoint_id: str | None = None
    service_type: str | None = None
    service_name: str | None = None
    region_name: str | None = None
    interface: str = "public"


@dataclass(frozen=True)
class _Scope:
    service_id: str
    region_id: str | None


class KeystoneLimits:
    unified = True

    def __init__(
        self,
        config_files: Sequence[str],
        endpoint: EndpointChoice,
        *,
        cache_seconds: float = 30,
        max_threads: int = 4,
    ) -> None:
        conf = cfg.ConfigOpts()
        conf(args=[], default_config_files=list(config_files), project="glimpse")
        loading.register_session_conf_options(conf, GROUP)
        loading.register_auth_conf_options(conf, GROUP)
        loading.register_adapter_conf_options(conf, GROUP, include_deprecated=False)
        try:
            auth = loading.load_auth_from_conf_options(conf, GROUP)
        except ksa_exceptions.ClientException as exc:
            raise ValueError(f"[{GROUP}]: {exc}") from exc
        if auth is None:
            raise ValueError(
                f"use_keystone_limits needs the service user's credentials in [{GROUP}] "
                "(auth_type = password, auth_url, username, password, user_domain_id, "
                "system_scope = all); see docs/keystone.md"
            )
        section = conf[GROUP]
        session = loading.load_session_from_conf_options(conf, GROUP, auth=auth)
        self._identity = adapter.Adapter(
            session,
            service_type="identity",
            interface=section.valid_interfaces,
            region_name=section.region_name,
            endpoint_override=section.endpoint_override,
            version="3",
        )
        self._endpoint = endpoint
        self._cache_seconds = cache_seconds
        self._executor = ThreadPoolExecutor(max_threads, thread_name_prefix="keystone-limits")
        self._scope: _Scope | None = None
        self._registered: tuple[float, dict[str, int]] | None = None
        self._projects: dict[str, tuple[float, dict[str, int]]] = {}

    async def limits(self, project_id: str | None) -> dict[str, int]:
        loop = asyncio.get_running_loop()
        try:
            raw = await loop.run_in_executor(self._executor, self._limits, project_id)
        except ksa_exceptions.ClientException as exc:
            log.error("could not read unified limits from Keystone: %s", exc)
            raise IdentityUnavailable(
                "The Keystone service is temporarily unavailable: project limits cannot "
                "be read."
            ) from exc
        return {
            name: value * MIB if name in BYTE_RESOURCES and value > 0 else value
            for name, value in raw.items()
        }

    # -- worker threads ----------------------------------------------------------------

    def _limits(self, project_id: str | None) -> dict[str, int]:
        now = time.monotonic()
        if self._registered is None or self._registered[0] <= now:
            self._registered = (now + self._cache_seconds, self._fetch_registered())
        result = {name: 0 for name in UNIFIED_RESOURCES}
        result.update(self._registered[1])
        if project_id is not None:
            cached = self._projects.get(project_id)
            if cached is None or cached[0] <= now:
                cached = (now + self._cache_seconds, self._fetch_project(project_id))
                self._projects[project_id] = cached
            result.update(cached[1])
        return result

    def _fetch_registered(self) -> dict[str, int]:
        body = self._get("/registered_limits", {})
        return {
            item["resource_name"]: int(item["default_limit"])
            for item in body.get("registered_limits", [])
            if item["resource_name"] in UNIFIED_RESOURCES
        }

    def _fetch_project(self, project_id: str) -> dict[str, int]:
        body = self._get("/limits", {"project_id": project_id})
        return {
            item["resource_name"]: int(item["resource_limit"])
            for item in body.get("limits", [])
            if item["resource_name"] in UNIFIED_RESOURCES
            and item.get("project_id") in (None, project_id)
        }

    def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        scope = self._resolve_scope()
        query = {"service_id": scope.service_id, **params}
        if scope.region_id is not None:
            query["region_id"] = scope.region_id
        body: dict[str, Any] = self._identity.get(path, params=query).json()
        return body

    def _resolve_scope(self) -> _Scope:
        """The image service and region the limits are registered for, found once:
        in the service user's token catalog, else through the endpoints API."""
        if self._scope is None:
            self._scope = self._from_catalog() or self._from_api()
        return self._scope

    def _from_catalog(self) -> _Scope | None:
        wanted = self._endpoint
        access = self._identity.session.auth.get_access(self._identity.session)  # type: ignore[union-attr]
        matches = []
        for service in access.service_catalog.catalog or []:
            if wanted.endpoint_id is None and not self._service_matches(service):
                continue
            for endpoint in service.get("endpoints", []):
                if self._endpoint_matches(endpoint):
                    matches.append(_Scope(service["id"], endpoint.get("region_id")))
        return matches[0] if len(matches) == 1 else None

    def _from_api(self) -> _Scope:
        wanted = self._endpoint
        if wanted.endpoint_id is not None:
            try:
                endpoint = self._identity.get(f"/endpoints/{wanted.endpoint_id}").json()
            except ksa_exceptions.NotFound:
                raise ksa_exceptions.ClientException(
                    f"[{GROUP}] endpoint_id {wanted.endpoint_id} is not in Keystone"
                ) from None
            found = endpoint["endpoint"]
            return _Scope(found["service_id"], found.get("region_id"))
        filters = {k: v for k, v in (("type", wanted.service_type),
                                     ("name", wanted.service_name)) if v}
        services = self._identity.get("/services", params=filters).json()["services"]
        if len(services) != 1:
            raise ksa_exceptions.ClientException(
                f"[{GROUP}] endpoint_service_type/name match {len(services)} services"
            )
        params = {"service_id": services[0]["id"], "interface": self._interface()}
        if wanted.region_name:
            params["region_id"] = wanted.region_name
        endpoints = self._identity.get("/endpoints", params=params).json()["endpoints"]
        if len(endpoints) != 1:
            raise ksa_exceptions.ClientException(
                f"[{GROUP}] the image service has {len(endpoints)} {self._interface()} "
                "endpoints there; set endpoint_id or endpoint_region_name"
            )
        return _Scope(services[0]["id"], endpoints[0].get("region_id"))

    def _service_matches(self, service: dict[str, Any]) -> bool:
        wanted = self._endpoint
        if wanted.service_type and service.get("type") != wanted.service_type:
            return False
        return not (wanted.service_name and service.get("name") != wanted.service_name)

    def _endpoint_matches(self, endpoint: dict[str, Any]) -> bool:
        wanted = self._endpoint
        if wanted.endpoint_id is not None:
            return bool(endpoint.get("id") == wanted.endpoint_id)
        if endpoint.get("interface") != self._interface():
            return False
        return not (wanted.region_name and endpoint.get("region_id") != wanted.region_name)

    def _interface(self) -> str:
        # oslo.limit accepts the v2 names (publicURL) and drops the suffix.
        interface = self._endpoint.interface
        return interface[:-3] if interface.endswith("URL") else interface
