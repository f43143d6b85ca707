"""The one door to the database: an engine plus dedicated thread pools; nothing else touches SQL connections."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.pool import QueuePool
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python import threadable
from twisted.python.threadpool import ThreadPool

from mailiverse.store import migrate as _migrate
from mailiverse.store.engine import create_private_file, normalise_url, secure_sqlite_files
from mailiverse.store.errors import ReactorThreadAccess
from mailiverse.store.groupcommit import Bulk, GroupCommitter
from mailiverse.store.quota import lock_usage_txn

T = TypeVar("T")
P = ParamSpec("P")

SQLITE_BUSY_TIMEOUT_MS = 10_000
DEFAULT_SQLITE_READERS = 4
DEFAULT_POSTGRES_THREADS = 8
POOL_CHECKOUT_TIMEOUT_S = 30


def _default_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


class Database:
    """Owns the engine(s) and thread pools; runs synchronous ``fn(conn)`` functions off the reactor thread.

    SQLite: one writer thread (and a one-connection engine) for ``transact``, a few reader threads for
    ``run``; WAL journal, ``synchronous=FULL``, foreign keys on. PostgreSQL: one pool of N threads with
    an engine pool of N connections.
    """

    def __init__(
        self,
        url: URL,
        reactor: Any,
        writer_engine: Engine,
        reader_engine: Engine,
        writer_pool: ThreadPool,
        reader_pool: ThreadPool,
    ) -> None:
        self._url = url
        self._reactor = reactor
        self._writer_engine = writer_engine
        self._reader_engine = reader_engine
        self._writer_pool = writer_pool
        self._reader_pool = reader_pool
        self._local = threading.local()
        self._closed = False
        self._shutdown_trigger: Any = None
        self._start_trigger: Any = None
        self._group = GroupCommitter(
            self._write_deferred, max_in_flight=self._max_write_batches(), lock_txn=lock_usage_txn
        )

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str,
        *,
        reactor: Any = None,
        migrate: bool = True,
        threads: int | None = None,
    ) -> Database:
        """Connect to ``url`` and (by default) upgrade the schema to the newest revision.

        ``threads`` is the number of reader threads (SQLite) or of worker threads and connections
        (PostgreSQL). Thread pools start with the reactor and stop at its shutdown or at ``close()``.
        """
        parsed = normalise_url(url)
        reactor = _default_reactor() if reactor is None else reactor
        if parsed.get_backend_name() == "sqlite":
            database = cls._open_sqlite(parsed, reactor, threads or DEFAULT_SQLITE_READERS)
        else:
            database = cls._open_postgres(parsed, reactor, threads or DEFAULT_POSTGRES_THREADS)
        try:
            database._install_guard()
            if migrate:
                with database.blocking_allowed():
                    _migrate.upgrade(database._writer_engine)
            database._start_pools()
        except BaseException:
            database._dispose()
            raise
        return database

    @classmethod
    def _open_sqlite(cls, url: URL, reactor: Any, readers: int) -> Database:
        database_path = str(url.database)
        create_private_file(database_path)

        def make_engine(size: int, read_only: bool) -> Engine:
            engine = create_engine(
                url,
                poolclass=QueuePool,
                pool_size=size,
                max_overflow=0,
                pool_timeout=POOL_CHECKOUT_TIMEOUT_S,
                connect_args={
                    "check_same_thread": False,
                    "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                },
            )
            _configure_sqlite(engine, database_path, read_only=read_only)
            return engine

        writer_engine = make_engine(1, read_only=False)
        reader_engine = make_engine(readers, read_only=True)
        writer_pool = ThreadPool(minthreads=0, maxthreads=1, name="mailiverse-db-writer")
        reader_pool = ThreadPool(minthreads=0, maxthreads=readers, name="mailiverse-db-reader")
        return cls(url, reactor, writer_engine, reader_engine, writer_pool, reader_pool)

    @classmethod
    def _open_postgres(cls, url: URL, reactor: Any, threads: int) -> Database:
        engine = create_engine(
            url,
            pool_size=threads,
            max_overflow=0,
            pool_timeout=POOL_CHECKOUT_TIMEOUT_S,
            pool_pre_ping=True,
            connect_args={"connect_timeout": 10, "application_name": "mailiverse"},
        )
        pool = ThreadPool(minthreads=0, maxthreads=threads, name="mailiverse-db")
        return cls(url, reactor, engine, engine, pool, pool)

    # -- the reactor-thread guard -------------------------------------------------------------

    def _install_guard(self) -> None:
        def on_checkout(*_: Any) -> None:
            if getattr(self._local, "allowed", False):
                return
            on_reactor_thread: bool = threadable.isInIOThread()
            if on_reactor_thread and getattr(self._reactor, "running", False):
                raise ReactorThreadAccess("database access on the reactor thread; use run()/transact()")

        for engine in {self._writer_engine, self._reader_engine}:
            event.listen(engine, "checkout", on_checkout)

    @contextlib.contextmanager
    def blocking_allowed(self) -> Iterator[None]:
        """Permit blocking database access on this thread for start-up work and test set-up."""
        previous = getattr(self._local, "allowed", False)
        self._local.allowed = True
        try:
            yield
        finally:
            self._local.allowed = previous

    # -- thread pools ------------------------------------------------------------------------

    def _pools(self) -> list[ThreadPool]:
        return (
            [self._writer_pool]
            if self._writer_pool is self._reader_pool
            else [
                self._writer_pool,
                self._reader_pool,
            ]
        )

    def _start_pools(self) -> None:
        reactor = self._reactor
        self._shutdown_trigger = reactor.addSystemEventTrigger("during", "shutdown", self._stop_pools)
        if getattr(reactor, "running", False):
            self._start_now()
        else:
            self._start_trigger = reactor.addSystemEventTrigger("after", "startup", self._start_now)

    def _start_now(self) -> None:
        self._start_trigger = None
        if self._closed:
            return
        for pool in self._pools():
            if not pool.started:
                pool.start()

    def _stop_pools(self) -> None:
        self._shutdown_trigger = None
        for pool in self._pools():
            if pool.started and not pool.joined:
                pool.stop()

    # -- the door ----------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The engine that writes (and migrates); on PostgreSQL the only one."""
        return self._writer_engine

    @property
    def dialect_name(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._writer_engine.dialect.name

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the database is closed")

    def _read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._reader_engine.connect() as connection:
            if self.dialect_name == "postgresql":
                # One snapshot for every statement of the read, as SQLite's BEGIN gives.
                connection.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with connection.begin():
                return fn(connection, *args, **kwargs)

    def _write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._writer_engine.connect() as connection:
            if self.dialect_name == "sqlite":
                connection.execution_options(**{_migrate.SQLITE_BEGIN_OPTION: "IMMEDIATE"})
            with connection.begin():
                return fn(connection, *args, **kwargs)

    async def run(
        self,
        fn: Callable[Concatenate[Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run the read-only ``fn(conn, *args, **kwargs)`` in one consistent snapshot on a reader thread."""
        self._check_open()
        result: T = await deferToThreadPool(
            self._reactor,
            self._reader_pool,
            functools.partial(self._read, fn, *args, **kwargs),
        )
        return result

    async def transact(
        self,
        fn: Callable[Concatenate[Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn(conn, *args, **kwargs)`` in one transaction; resolves after the durable commit.

        An exception from ``fn`` rolls the transaction back and propagates.
        """
        self._check_open()
        result: T = await deferToThreadPool(
            self._reactor,
            self._writer_pool,
            functools.partial(self._write, fn, *args, **kwargs),
        )
        return result

    async def transact_grouped(
        self,
        fn: Callable[[Connection], T],
        *,
        weight: int = 0,
        user_ids: Sequence[int] = (),
        bulk: Bulk | None = None,
    ) -> T:
        """``transact`` for many small concurrent writes: calls queued while the writer is busy share one commit.

        ``fn(conn)`` runs in its own SAVEPOINT of a shared transaction (at most 64 calls or 16 MiB of
        ``weight``, the bytes it writes), so its failure rolls back only its own writes and propagates
        to this caller alone. Resolves after the shared commit, which is as durable as ``transact``'s.
        ``user_ids`` are the accounts whose objects ``fn`` writes: the batch locks their usage rows
        first, in one order with every other batch's (store/quota.py). ``bulk``, the same write in a
        form that many callers share (store/groupcommit.py), is used instead of ``fn`` where it can be.
        """
        self._check_open()
        result: T = await self._group.submit(fn, weight, user_ids, bulk)
        return result

    def _write_deferred(self, fn: Callable[[Connection], T]) -> Deferred[T]:
        return deferToThreadPool(self._reactor, self._writer_pool, self._write, fn)

    def _max_write_batches(self) -> int:
        """SQLite has one writer; PostgreSQL keeps half its connections for reads while writes queue."""
        if self._writer_pool is not self._reader_pool:
            return 1
        return max(1, self._writer_pool.max // 2)

    def run_sync(
        self,
        fn: Callable[Concatenate[Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``run`` for command-line tools: blocks the calling thread (never the running reactor's)."""
        self._check_open()
        return self._read(fn, *args, **kwargs)

    def transact_sync(
        self,
        fn: Callable[Concatenate[Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``transact`` for command-line tools: blocks the calling thread (never the running reactor's)."""
        self._check_open()
        return self._write(fn, *args, **kwargs)

    # -- shutting down -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop the thread pools (waiting for running work) and dispose of the engines. Idempotent."""
        if self._closed:
            return
        self._closed = True
        reactor = self._reactor
        for trigger in (self._shutdown_trigger, self._start_trigger):
            if trigger is not None:
                with contextlib.suppress(Exception):
                    reactor.removeSystemEventTrigger(trigger)
        self._shutdown_trigger = self._start_trigger = None
        self._stop_pools()
        self._dispose()

    def _dispose(self) -> None:
        self._writer_engine.dispose()
        if self._reader_engine is not self._writer_engine:
            self._reader_engine.dispose()
        if self._writer_engine.dialect.name == "sqlite" and self._url.database:
            secure_sqlite_files(self._url.database)


def _configure_sqlite(engine: Engine, database_path: str, *, read_only: bool) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself, so reads share a snapshot and writers can
        # take the write lock up front (the sqlite3 module would otherwise begin lazily before DML).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA foreign_keys = ON")
            if read_only:
                cursor.execute("PRAGMA query_only = ON")
        finally:
            cursor.close()
        secure_sqlite_files(database_path)

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(_migrate.SQLITE_BEGIN_OPTION, "DEFERRED")
        if mode not in ("DEFERRED", "IMMEDIATE"):
            raise ValueError("unknown SQLite BEGIN mode")
        connection.exec_driver_sql(f"BEGIN {mode}")


__all__ = ["Database"]
