"""The database inside a backup: a SQLite snapshot or a JSONL dump of every row, and loading either back.

``database.sqlite3`` is a consistent copy made with SQLite's online backup API (the appliance may
keep running).  ``database.jsonl`` (PostgreSQL) is every row of every table, read in one
REPEATABLE READ snapshot: one JSON object ``{"t": table, "r": {column: value}}`` per line, bytes as
``{"b64": ...}`` and date-times as ``{"dt": ISO 8601}``.  Either form loads into either backend.
"""

from __future__ import annotations

import base64
import datetime
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from mailiverse.admin.errors import BackupError
from mailiverse.admin.ownership import write_owned
from mailiverse.privatefile import private_dir

SQLITE_MEMBER = "database.sqlite3"
JSONL_MEMBER = "database.jsonl"
#: A restore refuses longer lines, so a hostile dump cannot exhaust memory.
MAX_JSONL_LINE = 256 * 1024 * 1024
#: Rows are inserted this many at a time.
_INSERT_BATCH = 500


def sqlite_snapshot(database: str, target: Path) -> None:
    """Copy the SQLite database file ``database`` to ``target`` with the online backup API."""
    source = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        dest = sqlite3.connect(target)
        try:
            source.backup(dest)
        finally:
            dest.close()
    finally:
        source.close()


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, datetime.datetime):
        return {"dt": value.isoformat()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "b64" in value:
            return base64.b64decode(value["b64"], validate=True)
        if "dt" in value:
            return datetime.datetime.fromisoformat(value["dt"])
        raise BackupError("the database dump holds a value of an unknown kind")
    return value


def logical_dump(url: str, out: IO[bytes]) -> dict[str, int]:
    """Write every row of every table of ``url`` to ``out`` as JSONL; return the row count per table."""
    from sqlalchemy import create_engine, inspect, select

    from mailiverse.store.engine import normalise_url
    from mailiverse.store.schema import metadata

    engine = create_engine(normalise_url(url))
    counts: dict[str, int] = {}
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin():
                # The tables and columns the database has: one at an older schema (the backup taken before an
                # upgrade migrates it) lacks the newest; restore fills them with their defaults.
                live = inspect(conn)
                for table in metadata.sorted_tables:
                    if not live.has_table(table.name):
                        continue
                    present = {column["name"] for column in live.get_columns(table.name)}
                    columns = [column for column in table.columns if column.name in present]
                    counts[table.name] = 0
                    order = [column for column in table.primary_key.columns if column.name in present] or columns
                    for row in conn.execute(select(*columns).order_by(*order)).mappings():
                        line = {"t": table.name, "r": {k: _encode(v) for k, v in row.items()}}
                        out.write(json.dumps(line, separators=(",", ":")).encode("utf-8") + b"\n")
                        counts[table.name] += 1
    finally:
        engine.dispose()
    return counts


def rows_from_sqlite(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every row of a SQLite snapshot, table by table, as ``(table name, row)``."""
    from sqlalchemy import create_engine, select

    from mailiverse.store.schema import metadata

    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            for table in metadata.sorted_tables:
                for row in conn.execute(select(table)).mappings():
                    yield table.name, dict(row)
    finally:
        engine.dispose()


def rows_from_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every row of a JSONL dump made by :func:`logical_dump`, as ``(table name, row)``."""
    with path.open("rb") as handle:
        for raw in handle:
            if len(raw) > MAX_JSONL_LINE:
                raise BackupError("the database dump has an over-long line")
            line = json.loads(raw)
            yield str(line["t"]), {str(k): _decode(v) for k, v in line["r"].items()}


def load_rows(url: str, rows: Iterator[tuple[str, dict[str, Any]]]) -> dict[str, int]:
    """Insert ``rows`` into the empty database ``url`` (migrated first) in one transaction; return counts."""
    from sqlalchemy import func, insert, select, text

    from mailiverse.store.db import Database
    from mailiverse.store.quota import recount_usage_txn
    from mailiverse.store.schema import metadata

    database = Database.open(url, reactor=None, migrate=True)
    tables = {t.name: t for t in metadata.sorted_tables}
    counts = dict.fromkeys(tables, 0)

    def load_txn(conn: Any) -> None:
        for table in tables.values():
            if conn.execute(select(func.count()).select_from(table)).scalar_one():
                raise BackupError(
                    f"the target database already holds data (table {table.name}); restore into an empty one"
                )
        batch: dict[str, list[dict[str, Any]]] = {}
        for name, row in rows:
            found = tables.get(name)
            if found is None:
                raise BackupError(f"the backup holds rows of an unknown table {name[:60]!r}")
            table = found
            known = {c.name for c in table.columns}
            batch.setdefault(name, []).append({k: v for k, v in row.items() if k in known})
            counts[name] += 1
        # parents before children, whatever order the rows came in
        for table in metadata.sorted_tables:
            pending = batch.get(table.name, [])
            for start in range(0, len(pending), _INSERT_BATCH):
                conn.execute(insert(table), pending[start : start + _INSERT_BATCH])
        # A dump from before the usage counter (or edited by hand) must not leave it wrong.
        recount_usage_txn(conn)
        if conn.dialect.name == "postgresql":
            for table in metadata.sorted_tables:
                for column in table.primary_key.columns:
                    if column.autoincrement is True or (
                        column.autoincrement == "auto" and column.type.python_type is int
                    ):
                        conn.execute(
                            text(
                                f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "  # noqa: S608 -- names from our own schema
                                f"COALESCE((SELECT MAX({column.name}) FROM {table.name}), 0) + 1, false) "
                                f"WHERE pg_get_serial_sequence('{table.name}', '{column.name}') IS NOT NULL"
                            )
                        )

    try:
        with database.blocking_allowed():
            database.transact_sync(load_txn)
    finally:
        database.close()
    return counts


def replace_sqlite(snapshot: Path, database: Path, owner: Path) -> dict[str, int]:
    """Put a SQLite snapshot in place of the database file ``database`` and migrate it; return row counts."""
    from mailiverse.store.db import Database
    from mailiverse.store.schema import metadata

    check = sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True)
    try:
        if check.execute("PRAGMA integrity_check").fetchone() != ("ok",):
            raise BackupError("the database in the backup is damaged")
        existing = {r[0] for r in check.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        counts = {
            t.name: int(check.execute(f'SELECT COUNT(*) FROM "{t.name}"').fetchone()[0])  # noqa: S608 -- names from our schema
            for t in metadata.sorted_tables
            if t.name in existing
        }
    finally:
        check.close()
    private_dir(database.parent)
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    with snapshot.open("rb") as handle:
        write_owned(database, handle, snapshot.stat().st_size, owner)
    # An older snapshot is brought up to the current schema now, not at the next start.
    Database.open(f"sqlite:///{database}", reactor=None, migrate=True).close()
    return counts
