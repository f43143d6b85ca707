"""Alembic environment: runs revisions on the connection mailiverse.store.migrate hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from mailiverse.store.schema import metadata


def _run_online(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported; use mailiverse.store.migrate")

_connection = context.config.attributes.get("connection")
if not isinstance(_connection, Connection):
    raise TypeError("run migrations through mailiverse.store.migrate, which supplies the connection")
_run_online(_connection)
