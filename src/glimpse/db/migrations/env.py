"""Alembic environment: runs on the connection handed over by ``glimpse.db.sql.migrate``."""

from alembic import context

from glimpse.db.sql import (
    metadef_tables,  # noqa: F401  (registers its tables on metadata)
    quota_tables,  # noqa: F401  (registers its table on metadata)
)
from glimpse.db.sql.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Run migrations through `glimpse db upgrade`.")
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
