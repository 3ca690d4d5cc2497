"""Schemas, the versions document and the health check: documents with no service behind."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from glimpse.api.http import json_response
from glimpse.api.state import state

# Versions 2.0 .. 2.18; 2.8 and 2.10-2.13 only when several stores are configured,
# 2.14, 2.16 and 2.18 (cache clean and prune) only when the image cache is enabled,
# as Glance advertises them.
_MULTISTORE_ONLY = {"2.8", "2.10", "2.11", "2.12", "2.13"}
_CACHE_ONLY = {"2.14", "2.16", "2.18"}


def _versions(request: Request) -> list[dict[str, Any]]:
    st = state(request)
    base = (st.options.public_endpoint or str(request.base_url)).rstrip("/")
    minors = [
        f"2.{n}"
        for n in range(19)
        if (st.services.cache.enabled or f"2.{n}" not in _CACHE_ONLY)
        and (st.options.multistore or f"2.{n}" not in _MULTISTORE_ONLY)
    ]
    current = minors[-1]
    result = []
    for version in reversed(minors):
        result.append(
            {
                "id": f"v{version}",
                "status": "CURRENT" if version == current else "SUPPORTED",
                "links": [{"rel": "self", "href": f"{base}/v2/"}],
            }
        )
    return result


async def versions_root(request: Request) -> Response:
    return json_response({"versions": _versions(request)}, 300)


async def versions(request: Request) -> Response:
    return json_response({"versions": _versions(request)})


async def image_schema(request: Request) -> Response:
    return json_response(state(request).schemas.image)


async def images_schema(request: Request) -> Response:
    return json_response(state(request).schemas.images)


async def member_schema(request: Request) -> Response:
    return json_response(state(request).schemas.member)


async def members_schema(request: Request) -> Response:
    return json_response(state(request).schemas.members)


async def healthcheck(request: Request) -> Response:
    """Plain "OK" as Glance's healthcheck; JSON with each store's state on request."""
    health = await state(request).services.health.check()
    status = 200 if health.ok else 503
    if "application/json" in request.headers.get("accept", ""):
        return json_response(
            {
                "status": "OK" if health.ok else "FAILED",
                "database": "OK" if health.database_ok else "FAILED",
                "stores": {
                    sid: {"readable": r, "writable": w} for sid, (r, w) in health.stores.items()
                },
            },
            status,
        )
    return PlainTextResponse("OK" if health.ok else "database unavailable", status)
