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


class ContextMiddleware:
    def __init__(self, app: ASGIApp, authenticator: Authenticator, policy: PolicyEnforcer) -> None:
        self.app = app
        self.authenticator = authenticator
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req-{uuid.uuid4()}"
        path: str = scope["path"]
        match = _VERSIONED.match(path)
        if match:
            # /v2.1/images ... /v2.17/images are all the one v2 API, as in Glance.
            scope = dict(scope, path="/v2" + path[match.end() - len(match.group(2)):])
            path = scope["path"]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-openstack-request-id", request_id.encode()))
                message = dict(message, headers=headers)
            await send(message)

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
