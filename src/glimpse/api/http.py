"""Request parsing shared by every v2 handler: JSON bodies, the caller, path ids."""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from glimpse.domain.errors import InvalidInput, RequestTooLarge, UnsupportedMediaType
from glimpse.policy.context import RequestContext

JSON = "application/json"
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def context(request: Request) -> RequestContext:
    ctx = request.scope["glimpse.context"]
    assert isinstance(ctx, RequestContext)
    return ctx


async def read_json(
    request: Request, *, max_size: int, content_types: tuple[str, ...] | None = None
) -> Any:
    """The JSON body. Like Glance, any Content-Type is read as JSON unless the
    endpoint names the types it takes (PATCH)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_types is not None and content_type and content_type not in content_types:
        raise UnsupportedMediaType(
            f"Unsupported Content-Type {content_type!r}; expected one of: "
            + ", ".join(content_types)
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_size:
        raise RequestTooLarge(f"Request body is larger than {max_size} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_size:
            raise RequestTooLarge(f"Request body is larger than {max_size} bytes.")
    if not body:
        raise InvalidInput("Body expected in request.")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"Malformed JSON in request body: {exc}") from None
    if b"\\u0000" in body:
        _refuse_nul(value)
    return value


def _refuse_nul(value: Any) -> None:
    """No database stores NUL in text (PostgreSQL refuses it): a clear 400, not a 500."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise InvalidInput("NUL characters are not allowed in request bodies.")
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def json_response(
    data: object, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(data), status, headers=headers, media_type="application/json")


def is_uuid(value: str) -> bool:
    return bool(_UUID.match(value))
