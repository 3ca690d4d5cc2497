"""Metadata definitions (metadefs): the catalogue of what image properties mean.

A namespace groups property definitions, objects (named sets of properties) and tags,
and is associated with the resource types (``OS::Glance::Image``...) it describes,
optionally with a prefix its property names take on that resource type.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from glimpse.domain.errors import InvalidInput

NAMESPACE_VISIBILITIES = ("public", "private")
IMAGE_RESOURCE_TYPE = "OS::Glance::Image"
NAME_MAX = 80

# The keys a property definition may carry (a subset of JSON schema, as Glance's
# PropertyType); anything else is dropped when a definition is stored.
PROPERTY_KEYS = (
    "type", "title", "description", "operators", "default", "readonly", "minimum",
    "maximum", "enum", "pattern", "minLength", "maxLength", "confidential", "items",
    "uniqueItems", "minItems", "maxItems", "additionalItems",
)
PROPERTY_TYPES = ("array", "boolean", "integer", "number", "object", "string")


@dataclass
class Namespace:
    namespace: str
    owner: str
    display_name: str | None = None
    description: str | None = None
    visibility: str = "private"
    protected: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass
class ResourceType:
    name: str
    protected: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass
class ResourceTypeAssociation:
    name: str
    prefix: str | None = None
    properties_target: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass
class PropertyDefinition:
    name: str
    schema: dict[str, Any]  # the PROPERTY_KEYS that are set
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass
class MetadefObject:
    name: str
    description: str | None = None
    required: list[str] = field(default_factory=list)
    properties: dict[str, dict[str, Any]] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass
class MetadefTag:
    name: str
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass
class NamespaceContent:
    """A namespace with everything in it: what a catalogue file or a full POST holds."""

    namespace: Namespace
    resource_type_associations: list[ResourceTypeAssociation] = field(default_factory=list)
    properties: list[PropertyDefinition] = field(default_factory=list)
    objects: list[MetadefObject] = field(default_factory=list)
    tags: list[MetadefTag] = field(default_factory=list)


def property_schema(definition: Mapping[str, Any]) -> dict[str, Any]:
    """The stored form of a property definition: known keys only, unset ones dropped."""
    schema = {k: definition[k] for k in PROPERTY_KEYS if definition.get(k) is not None}
    items = schema.get("items")
    if isinstance(items, Mapping):
        schema["items"] = {k: items[k] for k in ("type", "enum") if items.get(k) is not None}
    return schema


def check_property_definition(name: str, definition: object) -> dict[str, Any]:
    """Check the shape every definition needs (a title and a known type); return it stored."""
    if not isinstance(definition, Mapping):
        raise InvalidInput(f"Property {name!r} must be a JSON object.")
    if not isinstance(definition.get("title"), str):
        raise InvalidInput(f"Property {name!r} needs a string 'title'.")
    if definition.get("type") not in PROPERTY_TYPES:
        raise InvalidInput(
            f"Property {name!r} needs a 'type', one of: {', '.join(PROPERTY_TYPES)}."
        )
    if not name or len(name) > NAME_MAX:
        raise InvalidInput(f"Property names are 1 to {NAME_MAX} characters: {name!r}.")
    return property_schema(definition)


# -- checking an image property value against a definition ---------------------------

_TRUE = ("true", "1", "yes", "on", "t", "y")
_FALSE = ("false", "0", "no", "off", "f", "n")


def value_problem(value: str, schema: Mapping[str, Any]) -> str | None:
    """Why ``value`` (an image property, always a string) does not fit ``schema``; None if
    it does. Types are read the way Nova reads image properties."""
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items") or {}
        for item in (v.strip() for v in value.split(",")):
            problem = value_problem(item, {"type": items.get("type", "string"), **items})
            if problem is not None:
                return problem
        return None
    number: float | None = None
    if kind == "boolean":
        if value.strip().lower() not in _TRUE + _FALSE:
            return "is not a boolean (use true or false)"
        return None
    if kind == "integer":
        try:
            number = int(value.strip())
        except ValueError:
            return "is not an integer"
    elif kind == "number":
        try:
            number = float(value.strip())
        except ValueError:
            return "is not a number"
    enum = schema.get("enum")
    if enum and not any(value == str(e) or (number is not None and number == e) for e in enum):
        allowed = ", ".join(str(e) for e in enum)
        hint = suggestion(value, [str(e) for e in enum])
        return f"is not one of the allowed values ({allowed})" + (
            f"; did you mean {hint!r}?" if hint else ""
        )
    if number is not None:
        if schema.get("minimum") is not None and number < schema["minimum"]:
            return f"is less than the minimum {schema['minimum']}"
        if schema.get("maximum") is not None and number > schema["maximum"]:
            return f"is greater than the maximum {schema['maximum']}"
    if kind == "string":
        if schema.get("minLength") is not None and len(value) < schema["minLength"]:
            return f"is shorter than {schema['minLength']} characters"
        if schema.get("maxLength") is not None and len(value) > schema["maxLength"]:
            return f"is longer than {schema['maxLength']} characters"
        pattern = schema.get("pattern")
        if pattern and re.search(pattern, value) is None:
            return f"does not match the pattern {pattern}"
    return None


def suggestion(value: str, choices: list[str]) -> str | None:
    """The allowed value a caller most likely meant: same letters in another case, a
    reverse-domain spelling (``org.ubuntu``), or the closest spelling."""
    lowered = value.strip().lower()
    for choice in choices:
        if choice.lower() == lowered:
            return choice
    last = lowered.rsplit(".", 1)[-1]
    for choice in choices:
        if choice.lower() == last:
            return choice
    close = difflib.get_close_matches(lowered, [c.lower() for c in choices], n=1, cutoff=0.75)
    if close:
        return next(c for c in choices if c.lower() == close[0])
    return None
