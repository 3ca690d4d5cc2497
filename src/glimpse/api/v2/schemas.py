"""The JSON-schema documents of ``/v2/schemas/*``; request bodies are checked against them.

Shapes follow Glance's (draft-4, "permissive" image schema whose extra properties
must be strings) because glanceclient builds its options and validation from them.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from glimpse.domain.errors import InvalidInput
from glimpse.domain.status import STATUSES

UUID_PATTERN = (
    "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"
)


def _image_properties(
    disk_formats: tuple[str, ...], container_formats: tuple[str, ...]
) -> dict[str, Any]:
    def ro(kind: Any, description: str, **extra: Any) -> dict[str, Any]:
        return {"type": kind, "readOnly": True, "description": description, **extra}

    return {
        "id": {
            "type": "string",
            "description": "An identifier for the image",
            "pattern": UUID_PATTERN,
        },
        "name": {
            "type": ["null", "string"],
            "description": "Descriptive name for the image",
            "maxLength": 255,
        },
        "status": ro("string", "Status of the image", enum=list(STATUSES)),
        "visibility": {
            "type": "string",
            "description": "Scope of image accessibility",
            "enum": ["community", "public", "private", "shared"],
        },
        "protected": {"type": "boolean", "description": "If true, image will not be deletable."},
        "os_hidden": {
            "type": "boolean",
            "description": "If true, image will not appear in default image list response.",
        },
        "checksum": ro(["null", "string"], "md5 hash of image contents.", maxLength=32),
        "os_hash_algo": ro(
            ["null", "string"], "Algorithm to calculate the os_hash_value", maxLength=64
        ),
        "os_hash_value": ro(
            ["null", "string"],
            "Hexdigest of the image contents using the algorithm specified by the os_hash_algo",
            maxLength=128,
        ),
        "owner": {
            "type": ["null", "string"],
            "description": "Owner of the image",
            "maxLength": 255,
        },
        "size": ro(["null", "integer"], "Size of image file in bytes"),
        "virtual_size": ro(["null", "integer"], "Virtual size of image in bytes"),
        "container_format": {
            "type": ["null", "string"],
            "description": "Format of the container",
            "enum": [None, *container_formats],
        },
        "disk_format": {
            "type": ["null", "string"],
            "description": "Format of the disk",
            "enum": [None, *disk_formats],
        },
        "created_at": ro("string", "Date and time of image registration"),
        "updated_at": ro("string", "Date and time of the last image modification"),
        "tags": {
            "type": "array",
            "description": "List of strings related to the image",
            "items": {"type": "string", "maxLength": 255},
        },
        "direct_url": ro("string", "URL to access the image file kept in external store"),
        "min_ram": {
            "type": "integer",
            "description": "Amount of ram (in MB) required to boot image.",
        },
        "min_disk": {
            "type": "integer",
            "description": "Amount of disk space (in GB) required to boot image.",
        },
        "self": ro("string", "An image self url"),
        "file": ro("string", "An image file url"),
        "stores": ro(
            "string",
            "Store in which image data resides.  Only present when the "
            "operator has enabled multiple stores.  May be a comma-separated list "
            "of store identifiers.",
        ),
        "schema": ro("string", "An image schema url"),
        "locations": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "url": {"type": "string", "maxLength": 255},
                    "metadata": {"type": "object"},
                    "validation_data": {
                        "description": "Values to be used to populate the corresponding "
                        "image properties. If the image status is not 'queued', values "
                        "must exactly match those already contained in the image properties.",
                        "type": "object",
                        "writeOnly": True,
                        "additionalProperties": False,
                        "properties": {
                            "checksum": {"type": "string", "minLength": 32, "maxLength": 32},
                            "os_hash_algo": {"type": "string", "maxLength": 64},
                            "os_hash_value": {"type": "string", "maxLength": 128},
                        },
                        "required": ["os_hash_algo", "os_hash_value"],
                    },
                },
                "required": ["url", "metadata"],
            },
            "description": "A set of URLs to access the image file kept in external store",
        },
    }


_MEMBER_PROPERTIES: dict[str, Any] = {
    "member_id": {"type": "string", "description": "An identifier for the image member (tenantId)"},
    "image_id": {
        "type": "string",
        "description": "An identifier for the image",
        "pattern": UUID_PATTERN,
    },
    "created_at": {"type": "string", "description": "Date and time of image member creation"},
    "updated_at": {
        "type": "string",
        "description": "Date and time of last modification of image member",
    },
    "status": {
        "type": "string",
        "description": "The status of this image member",
        "enum": ["pending", "accepted", "rejected"],
    },
    "schema": {"readOnly": True, "type": "string"},
}


def _collection(name: str, item: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "properties": {
            name: {"type": "array", "items": item},
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


def load_custom_properties(path: Path | None) -> tuple[dict[str, Any], list[str] | None]:
    """Operator image properties: Glance's schema-image.json, flat or {properties, required}."""
    if path is None:
        text = resources.files("glimpse.api").joinpath("schema-image.json").read_text()
    else:
        text = path.read_text()
    data = json.loads(text)
    if isinstance(data, dict) and isinstance(data.get("properties"), dict):
        return data["properties"], data.get("required") or None
    return data, None


@dataclass
class Schemas:
    image: dict[str, Any]
    images: dict[str, Any]
    member: dict[str, Any]
    members: dict[str, Any]
    _image_validator: Any = field(init=False, repr=False)
    _member_validator: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._image_validator = jsonschema.Draft4Validator(self.image)
        self._member_validator = jsonschema.Draft4Validator(self.member)

    def validate_image(self, body: object) -> None:
        _validate(self._image_validator, body, "image")

    def validate_member(self, body: object) -> None:
        _validate(self._member_validator, body, "member")


def _validate(validator: Any, body: object, name: str) -> None:
    error = jsonschema.exceptions.best_match(validator.iter_errors(body))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)
        prefix = f"Failed validating {name}" + (f" at '{where}'" if where else "")
        raise InvalidInput(f"{prefix}: {error.message}")


def build_schemas(
    disk_formats: tuple[str, ...],
    container_formats: tuple[str, ...],
    custom_properties_file: Path | None = None,
) -> Schemas:
    properties = _image_properties(disk_formats, container_formats)
    custom, required = load_custom_properties(custom_properties_file)
    for name, definition in custom.items():
        if name in properties and properties[name] != definition:
            raise ValueError(f"custom image property {name!r} conflicts with a base property")
        properties[name] = {**copy.deepcopy(definition), "is_base": False}
    image: dict[str, Any] = {
        "name": "image",
        "properties": properties,
        "additionalProperties": {"type": "string"},
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }
    if required:
        image["required"] = required
    member = {
        "name": "member",
        "properties": copy.deepcopy(_MEMBER_PROPERTIES),
        "additionalProperties": False,
    }
    return Schemas(
        image=image,
        images=_collection("images", copy.deepcopy(image)),
        member=member,
        members=_collection("members", copy.deepcopy(member)),
    )
