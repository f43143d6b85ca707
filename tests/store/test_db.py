"""The database door: thread pools, transactions, durability settings, the reactor-thread guard, file modes."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest
import pytest_twisted
from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from twisted.internet import defer

from mailiverse.store import Database, ReactorThreadAccess
from mailiverse.store import users as users_repo
from mailiverse.store.engine import normalise_url
from mailiverse.store.schema import users
from mailiverse.testing_db import sqlite_url


def _thread_name(_conn: Connection) -> str:
    return threading.current_thread().name


def _count_users(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(users)).scalar_one())


@pytest_twisted.ensureDeferred
async def test_run_and_transact_work_off_the_reactor_thread(database: Database) -> None:
    """run() and transact() execute their function in a dedicated pool thread, not the caller's."""
    reader = await database.run(_thread_name)
    writer = await database.transact(_thread_name)
    assert "mailiverse-db" in reader
    assert "mailiverse-db" in writer
    assert threading.current_thread().name not in (reader, writer)


@pytest_twisted.ensureDeferred
async def test_transact_commits_and_rolls_back(database: Database) -> None:
    """A transaction that raises leaves nothing behind; one that returns is visible to later reads."""

    def add_then_fail(conn: Connection) -> None:
        users_repo.add_user_txn(conn, "bob", b"k", "v1")
        raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        await database.transact(add_then_fail)
    assert await database.run(_count_users) == 0
    await database.transact(users_repo.add_user_txn, "bob", b"k", "v1")
    assert await database.run(_count_users) == 1


@pytest_twisted.ensureDeferred
async def test_run_is_read_only(database: Database) -> None:
    """A write attempted through run() fails, so reads cannot bypass the single writer."""
    with pytest.raises(DBAPIError):
        await database.run(users_repo.add_user_txn, "eve", b"k", "v1")
    assert await database.run(_count_users) == 0


@pytest_twisted.ensureDeferred
async def test_many_concurrent_transactions_all_commit(database: Database) -> None:
    """Two hundred concurrent transact() calls each commit exactly once."""
    names = [f"user{i}" for i in range(200)]
    created = await defer.gatherResults(
        [defer.Deferred.fromCoroutine(database.transact(users_repo.add_user_txn, n, b"k", "v2")) for n in names]
    )
    assert sorted(u.name for u in created) == sorted(names)
    assert len({u.id for u in created}) == len(names)
    assert await database.run(_count_users) == len(names)


def test_blocking_calls_on_the_running_reactor_thread_are_refused(
    database: Database,
) -> None:
    """run_sync/transact_sync on the reactor thread while it runs raise ReactorThreadAccess."""
    with pytest.raises(ReactorThreadAccess):
        database.run_sync(_count_users)
    with pytest.raises(ReactorThreadAccess):
        database.transact_sync(_count_users)
    with database.blocking_allowed():
        assert database.run_sync(_count_users) == 0


@pytest_twisted.ensureDeferred
async def test_sync_variants_work_from_another_thread(database: Database) -> None:
    """The synchronous variants serve threads other than the reactor's (as in CLI tools)."""
    from twisted.internet.threads import deferToThread

    await deferToThread(database.transact_sync, users_repo.add_user_txn, "carol", b"k", "v2")
    assert await deferToThread(database.run_sync, _count_users) == 1


def test_sqlite_durability_settings(tmp_path: Path) -> None:
    """SQLite connections use WAL, synchronous=FULL, foreign keys and a busy timeout."""
    db = Database.open(sqlite_url(tmp_path))
    try:
        with db.blocking_allowed():

            def pragmas(conn: Connection) -> tuple[object, ...]:
                return tuple(
                    conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                    for name in (
                        "journal_mode",
                        "synchronous",
                        "foreign_keys",
                        "busy_timeout",
                    )
                )

            expected = ("wal", 2, 1)
            assert db.transact_sync(pragmas)[:3] == expected
            assert db.run_sync(pragmas)[:3] == expected
            assert db.run_sync(pragmas)[3] > 0
    finally:
        db.close()


