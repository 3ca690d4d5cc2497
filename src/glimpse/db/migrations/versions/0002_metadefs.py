"""metadefs catalogue

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 09:00:00

The metadata definitions catalogue (``glimpse.db.sql.metadef_tables``): namespaces,
resource types and their associations, property and object definitions, tags.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamps() -> list[Any]:
    return [
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    ]


def _namespace_child(name: str, *columns: Any) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        *columns,
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["namespace_id"], ["metadef_namespaces.id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("namespace_id", "name", name=f"uq_{name}_namespace_id_name"),
    )
    op.create_index(f"ix_{name}_name", name, ["name"], unique=False)


def upgrade() -> None:
    op.create_table(
        "metadef_namespaces",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("namespace", sa.String(length=80), nullable=False),
        sa.Column("display_name", sa.String(length=80), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("visibility", sa.String(length=32), nullable=False),
        sa.Column("protected", sa.Boolean(), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("namespace", name="uq_metadef_namespaces_namespace"),
    )
    op.create_index(
        "ix_metadef_namespaces_owner", "metadef_namespaces", ["owner"], unique=False
    )

    op.create_table(
        "metadef_resource_types",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("protected", sa.Boolean(), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", name="uq_metadef_resource_types_name"),
    )

    op.create_table(
        "metadef_namespace_resource_types",
        sa.Column("resource_type_id", sa.Integer(), nullable=False),
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("properties_target", sa.String(length=80), nullable=True),
        sa.Column("prefix", sa.String(length=80), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(["resource_type_id"], ["metadef_resource_types.id"]),
        sa.ForeignKeyConstraint(
            ["namespace_id"], ["metadef_namespaces.id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("resource_type_id", "namespace_id"),
    )
    op.create_index(
        "ix_metadef_ns_res_types_namespace_id",
        "metadef_namespace_resource_types",
        ["namespace_id"],
        unique=False,
    )

    _namespace_child(
        "metadef_properties",
        sa.Column("json_schema", sa.Text(), nullable=False),
    )
    _namespace_child(
        "metadef_objects",
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("required", sa.Text(), nullable=True),
        sa.Column("json_schema", sa.Text(), nullable=False),
    )
    _namespace_child("metadef_tags")


def downgrade() -> None:
    for name in ("metadef_tags", "metadef_objects", "metadef_properties"):
        op.drop_index(f"ix_{name}_name", table_name=name)
        op.drop_table(name)
    op.drop_index(
        "ix_metadef_ns_res_types_namespace_id", table_name="metadef_namespace_resource_types"
    )
    op.drop_table("metadef_namespace_resource_types")
    op.drop_table("metadef_resource_types")
    op.drop_index("ix_metadef_namespaces_owner", table_name="metadef_namespaces")
    op.drop_table("metadef_namespaces")
