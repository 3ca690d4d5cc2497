"""Schemas, the versions document and the health check: documents with no service behind."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from glimpse.api.http import context, json_response
from glimpse.api.state import state
from glimpse.services.health import Space

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


async def usage(request: Request) -> Response:
    """GET /v2/info/usage: the caller's project's unified limits and usage (Glance has
    no policy rule for it); ``{"usage": {}}`` without use_keystone_limits, as Glance."""
    report = await state(request).services.quotas.usage(context(request))
    return json_response({"usage": report})


async def healthcheck(request: Request) -> Response:
    """Plain "OK" as Glance's healthcheck; JSON with each store's state on request (and,
    with ``[healthcheck] detailed``, latency and free space)."""
    health = await state(request).services.health.check()
    status = 200 if health.ok else 503
    if health.disabled:
        reason = "DISABLED BY FILE"
    elif not health.database_ok:
        reason = "database unavailable"
    else:
        reason = "OK"
    if "application/json" not in request.headers.get("accept", ""):
        return PlainTextResponse(reason, status)
    body: dict[str, Any] = {
        "status": "OK" if health.ok else "FAILED",
        "reason": reason,
        "database": "OK" if health.database_ok else "FAILED",
        "stores": {
            sid: {"readable": s.readable, "writable": s.writable}
            for sid, s in health.stores.items()
        },
    }
    if state(request).services.health.detailed:
        body["detail"] = {
            "database_ms": round(health.database_ms, 2),
            "stores": {sid: s.detail for sid, s in health.stores.items() if s.detail},
            "staging": _space(health.staging),
            "cache": None if health.cache is None else {
                **_space(health.cache.space),
                "max_size": health.cache.max_size,
                "cached_images": health.cache.cached_images,
                "cached_bytes": health.cache.cached_bytes,
            },
        }
    return json_response(body, status)


def _space(space: Space | None) -> dict[str, Any]:
    if space is None:
        return {}
    return {"path": space.path, "free_bytes": space.free_bytes,
            "total_bytes": space.total_bytes}
