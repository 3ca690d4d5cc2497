"""Staging, import, import discovery, and the tasks that follow imports."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from glimpse.api.forwarding import forward, was_forwarded
from glimpse.api.http import context, json_response, read_json
from glimpse.api.state import state
from glimpse.api.v2.image_data import declared_size, request_chunks, required_octet_stream
from glimpse.api.v2.images import isotime
from glimpse.domain.errors import InvalidInput
from glimpse.domain.image import Task
from glimpse.services.imports import ImportRequest


async def stage(request: Request) -> Response:
    required_octet_stream(request)
    await state(request).services.imports.stage(
        context(request), request.path_params["image_id"], request_chunks(request),
        declared_size(request),
    )
    return Response(status_code=204)


async def import_image(request: Request) -> Response:
    st = state(request)
    body = await read_json(request, max_size=st.options.max_request_body_size)
    if not isinstance(body, dict):
        raise InvalidInput("Request body must be a JSON object.")
    method = body.get("method")
    if not isinstance(method, dict) or not isinstance(method.get("name"), str):
        raise InvalidInput("Import request requires a 'method' object with a 'name'.")
    uri = method.get("uri")
    if uri is not None and not isinstance(uri, str):
        raise InvalidInput("method.uri must be a string.")
    stores = body.get("stores")
    if stores is None and request.headers.get("x-image-meta-store"):
        stores = [request.headers["x-image-meta-store"]]
    if stores is not None and (
        not isinstance(stores, list) or not all(isinstance(s, str) for s in stores)
    ):
        raise InvalidInput("stores must be a list of store identifiers.")
    remote = {}
    for name in ("glance_region", "glance_image_id", "glance_service_interface"):
        value = method.get(name)
        if value is not None and not isinstance(value, str):
            raise InvalidInput(f"method.{name} must be a string.")
        if value:
            remote[name] = value
    all_stores = _flag(body, "all_stores", False)
    must_succeed = _flag(body, "all_stores_must_succeed", True)
    ctx = context(request)
    imports = st.services.imports
    if method["name"] == "glance-direct" and not was_forwarded(request):
        host = await imports.stage_host(ctx, request.path_params["image_id"])
        if host is not None:
            # The staged data is on that node: it runs the import, with the caller's
            # credentials, as if called there.
            return await forward(
                request, host, orjson.dumps(body), self_url=imports.self_url,
                request_id=ctx.request_id,
            )
    await imports.import_image(
        ctx,
        request.path_params["image_id"],
        ImportRequest(
            method=method["name"], uri=uri, stores=tuple(stores) if stores else None,
            all_stores=all_stores, all_stores_must_succeed=must_succeed,
            **remote,
        ),
    )
    return Response(status_code=202)


def _flag(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    # Older clients send the booleans as strings (Glance bug 1863879).
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be a boolean.")
    return value


async def import_info(request: Request) -> Response:
    methods = state(request).services.imports.import_methods()
    return json_response(
        {
            "import-methods": {
                "description": "Import methods available.",
                "type": "array",
                "value": list(methods),
            }
        }
    )


def task_view(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "type": task.type,
        "status": task.status,
        "owner": task.owner,
        "input": task.input,
        "result": task.result,
        "message": task.message,
        "expires_at": isotime(task.expires_at),
        "created_at": isotime(task.created_at),
        "updated_at": isotime(task.updated_at),
        "image_id": task.image_id,
        "request_id": task.request_id,
        "user_id": task.user_id,
        "self": f"/v2/tasks/{task.id}",
        "schema": "/v2/schemas/task",
    }


async def image_tasks(request: Request) -> Response:
    tasks = await state(request).services.imports.image_tasks(
        context(request), request.path_params["image_id"]
    )
    views = []
    for task in tasks:
        view = task_view(task)
        # Glance answers with its database rows here: request_id and user_id as named,
        # deleted flags, no links (Tempest reads task["request_id"]).
        del view["self"], view["schema"]
        view["deleted"] = False
        view["deleted_at"] = None
        views.append(view)
    return json_response({"tasks": views})


async def list_tasks(request: Request) -> Response:
    st = state(request)
    params = request.query_params
    try:
        limit = min(int(params.get("limit", st.options.limit_param_default)),
                    st.options.api_limit_max)
    except ValueError:
        raise InvalidInput("limit param must be an integer") from None
    if limit < 0:
        raise InvalidInput("limit param must be positive")
    sort_dir = params.get("sort_dir", "desc")
    if sort_dir not in ("asc", "desc"):
        raise InvalidInput("sort_dir must be asc or desc")
    status = params.get("status")
    if status is not None and status not in ("pending", "processing", "success", "failure"):
        raise InvalidInput(f"Invalid status value: {status}")
    tasks = await st.services.imports.list_tasks(
        context(request), status=status, limit=limit, marker=params.get("marker"),
        sort_dir=sort_dir,
    )
    result: dict[str, Any] = {
        "tasks": [{k: v for k, v in task_view(t).items()
                   if k not in ("input", "result", "message")} for t in tasks],
        "first": "/v2/tasks",
        "schema": "/v2/schemas/tasks",
    }
    if tasks and len(tasks) == limit:
        result["next"] = f"/v2/tasks?marker={tasks[-1].id}&limit={limit}"
    return json_response(result)


async def show_task(request: Request) -> Response:
    task = await state(request).services.imports.get_task(
        context(request), request.path_params["task_id"]
    )
    return json_response(task_view(task))


async def create_task(request: Request) -> Response:
    st = state(request)
    body = await read_json(request, max_size=st.options.max_request_body_size)
    await st.services.imports.create_task(context(request), body)
    return Response(status_code=201)


TASK_SCHEMA: dict[str, Any] = {
    "name": "task",
    "properties": {
        "id": {"type": "string", "description": "An identifier for the task",
               "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}"
                          "-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"},
        "type": {"type": "string", "description": "The type of task represented by this "
                 "content", "enum": ["import", "api_image_import", "location_import"]},
        "status": {"type": "string", "description": "The current status of this task",
                   "enum": ["pending", "processing", "success", "failure"]},
        "input": {"type": ["null", "object"], "description": "The parameters required by "
                  "task, JSON blob"},
        "result": {"type": ["null", "object"], "description": "The result of current task, "
                   "JSON blob"},
        "owner": {"type": "string", "description": "An identifier for the owner of this task"},
        "message": {"type": "string", "description": "Human-readable informative message "
                    "only included when appropriate (usually on failure)"},
        "image_id": {"type": "string", "description": "Image associated with the task"},
        "request_id": {"type": "string", "description": "Request ID that started the task"},
        "user_id": {"type": "string", "description": "User associated with the task"},
        "expires_at": {"type": ["null", "string"], "description": "Datetime when this "
                       "resource would be subject to removal"},
        "created_at": {"type": "string", "description": "Datetime when this resource was "
                       "created"},
        "updated_at": {"type": "string", "description": "Datetime when this resource was "
                       "updated"},
        "self": {"type": "string"},
        "schema": {"type": "string"},
    },
    "additionalProperties": False,
}


async def task_schema(request: Request) -> Response:
    return json_response(TASK_SCHEMA)


async def tasks_schema(request: Request) -> Response:
    return json_response(
        {
            "name": "tasks",
            "properties": {
                "tasks": {"type": "array", "items": TASK_SCHEMA},
                "first": {"type": "string"},
                "next": {"type": "string"},
                "schema": {"type": "string"},
            },
            "links": [
                {"rel": "first", "href": "{first}"},
                {"rel": "next", "href": "{next}"},
                {"rel": "describedby", "href": "{schema}"},
            ],
        }
    )
