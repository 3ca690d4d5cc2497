"""Store discovery, removing one copy, and the service-only locations API."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from glimpse.api.http import context, json_response, read_json
from glimpse.api.state import state
from glimpse.domain.errors import InvalidInput
from glimpse.services.stores import StoreInfo


def _store_view(info: StoreInfo, detail: bool) -> dict[str, Any]:
    view: dict[str, Any] = {"id": info.id}
    if info.description:
        view["description"] = info.description
    if info.default:
        view["default"] = "true"
    if info.read_only:
        view["read-only"] = "true"
    if detail:
        view.update(type=info.type, weight=info.weight, properties=info.properties)
    return view


async def list_stores(request: Request) -> Response:
    stores = state(request).services.stores.list_stores()
    return json_response({"stores": [_store_view(s, False) for s in stores]})


async def stores_detail(request: Request) -> Response:
    stores = state(request).services.stores.stores_detail(context(request))
    return json_response({"stores": [_store_view(s, True) for s in stores]})


async def delete_from_store(request: Request) -> Response:
    await state(request).services.stores.delete_from_store(
        context(request), request.path_params["store_id"], request.path_params["image_id"]
    )
    return Response(status_code=204)


async def list_locations(request: Request) -> Response:
    locations = await state(request).services.stores.list_locations(
        context(request), request.path_params["image_id"]
    )
    return json_response([{"url": loc.url, "metadata": loc.metadata} for loc in locations])


async def add_location(request: Request) -> Response:
    st = state(request)
    body = await read_json(request, max_size=st.options.max_request_body_size)
    if not isinstance(body, dict) or not isinstance(body.get("url"), str):
        raise InvalidInput("A location needs a 'url' string.")
    unknown = set(body) - {"url", "validation_data"}
    if unknown:
        raise InvalidInput(f"Unexpected members in location: {', '.join(sorted(unknown))}")
    validation = body.get("validation_data")
    if validation is not None and not (
        isinstance(validation, dict) and all(isinstance(v, str) for v in validation.values())
    ):
        raise InvalidInput("validation_data must be an object of strings.")
    await st.services.stores.add_location(
        context(request), request.path_params["image_id"], body["url"], validation
    )
    return Response(status_code=202)
