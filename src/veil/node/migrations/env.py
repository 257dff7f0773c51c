"""Alembic environment: runs on the connection :func:`veil.node.sqlstore.migrate` passes."""

from __future__ import annotations

from alembic import context

from veil.node.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
