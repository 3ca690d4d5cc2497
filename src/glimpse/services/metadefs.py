"""The metadata definitions catalogue: namespaces and the objects, properties, tags and
resource-type associations inside them.

Every API method reads top to bottom: find the namespace (one the caller may not see
is "not found", never "forbidden"), authorize with Glance's metadef rule, check the
rules, write. By default only administrators write (guide 1.8); an operator's policy
file can open writes to everyone (guide 1.9). There is no count limit: the policy is
what keeps the database from being filled.

The ``*_catalogue`` methods are for the operator's ``glimpse metadefs`` command, which
has the database itself, and so bypass policy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from glimpse.db.metadefs import (
    NAMESPACE_SORT_KEYS,
    TAG_SORT_KEYS,
    LoadMode,
    MetadefRepository,
    NamespaceQuery,
    TagQuery,
    VisibleDefinition,
)
from glimpse.domain.errors import Forbidden, InvalidInput, NotFound
from glimpse.domain.metadefs import (
    IMAGE_RESOURCE_TYPE,
    NAME_MAX,
    NAMESPACE_VISIBILITIES,
    MetadefObject,
    MetadefTag,
    Namespace,
    NamespaceContent,
    PropertyDefinition,
    ResourceType,
    ResourceTypeAssociation,
    value_problem,
)
from glimpse.policy.context import RequestContext
from glimpse.policy.enforcer import PolicyEnforcer


@dataclass(frozen=True)
class NamespaceFields:
    """The namespace's own fields as a create or update request gives them."""

    namespace: str
    display_name: str | None = None
    description: str | None = None
    visibility: str | None = None
    protected: bool | None = None
    owner: str | None = None


