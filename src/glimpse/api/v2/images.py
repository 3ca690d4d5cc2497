"""``/v2/images``: parse the request, call the image service, serialise as Glance does."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from glimpse.api.forwarding import forward, was_forwarded
from glimpse.api.http import context, json_response, read_json
from glimpse.api.state import ApiOptions, state
from glimpse.db.base import SORT_KEYS, Comparison, ImageQuery
from glimpse.domain.errors import Forbidden, InvalidInput, UnsupportedMediaType
from glimpse.domain.image import (
    READ_ONLY_FIELDS,
    RESERVED_FIELDS,
    RESERVED_PREFIX,
    VISIBILITIES,
    Image,
)
from glimpse.services.images import Patch

PATCH_TYPES = {
    "application/openstack-images-v2.1-json-patch": 10,
    "application/openstack-images-v2.0-json-patch": 4,
}
_DISALLOWED_IN_BODY = ("direct_url", "self", "file", "schema", "stores")
_CORE_CREATE_KEYS = (
    "id", "name", "visibility", "protected", "os_hidden", "owner", "min_disk", "min_ram",
    "disk_format", "container_format",
)
_SORT_KEYS_PUBLIC = (
    "name", "status", "container_format", "disk_format", "size", "id", "created_at",
    "updated_at",
)
_IN_FILTERS = ("name", "id", "status", "container_format", "disk_format")
_HIDDEN_PROPERTIES = ("os_glance_stage_host", "os_glance_hash_op_host")


def isotime(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.replace(tzinfo=None).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_view(image: Image, options: ApiOptions) -> dict[str, Any]:
    view: dict[str, Any] = {
        k: v for k, v in image.properties.items() if k not in _HIDDEN_PROPERTIES
    }
    view.update(
        id=image.id,
        name=image.name,
        status=image.status,
        visibility=image.visibility,
        protected=image.protected,
        os_hidden=image.os_hidden,
        checksum=image.checksum,
        os_hash_algo=image.os_hash_algo,
        os_hash_value=image.os_hash_value,
        owner=image.owner,
        size=image.size,
        virtual_size=image.virtual_size,
        container_format=image.container_format,
        disk_format=image.disk_format,
        created_at=isotime(image.created_at),
        updated_at=isotime(image.updated_at),
        min_ram=image.min_ram,
        min_disk=image.min_disk,
        tags=list(image.tags),
        self=f"/v2/images/{image.id}",
        file=f"/v2/images/{image.id}/file",
        schema="/v2/schemas/image",
    )
    locations = image.locations
    if options.multistore:
        # As Glance: highest store weight first (a stable sort: ties keep their order).
        locations = sorted(locations, key=lambda loc: -options.store_weights.get(loc.store, 0))
    if options.multistore and locations:
        view["stores"] = ",".join(dict.fromkeys(loc.store for loc in locations))
    if options.show_multiple_locations:
        view["locations"] = [{"url": loc.url, "metadata": loc.metadata} for loc in locations]
    if options.show_image_direct_url and locations:
        view["direct_url"] = locations[0].url
    return view


# -- create -------------------------------------------------------------------


async def create_image(request: Request) -> Response:
    st = state(request)
    body = await read_json(request, max_size=st.options.max_request_body_size)
    if not isinstance(body, dict):
        raise InvalidInput("Request body must be a JSON object.")
    for key in _DISALLOWED_IN_BODY:
        if key in body:
            raise Forbidden(f"Attribute '{key}' is read-only.")
    st.schemas.validate_image(body)
    for key in READ_ONLY_FIELDS - {"id"}:
        if key in body:
            raise Forbidden(f"Attribute '{key}' is read-only.")
    core = {k: body.pop(k) for k in _CORE_CREATE_KEYS if k in body}
    tags = body.pop("tags", [])
    _check_property_names(body)
    image = await st.services.images.create_image(context(request), core, body, tags)
    view = image_view(image, st.options)
    headers = {"Location": f"/v2/images/{image.id}"}
    methods = st.services.imports.import_methods()
    if methods:
        headers["OpenStack-image-import-methods"] = ",".join(methods)
    if st.options.multistore:
        headers["OpenStack-image-store-ids"] = ",".join(st.services.stores.store_ids())
    return json_response(view, 201, headers=headers)


def _check_property_names(properties: dict[str, Any]) -> None:
    for key in properties:
        _check_property_name(key)
        if key in RESERVED_FIELDS or key.startswith(RESERVED_PREFIX):
            raise Forbidden(f"Attribute '{key}' is reserved.")


def _check_property_name(key: str) -> None:
    if len(key) > 255:
        raise InvalidInput("Custom property should not be greater than 255 characters.")
    if not key or any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise InvalidInput(f"Invalid property name {key!r}: control characters are not allowed.")


# -- show / delete --------------------------------------------------------------


async def show_image(request: Request) -> Response:
    st = state(request)
    image = await st.services.images.get_image(context(request), request.path_params["image_id"])
    return json_response(image_view(image, st.options))


async def delete_image(request: Request) -> Response:
    st = state(request)
    ctx = context(request)
    image_id = request.path_params["image_id"]
    imports = st.services.imports
    host = None if was_forwarded(request) else await imports.stage_host(ctx, image_id)
    if host is not None:
        # The node holding the staged data deletes the image and its staged file. If it
        # cannot be reached the image is deleted here; that node reclaims the orphaned
        # file in its next periodic check (or when it starts again).
        answer = await forward(request, host, None, self_url=imports.self_url,
                               request_id=ctx.request_id)
        if answer.status_code < 500:
            return answer
    await st.services.images.delete_image(ctx, image_id)
    await imports.discard_staged(image_id)
    return Response(status_code=204)


# -- update (JSON patch) ----------------------------------------------------------


async def update_image(request: Request) -> Response:
    st = state(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in PATCH_TYPES:
        raise UnsupportedMediaType(
            "Image PATCH expects Content-Type one of: " + ", ".join(sorted(PATCH_TYPES))
        )
    body = await read_json(
        request, max_size=st.options.max_request_body_size, content_types=tuple(PATCH_TYPES)
    )
    if not isinstance(body, list):
        raise InvalidInput("Request body must be a JSON array of operation objects.")
    draft = PATCH_TYPES[content_type]
    patches = [_parse_change(raw, draft, st) for raw in body]
    image = await st.services.images.update_image(
        context(request), request.path_params["image_id"], patches
    )
    return json_response(image_view(image, st.options))


_OPS = ("add", "remove", "replace")


def _parse_change(raw: object, draft: int, st: Any) -> Patch:
    if not isinstance(raw, dict):
        raise InvalidInput("Operations must be JSON objects.")
    if draft == 10:
        op = raw.get("op")
        if op is None:
            raise InvalidInput(
                "Unable to find `op` in JSON Schema change. It must be one of the "
                "following: add, remove, replace."
            )
        if op not in _OPS:
            raise InvalidInput(
                f"Invalid operation: `{op}`. It must be one of the following: "
                "add, remove, replace."
            )
        if "path" not in raw:
            raise InvalidInput("Unable to find 'path' in JSON Schema change")
        pointer = raw["path"]
    else:
        present = [k for k in _OPS if k in raw]
        if len(present) != 1:
            raise InvalidInput(
                'Operation objects must contain exactly one member named "add", '
                '"remove", or "replace".'
            )
        op = present[0]
        pointer = raw[op]
    if not isinstance(pointer, str):
        raise InvalidInput("The path of a change must be a string.")
    path = _decode_pointer(pointer)
    depth = {"add": 2, "remove": 2, "replace": 1} if path[0] == "locations" else {}
    if len(path) != depth.get(op, 1):
        raise InvalidInput(f"Invalid JSON pointer for this resource: '/{'/'.join(path)}'")
    root = path[0]
    if root in READ_ONLY_FIELDS:
        raise Forbidden(f"Attribute '{root}' is read-only.")
    if root in RESERVED_FIELDS or root.startswith(RESERVED_PREFIX):
        raise Forbidden(f"Attribute '{root}' is reserved.")
    value = None
    if op != "remove":
        if "value" not in raw:
            raise InvalidInput(f'Operation "{op}" requires a member named "value".')
        value = raw["value"]
        # A location path names one element of the list (add), or the whole list.
        st.schemas.validate_image(
            {root: [value] if root == "locations" and op == "add" else value}
        )
        _check_property_name(root)
    return Patch(op=op, path=tuple(path), value=value, draft=draft)


def _decode_pointer(pointer: str) -> list[str]:
    if not pointer.startswith("/"):
        raise InvalidInput(f'Pointer `{pointer}` does not start with "/".')
    if re.search(r"/\s*?/", pointer[1:]):
        raise InvalidInput(f'Pointer `{pointer}` contains adjacent "/".')
    if len(pointer) > 1 and pointer.endswith("/"):
        raise InvalidInput(f'Pointer `{pointer}` end with "/".')
    if pointer[1:].strip() in ("/", ""):
        raise InvalidInput(f"Pointer `{pointer}` does not contains valid token.")
    if re.search("~[^01]", pointer) or pointer.endswith("~"):
        raise InvalidInput(
            f'Pointer `{pointer}` contains "~" not part of a recognized escape sequence.'
        )
    return [p.replace("~1", "/").replace("~0", "~").strip() for p in pointer[1:].split("/")]


# -- list -------------------------------------------------------------------------


async def list_images(request: Request) -> Response:
    st = state(request)
    ctx = context(request)
    params = request.query_params.multi_items()
    query, page_params = parse_list_query(params, ctx.project_id, ctx.is_admin, st.options)
    images = await st.services.images.list_images(ctx, query)
    result: dict[str, Any] = {
        "images": [image_view(i, st.options) for i in images],
        "first": "/v2/images" + (f"?{urlencode(page_params)}" if page_params else ""),
        "schema": "/v2/schemas/images",
    }
    if images and len(images) == query.limit:
        result["next"] = "/v2/images?" + urlencode([*page_params, ("marker", images[-1].id)])
    return json_response(result)


def parse_list_query(
    params: list[tuple[str, str]], project_id: str | None, is_admin: bool, options: ApiOptions
) -> tuple[ImageQuery, list[tuple[str, str]]]:
    """Turn Glance's list query string into an ImageQuery (400 on anything invalid)."""
    limit = options.limit_param_default
    marker = None
    sort_keys: list[str] = []
    sort_dirs: list[str] = []
    new_sort: str | None = None
    visibility: str | None = None
    member_status = "accepted"
    exact: dict[str, object] = {}
    any_of: dict[str, tuple[str, ...]] = {}
    properties: dict[str, str] = {}
    tags: list[str] = []
    size_min = size_max = None
    times: dict[str, list[Comparison]] = {}
    os_hidden: bool | None = False
    kept: list[tuple[str, str]] = []
    for key, value in params:
        if key != "marker":
            kept.append((key, value))
        if key == "limit":
            try:
                limit = int(value)
            except ValueError:
                raise InvalidInput("limit param must be an integer") from None
            if limit < 0:
                raise InvalidInput("limit param must be positive")
            # Any larger page size is capped, as Glance does, never refused.
            limit = min(limit, options.api_limit_max)
        elif key == "marker":
            marker = value
        elif key == "sort_key":
            sort_keys.append(value)
        elif key == "sort_dir":
            sort_dirs.append(value)
        elif key == "sort":
            new_sort = value
        elif key == "visibility":
            if value not in (*VISIBILITIES, "all"):
                raise InvalidInput(
                    f"Invalid visibility value: {value}; must be one of "
                    "public, private, shared, community, all"
                )
            visibility = value
        elif key == "member_status":
            if value not in ("pending", "accepted", "rejected", "all"):
                raise InvalidInput(
                    f"Invalid status value: {value}; must be one of accepted, pending, "
                    "rejected, all"
                )
            member_status = value
        elif key == "changes-since":
            raise InvalidInput("The parameter changes-since is no longer available.")
        elif key == "tag":
            tags.append(value)
        elif key in ("size_min", "size_max"):
            number = _int_param(key, value)
            if key == "size_min":
                size_min = number
            else:
                size_max = number
        elif key in ("created_at", "updated_at"):
            times.setdefault(key, []).append(_time_filter(key, value))
        elif key in ("os_hidden", "protected"):
            flag = _bool_param(key, value)
            if key == "os_hidden":
                os_hidden = flag
            else:
                exact["protected"] = flag
        elif key in _IN_FILTERS and value.startswith("in:"):
            any_of[key] = _split_in(value[3:])
        elif key in _IN_FILTERS and value.startswith("eq:"):
            exact[key] = value[3:]
        elif key in _IN_FILTERS and value.partition(":")[0] in ("gt", "gte", "lt", "lte", "neq"):
            raise InvalidInput(
                f"Unable to filter {key} by operator '{value.partition(':')[0]}'; "
                "use in: or eq:."
            )
        elif key in ("name", "id", "status", "container_format", "disk_format", "owner",
                     "checksum", "os_hash_value", "os_hash_algo", "min_ram", "min_disk",
                     "virtual_size", "size"):
            if key in ("min_ram", "min_disk", "virtual_size", "size"):
                exact[key] = _int_param(key, value)
            else:
                exact[key] = value
        else:
            properties[key] = value
    if new_sort is not None and (sort_keys or sort_dirs):
        raise InvalidInput("The 'sort' parameter cannot be combined with sort_key or sort_dir.")
    sort = _sort_order(new_sort, sort_keys, sort_dirs)
    query = ImageQuery(
        project_id=project_id,
        is_admin=is_admin,
        visibility=visibility,
        member_status=member_status,
        exact=exact,
        any_of=any_of,
        properties=properties,
        tags=tuple(tags),
        size_min=size_min,
        size_max=size_max,
        times={k: tuple(v) for k, v in times.items()},
        os_hidden=os_hidden,
        sort=sort,
        marker=marker,
        limit=limit,
    )
    return query, kept


