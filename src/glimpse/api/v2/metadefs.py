"""``/v2/metadefs``: the metadata definitions catalogue, serialised as Glance does.

Fields that are not set are left out of responses (Glance's serialiser omits them), and
timestamps are ``YYYY-MM-DDThh:mm:ssZ``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from glimpse.api.http import context, json_response, read_json
from glimpse.api.state import ApiState, state
from glimpse.api.v2 import metadef_schemas
from glimpse.api.v2.images import isotime
from glimpse.domain.errors import Forbidden, InvalidInput
from glimpse.domain.metadefs import (
    MetadefObject,
    MetadefTag,
    Namespace,
    NamespaceContent,
    PropertyDefinition,
    ResourceType,
    ResourceTypeAssociation,
    property_schema,
)
from glimpse.services.metadefs import MetadefService, NamespaceFields

BASE = "/v2/metadefs/namespaces"
_READ_ONLY = ("self", "schema", "created_at", "updated_at")
_TIMESTAMPS = ("created_at", "updated_at")
_TRUE = ("1", "t", "true", "on", "y", "yes")


# -- views ----------------------------------------------------------------------------


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def namespace_view(ns: Namespace) -> dict[str, Any]:
    return _present({
        "namespace": ns.namespace,
        "display_name": ns.display_name,
        "description": ns.description,
        "visibility": ns.visibility,
        "protected": ns.protected,
        "owner": ns.owner,
        "created_at": isotime(ns.created_at),
        "updated_at": isotime(ns.updated_at),
        "self": f"{BASE}/{ns.namespace}",
        "schema": "/v2/schemas/metadefs/namespace",
    })


def content_view(content: NamespaceContent) -> dict[str, Any]:
    """A namespace with whichever of its kinds of content it has."""
    name = content.namespace.namespace
    view = namespace_view(content.namespace)
    if content.resource_type_associations:
        view["resource_type_associations"] = [
            association_view(a) for a in content.resource_type_associations
        ]
    if content.properties:
        view["properties"] = {p.name: dict(p.schema) for p in content.properties}
    if content.objects:
        view["objects"] = [object_view(name, o) for o in content.objects]
    if content.tags:
        view["tags"] = [{"name": t.name} for t in content.tags]
    return view


def association_view(association: ResourceTypeAssociation) -> dict[str, Any]:
    return _present({
        "name": association.name,
        "prefix": association.prefix,
        "properties_target": association.properties_target,
        "created_at": isotime(association.created_at),
        "updated_at": isotime(association.updated_at),
    })


def resource_type_view(resource_type: ResourceType) -> dict[str, Any]:
    return _present({
        "name": resource_type.name,
        "created_at": isotime(resource_type.created_at),
        "updated_at": isotime(resource_type.updated_at),
    })


def property_view(prop: PropertyDefinition) -> dict[str, Any]:
    return {"name": prop.name, **prop.schema}


def object_view(namespace: str, obj: MetadefObject) -> dict[str, Any]:
    return _present({
        "name": obj.name,
        "description": obj.description,
        "required": list(obj.required) or None,
        "properties": obj.properties,
        "created_at": isotime(obj.created_at),
        "updated_at": isotime(obj.updated_at),
        "self": f"{BASE}/{namespace}/objects/{obj.name}",
        "schema": "/v2/schemas/metadefs/object",
    })


def tag_view(tag: MetadefTag) -> dict[str, Any]:
    return _present({
        "name": tag.name,
        "created_at": isotime(tag.created_at),
        "updated_at": isotime(tag.updated_at),
    })


# -- request parsing ------------------------------------------------------------------------


async def _body(
    request: Request, st: ApiState, kind: str, read_only: tuple[str, ...]
) -> dict[str, Any]:
    body = await read_json(request, max_size=st.options.max_request_body_size)
    if not isinstance(body, dict):
        raise InvalidInput("Request body must be a JSON object.")
    for key in read_only:
        if key in body:
            raise Forbidden(f"Attribute '{key}' is read-only.")
    metadef_schemas.validate(kind, body)
    return body


def _fields(body: dict[str, Any]) -> NamespaceFields:
    return NamespaceFields(
        namespace=body["namespace"],
        display_name=body.get("display_name"),
        description=body.get("description"),
        visibility=body.get("visibility"),
        protected=body.get("protected"),
        owner=body.get("owner"),
    )


def _named(item: Any, what: str) -> str:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise InvalidInput(f"Each {what} needs a 'name'.")
    return str(item["name"])


def _object(body: dict[str, Any]) -> MetadefObject:
    properties = body.get("properties") or {}
    for definition in properties.values():
        metadef_schemas.validate_property_definition(definition)
    return MetadefObject(
        name=_named(body, "object"),
        description=body.get("description"),
        required=list(body.get("required") or []),
        properties={k: property_schema(v) for k, v in properties.items()},
    )


def _content(body: dict[str, Any]) -> NamespaceContent:
    """What a namespace POST embeds besides the namespace's own fields."""
    return NamespaceContent(
        namespace=Namespace(namespace=body["namespace"], owner=""),
        resource_type_associations=[
            ResourceTypeAssociation(
                name=_named(a, "resource type association"),
                prefix=a.get("prefix"),
                properties_target=a.get("properties_target"),
            )
            for a in body.get("resource_type_associations") or []
        ],
        properties=[
            PropertyDefinition(name=name, schema=property_schema(definition))
            for name, definition in (body.get("properties") or {}).items()
        ],
        objects=[_object(o if isinstance(o, dict) else {}) for o in body.get("objects") or []],
        tags=[MetadefTag(name=_named(t, "tag")) for t in body.get("tags") or []],
    )