class MetadefService:
    def __init__(self, repo: MetadefRepository, policy: PolicyEnforcer) -> None:
        self.repo = repo
        self.policy = policy

    # -- who sees what ------------------------------------------------------------------

    @staticmethod
    def target(namespace: Namespace) -> dict[str, object]:
        return {"project_id": namespace.owner, "visibility": namespace.visibility}

    @staticmethod
    def _caller(ctx: RequestContext) -> dict[str, object]:
        return {"project_id": ctx.project_id}

    async def _namespace(self, ctx: RequestContext, name: str) -> Namespace:
        """The namespace, if the caller may see it: admin, public, or their project's."""
        namespace = await self.repo.get_namespace(name)
        if (
            namespace is None
            or not (
                ctx.is_admin
                or namespace.visibility == "public"
                or namespace.owner == ctx.project_id
            )
            or not self.policy.check(ctx, "get_metadef_namespace", self.target(namespace))
        ):
            raise NotFound(f"Metadata definition namespace={name} was not found.")
        return namespace

    def _authorize(self, ctx: RequestContext, rule: str, namespace: Namespace) -> None:
        self.policy.authorize(ctx, rule, self.target(namespace))

    @staticmethod
    def _refuse_if_protected(namespace: Namespace, what: str) -> None:
        if namespace.protected:
            raise Forbidden(f"Metadata definition {what} is protected and cannot be deleted.")

    # -- namespaces -----------------------------------------------------------------------

    async def list_namespaces(
        self,
        ctx: RequestContext,
        *,
        visibility: str | None = None,
        resource_types: tuple[str, ...] = (),
        sort_key: str = "created_at",
        sort_dir: str = "desc",
        marker: str | None = None,
        limit: int = 25,
    ) -> list[NamespaceContent]:
        """A page of namespaces, each with its resource type associations only."""
        self.policy.authorize(ctx, "get_metadef_namespaces", self._caller(ctx))
        self.policy.authorize(ctx, "list_metadef_resource_types", self._caller(ctx))
        if visibility is not None and visibility not in NAMESPACE_VISIBILITIES:
            raise InvalidInput(f"Invalid visibility value: {visibility}")
        if sort_key not in NAMESPACE_SORT_KEYS:
            raise InvalidInput(f"Invalid sort key: {sort_key}")
        if sort_dir not in ("asc", "desc"):
            raise InvalidInput(f"Invalid sort direction: {sort_dir}")
        if marker is not None:
            await self._namespace(ctx, marker)
        found = await self.repo.list_namespaces(
            NamespaceQuery(
                project_id=ctx.project_id, is_admin=ctx.is_admin, visibility=visibility,
                resource_types=resource_types, sort_key=sort_key, sort_dir=sort_dir,
                marker=marker, limit=limit,
            )
        )
        # The page was cut before this check, as Glance does: a page can come out short.
        shown = [
            ns for ns in found
            if self.policy.check(ctx, "get_metadef_namespace", self.target(ns))
        ]
        associations = await self.repo.associations_by_namespace([ns.namespace for ns in shown])
        return [
            NamespaceContent(ns, resource_type_associations=associations[ns.namespace])
            for ns in shown
        ]

    async def create_namespace(
        self, ctx: RequestContext, fields: NamespaceFields, content: NamespaceContent
    ) -> NamespaceContent:
        """Create a namespace with whatever the request embeds (all or nothing).

        ``content.namespace`` is ignored: the namespace is built from ``fields``.
        """
        caller = self._caller(ctx)
        self.policy.authorize(ctx, "add_metadef_namespace", caller)
        if content.resource_type_associations:
            self.policy.authorize(ctx, "add_metadef_resource_type_association", caller)
        if content.objects:
            self.policy.authorize(ctx, "add_metadef_object", caller)
        if content.properties:
            self.policy.authorize(ctx, "add_metadef_property", caller)
        if content.tags:
            self.policy.authorize(ctx, "add_metadef_tag", caller)
        namespace = self._new_namespace(ctx, fields)
        _check_unique([o.name for o in content.objects], "object")
        _check_unique([t.name for t in content.tags], "tag")
        _check_unique([a.name for a in content.resource_type_associations], "resource type")
        await self.repo.create_namespace(dataclasses.replace(content, namespace=namespace))
        return await self.repo.get_content(namespace.namespace)

    def _new_namespace(
        self, ctx: RequestContext, fields: NamespaceFields, current: Namespace | None = None
    ) -> Namespace:
        """The namespace ``fields`` describe. A new one belongs to the caller's project by
        default, an existing one keeps its owner; only admins give one to another project.
        (Glance hands a namespace updated without ``owner`` to the caller's project; a
        PUT from glanceclient always carries the owner, so keeping it changes nothing.)"""
        allowed_owner = current.owner if current is not None else ctx.project_id
        owner = fields.owner or allowed_owner
        if owner is None:
            raise Forbidden("Namespaces must have an owner; the request carries no project.")
        if owner != allowed_owner and not ctx.is_admin:
            raise Forbidden(f"You are not permitted to give a namespace to project '{owner}'.")
        _check_name(fields.namespace, "namespace")
        visibility = fields.visibility or "private"
        if visibility not in NAMESPACE_VISIBILITIES:
            raise InvalidInput(f"Invalid visibility value: {visibility}")
        return Namespace(
            namespace=fields.namespace,
            owner=owner,
            display_name=fields.display_name,
            description=fields.description,
            visibility=visibility,
            protected=bool(fields.protected),
        )

    async def get_namespace(
        self, ctx: RequestContext, name: str, resource_type: str | None = None
    ) -> NamespaceContent:
        """A namespace with all its content; with ``resource_type``, property names carry
        the prefix of that resource type's association."""
        namespace = await self._namespace(ctx, name)
        for rule in ("list_metadef_resource_types", "get_metadef_objects",
                     "get_metadef_properties", "get_metadef_tags"):
            self._authorize(ctx, rule, namespace)
        content = await self.repo.get_content(name)
        if resource_type:
            prefix = next(
                (a.prefix for a in content.resource_type_associations
                 if a.name == resource_type), None,
            )
            if prefix:
                content = _with_prefix(content, prefix)
        return content

    async def update_namespace(
        self, ctx: RequestContext, name: str, fields: NamespaceFields
    ) -> Namespace:
        """Replace the namespace's own fields; unset ones take their create defaults
        (private, unprotected), except the owner, which stays."""
        namespace = await self._namespace(ctx, name)
        self._authorize(ctx, "modify_metadef_namespace", namespace)
        return await self.repo.update_namespace(
            name, self._new_namespace(ctx, fields, namespace)
        )

    async def delete_namespace(self, ctx: RequestContext, name: str) -> None:
        namespace = await self._namespace(ctx, name)
        self._authorize(ctx, "delete_metadef_namespace", namespace)
        self._refuse_if_protected(namespace, f"namespace {name}")
        await self.repo.delete_namespace(name)

    async def delete_namespace_objects(self, ctx: RequestContext, name: str) -> None:
        # Glance guards the "delete all" calls with the namespace's delete rule.
        namespace = await self._namespace(ctx, name)
        self._authorize(ctx, "delete_metadef_namespace", namespace)
        self._refuse_if_protected(namespace, f"namespace {name}")
        await self.repo.delete_objects(name)

    async def delete_namespace_properties(self, ctx: RequestContext, name: str) -> None:
        namespace = await self._namespace(ctx, name)
        self._authorize(ctx, "delete_metadef_namespace", namespace)
        self._refuse_if_protected(namespace, f"namespace {name}")
        await self.repo.delete_properties(name)

    async def delete_namespace_tags(self, ctx: RequestContext, name: str) -> None:
        namespace = await self._namespace(ctx, name)
        self._authorize(ctx, "delete_metadef_namespace", namespace)
        self._authorize(ctx, "delete_metadef_tags", namespace)
        self._refuse_if_protected(namespace, f"namespace {name}")
        await self.repo.delete_tags(name)

    # -- objects --------------------------------------------------------------------------

    async def list_objects(self, ctx: RequestContext, namespace_name: str) -> list[MetadefObject]:
        namespace = await self._namespace(ctx, namespace_name)
        self._authorize(ctx, "get_metadef_objects", namespace)
        if not self.policy.check(ctx, "get_metadef_object", self.target(namespace)):
            return []
        return await self.repo.list_objects(namespace_name)

    async def get_object(
        self, ctx: RequestContext, namespace_name: str, name: str
    ) -> MetadefObject:
        namespace = await self._namespace(ctx, namespace_name)
        self._authorize(ctx, "get_metadef_object", namespace)
        return await self._existing_object(namespace_name, name)

    async def _existing_object(self, namespace_name: str, name: str) -> MetadefObject:
        found = await self.repo.get_object(namespace_name, name)
        if found is None:
            raise _object_missing(namespace_name, name)
        return found

    async def create_object(
        self, ctx: RequestContext, namespace_name: str, obj: MetadefObject
    ) -> MetadefObject:
        namespace = await self._namespace(ctx, namespace_name)
        self._authorize(ctx, "add_metadef_object", namespace)
        _check_name(obj.name, "object")
        return await self.repo.create_object(namespace_name, obj)

    async def update_object(
        self, ctx: RequestContext, namespace_name: str, name: str, obj: MetadefObject
    ) -> MetadefObject:
        namespace = await self._namespace(ctx, namespace_name)
        self._authorize(ctx, "modify_metadef_object", namespace)
        _check_name(obj.name, "object")
        updated = await self.repo.update_object(namespace_name, name, obj)
        if updated is None:
            raise _object_missing(namespace_name, name)
        return updated

    async def delete_object(self, ctx: RequestContext, namespace_name: str, name: str) -> None:
        namespace = await self._namespace(ctx, namespace_name)
        self._authorize(ctx, "delete_metadef_object", namespace)
        await self._existing_object(namespace_name, name)
        self._refuse_if_protected(namespace, f"object {name}")
        if not await self.repo.delete_object(namespace_name, name):
            raise _object_missing(namespace_name, name)

    # -- properties -------------------------------------------------------------------------

    async def list_properties(
        self, ctx: RequestContext, namespace_name: str
    ) -> list[PropertyDefinition]:
        namespace = await self._namespace(ctx, namespace_name)
        self._authorize(ctx, "get_metadef_properties", namespace)
        return await self.repo.list_properties(namespace_name)

    async def get_property(
        self, ctx: RequestContext, namespace_name: str, name: str,
        resource_type: str | None = None,
    ) -> PropertyDefinition:
        """One property; with ``resource_type``, ``name`` is given with that resource
        type's prefix (``hw_`` + ``cpu_cores``) and must start with it."""
        namespace = await self._namespace(ctx, namespace_name)
        self._authorize(ctx, "get_metadef_property", namespace)
        if resource_type:
            self._authorize(ctx, "get_metadef_resource_type", namespace)
            association = next(
                (a for a in await self.repo.list_associations(namespace_name)
                 if a.name == resource_type), None,
            )
            if association is None:
                raise NotFound(
                    f"The metadata definition resource-type association of "
                    f"resource-type={resource_type} to namespace={namespace_name}, "
                    "was not found."
                )
            prefix = association.prefix or ""
            if not prefix or not name.startswith(prefix):
                raise NotFound(
                    f"Property {name} does not start with the expected resource type "
                    f"association prefix of '{prefix}'."
                )
            name = name[len(prefix):]
        return await self._existing_property(namespace_name, name)

    async def _existing_property(self, namespace_name: str, name: str) -> PropertyDefinition:
        found = await self.repo.get_property(namespace_name, name)
        if found is None:
            raise _property_missing(namespace_name, name)
        return found

    async def create_property(
        self, ctx: RequestContext, namespace_name: str, prop: PropertyDefinition
    ) -> PropertyDefinition:
        namespace = await self._namespace(ctx, namespace_name)
        self._authorize(ctx, "add_metadef_property", namespace)
        _check_name(prop.name, "property")
        return await self.repo.create_property(namespace_name, prop)

    async def update_property(
        self, ctx: RequestContext, namespace_name: str, name: str, prop: PropertyDefinition
    ) -> PropertyDefinition:
        namespace = await self._namespace(ctx, namespace_name)
        self._authorize(ctx, "modify_metadef_property", namespace)
        _check_name(prop.name, "property")
        updated = await self.repo.update_property(namespace_name, name, prop)
        if updated is None:
            raise _property_missing(namespace_name, name)
        return updated

    async def delete_property(self, ctx: RequestContext, namespace_name: str, name: str) -> None:
        namespace = await self._namespace(ctx, namespace_name)
        self._authorize(ctx, "remove_metadef_property", namespace)
        await self._existing_property(namespace_name, name)
        self._refuse_if_protected(namespace, f"property {name}")
        if not await self.repo.delete_property(namespace_name, name):
            raise _property_missing(namespace_name, name)

    # -- tags -----------------------------------------------------------------------------

    async def list_tags(
        self, ctx: RequestContext, namespace_name: str, *, sort_key: str = "created_at",
        sort_dir: str = "desc", marker: str | None = None, limit: int | None = None,
    ) -> list[MetadefTag]:
        namespace = await self._namespace(ctx, namespace_name)
        self._authorize(ctx, "get_metadef_tags", namespace)
        if sort_key not in TAG_SORT_KEYS:
            raise InvalidInput(f"Invalid sort key: {sort_key}")
        if sort_dir not in ("asc", "desc"):
            raise InvalidInput(f"Invalid sort direction: {sort_dir}")
        return await self.repo.list_tags(
            namespace_name, TagQuery(sort_key=sort_key, sort_dir=sort_dir, marker=marker,
                                     limit=limit)
        )

    async def get_tag(self, ctx: RequestContext, namespace_name: str, name: str) -> MetadefTag:
        namespace = await self._namespace(ctx, namespace_name)
        self._authorize(ctx, "get_metadef_tag", namespace)
        return await self._existing_tag(namespace_name, name)

    async def _existing_tag(self, namespace_name: str, name: str) -> MetadefTag:
        found = await self.repo.get_tag(namespace_name, name)
        if found is None:
            raise _tag_missing(namespace_name, name)
        return found

    async def create_tag(
        self, ctx: RequestContext, namespace_name: str, name: str
    ) -> MetadefTag:
        namespace = await self._namespace(ctx, namespace_name)
        self._authorize(ctx, "add_metadef_tag", namespace)
        _check_name(name, "tag")
        return (await self.repo.create_tags(namespace_name, [name], replace=False))[0]

    async def create_tags(
        self, ctx: RequestContext, namespace_name: str, names: list[str], *, append: bool
    ) -> list[MetadefTag]:
        """Set the namespace's tags to ``names``, or add them with ``append``."""
        namespace = await self._namespace(ctx, namespace_name)
        self._authorize(ctx, "add_metadef_tags", namespace)
        for name in names:
            _check_name(name, "tag")
        return await self.repo.create_tags(namespace_name, names, replace=not append)

    async def update_tag(
        self, ctx: RequestContext, namespace_name: str, name: str, new_name: str
    ) -> MetadefTag:
        namespace = await self._namespace(ctx, namespace_name)
        self._authorize(ctx, "modify_metadef_tag", namespace)
        _check_name(new_name, "tag")
        renamed = await self.repo.rename_tag(namespace_name, name, new_name)
        if renamed is None:
            raise _tag_missing(namespace_name, name)
        return renamed

    async def delete_tag(self, ctx: RequestContext, namespace_name: str, name: str) -> None:
        namespace = await self._namespace(ctx, namespace_name)
        self._authorize(ctx, "delete_metadef_tag", namespace)
        await self._existing_tag(namespace_name, name)
        self._refuse_if_protected(namespace, f"tag {name}")
        if not await self.repo.delete_tag(namespace_name, name):
            raise _tag_missing(namespace_name, name)

    # -- resource types ---------------------------------------------------------------------

    async def list_resource_types(self, ctx: RequestContext) -> list[ResourceType]:
        self.policy.authorize(ctx, "list_metadef_resource_types", self._caller(ctx))
        return await self.repo.list_resource_types()

    async def list_associations(
        self, ctx: RequestContext, namespace_name: str
    ) -> list[ResourceTypeAssociation]:
        namespace = await self._namespace(ctx, namespace_name)
        self._authorize(ctx, "list_metadef_resource_types", namespace)
        if not self.policy.check(ctx, "get_metadef_resource_type", self.target(namespace)):
            return []
        return await self.repo.list_associations(namespace_name)

    async def associate(
        self, ctx: RequestContext, namespace_name: str, association: ResourceTypeAssociation
    ) -> ResourceTypeAssociation:
        namespace = await self._namespace(ctx, namespace_name)
        self._authorize(ctx, "add_metadef_resource_type_association", namespace)
        _check_name(association.name, "resource type")
        return await self.repo.associate(namespace_name, association)

    async def dissociate(
        self, ctx: RequestContext, namespace_name: str, resource_type: str
    ) -> None:
        namespace = await self._namespace(ctx, namespace_name)
        self._authorize(ctx, "remove_metadef_resource_type_association", namespace)
        missing = NotFound(f"Failed to find resource type {resource_type} to delete")
        associations = await self.repo.list_associations(namespace_name)
        if not any(a.name == resource_type for a in associations):
            raise missing
        self._refuse_if_protected(namespace, f"resource-type-association {resource_type}")
        if not await self.repo.dissociate(namespace_name, resource_type):
            raise missing

    # -- the catalogue, for the operator's command line ---------------------------------------

    async def load_catalogue(
        self, contents: list[NamespaceContent], mode: LoadMode
    ) -> list[tuple[str, str]]:
        """Load namespaces (``glimpse metadefs load``); returns (namespace, outcome) pairs."""
        return [
            (content.namespace.namespace, await self.repo.load_namespace(content, mode))
            for content in contents
        ]

    async def export_catalogue(self) -> list[NamespaceContent]:
        return [await self.repo.get_content(name) for name in await self.repo.all_namespace_names()]

    async def unload_catalogue(self) -> int:
        return await self.repo.delete_everything()

    # -- image properties (optional, [glimpse] validate_image_properties_against_metadefs) --

    async def check_image_properties(
        self, ctx: RequestContext, properties: Mapping[str, str]
    ) -> None:
        """Refuse image property values that the catalogue's definitions for
        OS::Glance::Image (public namespaces and the caller's own) do not allow.

        Properties without a definition are free; a property defined in several
        namespaces needs to fit one of them (``hw_vif_model`` differs per hypervisor).
        """
        definitions = await self.repo.definitions_for(
            IMAGE_RESOURCE_TYPE, sorted(properties), ctx.project_id
        )
        by_name: dict[str, list[VisibleDefinition]] = {}
        for definition in definitions:
            by_name.setdefault(definition.name, []).append(definition)
        for name, candidates in sorted(by_name.items()):
            value = properties[name]
            problems = [(d.namespace, value_problem(value, d.schema)) for d in candidates]
            if any(problem is None for _, problem in problems):
                continue
            raise InvalidInput(
                f"Property {name} has an invalid value {value!r}: "
                + "; or ".join(f"{problem} (namespace {ns})" for ns, problem in problems)
            )

def _check_name(name: str, kind: str) -> None:
    if not name or len(name) > NAME_MAX:
        raise InvalidInput(f"A {kind} name must have 1 to {NAME_MAX} characters.")


def _check_unique(names: list[str], kind: str) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidInput(f"The {kind} names must be unique; repeated: {', '.join(repeated)}")


def _with_prefix(content: NamespaceContent, prefix: str) -> NamespaceContent:
    return dataclasses.replace(
        content,
        properties=[dataclasses.replace(p, name=prefix + p.name) for p in content.properties],
        objects=[
            dataclasses.replace(
                o,
                properties={prefix + k: v for k, v in o.properties.items()},
                required=[prefix + r for r in o.required],
            )
            for o in content.objects
        ],
    )


def _object_missing(namespace: str, name: str) -> NotFound:
    return NotFound(
        f"The metadata definition object with name={name} was not found in "
        f"namespace={namespace}."
    )


def _property_missing(namespace: str, name: str) -> NotFound:
    return NotFound(
        f"The metadata definition property with name={name} was not found in "
        f"namespace={namespace}."
    )


def _tag_missing(namespace: str, name: str) -> NotFound:
    return NotFound(
        f"The metadata definition tag with name={name} was not found in "
        f"namespace={namespace}."
    )
