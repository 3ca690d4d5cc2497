"""``/v2/images/{id}/members``: sharing an image with other projects."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from glimpse.api.http import context, json_response, read_json
from glimpse.api.state import state
from glimpse.api.v2.images import isotime
from glimpse.domain.errors import InvalidInput
from glimpse.domain.image import Member


def member_view(member: Member) -> dict[str, Any]:
    return {
        "member_id": member.member_id,
        "image_id": member.image_id,
        "status": member.status,
        "created_at": isotime(member.created_at),
        "updated_at": isotime(member.updated_at),
        "schema": "/v2/schemas/member",
    }


async def add_member(request: Request) -> Response:
    st = state(request)
    body = await read_json(request, max_size=st.options.max_request_body_size)
    if not isinstance(body, dict) or "member" not in body:
        raise InvalidInput("Member to be added not specified")
    member_id = body["member"]
    if not isinstance(member_id, str):
        raise InvalidInput("Member must be a string project id.")
    member = await st.services.members.add_member(
        context(request), request.path_params["image_id"], member_id
    )
    return json_response(member_view(member))


async def list_members(request: Request) -> Response:
    st = state(request)
    members = await st.services.members.list_members(
        context(request), request.path_params["image_id"]
    )
    return json_response(
        {"members": [member_view(m) for m in members], "schema": "/v2/schemas/members"}
    )


async def show_member(request: Request) -> Response:
    st = state(request)
    member = await st.services.members.get_member(
        context(request), request.path_params["image_id"], request.path_params["member_id"]
    )
    return json_response(member_view(member))


async def update_member(request: Request) -> Response:
    st = state(request)
    body = await read_json(request, max_size=st.options.max_request_body_size)
    if not isinstance(body, dict) or "status" not in body:
        raise InvalidInput("Status not specified")
    st.schemas.validate_member({"status": body["status"]})
    member = await st.services.members.update_member(
        context(request),
        request.path_params["image_id"],
        request.path_params["member_id"],
        body["status"],
    )
    return json_response(member_view(member))


async def delete_member(request: Request) -> Response:
    await state(request).services.members.delete_member(
        context(request), request.path_params["image_id"], request.path_params["member_id"]
    )
    return Response(status_code=204)
