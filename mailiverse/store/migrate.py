"""Schema migrations: upgrade a database to the newest Alembic revision, safely under concurrency.

Alembic is imported only when a migration actually runs: a start against a current schema
checks ``alembic_version`` with one query, which keeps Alembic's ~10 MB out of a running
appliance (it matters on a 512 MB board).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, inspect, select, text
from sqlalchemy.engine import Connection, Engine

if TYPE_CHECKING:
    from alembic.config import Config

#: The newest revision in ``migrations/versions``; a test checks it against Alembic's head.
HEAD_REVISION = "0005"

# Arbitrary constant naming "mailiverse schema migration" among PostgreSQL advisory locks.
ADVISORY_LOCK_KEY = 0x6D61696C7676
SQLITE_BEGIN_OPTION = "mailiverse_sqlite_begin"

_SCRIPT_LOCATION = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration built in code: no alembic.ini is read."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_SCRIPT_LOCATION))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision the code knows."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("the migration scripts define no revision")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _with_migration_lock(engine: Engine, revision: str, action: str) -> None:
    with engine.connect() as connection:
        postgres = connection.dialect.name == "postgresql"
        if connection.dialect.name == "sqlite":
            # Take SQLite's write lock at BEGIN so a concurrent starter waits, then finds the
            # schema current, instead of failing. Database's engines emit BEGIN themselves (and
            # read this option); a plain engine leaves it to the sqlite3 module, so say it here.
            connection.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
            if connection.connection.dbapi_connection.isolation_level is not None:  # type: ignore[union-attr]
                connection.exec_driver_sql("BEGIN IMMEDIATE")
        if postgres:
            # Several appliance processes may start at once; one migrates, the others wait and
            # then find the schema current.
            connection.execute(select(func.pg_advisory_lock(ADVISORY_LOCK_KEY)))
            connection.commit()
        try:
            from alembic import command

            config = alembic_config(connection)
            if action == "upgrade":
                command.upgrade(config, revision)
            else:
                command.downgrade(config, revision)
            connection.commit()
        finally:
            if postgres:
                connection.rollback()
                connection.execute(select(func.pg_advisory_unlock(ADVISORY_LOCK_KEY)))
                connection.commit()


def _at_head(engine: Engine) -> bool:
    """True when the database is already at :data:`HEAD_REVISION` (one query, no Alembic)."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return False
        rows: list[Any] = list(connection.execute(text("SELECT version_num FROM alembic_version")))
    return [row[0] for row in rows] == [HEAD_REVISION]


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` (default: the newest); a no-op when already there."""
    if revision in ("head", HEAD_REVISION) and _at_head(engine):
        return
    _with_migration_lock(engine, revision, "upgrade")


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema back to ``revision`` (``"base"`` removes every table); for tests and recovery."""
    _with_migration_lock(engine, revision, "downgrade")
