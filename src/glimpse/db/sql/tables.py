"""The relational schema; Alembic migrations in ``db/migrations`` create exactly this."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

images = Table(
    "images",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(255)),
    Column("status", String(30), nullable=False),
    Column("visibility", String(20), nullable=False),
    Column("protected", Boolean, nullable=False, default=False),
    Column("os_hidden", Boolean, nullable=False, default=False),
    Column("owner", String(255), nullable=False),
    Column("disk_format", String(20)),
    Column("container_format", String(20)),
    Column("min_disk", Integer, nullable=False, default=0),
    Column("min_ram", Integer, nullable=False, default=0),
    Column("size", BigInteger),
    Column("virtual_size", BigInteger),
    Column("checksum", String(32)),
    Column("os_hash_algo", String(64)),
    Column("os_hash_value", String(128)),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("deleted_at", DateTime),
    Column("version", Integer, nullable=False, default=0),
    Column("data_node", String(255)),
    # Who is removing this image's data (a DELETE or a scrubber) and until when: a
    # claim that a holder which died mid-way loses when it expires (migration 0004).
    Column("claimed_by", String(255)),
    Column("claim_expires", DateTime),
    # The default list walks (deleted, created_at, id); the others serve filters.
    Index("ix_images_list", "deleted", "created_at", "id"),
    Index("ix_images_owner", "owner", "deleted"),
    Index("ix_images_visibility", "visibility", "deleted"),
    Index("ix_images_status", "status"),
    Index("ix_images_name", "name"),
    Index("ix_images_checksum", "checksum"),
    Index("ix_images_os_hash_value", "os_hash_value"),
    # The scrubber and `glimpse db purge` walk deleted images oldest first.
    Index("ix_images_deleted_at", "deleted", "deleted_at"),
)

image_properties = Table(
    "image_properties",
    metadata,
    Column("image_id", String(36), ForeignKey("images.id"), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("value", Text, nullable=False),
    Index("ix_image_properties_name", "name"),
)

image_tags = Table(
    "image_tags",
    metadata,
    Column("image_id", String(36), ForeignKey("images.id"), primary_key=True),
    Column("value", String(255), primary_key=True),
    Column("created_at", DateTime, nullable=False),
    Index("ix_image_tags_value", "value"),
)

image_members = Table(
    "image_members",
    metadata,
    Column("image_id", String(36), ForeignKey("images.id"), primary_key=True),
    Column("member", String(255), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Index("ix_image_members_member", "member", "status"),
)

image_locations = Table(
    "image_locations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("image_id", String(36), ForeignKey("images.id"), nullable=False),
    Column("url", Text, nullable=False),
    Column("store", String(255), nullable=False),
    Column("meta_data", Text, nullable=False, default="{}"),
    Column("status", String(30), nullable=False, default="active"),
    Column("created_at", DateTime, nullable=False),
    Index("ix_image_locations_image_id", "image_id"),
)

# Asynchronous work (imports): Glance's task records, plus a lease so that exactly one
# node runs a task and another can take over when that node dies.
tasks = Table(
    "tasks",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("type", String(30), nullable=False),
    Column("status", String(30), nullable=False),
    Column("owner", String(255), nullable=False),
    Column("image_id", String(36)),
    Column("user_id", String(255)),
    Column("request_id", String(255)),
    Column("input", Text, nullable=False, default="{}"),
    Column("result", Text),
    Column("message", Text, nullable=False, default=""),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("expires_at", DateTime),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("lease_node", String(255)),
    Column("lease_expires", DateTime),
    Index("ix_tasks_image_id", "image_id"),
    Index("ix_tasks_status", "status", "lease_expires"),
    Index("ix_tasks_owner", "owner", "created_at"),
)
