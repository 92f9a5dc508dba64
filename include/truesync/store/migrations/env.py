"""Alembic environment for the truesync store; the connection is handed in by the Store."""

from alembic import context

from truesync.store.core import VERSION_TABLE
from truesync.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
