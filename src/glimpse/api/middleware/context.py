"""ASGI middleware: request id on every response, the caller's context on every request.

Kept as plain ASGI (not BaseHTTPMiddleware) so request and response bodies stream
through untouched.
"""

from __future__ import annotations

import re
import uuid

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from glimpse.api.errors import error_response
from glimpse.auth.base import Authenticator
from glimpse.domain.errors import IdentityUnavailable, Unauthenticated
from glimpse.policy.enforcer import PolicyEnforcer

_PUBLIC_PATHS = {"/", "/versions", "/healthcheck"}
_VERSIONED = re.compile(r"^/v2\.(\d{1,2})(/|$)")
_ANY_VERSION = re.compile(r"^/v\d+(\.\d+)?(/|$)")
_NEWEST_MINOR = 18
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:-]+$")
# Glance's (eventlet's) max_header_line: longer lines are refused, not buffered on.
MAX_HEADER_LINE = 16384


class ContextMiddleware:
    def __init__(
        self, app: ASGIApp, authenticator: Authenticator, policy: PolicyEnforcer,
        max_request_id_length: int = 64,
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.policy = policy
        self.max_request_id_length = max_request_id_length

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req-{uuid.uuid4()}"
        too_long = ""
        for name, value in scope["headers"]:
            if len(name) + len(value) + 2 > MAX_HEADER_LINE:
                too_long = "Header line too long: " + name.decode("latin-1")[:64]
            elif name == b"x-openstack-request-id":
                # A caller's request id is kept, as Glance does, so logs can be joined.
                incoming = value.decode("latin-1")
                if len(incoming) > self.max_request_id_length:
                    too_long = "x-openstack-request-id is too long"
                elif _REQUEST_ID.match(incoming):
                    request_id = incoming
        path: str = scope["path"]
        match = _VERSIONED.match(path)
        if match and int(match.group(1)) <= _NEWEST_MINOR:
            # /v2.1/images ... /v2.18/images are all the one v2 API, as in Glance.
            scope = dict(scope, path="/v2" + path[match.end() - len(match.group(2)):])
            path = scope["path"]
        elif _ANY_VERSION.match(path) and not (path == "/v2" or path.startswith("/v2/")):
            # A version we do not serve (/v1, /v3, /v2.99): Glance's version negotiation
            # answers with the versions document (300), so clients can pick one.
            scope = dict(scope, path="/")
            path = "/"

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-openstack-request-id", request_id.encode()))
                message = dict(message, headers=headers)
            await send(message)

        if too_long:
            status = 431 if "request-id" in too_long else 400
            response = error_response(Request(scope), status, too_long)
            await response(scope, receive, send_with_id)
            return
        if "\x00" in path or b"%00" in scope.get("query_string", b""):
            # No database stores NUL in text (PostgreSQL refuses it): refuse it up front.
            response = error_response(
                Request(scope), 400, "NUL characters are not allowed in request URLs."
            )
            await response(scope, receive, send_with_id)
            return
        if path not in _PUBLIC_PATHS:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                       for k, v in scope["headers"]}
            try:
                ctx = await self.authenticator.authenticate(headers, request_id)
            except Unauthenticated as exc:
                challenge = exc.challenge or 'Keystone uri="local"'
                response = error_response(Request(scope), 401, exc.message,
                                          {"WWW-Authenticate": challenge})
                await response(scope, receive, send_with_id)
                return
            except IdentityUnavailable as exc:
                response = error_response(Request(scope), 503, exc.message)
                await response(scope, receive, send_with_id)
                return
            scope = dict(scope)
            scope["glimpse.context"] = self.policy.with_admin(ctx)
        await self.app(scope, receive, send_with_id)
