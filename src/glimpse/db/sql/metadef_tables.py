"""The metadef catalogue's tables, on the same ``metadata`` as the image tables.

Migration ``0002_metadefs`` creates exactly these. Children of a namespace reference it
by its integer id, so renaming a namespace touches one row; deleting one cascades.
Property and object definitions are stored as JSON text (``json_schema``).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from glimpse.db.sql.tables import metadata

metadef_namespaces = Table(
    "metadef_namespaces",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("namespace", String(80), nullable=False),
    Column("display_name", String(80)),
    Column("description", Text),
    Column("visibility", String(32), nullable=False),
    Column("protected", Boolean, nullable=False),
    Column("owner", String(255), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("namespace", name="uq_metadef_namespaces_namespace"),
    Index("ix_metadef_namespaces_owner", "owner"),
)

metadef_resource_types = Table(
    "metadef_resource_types",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(80), nullable=False),
    Column("protected", Boolean, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("name", name="uq_metadef_resource_types_name"),
)

metadef_namespace_resource_types = Table(
    "metadef_namespace_resource_types",
    metadata,
    Column(
        "resource_type_id", Integer, ForeignKey("metadef_resource_types.id"), primary_key=True
    ),
    Column(
        "namespace_id",
        Integer,
        ForeignKey("metadef_namespaces.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("properties_target", String(80)),
    Column("prefix", String(80)),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Index("ix_metadef_ns_res_types_namespace_id", "namespace_id"),
)

metadef_properties = Table(
    "metadef_properties",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "namespace_id",
        Integer,
        ForeignKey("metadef_namespaces.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("name", String(80), nullable=False),
    Column("json_schema", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("namespace_id", "name", name="uq_metadef_properties_namespace_id_name"),
    Index("ix_metadef_properties_name", "name"),
)

metadef_objects = Table(
    "metadef_objects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "namespace_id",
        Integer,
        ForeignKey("metadef_namespaces.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("name", String(80), nullable=False),
    Column("description", Text),
    Column("required", Text),
    Column("json_schema", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("namespace_id", "name", name="uq_metadef_objects_namespace_id_name"),
    Index("ix_metadef_objects_name", "name"),
)

metadef_tags = Table(
    "metadef_tags",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "namespace_id",
        Integer,
        ForeignKey("metadef_namespaces.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("name", String(80), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("namespace_id", "name", name="uq_metadef_tags_namespace_id_name"),
    Index("ix_metadef_tags_name", "name"),
)
