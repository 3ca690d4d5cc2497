"""create_app: the Starlette application, its middleware listed here in order."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from glimpse.api.errors import error_response, handle_domain_error, handle_unexpected
from glimpse.api.middleware.context import ContextMiddleware
from glimpse.api.routes import ROUTES
from glimpse.api.state import ApiState
from glimpse.domain.errors import GlimpseError


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers) if exc.headers else None
    message = exc.detail if exc.status_code != 404 else "The resource could not be found."
    return error_response(request, exc.status_code, message, headers)


def create_app(
    api_state: ApiState,
    lifespan: Callable[[], AbstractAsyncContextManager[None]] | None = None,
) -> Starlette:
    @asynccontextmanager
    async def run(_app: Starlette) -> AsyncIterator[None]:
        if lifespan is None:
            yield
            return
        async with lifespan():
            yield

    handlers: dict[type[Exception] | int, Callable[[Request, Exception], Awaitable[Response]]] = {
        GlimpseError: handle_domain_error,
        HTTPException: _http_error,
        Exception: handle_unexpected,
    }
    app = Starlette(
        routes=ROUTES,
        middleware=[
            Middleware(
                ContextMiddleware,
                authenticator=api_state.authenticator,
                policy=api_state.services.images.policy,
                max_request_id_length=api_state.options.max_request_id_length,
            )
        ],
        exception_handlers=handlers,
        lifespan=run,
    )
    # Glance's router has no trailing-slash redirects: GET or DELETE /v2/images/ is 404
    # (an empty image id), not a redirect to the list and then 405.
    app.router.redirect_slashes = False
    app.state.glimpse = api_state
    return app
