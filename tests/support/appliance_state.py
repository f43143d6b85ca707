"""Reach a running appliance from the test process: its database through the store's own door, its memory from /proc.

The admin command line costs a process per call; these open the appliance's database in-process
(``migrate=False``: the appliance owns its schema) on a worker thread and close it again.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mailiverse.config import DataDir
from mailiverse.store.db import Database
from mailiverse.store.objects import iter_object_chunks_txn, list_objects_txn
from mailiverse.store.users import add_user_txn, get_user_txn
from tests.support.harness import Appliance


def db_url(app: Appliance) -> str:
    """The database URL the appliance runs on (its --db, else the data dir's SQLite file)."""
    return app.db_url or DataDir(app.data_dir).default_db_url


def read_store(app: Appliance, user: str, prefix: str = "Mail/") -> dict[str, bytes]:
    """Every object of ``user`` under ``prefix``, read in-process through the store's own door."""
    db = Database.open(db_url(app), reactor=None, migrate=False)

    def read(conn: Any) -> dict[str, bytes]:
        account = get_user_txn(conn, user)
        assert account is not None, f"no user {user}"
        found: dict[str, bytes] = {}
        after = None
        for _ in range(10_000):
            page = list_objects_txn(conn, account.id, prefix, after=after, limit=1000)
            for info in page:
                found[info.path] = b"".join(iter_object_chunks_txn(conn, account.id, info.path))
            if len(page) < 1000:
                return found
            after = page[-1].path
        raise AssertionError("store listing did not end")

    try:
        # Off the test's main thread: pytest-twisted's reactor counts it as the reactor thread.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(db.run_sync, read).result(timeout=300)
    finally:
        db.close()


def count_objects_of(app: Appliance, names: list[str], prefix: str = "Mail/In/") -> dict[str, int]:
    """How many objects under ``prefix`` each named user has, in one database session."""
    db = Database.open(db_url(app), reactor=None, migrate=False)

    def count(conn: Any) -> dict[str, int]:
        out = {}
        for name in names:
            account = get_user_txn(conn, name)
            assert account is not None, f"no user {name}"
            out[name] = len(list_objects_txn(conn, account.id, prefix, limit=1000))
        return out

    try:
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(db.run_sync, count).result(timeout=300)
    finally:
        db.close()


def add_users(app: Appliance, names: list[str], public_key_der: bytes, fmt: str = "v2") -> None:
    """Create many users at once in-process, sharing one public key (the admin CLI costs a process each)."""
    db = Database.open(db_url(app), reactor=None, migrate=False)

    def create(conn: Any) -> None:
        for name in names:
            add_user_txn(conn, name, public_key_der, fmt)

    try:
        with ThreadPoolExecutor(1) as pool:
            pool.submit(db.transact_sync, create).result(timeout=300)
    finally:
        db.close()


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")