def _limit(request: Request, default: int | None, maximum: int) -> int | None:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise InvalidInput("limit param must be an integer") from None
    if limit < 0:
        raise InvalidInput("limit param must be positive")
    return min(limit, maximum)


def _service(request: Request) -> MetadefService:
    service: MetadefService = state(request).services.metadefs
    return service


def _ns(request: Request) -> str:
    return str(request.path_params["namespace"])


# -- namespaces -------------------------------------------------------------------------------


async def list_namespaces(request: Request) -> Response:
    st = state(request)
    params = request.query_params
    limit = _limit(request, st.options.limit_param_default, st.options.api_limit_max)
    assert limit is not None
    resource_types = tuple(
        name.strip()
        for value in params.getlist("resource_types")
        for name in value.split(",")
        if name.strip()
    )
    page = await _service(request).list_namespaces(
        context(request),
        visibility=params.get("visibility") or None,
        resource_types=resource_types,
        sort_key=params.get("sort_key", "created_at"),
        sort_dir=params.get("sort_dir", "desc"),
        marker=params.get("marker"),
        limit=limit,
    )
    query = [(k, v) for k, v in params.multi_items() if k != "marker"]
    body: dict[str, Any] = {
        "namespaces": [content_view(c) for c in page],
        "first": BASE + (f"?{urlencode(query)}" if query else ""),
        "schema": "/v2/schemas/metadefs/namespaces",
    }
    if page and len(page) == limit:
        body["next"] = f"{BASE}?{urlencode([*query, ('marker', page[-1].namespace.namespace)])}"
    return json_response(body)


async def create_namespace(request: Request) -> Response:
    body = await _body(request, state(request), "namespace", _READ_ONLY)
    content = await _service(request).create_namespace(
        context(request), _fields(body), _content(body)
    )
    view = content_view(content)
    return json_response(view, 201, headers={"Location": view["self"]})


async def show_namespace(request: Request) -> Response:
    content = await _service(request).get_namespace(
        context(request), _ns(request), request.query_params.get("resource_type")
    )
    return json_response(content_view(content))


async def update_namespace(request: Request) -> Response:
    body = await _body(request, state(request), "namespace", _READ_ONLY)
    namespace = await _service(request).update_namespace(
        context(request), _ns(request), _fields(body)
    )
    return json_response(namespace_view(namespace))