def test_sqlite_files_are_private(tmp_path: Path) -> None:
    """The SQLite database and its WAL and shared-memory files are mode 0600."""
    url = sqlite_url(tmp_path, "private.sqlite3")
    old_umask = os.umask(0o022)
    try:
        db = Database.open(url)
        with db.blocking_allowed():
            db.transact_sync(users_repo.add_user_txn, "dave", b"k", "v2")
            files = sorted(tmp_path.iterdir())
            assert {f.name for f in files} >= {
                "private.sqlite3",
                "private.sqlite3-wal",
                "private.sqlite3-shm",
            }
            for f in files:
                assert stat.S_IMODE(f.stat().st_mode) == 0o600, f.name
        db.close()
    finally:
        os.umask(old_umask)


def test_existing_sqlite_file_is_made_private(tmp_path: Path) -> None:
    """Opening an existing world-readable database file tightens it to 0600."""
    path = tmp_path / "old.sqlite3"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    db = Database.open(sqlite_url(tmp_path, "old.sqlite3"))
    db.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_close_stops_threads_and_is_idempotent(database: Database) -> None:
    """close() stops the pool threads and may be called twice; later calls are refused."""
    database.close()
    database.close()
    assert not any("mailiverse-db" in t.name and t.is_alive() for t in threading.enumerate())
    with pytest.raises(RuntimeError):
        database.run_sync(_count_users)


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://postgres@127.0.0.1/x", "postgresql+psycopg"),
        ("postgresql+psycopg://postgres@127.0.0.1/x", "postgresql+psycopg"),
        ("sqlite:////var/lib/mailiverse/db.sqlite3", "sqlite"),
    ],
)
def test_urls_map_to_supported_drivers(url: str, driver: str) -> None:
    """Plain postgresql:// URLs use psycopg 3; SQLite file URLs pass unchanged."""
    assert normalise_url(url).drivername == driver


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///:memory:",
        "postgresql+psycopg2://h/x",
        "mysql://h/x",
        "not a url",
        "sqlite+pysqlcipher:///x",
    ],
)
def test_unsupported_urls_are_refused_with_a_clear_error(url: str) -> None:
    """In-memory SQLite, other drivers and other databases raise ValueError saying what to use."""
    with pytest.raises(ValueError, match="sqlite:///PATH|postgresql"):
        normalise_url(url)


def test_missing_directory_is_reported(tmp_path: Path) -> None:
    """A SQLite path in a directory that does not exist raises ValueError naming the directory."""
    with pytest.raises(ValueError, match="directory"):
        Database.open(sqlite_url(tmp_path / "nope"))


def test_pools_start_with_the_reactor_and_stop_at_shutdown(tmp_path: Path) -> None:
    """With a reactor not yet running, pools start at its startup and stop at its shutdown."""
    from twisted.internet.testing import MemoryReactorClock

    reactor = MemoryReactorClock()
    db = Database.open(sqlite_url(tmp_path), reactor=reactor)
    pools = db._pools()
    assert not any(p.started for p in pools)
    for phase, event in (("after", "startup"), ("during", "shutdown")):
        for trigger, args, kwargs in reactor.triggers[phase][event]:
            trigger(*args, **kwargs)
        if event == "startup":
            assert all(p.started for p in pools)
    assert all(p.joined for p in pools)
    db.close()


def test_sqlite_write_lock_is_taken_at_begin(tmp_path: Path) -> None:
    """SQLite transactions begin IMMEDIATE (a read-then-write never fails upgrading its lock);
    readers are query-only."""
    database = Database.open(sqlite_url(tmp_path))
    with database.blocking_allowed():

        def other_writer_is_locked_out(_conn: Connection) -> bool:
            other = sqlite3.connect(str(tmp_path / "mailiverse.sqlite3"), timeout=0, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                return True
            finally:
                other.close()
            return False

        assert database.transact_sync(other_writer_is_locked_out)
        with pytest.raises(DBAPIError):
            database.run_sync(lambda conn: conn.execute(text("CREATE TABLE t (x INT)")))
    database.close()
