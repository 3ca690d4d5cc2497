"""images: deletion claims (DELETE and the scrubber) and an index for deleted rows

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Both are plain ALTER TABLE ADD COLUMN / CREATE INDEX: SQLite's batch mode does not
    # need to copy the table for them.
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("claim_expires", sa.DateTime(), nullable=True))
        batch_op.create_index("ix_images_deleted_at", ["deleted", "deleted_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_index("ix_images_deleted_at")
        batch_op.drop_column("claim_expires")
        batch_op.drop_column("claimed_by")
