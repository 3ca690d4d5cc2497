"""The ``/v2/schemas/metadefs/*`` documents; metadef request bodies are checked against them.

The shapes (names, property lists, ``additionalProperties: false``, draft-4 ``$ref``
definitions, collection wrappers) are the ones glanceclient builds its ``md-*`` commands
and its client-side validation from, so they follow Glance's; the wording is ours.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
from starlette.requests import Request
from starlette.responses import Response

from glimpse.api.http import json_response
from glimpse.domain.errors import InvalidInput, NotFound

_TYPES = ["array", "boolean", "integer", "number", "object", "string", None]


def _timestamp(description: str) -> dict[str, Any]:
    return {"type": "string", "readOnly": True, "description": description,
            "format": "date-time"}


def _read_only_string() -> dict[str, Any]:
    return {"type": "string", "readOnly": True}


def _definitions(*, array_min_items: bool = False) -> dict[str, Any]:
    string_array: dict[str, Any] = {
        "type": "array", "items": {"type": "string"}, "uniqueItems": True,
    }
    if array_min_items:
        string_array["minItems"] = 1
    return {
        "positiveInteger": {"type": "integer", "minimum": 0},
        "positiveIntegerDefault0": {
            "allOf": [{"$ref": "#/definitions/positiveInteger"}, {"default": 0}]
        },
        "stringArray": string_array,
    }


def _property_fields() -> dict[str, Any]:
    """What one property definition may say: a subset of JSON schema plus a title."""
    return {
        "name": {"type": "string", "maxLength": 80},
        "title": {"type": "string"},
        "description": {"type": "string"},
        "operators": {"type": "array", "items": {"type": "string"}},
        "type": {"type": "string", "enum": list(_TYPES)},
        "required": {"$ref": "#/definitions/stringArray"},
        "minimum": {"type": "number"},
        "maximum": {"type": "number"},
        "maxLength": {"$ref": "#/definitions/positiveInteger"},
        "minLength": {"$ref": "#/definitions/positiveIntegerDefault0"},
        "pattern": {"type": "string", "format": "regex"},
        "enum": {"type": "array"},
        "readonly": {"type": "boolean"},
        "default": {},
        "items": {
            "type": "object",
            "properties": {
                "type": {"type": "string", "enum": list(_TYPES)},
                "enum": {"type": "array"},
            },
        },
        "maxItems": {"$ref": "#/definitions/positiveInteger"},
        "minItems": {"$ref": "#/definitions/positiveIntegerDefault0"},
        "uniqueItems": {"type": "boolean", "default": False},
        "additionalItems": {"type": "boolean"},
    }


def _property_map() -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": {
            "type": "object",
            "required": ["title", "type"],
            "properties": _property_fields(),
        },
    }


def _namespace_definitions() -> dict[str, Any]:
    return {**_definitions(), "property": _property_map()}


def _collection(name: str, item: dict[str, Any], *, keyed: bool = False) -> dict[str, Any]:
    """A list document: the items under ``name`` (a map by name when ``keyed``)."""
    item = copy.deepcopy(item)
    definitions = item.pop("definitions", None)
    container = (
        {"type": "object", "additionalProperties": item} if keyed
        else {"type": "array", "items": item}
    )
    document: dict[str, Any] = {
        "name": name,
        "properties": {
            name: container,
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
    if definitions:
        document["definitions"] = definitions
    return document


NAMESPACE: dict[str, Any] = {
    "name": "namespace",
    "properties": {
        "namespace": {
            "type": "string", "maxLength": 80,
            "description": "Unique name of the namespace, used in its URL.",
        },
        "display_name": {
            "type": "string", "maxLength": 80,
            "description": "Name of the namespace for people, shown by dashboards.",
        },
        "description": {
            "type": "string", "maxLength": 500,
            "description": "What the namespace's definitions are for.",
        },
        "visibility": {
            "type": "string", "enum": ["public", "private"],
            "description": "Who may read the namespace: everyone, or its owner's project.",
        },
        "protected": {
            "type": "boolean",
            "description": "A protected namespace and its content cannot be deleted.",
        },
        "owner": {
            "type": "string", "maxLength": 255,
            "description": "Project that owns the namespace.",
        },
        "created_at": _timestamp("When the namespace was created."),
        "updated_at": _timestamp("When the namespace was last changed."),
        "schema": _read_only_string(),
        "self": _read_only_string(),
        "resource_type_associations": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "prefix": {"type": "string"},
                    "properties_target": {"type": "string"},
                },
            },
        },
        "properties": {"$ref": "#/definitions/property"},
        "objects": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "description": {"type": "string"},
                    "required": {"$ref": "#/definitions/stringArray"},
                    "properties": {"$ref": "#/definitions/property"},
                },
            },
        },
        "tags": {
            "type": "array",
            "items": {"type": "object", "properties": {"name": {"type": "string"}}},
        },
    },
    "additionalProperties": False,
    "required": ["namespace"],
    "definitions": _namespace_definitions(),
}

OBJECT: dict[str, Any] = {
    "name": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 80},
        "description": {"type": "string"},
        "required": {"$ref": "#/definitions/stringArray"},
        "properties": {"$ref": "#/definitions/property"},
        "schema": _read_only_string(),
        "self": _read_only_string(),
        "created_at": _timestamp("When the object was created."),
        "updated_at": _timestamp("When the object was last changed."),
    },
    "additionalProperties": False,
    "required": ["name"],
    "definitions": _namespace_definitions(),
}

PROPERTY: dict[str, Any] = {
    "name": "property",
    "properties": _property_fields(),
    "additionalProperties": False,
    "required": ["type", "title", "name"],
    "definitions": _definitions(array_min_items=True),
}

RESOURCE_TYPE: dict[str, Any] = {
    "name": "resource_type_association",
    "properties": {
        "name": {
            "type": "string", "maxLength": 80,
            "description": "Resource type, named as Heat names them where it can "
            "(OS::Glance::Image, OS::Cinder::Volume, OS::Nova::Flavor...).",
        },
        "prefix": {
            "type": "string", "maxLength": 80,
            "description": "Prefix the namespace's property names take on this resource "
            "type, separator included (for example 'hw_' or 'quota:').",
        },
        "properties_target": {
            "type": "string", "maxLength": 80,
            "description": "Which set of key/value pairs of the resource the properties go "
            "to, where it has several (a volume's 'image' metadata, for example).",
        },
        "created_at": _timestamp("When the association was made."),
        "updated_at": _timestamp("When the association was last changed."),
    },
    "additionalProperties": False,
    "required": ["name"],
}

TAG: dict[str, Any] = {
    "name": "tag",
    "properties": {
        "name": {"type": "string", "maxLength": 80},
        "created_at": _timestamp("When the tag was created."),
        "updated_at": _timestamp("When the tag was last changed."),
    },
    "additionalProperties": False,
    "required": ["name"],
}

# The body of POST /namespaces/{ns}/tags (several tags at once).
TAG_LIST: dict[str, Any] = {
    "name": "tags",
    "properties": {
        "tags": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}},
                "required": ["name"],
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}

_property_item = copy.deepcopy(PROPERTY)
_property_item["required"] = ["type", "title"]

DOCUMENTS: dict[str, dict[str, Any]] = {
    "namespace": NAMESPACE,
    "namespaces": _collection("namespaces", NAMESPACE),
    "object": OBJECT,
    "objects": _collection("objects", OBJECT),
    "property": PROPERTY,
    "properties": _collection("properties", _property_item, keyed=True),
    "resource_type": RESOURCE_TYPE,
    "resource_types": _collection("resource_type_associations", RESOURCE_TYPE),
    "tag": TAG,
    "tags": _collection("tags", TAG),
}

_VALIDATORS = {
    name: jsonschema.Draft4Validator(document)
    for name, document in (
        ("namespace", NAMESPACE), ("object", OBJECT), ("property", PROPERTY),
        ("resource_type_association", RESOURCE_TYPE), ("tag", TAG), ("tags", TAG_LIST),
    )
}
_OBJECT_PROPERTY = jsonschema.Draft4Validator(_property_item)


def validate(kind: str, body: object) -> None:
    """Check a request body against the schema ``kind``; 400 with the first problem."""
    _raise_first(_VALIDATORS[kind], body, kind)


def validate_property_definition(body: object) -> None:
    """One property definition inside an object (its name is the key, not a field)."""
    _raise_first(_OBJECT_PROPERTY, body, "property")


def _raise_first(validator: Any, body: object, kind: str) -> None:
    error = jsonschema.exceptions.best_match(validator.iter_errors(body))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)
        at = f" at '{where}'" if where else ""
        raise InvalidInput(f"Provided object does not match schema '{kind}'{at}: {error.message}")


async def schema_document(request: Request) -> Response:
    """GET /v2/schemas/metadefs/{kind}."""
    document = DOCUMENTS.get(request.path_params["kind"])
    if document is None:
        raise NotFound("The resource could not be found.")
    return json_response(document)
