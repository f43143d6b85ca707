"""Schema migrations: upgrade a database to the newest Alembic revision, safely under concurrency.

Alembic is imported only when a migration actually runs: a start against a current schema
checks ``alembic_version`` with one query, which keeps Alembic's ~10 MB out of a running
appliance (it matters on a 512 MB board). When a migration is due (the first start, an
upgrade), the appliance runs it in a child process (:func:`upgrade_in_child`, the ``__main__``
of this module), so even then Alembic never loads into the long-running server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, func, inspect, select, text
from sqlalchemy.engine import Connection, Engine

from mailiverse.store.engine import normalise_url  # the same driver choice as the parent's Database

if TYPE_CHECKING:
    from alembic.config import Config

#: The newest revision in ``migrations/versions``; a test checks it against Alembic's head.
HEAD_REVISION = "0013"

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


def at_head(engine: Engine) -> bool:
    """True when the database is already at :data:`HEAD_REVISION` (one query, no Alembic)."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return False
        rows: list[Any] = list(connection.execute(text("SELECT version_num FROM alembic_version")))
    return [row[0] for row in rows] == [HEAD_REVISION]


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` (default: the newest); a no-op when already there."""
    if revision in ("head", HEAD_REVISION) and at_head(engine):
        return
    _with_migration_lock(engine, revision, "upgrade")


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema back to ``revision`` (``"base"`` removes every table); for tests and recovery."""
    _with_migration_lock(engine, revision, "downgrade")


class MigrationFailed(Exception):
    """The schema upgrade in the child process failed; the message carries the end of its error output."""


#: A first start creates every table in well under a second; this bounds a hung child.
CHILD_TIMEOUT = 600.0


def upgrade_in_child(engine: Engine, url: str) -> None:
    """Bring the schema at ``url`` to the newest revision in a child process, unless it is there already.

    ``engine`` (the caller's, already connected to the same database) answers the cheap "at head?"
    question. The URL, which may hold a password, goes to the child on standard input, never on its
    command line.
    """
    if at_head(engine):
        return
    child = subprocess.run(  # noqa: S603 - our own interpreter and module, no shell
        [sys.executable, "-m", "mailiverse.store.migrate"],
        input=url.encode("utf-8"),
        capture_output=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    if child.returncode != 0 or not at_head(engine):
        lines = child.stderr.decode("utf-8", "replace").strip().splitlines() or ["no output"]
        detail = lines[-1][-1000:]
        raise MigrationFailed(f"the schema upgrade failed (exit {child.returncode}): {detail}")


def _main() -> int:
    """Child side of :func:`upgrade_in_child`: read a database URL on stdin and upgrade it."""
    os.umask(0o077)  # SQLite's journal and WAL files stay private like the database

    engine = create_engine(normalise_url(sys.stdin.read().strip()))
    try:
        upgrade(engine)
    except Exception as error:  # noqa: BLE001 - the parent wants one line saying why, not a traceback
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(_main())
