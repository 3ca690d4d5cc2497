"""What the metadef service needs from the database: one protocol and its query objects.

Children (objects, properties, tags, associations) are addressed by their namespace's
name; a write to a namespace that no longer exists raises ``NotFound``. Unique names
are enforced by the database and reported as ``Duplicate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from glimpse.domain.metadefs import (
    MetadefObject,
    MetadefTag,
    Namespace,
    NamespaceContent,
    PropertyDefinition,
    ResourceType,
    ResourceTypeAssociation,
)

NAMESPACE_SORT_KEYS = (
    "created_at", "updated_at", "namespace", "display_name", "visibility", "owner",
)
TAG_SORT_KEYS = ("created_at", "updated_at", "name")


@dataclass(frozen=True)
class NamespaceQuery:
    """One page of namespaces as one caller may see them."""

    project_id: str | None
    is_admin: bool
    visibility: str | None = None
    resource_types: tuple[str, ...] = ()
    sort_key: str = "created_at"
    sort_dir: str = "desc"
    marker: str | None = None  # a namespace name, already checked to be visible
    limit: int = 25


@dataclass(frozen=True)
class TagQuery:
    sort_key: str = "created_at"
    sort_dir: str = "desc"
    marker: str | None = None  # a tag name
    limit: int | None = None


class LoadMode(Enum):
    """What loading a catalogue file does to a namespace that already exists."""

    SKIP = "skip"  # leave it as it is
    MERGE = "merge"  # add what is missing, keep what is there
    PREFER_NEW = "prefer_new"  # add what is missing, replace what differs
    OVERWRITE = "overwrite"  # delete it and load the file's version


@dataclass(frozen=True)
class VisibleDefinition:
    """A property definition as it applies to one resource type: prefixed name."""

    namespace: str
    name: str  # with the association's prefix
    schema: dict[str, object]


class MetadefRepository(Protocol):
    # -- namespaces -------------------------------------------------------------
    async def list_namespaces(self, query: NamespaceQuery) -> list[Namespace]: ...

    async def get_namespace(self, name: str) -> Namespace | None: ...

    async def create_namespace(self, content: NamespaceContent) -> Namespace:
        """Create a namespace with all its content at once (all or nothing)."""
        ...

    async def update_namespace(self, name: str, namespace: Namespace) -> Namespace:
        """Replace the namespace's own fields (a rename included)."""
        ...

    async def delete_namespace(self, name: str) -> None: ...

    async def get_content(self, name: str) -> NamespaceContent: ...

    async def associations_by_namespace(
        self, names: list[str]
    ) -> dict[str, list[ResourceTypeAssociation]]: ...

    # -- objects ----------------------------------------------------------------
    async def list_objects(self, namespace: str) -> list[MetadefObject]: ...

    async def get_object(self, namespace: str, name: str) -> MetadefObject | None: ...

    async def create_object(self, namespace: str, obj: MetadefObject) -> MetadefObject: ...

    async def update_object(
        self, namespace: str, name: str, obj: MetadefObject
    ) -> MetadefObject | None: ...

    async def delete_object(self, namespace: str, name: str) -> bool: ...

    async def delete_objects(self, namespace: str) -> None: ...

    # -- properties -------------------------------------------------------------
    async def list_properties(self, namespace: str) -> list[PropertyDefinition]: ...

    async def get_property(self, namespace: str, name: str) -> PropertyDefinition | None: ...

    async def create_property(
        self, namespace: str, prop: PropertyDefinition
    ) -> PropertyDefinition: ...

    async def update_property(
        self, namespace: str, name: str, prop: PropertyDefinition
    ) -> PropertyDefinition | None: ...

    async def delete_property(self, namespace: str, name: str) -> bool: ...

    async def delete_properties(self, namespace: str) -> None: ...

    # -- tags -------------------------------------------------------------------
    async def list_tags(self, namespace: str, query: TagQuery) -> list[MetadefTag]: ...

    async def get_tag(self, namespace: str, name: str) -> MetadefTag | None: ...

    async def create_tags(
        self, namespace: str, names: list[str], *, replace: bool
    ) -> list[MetadefTag]:
        """Add tags; with ``replace`` the namespace's other tags go first."""
        ...

    async def rename_tag(self, namespace: str, name: str, new_name: str) -> MetadefTag | None:
        ...

    async def delete_tag(self, namespace: str, name: str) -> bool: ...

    async def delete_tags(self, namespace: str) -> None: ...

    # -- resource types ---------------------------------------------------------
    async def list_resource_types(self) -> list[ResourceType]: ...

    async def list_associations(self, namespace: str) -> list[ResourceTypeAssociation]: ...

    async def associate(
        self, namespace: str, association: ResourceTypeAssociation
    ) -> ResourceTypeAssociation:
        """Associate, creating the resource type on first use."""
        ...

    async def dissociate(self, namespace: str, resource_type: str) -> bool: ...

    # -- the catalogue as a whole -------------------------------------------------
    async def load_namespace(self, content: NamespaceContent, mode: LoadMode) -> str:
        """Load one catalogue namespace; returns what happened (created, skipped...)."""
        ...

    async def all_namespace_names(self) -> list[str]: ...

    async def delete_everything(self) -> int:
        """Empty the catalogue (namespaces and resource types); returns namespaces removed."""
        ...

    async def definitions_for(
        self, resource_type: str, property_names: list[str], project_id: str | None
    ) -> list[VisibleDefinition]:
        """Definitions of ``property_names`` (prefixed) for a resource type, from public
        namespaces and those owned by ``project_id``."""
        ...