def _sort_order(
    new_sort: str | None, keys: list[str], dirs: list[str]
) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    if new_sort is not None:
        for item in new_sort.split(","):
            key, _, direction = item.strip().partition(":")
            pairs.append((key.strip(), (direction or "desc").strip()))
    else:
        if dirs and len(dirs) != 1 and len(dirs) != len(keys):
            raise InvalidInput(
                "Number of sort dirs does not match the number of sort keys"
            )
        if not keys:
            keys = ["created_at"]
        for i, key in enumerate(keys):
            direction = dirs[0] if len(dirs) == 1 else (dirs[i] if dirs else "desc")
            pairs.append((key, direction))
    for key, direction in pairs:
        if key not in _SORT_KEYS_PUBLIC or key not in SORT_KEYS:
            raise InvalidInput(
                f"Invalid sort key: {key}. It must be one of the following: "
                + ", ".join(_SORT_KEYS_PUBLIC)
            )
        if direction not in ("asc", "desc"):
            raise InvalidInput(
                f"Invalid sort direction: {direction}. It must be one of the following: "
                "asc, desc."
            )
    used = [k for k, _ in pairs]
    if len(set(used)) != len(used):
        raise InvalidInput("Sort keys must not repeat.")
    # created_at and id always break ties so keyset paging is a total order.
    for tie in ("created_at", "id"):
        if tie not in used:
            pairs.append((tie, pairs[0][1] if pairs else "desc"))
    return tuple(pairs)


