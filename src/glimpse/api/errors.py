"""The one table from domain errors to HTTP statuses, and the one handler using it.

Bodies look like the ones Glance's WSGI stack (webob) produces, because clients parse
them: HTML by default (glanceclient turns it into "404 Not Found: <message>"), JSON
when the caller asks for JSON only.
"""

from __future__ import annotations

import html
import logging
from http import HTTPStatus

import orjson
from starlette.requests import Request
from starlette.responses import Response

from glimpse.domain import errors as e

log = logging.getLogger(__name__)

# Most specific first: the first class an error is an instance of decides.
STATUS_OF: tuple[tuple[type[e.GlimpseError], int], ...] = (
    (e.RangeNotSatisfiable, 416),
    (e.UnsupportedMediaType, 415),
    # Glance (since 2024.2) answers data that fails inspection with 415.
    (e.UnsafeImage, 415),
    (e.StoreFull, 413),
    (e.LimitExceeded, 413),
    (e.ImageGone, 410),
    (e.Conflict, 409),
    (e.StoreNotFound, 400),
    (e.NotFound, 404),
    (e.Unauthenticated, 401),
    (e.Forbidden, 403),
    (e.InvalidInput, 400),
    (e.StoreUnavailable, 503),
    (e.IdentityUnavailable, 503),
)


def status_of(error: e.GlimpseError) -> int:
    for cls, status in STATUS_OF:
        if isinstance(error, cls):
            return status
    return 500


def error_response(request: Request | None, status: int, message: str,
                   headers: dict[str, str] | None = None) -> Response:
    phrase = HTTPStatus(status).phrase
    code = f"{status} {phrase}"
    accept = request.headers.get("accept", "") if request is not None else ""
    if "application/json" in accept and "html" not in accept:
        body = orjson.dumps({"message": f"{message}<br /><br />\n", "code": code, "title": phrase})
        return Response(body, status, headers=headers, media_type="application/json")
    text = (
        f"<html>\n <head>\n  <title>{code}</title>\n </head>\n <body>\n  <h1>{code}</h1>\n"
        f"  {html.escape(message)}<br /><br />\n\n\n\n </body>\n</html>"
    )
    return Response(text, status, headers=headers, media_type="text/html")


async def handle_domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, e.GlimpseError)
    status = status_of(exc)
    headers = None
    if isinstance(exc, e.RangeNotSatisfiable) and exc.size is not None:
        headers = {"Content-Range": f"bytes */{exc.size}"}
    if isinstance(exc, e.Unauthenticated):
        headers = {"WWW-Authenticate": exc.challenge or 'Keystone uri="local"'}
    if isinstance(exc, e.UnsupportedMediaType) and request.method == "PATCH":
        headers = {
            "Accept-Patch": "application/openstack-images-v2.0-json-patch, "
            "application/openstack-images-v2.1-json-patch"
        }
    return error_response(request, status, exc.message, headers)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(
        request, 500, "The server has either erred or is incapable of performing the "
        "requested operation."
    )
