"""Quota holds, on the same ``metadata`` as the image tables (migration 0005).

One row per image and resource: the bytes an upload, stage or import of that image
keeps for itself while it runs. Whether a row still counts is decided by the image
(see ``glimpse.db.quotas``), so rows of finished operations are inert; the next
operation on the image replaces them.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, String, Table

from glimpse.db.sql.tables import metadata

quota_holds = Table(
    "quota_holds",
    metadata,
    Column("image_id", String(36), ForeignKey("images.id"), primary_key=True),
    Column("resource", String(32), primary_key=True),
    Column("holder", String(64), nullable=False),  # "upload", "stage" or a task id
    Column("amount", BigInteger, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)