async def delete_namespace(request: Request) -> Response:
    await _service(request).delete_namespace(context(request), _ns(request))
    return Response(status_code=204)


# -- objects --------------------------------------------------------------------------------


async def list_objects(request: Request) -> Response:
    found = await _service(request).list_objects(context(request), _ns(request))
    return json_response({
        "objects": [object_view(_ns(request), o) for o in found],
        "schema": "/v2/schemas/metadefs/objects",
    })


async def create_object(request: Request) -> Response:
    body = await _body(request, state(request), "object", _READ_ONLY)
    created = await _service(request).create_object(context(request), _ns(request), _object(body))
    return json_response(object_view(_ns(request), created), 201)


async def show_object(request: Request) -> Response:
    found = await _service(request).get_object(
        context(request), _ns(request), request.path_params["object_name"]
    )
    return json_response(object_view(_ns(request), found))


async def update_object(request: Request) -> Response:
    body = await _body(request, state(request), "object", _READ_ONLY)
    updated = await _service(request).update_object(
        context(request), _ns(request), request.path_params["object_name"], _object(body)
    )
    return json_response(object_view(_ns(request), updated))


async def delete_object(request: Request) -> Response:
    await _service(request).delete_object(
        context(request), _ns(request), request.path_params["object_name"]
    )
    return Response(status_code=204)


async def delete_objects(request: Request) -> Response:
    await _service(request).delete_namespace_objects(context(request), _ns(request))
    return Response(status_code=204)


# -- properties -------------------------------------------------------------------------------


async def list_properties(request: Request) -> Response:
    found = await _service(request).list_properties(context(request), _ns(request))
    return json_response({"properties": {p.name: dict(p.schema) for p in found}})


def _property(body: dict[str, Any]) -> PropertyDefinition:
    return PropertyDefinition(name=body["name"], schema=property_schema(body))


async def create_property(request: Request) -> Response:
    body = await _body(request, state(request), "property", _TIMESTAMPS)
    created = await _service(request).create_property(
        context(request), _ns(request), _property(body)
    )
    return json_response(property_view(created), 201)


async def show_property(request: Request) -> Response:
    found = await _service(request).get_property(
        context(request), _ns(request), request.path_params["property_name"],
        request.query_params.get("resource_type"),
    )
    return json_response(property_view(found))


async def update_property(request: Request) -> Response:
    body = await _body(request, state(request), "property", _TIMESTAMPS)
    updated = await _service(request).update_property(
        context(request), _ns(request), request.path_params["property_name"], _property(body)
    )
    return json_response(property_view(updated))


async def delete_property(request: Request) -> Response:
    await _service(request).delete_property(
        context(request), _ns(request), request.path_params["property_name"]
    )
    return Response(status_code=204)


async def delete_properties(request: Request) -> Response:
    await _service(request).delete_namespace_properties(context(request), _ns(request))
    return Response(status_code=204)


# -- tags ---------------------------------------------------------------------------------------


async def list_tags(request: Request) -> Response:
    st = state(request)
    params = request.query_params
    found = await _service(request).list_tags(
        context(request), _ns(request),
        sort_key=params.get("sort_key", "created_at"),
        sort_dir=params.get("sort_dir", "desc"),
        marker=params.get("marker") or None,
        limit=_limit(request, None, st.options.api_limit_max) or None,
    )
    return json_response({"tags": [{"name": t.name} for t in found]})


async def create_tags(request: Request) -> Response:
    body = await _body(request, state(request), "tags", _TIMESTAMPS)
    append = request.headers.get("x-openstack-append", "").strip().lower() in _TRUE
    created = await _service(request).create_tags(
        context(request), _ns(request), [t["name"] for t in body.get("tags", [])], append=append
    )
    return json_response({"tags": [{"name": t.name} for t in created]}, 201)


async def create_tag(request: Request) -> Response:
    created = await _service(request).create_tag(
        context(request), _ns(request), request.path_params["tag_name"]
    )
    return json_response(tag_view(created), 201)


