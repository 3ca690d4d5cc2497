"""SQL implementation of ``glimpse.db.metadefs.MetadefRepository``.

Every write runs in one transaction that first locks its namespace row (``FOR UPDATE``
on PostgreSQL; SQLite writers are serialised anyway), so a namespace deleted or
renamed concurrently is seen as gone rather than half-written. Names are unique per
namespace by constraint; an ``IntegrityError`` becomes ``Duplicate``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from glimpse.db.metadefs import (
    LoadMode,
    NamespaceQuery,
    TagQuery,
    VisibleDefinition,
)
from glimpse.db.sql.metadef_tables import (
    metadef_namespace_resource_types as assocs,
)
from glimpse.db.sql.metadef_tables import (
    metadef_namespaces as namespaces,
)
from glimpse.db.sql.metadef_tables import (
    metadef_objects as objects,
)
from glimpse.db.sql.metadef_tables import (
    metadef_properties as properties,
)
from glimpse.db.sql.metadef_tables import (
    metadef_resource_types as resource_types,
)
from glimpse.db.sql.metadef_tables import (
    metadef_tags as tags,
)
from glimpse.db.sql.session import Database
from glimpse.domain.errors import Duplicate, NotFound
from glimpse.domain.metadefs import (
    MetadefObject,
    MetadefTag,
    Namespace,
    NamespaceContent,
    PropertyDefinition,
    ResourceType,
    ResourceTypeAssociation,
)

_CHILD_TABLES = (tags, objects, properties, assocs)


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def namespace_missing(name: str) -> NotFound:
    return NotFound(f"Metadata definition namespace={name} was not found.")


# -- rows <-> domain ---------------------------------------------------------------


def _namespace(row: Any) -> Namespace:
    return Namespace(
        namespace=row.namespace,
        owner=row.owner,
        display_name=row.display_name,
        description=row.description,
        visibility=row.visibility,
        protected=bool(row.protected),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _namespace_values(ns: Namespace) -> dict[str, Any]:
    return {
        "namespace": ns.namespace,
        "display_name": ns.display_name,
        "description": ns.description,
        "visibility": ns.visibility,
        "protected": ns.protected,
        "owner": ns.owner,
    }


def _object(row: Any) -> MetadefObject:
    return MetadefObject(
        name=row.name,
        description=row.description,
        required=json.loads(row.required) if row.required else [],
        properties=json.loads(row.json_schema),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _object_values(obj: MetadefObject) -> dict[str, Any]:
    return {
        "name": obj.name,
        "description": obj.description,
        "required": json.dumps(obj.required) if obj.required else None,
        "json_schema": json.dumps(obj.properties),
    }


def _property(row: Any) -> PropertyDefinition:
    return PropertyDefinition(
        name=row.name,
        schema=json.loads(row.json_schema),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _tag(row: Any) -> MetadefTag:
    return MetadefTag(name=row.name, created_at=row.created_at, updated_at=row.updated_at)


def _association(row: Any) -> ResourceTypeAssociation:
    return ResourceTypeAssociation(
        name=row.name,
        prefix=row.prefix,
        properties_target=row.properties_target,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _after(
    columns: Sequence[ColumnElement[Any]], values: Sequence[Any], descending: bool
) -> ColumnElement[bool]:
    """Keyset condition: rows strictly after ``values`` in the (columns...) order."""
    clauses = []
    for i, column in enumerate(columns):
        equal = [columns[j] == values[j] for j in range(i)]
        beyond = column < values[i] if descending else column > values[i]
        clauses.append(and_(*equal, beyond))
    return or_(*clauses)


_ASSOCIATION_COLUMNS = (
    resource_types.c.name,
    assocs.c.prefix,
    assocs.c.properties_target,
    assocs.c.created_at,
    assocs.c.updated_at,
)


class SqlMetadefRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- helpers ------------------------------------------------------------------

    async def _namespace_id(self, conn: AsyncConnection, name: str, *, lock: bool) -> int:
        query = select(namespaces.c.id).where(namespaces.c.namespace == name)
        if lock:
            query = query.with_for_update()
        namespace_id = (await conn.execute(query)).scalar()
        if namespace_id is None:
            raise namespace_missing(name)
        return int(namespace_id)

    async def _resource_type_id(
        self, conn: AsyncConnection, name: str, *, protected: bool, now: datetime
    ) -> int:
        query = select(resource_types.c.id).where(resource_types.c.name == name)
        found = (await conn.execute(query)).scalar()
        if found is not None:
            return int(found)
        try:
            async with conn.begin_nested():
                await conn.execute(
                    insert(resource_types).values(
                        name=name, protected=protected, created_at=now, updated_at=now
                    )
                )
        except IntegrityError:
            pass  # created by a concurrent request: use theirs
        return int((await conn.execute(query)).scalar_one())

    async def _insert_content(
        self,
        conn: AsyncConnection,
        namespace_id: int,
        content: NamespaceContent,
        now: datetime,
        *,
        seeded: bool,
    ) -> None:
        stamps = {"created_at": now, "updated_at": now}
        for association in content.resource_type_associations:
            await self._insert_association(conn, namespace_id, association, now, seeded=seeded)
        if content.properties:
            await conn.execute(
                insert(properties),
                [
                    {"namespace_id": namespace_id, "name": p.name,
                     "json_schema": json.dumps(p.schema), **stamps}
                    for p in content.properties
                ],
            )
        if content.objects:
            await conn.execute(
                insert(objects),
                [{"namespace_id": namespace_id, **_object_values(o), **stamps}
                 for o in content.objects],
            )
        if content.tags:
            await conn.execute(
                insert(tags),
                [{"namespace_id": namespace_id, "name": t.name, **stamps} for t in content.tags],
            )

    async def _insert_association(
        self,
        conn: AsyncConnection,
        namespace_id: int,
        association: ResourceTypeAssociation,
        now: datetime,
        *,
        seeded: bool,
    ) -> None:
        # Resource types created by loading the shipped catalogue are "system" types.
        type_id = await self._resource_type_id(conn, association.name, protected=seeded, now=now)
        await conn.execute(
            insert(assocs).values(
                namespace_id=namespace_id,
                resource_type_id=type_id,
                prefix=association.prefix,
                properties_target=association.properties_target,
                created_at=now,
                updated_at=now,
            )
        )

    async def _delete_namespace_rows(self, conn: AsyncConnection, namespace_id: int) -> None:
        for table in _CHILD_TABLES:
            await conn.execute(delete(table).where(table.c.namespace_id == namespace_id))
        await conn.execute(delete(namespaces).where(namespaces.c.id == namespace_id))

    # -- namespaces -------------------------------------------------------------------

    async def list_namespaces(self, query: NamespaceQuery) -> list[Namespace]:
        stmt = select(namespaces)
        if not query.is_admin:
            public = namespaces.c.visibility == "public"
            if query.project_id is not None:
                stmt = stmt.where(or_(public, namespaces.c.owner == query.project_id))
            else:
                stmt = stmt.where(public)
        if query.visibility is not None:
            stmt = stmt.where(namespaces.c.visibility == query.visibility)
        if query.resource_types:
            stmt = stmt.where(
                exists(
                    select(assocs.c.namespace_id)
                    .join(resource_types, resource_types.c.id == assocs.c.resource_type_id)
                    .where(
                        assocs.c.namespace_id == namespaces.c.id,
                        resource_types.c.name.in_(query.resource_types),
                    )
                )
            )
        keys: list[ColumnElement[Any]] = []
        if query.sort_key == "display_name":
            keys.append(func.coalesce(namespaces.c.display_name, ""))
        elif query.sort_key != "created_at":
            keys.append(namespaces.c[query.sort_key])
        keys += [namespaces.c.created_at, namespaces.c.id]
        descending = query.sort_dir == "desc"
        async with self._db.read() as conn:
            if query.marker is not None:
                marker = (
                    await conn.execute(
                        select(*keys).where(namespaces.c.namespace == query.marker)
                    )
                ).first()
                if marker is None:
                    raise namespace_missing(query.marker)
                stmt = stmt.where(_after(keys, tuple(marker), descending))
            stmt = stmt.order_by(*(k.desc() if descending else k.asc() for k in keys))
            rows = (await conn.execute(stmt.limit(query.limit))).all()
        return [_namespace(r) for r in rows]

    async def get_namespace(self, name: str) -> Namespace | None:
        async with self._db.read() as conn:
            row = (
                await conn.execute(select(namespaces).where(namespaces.c.namespace == name))
            ).first()
        return _namespace(row) if row is not None else None

    async def create_namespace(self, content: NamespaceContent) -> Namespace:
        ns = content.namespace
        now = _utcnow()
        try:
            async with self._db.write() as conn:
                taken = (
                    await conn.execute(
                        select(namespaces.c.id).where(namespaces.c.namespace == ns.namespace)
                    )
                ).first()
                if taken is not None:
                    raise _duplicate_namespace(ns.namespace)
                result = await conn.execute(
                    insert(namespaces).values(
                        **_namespace_values(ns), created_at=now, updated_at=now
                    )
                )
                namespace_id = _new_id(result)
                await self._insert_content(conn, namespace_id, content, now, seeded=False)
        except IntegrityError as exc:
            raise Duplicate(
                f"The metadata definition namespace={ns.namespace} already exists or its "
                "content names something twice."
            ) from exc
        ns.created_at = ns.updated_at = now
        return ns

    async def update_namespace(self, name: str, namespace: Namespace) -> Namespace:
        now = _utcnow()
        try:
            async with self._db.write() as conn:
                namespace_id = await self._namespace_id(conn, name, lock=True)
                if namespace.namespace != name:
                    taken = (
                        await conn.execute(
                            select(namespaces.c.id).where(
                                namespaces.c.namespace == namespace.namespace
                            )
                        )
                    ).first()
                    if taken is not None:
                        raise _duplicate_namespace(namespace.namespace)
                await conn.execute(
                    update(namespaces)
                    .where(namespaces.c.id == namespace_id)
                    .values(**_namespace_values(namespace), updated_at=now)
                )
                row = (
                    await conn.execute(select(namespaces).where(namespaces.c.id == namespace_id))
                ).one()
        except IntegrityError as exc:
            raise _duplicate_namespace(namespace.namespace) from exc
        return _namespace(row)

    async def delete_namespace(self, name: str) -> None:
        async with self._db.write() as conn:
            namespace_id = await self._namespace_id(conn, name, lock=True)
            await self._delete_namespace_rows(conn, namespace_id)

    async def get_content(self, name: str) -> NamespaceContent:
        async with self._db.read() as conn:
            row = (
                await conn.execute(select(namespaces).where(namespaces.c.namespace == name))
            ).first()
            if row is None:
                raise namespace_missing(name)
            nid = row.id
            found_assocs = await conn.execute(
                select(*_ASSOCIATION_COLUMNS)
                .join(resource_types, resource_types.c.id == assocs.c.resource_type_id)
                .where(assocs.c.namespace_id == nid)
                .order_by(assocs.c.created_at, resource_types.c.id)
            )
            found_props = await conn.execute(
                select(properties).where(properties.c.namespace_id == nid)
                .order_by(properties.c.id)
            )
            found_objects = await conn.execute(
                select(objects).where(objects.c.namespace_id == nid).order_by(objects.c.id)
            )
            found_tags = await conn.execute(
                select(tags).where(tags.c.namespace_id == nid).order_by(tags.c.id)
            )
            return NamespaceContent(
                namespace=_namespace(row),
                resource_type_associations=[_association(r) for r in found_assocs],
                properties=[_property(r) for r in found_props],
                objects=[_object(r) for r in found_objects],
                tags=[_tag(r) for r in found_tags],
            )

    async def associations_by_namespace(
        self, names: list[str]
    ) -> dict[str, list[ResourceTypeAssociation]]:
        result: dict[str, list[ResourceTypeAssociation]] = {name: [] for name in names}
        if not names:
            return result
        async with self._db.read() as conn:
            rows = await conn.execute(
                select(namespaces.c.namespace, *_ASSOCIATION_COLUMNS)
                .select_from(assocs)
                .join(resource_types, resource_types.c.id == assocs.c.resource_type_id)
                .join(namespaces, namespaces.c.id == assocs.c.namespace_id)
                .where(namespaces.c.namespace.in_(names))
                .order_by(assocs.c.created_at, resource_types.c.id)
            )
            for row in rows:
                result[row.namespace].append(_association(row))
        return result

    # -- objects ----------------------------------------------------------------------

    async def list_objects(self, namespace: str) -> list[MetadefObject]:
        async with self._db.read() as conn:
            nid = await self._namespace_id(conn, namespace, lock=False)
            rows = await conn.execute(
                select(objects).where(objects.c.namespace_id == nid).order_by(objects.c.id)
            )
            return [_object(r) for r in rows]

    async def get_object(self, namespace: str, name: str) -> MetadefObject | None:
        async with self._db.read() as conn:
            nid = await self._namespace_id(conn, namespace, lock=False)
            row = (
                await conn.execute(
                    select(objects).where(objects.c.namespace_id == nid, objects.c.name == name)
                )
            ).first()
        return _object(row) if row is not None else None

    async def create_object(self, namespace: str, obj: MetadefObject) -> MetadefObject:
        now = _utcnow()
        try:
            async with self._db.write() as conn:
                nid = await self._namespace_id(conn, namespace, lock=True)
                await conn.execute(
                    insert(objects).values(
                        namespace_id=nid, **_object_values(obj), created_at=now, updated_at=now
                    )
                )
        except IntegrityError as exc:
            raise _duplicate("object", obj.name, namespace) from exc
        obj.created_at = obj.updated_at = now
        return obj

    async def update_object(
        self, namespace: str, name: str, obj: MetadefObject
    ) -> MetadefObject | None:
        now = _utcnow()
        try:
            async with self._db.write() as conn:
                nid = await self._namespace_id(conn, namespace, lock=True)
                where = and_(objects.c.namespace_id == nid, objects.c.name == name)
                result = await conn.execute(
                    update(objects).where(where).values(**_object_values(obj), updated_at=now)
                )
                if result.rowcount == 0:
                    return None
                row = (
                    await conn.execute(
                        select(objects).where(
                            objects.c.namespace_id == nid, objects.c.name == obj.name
                        )
                    )
                ).one()
        except IntegrityError as exc:
            raise _duplicate("object", obj.name, namespace) from exc
        return _object(row)

    async def delete_object(self, namespace: str, name: str) -> bool:
        async with self._db.write() as conn:
            nid = await self._namespace_id(conn, namespace, lock=True)
            result = await conn.execute(
                delete(objects).where(objects.c.namespace_id == nid, objects.c.name == name)
            )
            return bool(result.rowcount)

    async def delete_objects(self, namespace: str) -> None:
        await self._delete_children(objects, namespace)

    async def _delete_children(self, table: Any, namespace: str) -> None:
        async with self._db.write() as conn:
            nid = await self._namespace_id(conn, namespace, lock=True)
            await conn.execute(delete(table).where(table.c.namespace_id == nid))

    # -- properties -------------------------------------------------------------------

    async def list_properties(self, namespace: str) -> list[PropertyDefinition]:
        async with self._db.read() as conn:
            nid = await self._namespace_id(conn, namespace, lock=False)
            rows = await conn.execute(
                select(properties)
                .where(properties.c.namespace_id == nid)
                .order_by(properties.c.id)
            )
            return [_property(r) for r in rows]

    async def get_property(self, namespace: str, name: str) -> PropertyDefinition | None:
        async with self._db.read() as conn:
            nid = await self._namespace_id(conn, namespace, lock=False)
            row = (
                await conn.execute(
                    select(properties).where(
                        properties.c.namespace_id == nid, properties.c.name == name
                    )
                )
            ).first()
        return _property(row) if row is not None else None

    async def create_property(
        self, namespace: str, prop: PropertyDefinition
    ) -> PropertyDefinition:
        now = _utcnow()
        try:
            async with self._db.write() as conn:
                nid = await self._namespace_id(conn, namespace, lock=True)
                await conn.execute(
                    insert(properties).values(
                        namespace_id=nid, name=prop.name, json_schema=json.dumps(prop.schema),
                        created_at=now, updated_at=now,
                    )
                )
        except IntegrityError as exc:
            raise _duplicate("property", prop.name, namespace) from exc
        prop.created_at = prop.updated_at = now
        return prop

    async def update_property(
        self, namespace: str, name: str, prop: PropertyDefinition
    ) -> PropertyDefinition | None:
        now = _utcnow()
        try:
            async with self._db.write() as conn:
                nid = await self._namespace_id(conn, namespace, lock=True)
                result = await conn.execute(
                    update(properties)
                    .where(properties.c.namespace_id == nid, properties.c.name == name)
                    .values(name=prop.name, json_schema=json.dumps(prop.schema), updated_at=now)
                )
                if result.rowcount == 0:
                    return None
        except IntegrityError as exc:
            raise _duplicate("property", prop.name, namespace) from exc
        prop.updated_at = now
        return prop

    async def delete_property(self, namespace: str, name: str) -> bool:
        async with self._db.write() as conn:
            nid = await self._namespace_id(conn, namespace, lock=True)
            result = await conn.execute(
                delete(properties).where(
                    properties.c.namespace_id == nid, properties.c.name == name
                )
            )
            return bool(result.rowcount)

    async def delete_properties(self, namespace: str) -> None:
        await self._delete_children(properties, namespace)

    # -- tags -------------------------------------------------------------------------

    async def list_tags(self, namespace: str, query: TagQuery) -> list[MetadefTag]:
        keys: list[ColumnElement[Any]] = [tags.c[query.sort_key], tags.c.id]
        descending = query.sort_dir == "desc"
        async with self._db.read() as conn:
            nid = await self._namespace_id(conn, namespace, lock=False)
            stmt = select(tags).where(tags.c.namespace_id == nid)
            if query.marker is not None:
                marker = (
                    await conn.execute(
                        select(*keys).where(tags.c.namespace_id == nid, tags.c.name == query.marker)
                    )
                ).first()
                if marker is None:
                    raise NotFound(
                        f"The metadata definition tag with name={query.marker} was not found "
                        f"in namespace={namespace}."
                    )
                stmt = stmt.where(_after(keys, tuple(marker), descending))
            stmt = stmt.order_by(*(k.desc() if descending else k.asc() for k in keys))
            if query.limit is not None:
                stmt = stmt.limit(query.limit)
            return [_tag(r) for r in await conn.execute(stmt)]

    async def get_tag(self, namespace: str, name: str) -> MetadefTag | None:
        async with self._db.read() as conn:
            nid = await self._namespace_id(conn, namespace, lock=False)
            row = (
                await conn.execute(
                    select(tags).where(tags.c.namespace_id == nid, tags.c.name == name)
                )
            ).first()
        return _tag(row) if row is not None else None

    async def create_tags(
        self, namespace: str, names: list[str], *, replace: bool
    ) -> list[MetadefTag]:
        now = _utcnow()
        repeated = next((n for i, n in enumerate(names) if n in names[:i]), None)
        if repeated is not None:
            raise _duplicate("tag", repeated, namespace)
        async with self._db.write() as conn:
            nid = await self._namespace_id(conn, namespace, lock=True)
            if replace:
                await conn.execute(delete(tags).where(tags.c.namespace_id == nid))
            else:
                present = (
                    await conn.execute(
                        select(tags.c.name).where(
                            tags.c.namespace_id == nid, tags.c.name.in_(names)
                        )
                    )
                ).scalar()
                if present is not None:
                    raise _duplicate("tag", present, namespace)
            if names:
                try:
                    async with conn.begin_nested():
                        await conn.execute(
                            insert(tags),
                            [{"namespace_id": nid, "name": n, "created_at": now,
                              "updated_at": now} for n in names],
                        )
                except IntegrityError as exc:  # a concurrent request added one of them
                    raise _duplicate("tag", ", ".join(names), namespace) from exc
        return [MetadefTag(name=n, created_at=now, updated_at=now) for n in names]

    async def rename_tag(self, namespace: str, name: str, new_name: str) -> MetadefTag | None:
        now = _utcnow()
        try:
            async with self._db.write() as conn:
                nid = await self._namespace_id(conn, namespace, lock=True)
                result = await conn.execute(
                    update(tags)
                    .where(tags.c.namespace_id == nid, tags.c.name == name)
                    .values(name=new_name, updated_at=now)
                )
                if result.rowcount == 0:
                    return None
                row = (
                    await conn.execute(
                        select(tags).where(tags.c.namespace_id == nid, tags.c.name == new_name)
                    )
                ).one()
        except IntegrityError as exc:
            raise _duplicate("tag", new_name, namespace) from exc
        return _tag(row)

    async def delete_tag(self, namespace: str, name: str) -> bool:
        async with self._db.write() as conn:
            nid = await self._namespace_id(conn, namespace, lock=True)
            result = await conn.execute(
                delete(tags).where(tags.c.namespace_id == nid, tags.c.name == name)
            )
            return bool(result.rowcount)

    async def delete_tags(self, namespace: str) -> None:
        await self._delete_children(tags, namespace)

    # -- resource types -----------------------------------------------------------------

    async def list_resource_types(self) -> list[ResourceType]:
        async with self._db.read() as conn:
            rows = await conn.execute(select(resource_types).order_by(resource_types.c.id))
            return [
                ResourceType(
                    name=r.name, protected=bool(r.protected), created_at=r.created_at,
                    updated_at=r.updated_at,
                )
                for r in rows
            ]

    async def list_associations(self, namespace: str) -> list[ResourceTypeAssociation]:
        async with self._db.read() as conn:
            nid = await self._namespace_id(conn, namespace, lock=False)
            rows = await conn.execute(
                select(*_ASSOCIATION_COLUMNS)
                .join(resource_types, resource_types.c.id == assocs.c.resource_type_id)
                .where(assocs.c.namespace_id == nid)
                .order_by(assocs.c.created_at, resource_types.c.id)
            )
            return [_association(r) for r in rows]

    async def associate(
        self, namespace: str, association: ResourceTypeAssociation
    ) -> ResourceTypeAssociation:
        now = _utcnow()
        duplicate = Duplicate(
            f"The metadata definition resource-type association of "
            f"resource-type={association.name} to namespace={namespace} already exists."
        )
        try:
            async with self._db.write() as conn:
                nid = await self._namespace_id(conn, namespace, lock=True)
                type_id = await self._resource_type_id(
                    conn, association.name, protected=False, now=now
                )
                present = (
                    await conn.execute(
                        select(assocs.c.namespace_id).where(
                            assocs.c.namespace_id == nid, assocs.c.resource_type_id == type_id
                        )
                    )
                ).first()
                if present is not None:
                    raise duplicate
                await conn.execute(
                    insert(assocs).values(
                        namespace_id=nid, resource_type_id=type_id, prefix=association.prefix,
                        properties_target=association.properties_target, created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError as exc:
            raise duplicate from exc
        association.created_at = association.updated_at = now
        return association

    async def dissociate(self, namespace: str, resource_type: str) -> bool:
        async with self._db.write() as conn:
            nid = await self._namespace_id(conn, namespace, lock=True)
            type_id = (
                await conn.execute(
                    select(resource_types.c.id).where(resource_types.c.name == resource_type)
                )
            ).scalar()
            if type_id is None:
                return False
            result = await conn.execute(
                delete(assocs).where(
                    assocs.c.namespace_id == nid, assocs.c.resource_type_id == type_id
                )
            )
            return bool(result.rowcount)

    # -- the catalogue as a whole -----------------------------------------------------

    async def load_namespace(self, content: NamespaceContent, mode: LoadMode) -> str:
        ns = content.namespace
        now = _utcnow()
        async with self._db.write() as conn:
            found = (
                await conn.execute(
                    select(namespaces.c.id)
                    .where(namespaces.c.namespace == ns.namespace)
                    .with_for_update()
                )
            ).scalar()
            outcome = "created"
            if found is not None and mode is LoadMode.OVERWRITE:
                await self._delete_namespace_rows(conn, int(found))
                found, outcome = None, "replaced"
            if found is None:
                result = await conn.execute(
                    insert(namespaces).values(
                        **_namespace_values(ns), created_at=now, updated_at=now
                    )
                )
                nid = _new_id(result)
                await self._insert_content(conn, nid, content, now, seeded=True)
                return outcome
            if mode is LoadMode.SKIP:
                return "skipped"
            nid = int(found)
            prefer_new = mode is LoadMode.PREFER_NEW
            if prefer_new:
                await conn.execute(
                    update(namespaces)
                    .where(namespaces.c.id == nid)
                    .values(**_namespace_values(ns), updated_at=now)
                )
            await self._merge_content(conn, nid, content, now, prefer_new=prefer_new)
            return "updated" if prefer_new else "merged"

    async def _merge_content(
        self,
        conn: AsyncConnection,
        nid: int,
        content: NamespaceContent,
        now: datetime,
        *,
        prefer_new: bool,
    ) -> None:
        have_assocs = {
            r.name: r
            for r in await conn.execute(
                select(resource_types.c.name)
                .join(assocs, assocs.c.resource_type_id == resource_types.c.id)
                .where(assocs.c.namespace_id == nid)
            )
        }
        for association in content.resource_type_associations:
            if association.name not in have_assocs:
                await self._insert_association(conn, nid, association, now, seeded=True)
            elif prefer_new:
                type_id = await self._resource_type_id(
                    conn, association.name, protected=True, now=now
                )
                await conn.execute(
                    update(assocs)
                    .where(assocs.c.namespace_id == nid, assocs.c.resource_type_id == type_id)
                    .values(prefix=association.prefix,
                            properties_target=association.properties_target, updated_at=now)
                )
        have_props = set(
            (await conn.execute(
                select(properties.c.name).where(properties.c.namespace_id == nid)
            )).scalars()
        )
        for prop in content.properties:
            values = {"name": prop.name, "json_schema": json.dumps(prop.schema)}
            if prop.name not in have_props:
                await conn.execute(
                    insert(properties).values(
                        namespace_id=nid, **values, created_at=now, updated_at=now
                    )
                )
            elif prefer_new:
                await conn.execute(
                    update(properties)
                    .where(properties.c.namespace_id == nid, properties.c.name == prop.name)
                    .values(**values, updated_at=now)
                )
        have_objects = set(
            (await conn.execute(
                select(objects.c.name).where(objects.c.namespace_id == nid)
            )).scalars()
        )
        for obj in content.objects:
            if obj.name not in have_objects:
                await conn.execute(
                    insert(objects).values(
                        namespace_id=nid, **_object_values(obj), created_at=now, updated_at=now
                    )
                )
            elif prefer_new:
                await conn.execute(
                    update(objects)
                    .where(objects.c.namespace_id == nid, objects.c.name == obj.name)
                    .values(**_object_values(obj), updated_at=now)
                )
        have_tags = set(
            (await conn.execute(select(tags.c.name).where(tags.c.namespace_id == nid))).scalars()
        )
        new_tags = [t.name for t in content.tags if t.name not in have_tags]
        if new_tags:
            await conn.execute(
                insert(tags),
                [{"namespace_id": nid, "name": n, "created_at": now, "updated_at": now}
                 for n in dict.fromkeys(new_tags)],
            )

    async def all_namespace_names(self) -> list[str]:
        async with self._db.read() as conn:
            rows = await conn.execute(
                select(namespaces.c.namespace).order_by(namespaces.c.namespace)
            )
            return list(rows.scalars())

    async def delete_everything(self) -> int:
        async with self._db.write() as conn:
            count = (await conn.execute(select(func.count()).select_from(namespaces))).scalar()
            for table in (*_CHILD_TABLES, namespaces, resource_types):
                await conn.execute(delete(table))
        return int(count or 0)

    async def definitions_for(
        self, resource_type: str, property_names: list[str], project_id: str | None
    ) -> list[VisibleDefinition]:
        if not property_names:
            return []
        prefixed = func.coalesce(assocs.c.prefix, "") + properties.c.name
        visible = namespaces.c.visibility == "public"
        if project_id is not None:
            visible = or_(visible, namespaces.c.owner == project_id)
        stmt = (
            select(namespaces.c.namespace, prefixed.label("prefixed"), properties.c.json_schema)
            .select_from(properties)
            .join(namespaces, namespaces.c.id == properties.c.namespace_id)
            .join(assocs, assocs.c.namespace_id == namespaces.c.id)
            .join(resource_types, resource_types.c.id == assocs.c.resource_type_id)
            .where(resource_types.c.name == resource_type, visible,
                   prefixed.in_(property_names))
            .order_by(namespaces.c.namespace)
        )
        async with self._db.read() as conn:
            rows = await conn.execute(stmt)
            return [
                VisibleDefinition(r.namespace, r.prefixed, json.loads(r.json_schema))
                for r in rows
            ]


def _new_id(result: Any) -> int:
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _duplicate_namespace(name: str) -> Duplicate:
    return Duplicate(f"The metadata definition namespace={name} already exists.")


def _duplicate(kind: str, name: str, namespace: str) -> Duplicate:
    return Duplicate(
        f"A metadata definition {kind} with name={name} already exists in "
        f"namespace={namespace}."
    )
