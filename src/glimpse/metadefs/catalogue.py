"""Catalogue files: one JSON document per namespace, as ``glimpse metadefs`` reads and
writes them (the format of Glance's ``etc/metadefs``, so files move both ways).

The files shipped in this package describe the image properties of the product guide
(Appendix B, 2.3, 2.4), associated with ``OS::Glance::Image``::

    {"namespace": "...", "display_name": "...", "description": "...",
     "visibility": "public", "protected": true, "owner": "admin",
     "resource_type_associations": [{"name": "OS::Glance::Image", "prefix": "..."}],
     "properties": {"<name>": {"title": "...", "type": "string", "enum": [...]}},
     "objects": [{"name": "...", "description": "...", "required": [...],
                  "properties": {...}}],
     "tags": [{"name": "..."}]}
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from glimpse.domain.errors import InvalidInput
from glimpse.domain.metadefs import (
    NAMESPACE_VISIBILITIES,
    MetadefObject,
    MetadefTag,
    Namespace,
    NamespaceContent,
    PropertyDefinition,
    ResourceTypeAssociation,
    check_property_definition,
)

DEFAULT_OWNER = "admin"


def shipped_documents() -> list[tuple[str, dict[str, Any]]]:
    """The package's own catalogue files, as (file name, parsed JSON), by file name."""
    folder = resources.files("glimpse.metadefs")
    found = sorted(
        (entry for entry in folder.iterdir() if entry.name.endswith(".json")),
        key=lambda entry: entry.name,
    )
    return [(entry.name, json.loads(entry.read_text(encoding="utf-8"))) for entry in found]


def read_documents(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """One file, or every ``*.json`` file of a directory, by file name."""
    files = [path] if path.is_file() else sorted(path.glob("*.json"))
    if not files:
        raise InvalidInput(f"No catalogue files (*.json) found in {path}")
    documents = []
    for file in files:
        try:
            documents.append((str(file), json.loads(file.read_text(encoding="utf-8"))))
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"{file}: not a readable JSON document: {exc}") from exc
    return documents


def parse(document: object, source: str) -> NamespaceContent:
    """Check one namespace document and turn it into domain objects."""
    try:
        return _parse(document)
    except InvalidInput as exc:
        raise InvalidInput(f"{source}: {exc.message}") from exc


def _parse(document: object) -> NamespaceContent:
    doc = _mapping(document, "the document")
    name = doc.get("namespace")
    if not isinstance(name, str) or not name:
        raise InvalidInput("'namespace' (a name) is required")
    visibility = doc.get("visibility") or "private"
    if visibility not in NAMESPACE_VISIBILITIES:
        raise InvalidInput(f"visibility must be public or private, not {visibility!r}")
    namespace = Namespace(
        namespace=name,
        owner=str(doc.get("owner") or DEFAULT_OWNER),
        display_name=_optional_str(doc, "display_name"),
        description=_optional_str(doc, "description"),
        visibility=visibility,
        protected=bool(doc.get("protected", False)),
    )
    return NamespaceContent(
        namespace=namespace,
        resource_type_associations=[
            ResourceTypeAssociation(
                name=_name(a, "resource type association"),
                prefix=_optional_str(a, "prefix"),
                properties_target=_optional_str(a, "properties_target"),
            )
            for a in _list(doc, "resource_type_associations")
        ],
        properties=[
            PropertyDefinition(name=key, schema=check_property_definition(key, value))
            for key, value in _mapping(doc.get("properties", {}), "properties").items()
        ],
        objects=[_object(o) for o in _list(doc, "objects")],
        tags=[MetadefTag(name=_name(t, "tag")) for t in _list(doc, "tags")],
    )


def _object(raw: object) -> MetadefObject:
    obj = _mapping(raw, "an object")
    name = _name(obj, "object")
    properties = _mapping(obj.get("properties", {}), f"properties of object {name}")
    required = obj.get("required") or []
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise InvalidInput(f"'required' of object {name} must be a list of property names")
    return MetadefObject(
        name=name,
        description=_optional_str(obj, "description"),
        required=list(required),
        properties={k: check_property_definition(k, v) for k, v in properties.items()},
    )


def to_document(content: NamespaceContent) -> dict[str, Any]:
    """The file form of a namespace (what ``glimpse metadefs export`` writes)."""
    ns = content.namespace
    return {
        "namespace": ns.namespace,
        "display_name": ns.display_name,
        "description": ns.description,
        "visibility": ns.visibility,
        "protected": ns.protected,
        "owner": ns.owner,
        "resource_type_associations": [
            {k: v for k, v in (("name", a.name), ("prefix", a.prefix),
                               ("properties_target", a.properties_target)) if v is not None}
            for a in content.resource_type_associations
        ],
        "properties": {p.name: p.schema for p in content.properties},
        "objects": [
            {"name": o.name, "description": o.description, "required": o.required,
             "properties": o.properties}
            for o in content.objects
        ],
        "tags": [{"name": t.name} for t in content.tags],
    }


def file_name(namespace: str) -> str:
    """A file name for a namespace (``Glimpse::Image::Libvirt``: ``Glimpse-Image-Libvirt.json``)."""
    return (re.sub(r"[^A-Za-z0-9_.]+", "-", namespace).strip("-.") or "namespace") + ".json"


def _mapping(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{what} must be a JSON object")
    return value


def _list(doc: Mapping[str, Any], key: str) -> list[Any]:
    value = doc.get(key) or []
    if not isinstance(value, list):
        raise InvalidInput(f"'{key}' must be a list")
    return value


def _name(item: object, what: str) -> str:
    name = _mapping(item, f"each {what}").get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"each {what} needs a 'name'")
    return name


def _optional_str(doc: Mapping[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"'{key}' must be a string")
    return value