async def show_tag(request: Request) -> Response:
    found = await _service(request).get_tag(
        context(request), _ns(request), request.path_params["tag_name"]
    )
    return json_response(tag_view(found))


async def update_tag(request: Request) -> Response:
    body = await _body(request, state(request), "tag", _TIMESTAMPS)
    renamed = await _service(request).update_tag(
        context(request), _ns(request), request.path_params["tag_name"], body["name"]
    )
    return json_response(tag_view(renamed))


async def delete_tag(request: Request) -> Response:
    await _service(request).delete_tag(
        context(request), _ns(request), request.path_params["tag_name"]
    )
    return Response(status_code=204)


async def delete_tags(request: Request) -> Response:
    await _service(request).delete_namespace_tags(context(request), _ns(request))
    return Response(status_code=204)


# -- resource types -----------------------------------------------------------------------------


async def list_resource_types(request: Request) -> Response:
    found = await _service(request).list_resource_types(context(request))
    return json_response({"resource_types": [resource_type_view(r) for r in found]})


async def list_associations(request: Request) -> Response:
    found = await _service(request).list_associations(context(request), _ns(request))
    return json_response({"resource_type_associations": [association_view(a) for a in found]})


async def associate(request: Request) -> Response:
    body = await _body(request, state(request), "resource_type_association", _TIMESTAMPS)
    created = await _service(request).associate(
        context(request), _ns(request),
        ResourceTypeAssociation(
            name=body["name"], prefix=body.get("prefix"),
            properties_target=body.get("properties_target"),
        ),
    )
    return json_response(association_view(created), 201)


async def dissociate(request: Request) -> Response:
    await _service(request).dissociate(
        context(request), _ns(request), request.path_params["resource_type"]
    )
    return Response(status_code=204)


_NS = BASE + "/{namespace}"

ROUTES = [
    Route("/v2/schemas/metadefs/{kind}", metadef_schemas.schema_document, methods=["GET"]),
    Route("/v2/metadefs/resource_types", list_resource_types, methods=["GET"]),
    Route(BASE, list_namespaces, methods=["GET"]),
    Route(BASE, create_namespace, methods=["POST"]),
    Route(_NS, show_namespace, methods=["GET"]),
    Route(_NS, update_namespace, methods=["PUT"]),
    Route(_NS, delete_namespace, methods=["DELETE"]),
    Route(_NS + "/resource_types", list_associations, methods=["GET"]),
    Route(_NS + "/resource_types", associate, methods=["POST"]),
    Route(_NS + "/resource_types/{resource_type}", dissociate, methods=["DELETE"]),
    Route(_NS + "/objects", list_objects, methods=["GET"]),
    Route(_NS + "/objects", create_object, methods=["POST"]),
    Route(_NS + "/objects", delete_objects, methods=["DELETE"]),
    Route(_NS + "/objects/{object_name}", show_object, methods=["GET"]),
    Route(_NS + "/objects/{object_name}", update_object, methods=["PUT"]),
    Route(_NS + "/objects/{object_name}", delete_object, methods=["DELETE"]),
    Route(_NS + "/properties", list_properties, methods=["GET"]),
    Route(_NS + "/properties", create_property, methods=["POST"]),
    Route(_NS + "/properties", delete_properties, methods=["DELETE"]),
    Route(_NS + "/properties/{property_name}", show_property, methods=["GET"]),
    Route(_NS + "/properties/{property_name}", update_property, methods=["PUT"]),
    Route(_NS + "/properties/{property_name}", delete_property, methods=["DELETE"]),
    Route(_NS + "/tags", list_tags, methods=["GET"]),
    Route(_NS + "/tags", create_tags, methods=["POST"]),
    Route(_NS + "/tags", delete_tags, methods=["DELETE"]),
    Route(_NS + "/tags/{tag_name}", show_tag, methods=["GET"]),
    Route(_NS + "/tags/{tag_name}", create_tag, methods=["POST"]),
    Route(_NS + "/tags/{tag_name}", update_tag, methods=["PUT"]),
    Route(_NS + "/tags/{tag_name}", delete_tag, methods=["DELETE"]),
]