def _int_param(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput(f"{name} param must be an integer") from None
    if abs(number) > 2**63 - 1:
        raise InvalidInput(f"{name} param is out of range")
    return number


def _bool_param(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise InvalidInput(f"Invalid value for {name}: {value}; it must be true or false")
    return lowered == "true"


def _split_in(value: str) -> tuple[str, ...]:
    # Names containing commas are double-quoted, as Glance accepts.
    items = re.findall(r'"((?:[^"\\]|\\.)*)"|([^,]+)', value)
    result = tuple((quoted or plain).strip() for quoted, plain in items)
    if not result:
        raise InvalidInput("The 'in' operator needs at least one value.")
    return result


def _time_filter(name: str, value: str) -> Comparison:
    op, sep, rest = value.partition(":")
    if not sep or op not in ("gt", "gte", "lt", "lte", "eq", "neq"):
        op, rest = "eq", value
    try:
        parsed = datetime.fromisoformat(rest.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"Invalid time format for {name}: {rest}") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return Comparison(op=op, value=parsed)


# -- tags and actions ---------------------------------------------------------------


async def add_tag(request: Request) -> Response:
    await state(request).services.images.add_tag(
        context(request), request.path_params["image_id"], request.path_params["tag"]
    )
    return Response(status_code=204)


async def delete_tag(request: Request) -> Response:
    await state(request).services.images.remove_tag(
        context(request), request.path_params["image_id"], request.path_params["tag"]
    )
    return Response(status_code=204)


async def deactivate(request: Request) -> Response:
    await state(request).services.images.deactivate(
        context(request), request.path_params["image_id"]
    )
    return Response(status_code=204)


async def reactivate(request: Request) -> Response:
    await state(request).services.images.reactivate(
        context(request), request.path_params["image_id"]
    )
    return Response(status_code=204)

