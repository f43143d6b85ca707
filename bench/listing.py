"""Listing the newest 50 of a large mailbox, and fetching one object, on SQLite and PostgreSQL.

A fresh database per backend and size gets one user with N objects laid out as delivery makes them
(``Mail/In/<ms>_<n>`` and its ``Mail/In_Json/`` twin, one small chunk each), bulk-loaded with the
driver's fastest path; then the store's own functions are timed through ``Database.run_sync`` (a pooled
connection, one read transaction, the query, the dataclasses), as the web app's handlers call them.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.smtpload import percentile
from mailiverse.crypto.keys import generate_private_key, public_key_der
from mailiverse.store.db import Database
from mailiverse.store.objects import list_objects_txn, put_object_txn, read_object_txn
from mailiverse.store.users import add_user_txn

PG_ADMIN_URL = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
_BATCH = 20_000
_CHUNK = b"\x00" * 96
FETCH_BYTES = 75_000


def postgres_available() -> str | None:
    """None when the benchmark's PostgreSQL answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3) as conn:
            conn.execute("select 1")
    except Exception as e:  # noqa: BLE001 - any failure means "skip PostgreSQL", with the reason reported
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for the benchmark, dropped on exit."""
    import psycopg

    name = f"mv_bench_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        base = PG_ADMIN_URL.rsplit("/", 1)[0]
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _rows(user_id: int, count: int, first_id: int, start_ms: int) -> Iterator[tuple[Any, ...]]:
    """``count`` object rows: an original then its twin, one millisecond apart per pair, oldest first."""
    rng = random.Random(count)
    object_id = first_id
    for pair in range((count + 1) // 2):
        stamp = start_ms + pair
        name = f"{stamp}_{rng.getrandbits(63)}"
        for prefix in ("Mail/In/", "Mail/In_Json/"):
            if object_id - first_id >= count:
                return
            yield (object_id, user_id, prefix + name, 1, stamp, stamp, 2048)
            object_id += 1


def _load_sqlite(database: Database, user_id: int, count: int, start_ms: int) -> None:
    def load(conn: Any) -> None:
        raw = conn.connection.driver_connection
        rows = _rows(user_id, count, 1, start_ms)
        for _ in range(0, count, _BATCH):
            batch = [row for _, row in zip(range(_BATCH), rows, strict=False)]
            raw.executemany(
                "INSERT INTO objects (id, user_id, path, version, created_ms, modified_ms, size) "
                "VALUES (?,?,?,?,?,?,?)",
                batch,
            )
            raw.executemany(
                "INSERT INTO object_chunks (object_id, seq, data) VALUES (?, 0, ?)", [(r[0], _CHUNK) for r in batch]
            )

    database.transact_sync(load)


def _load_postgres(database: Database, user_id: int, count: int, start_ms: int) -> None:
    def load(conn: Any) -> None:
        raw = conn.connection.driver_connection
        with raw.cursor() as cursor:
            with cursor.copy(
                "COPY objects (id, user_id, path, version, created_ms, modified_ms, size) FROM STDIN"
            ) as copy:
                for row in _rows(user_id, count, 1, start_ms):
                    copy.write_row(row)
            with cursor.copy("COPY object_chunks (object_id, seq, data) FROM STDIN") as copy:
                for object_id in range(1, count + 1):
                    copy.write_row((object_id, 0, _CHUNK))
            cursor.execute("SELECT setval(pg_get_serial_sequence('objects', 'id'), %s)", (count + 1,))

    database.transact_sync(load)
    # As autovacuum would have done on a live mailbox of this size.
    with database.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("VACUUM ANALYZE objects")
        conn.exec_driver_sql("VACUUM ANALYZE object_chunks")


def _time(database: Database, reps: int, fn: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn_result = database.run_sync(fn, *args, **kwargs)
        samples.append(time.perf_counter() - start)
        del fn_result
    samples.sort()
    return {
        "p50_ms": statistics.median(samples) * 1000,
        "p99_ms": percentile(samples, 99) * 1000,
        "reps": reps,
    }


def measure(url: str, backend: str, count: int, reps: int) -> dict[str, Any]:
    """Load ``count`` objects into the database at ``url`` and time listing and fetching."""
    database = Database.open(url, migrate=True)
    try:
        # A command-line tool may block; a reactor runs in this process only under pytest-twisted.
        with database.blocking_allowed():
            return _measure(database, backend, count, reps)
    finally:
        database.close()


def _measure(database: Database, backend: str, count: int, reps: int) -> dict[str, Any]:
    key = generate_private_key()
    user = database.transact_sync(add_user_txn, "alice", public_key_der(key.public_key()), "v1")
    start_ms = 1_700_000_000_000
    began = time.monotonic()
    (_load_sqlite if backend == "sqlite" else _load_postgres)(database, user.id, count, start_ms)
    load_s = time.monotonic() - began
    # One real object of typical size, the newest of the mailbox, to fetch.
    newest = f"Mail/In/{start_ms + count}_1"
    body = os.urandom(FETCH_BYTES)
    database.transact_sync(put_object_txn, user.id, newest, body, now_ms=start_ms + count)
    page = database.run_sync(list_objects_txn, user.id, "Mail/In/", limit=50, newest_first=True)
    if len(page) != 50 or page[0].path != newest:
        raise RuntimeError("the newest-first listing did not return the newest objects")
    if database.run_sync(read_object_txn, user.id, newest) != body:
        raise RuntimeError("fetching the object returned other bytes")
    inbox = _time(database, reps, list_objects_txn, user.id, "Mail/In/", limit=50, newest_first=True)
    everything = _time(database, reps, list_objects_txn, user.id, "", limit=50, newest_first=True)
    cursor = page[-1].newest_cursor
    next_page = _time(database, reps, list_objects_txn, user.id, "Mail/In/", limit=50, newest_first=True, after=cursor)
    fetch = _time(database, reps, read_object_txn, user.id, newest)
    return {
        "backend": backend,
        "objects": count + 1,
        "load_s": round(load_s, 1),
        "newest50_inbox": inbox,
        "newest50_all": everything,
        "newest50_next_page": next_page,
        "fetch_75KB": fetch,
    }


def run(counts: list[int], workdir: Path, reps: int, postgres: bool = True) -> list[dict[str, Any]]:
    """Every (backend, count) pair; PostgreSQL is skipped (with the reason) when it does not answer."""
    results: list[dict[str, Any]] = []
    workdir.mkdir(parents=True, exist_ok=True)
    for count in counts:
        path = workdir / f"listing-{count}.sqlite3"
        try:
            results.append(measure(f"sqlite:///{path}", "sqlite", count, reps))
        finally:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{path}{suffix}")
    problem = postgres_available() if postgres else "not requested"
    for count in counts:
        if problem:
            results.append({"backend": "postgresql", "objects": count, "skipped": problem})
            continue
        with postgres_database() as url:
            results.append(measure(url, "postgresql", count, reps))
    return results
