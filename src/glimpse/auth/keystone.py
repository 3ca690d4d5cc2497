"""keystone: Keystone tokens, validated by keystonemiddleware's auth_token.

No token is checked by hand here. keystonemiddleware's ``AuthProtocol`` is built from
the operator's ``[keystone_authtoken]`` section, read from the same config files as the
rest of Glimpse, so every one of its options works as in Glance: www_authenticate_uri,
auth_url, auth_type = password with the service user's credentials, memcached_servers
(or its in-process token cache), service_token_roles, delay_auth_decision, ...

Each request's token headers go through ``AuthProtocol`` wrapped around a tiny WSGI app
that keeps the environ auth_token produced (X-Identity-Status, X-User-Id, X-Project-Id,
X-Roles, X-Domain-Id, OpenStack-System-Scope, X-Service-Roles ...). That call may wait on
Keystone, so it runs in a worker thread of its own pool, never on the event loop, and
never taking the threads that hash image data.

Outcomes: a confirmed token -> RequestContext; no or an invalid token -> Unauthenticated
carrying auth_token's own ``WWW-Authenticate: Keystone uri="..."``; Keystone unreachable
-> IdentityUnavailable (503, as auth_token answers).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from keystonemiddleware import auth_token
from oslo_config import cfg

from glimpse.domain.errors import IdentityUnavailable, Unauthenticated
from glimpse.policy.context import RequestContext

GROUP = "keystone_authtoken"
# Request headers auth_token reads: the user's token (X-Storage-Token is its old
# alias) and a service token sent along by another service (Nova, Cinder).
_TOKEN_HEADERS = ("x-auth-token", "x-storage-token", "x-service-token")
_CAPTURE_KEY = "glimpse.keystone.captured"
_UNAUTHENTICATED = "The request you have made requires authentication."

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


@dataclass(frozen=True)
class _Outcome:
    status: int
    headers: tuple[tuple[str, str], ...]
    environ: Mapping[str, Any] | None


def _identity_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The app auth_token protects: keep what it set, and refuse unconfirmed callers.

    With ``delay_auth_decision = true`` auth_token passes unauthenticated requests on;
    answering 401 lets it add its WWW-Authenticate header, as it would for Glance.
    """
    environ[_CAPTURE_KEY].append(environ)
    if environ.get("HTTP_X_IDENTITY_STATUS") != "Confirmed":
        start_response("401 Unauthorized", [("Content-Type", "text/plain")])
        return [b""]
    start_response("204 No Content", [])
    return []


class KeystoneAuth:
    def __init__(self, config_files: Sequence[str], *, max_threads: int = 16) -> None:
        conf = cfg.ConfigOpts()
        conf(args=[], default_config_files=list(config_files), project="glimpse")
        if GROUP not in conf.list_all_sections():
            raise ValueError(
                "auth_strategy = keystone needs a [keystone_authtoken] section in the "
                "config files (www_authenticate_uri, auth_url, auth_type and the service "
                "user); see docs/keystone.md"
            )
        self._protocol = auth_token.AuthProtocol(_identity_app, {"oslo_config_config": conf})
        self._executor = ThreadPoolExecutor(max_threads, thread_name_prefix="keystone-auth")

    async def authenticate(self, headers: Mapping[str, str], request_id: str) -> RequestContext:
        tokens = {name: headers[name] for name in _TOKEN_HEADERS if headers.get(name)}
        loop = asyncio.get_running_loop()
        outcome = await loop.run_in_executor(self._executor, self._validate, tokens)
        if outcome.status == 503:
            raise IdentityUnavailable("The Keystone service is temporarily unavailable.")
        if outcome.status == 401 or outcome.environ is None:
            challenge = next(
                (v for k, v in outcome.headers if k.lower() == "www-authenticate"), None
            )
            raise Unauthenticated(_UNAUTHENTICATED, challenge)
        if outcome.status >= 300:
            raise RuntimeError(f"keystonemiddleware answered {outcome.status}")
        return context_from_environ(outcome.environ, request_id)

    def _validate(self, tokens: Mapping[str, str]) -> _Outcome:
        """Run auth_token on a request carrying only the token headers (worker thread)."""
        captured: list[dict[str, Any]] = []
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/",
            "QUERY_STRING": "",
            "SERVER_NAME": "glimpse",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(),
            "wsgi.errors": io.StringIO(),
            "wsgi.version": (1, 0),
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            _CAPTURE_KEY: captured,
        }
        for name, value in tokens.items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        response: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], *_: Any) -> None:
            response["status"] = int(status.split(" ", 1)[0])
            response["headers"] = tuple(headers)

        body = self._protocol(environ, start_response)
        try:
            for _chunk in body:
                pass
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        status = int(response.get("status", 500))
        identity = captured[-1] if captured and status < 300 else None
        return _Outcome(status, response.get("headers", ()), identity)


def context_from_environ(environ: Mapping[str, Any], request_id: str) -> RequestContext:
    """The caller as auth_token described it (the headers oslo.context reads in Glance)."""

    def value(name: str) -> str | None:
        raw = environ.get("HTTP_" + name)
        return str(raw) if raw else None

    def names(name: str) -> tuple[str, ...]:
        return tuple(r.strip() for r in (value(name) or "").split(",") if r.strip())

    return RequestContext(
        user_id=value("X_USER_ID"),
        project_id=value("X_PROJECT_ID"),
        roles=names("X_ROLES"),
        domain_id=value("X_DOMAIN_ID"),
        system_scope=value("OPENSTACK_SYSTEM_SCOPE"),
        request_id=request_id,
        auth_token=value("X_AUTH_TOKEN") or value("X_STORAGE_TOKEN"),
        service_roles=names("X_SERVICE_ROLES"),
        service_catalog=value("X_SERVICE_CATALOG"),
    )
