"""Database URLs and SQLite files: which databases are accepted, and their files kept private.

Shared by :mod:`mailiverse.store.db` (the running appliance) and :mod:`mailiverse.store.migrate`
(the schema upgrade in a child process), so that both choose the same driver; importing neither.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

DATA_FILE_MODE = 0o600
_SQLITE_SIDE_FILES = ("", "-wal", "-shm", "-journal")


def normalise_url(url: str) -> URL:
    """Parse a database URL; plain ``postgresql://`` means the psycopg 3 driver.

    Raises ValueError naming the problem for anything but a SQLite file or PostgreSQL via psycopg.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ValueError("the database URL is not a valid URL (expected sqlite:///PATH or postgresql://...)") from None
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend == "sqlite":
        if parsed.drivername != "sqlite":
            raise ValueError("only the built-in SQLite driver is supported: use sqlite:///PATH")
        if not parsed.database or parsed.database == ":memory:" or parsed.database.startswith("file:"):
            raise ValueError("a SQLite database URL needs a file path: use sqlite:///PATH")
        return parsed
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            return parsed.set(drivername="postgresql+psycopg")
        if driver != "psycopg":
            raise ValueError("PostgreSQL is used through psycopg 3: use postgresql:// or postgresql+psycopg://")
        return parsed
    raise ValueError(f"unsupported database {backend!r}: use sqlite:///PATH or postgresql://...")


def secure_sqlite_files(database: str) -> None:
    """Make the SQLite file and its journal, WAL and shared-memory files private (0600)."""
    for suffix in _SQLITE_SIDE_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(database + suffix, DATA_FILE_MODE)


def create_private_file(database: str) -> None:
    """Create the SQLite file 0600 before SQLite opens it; refuse a missing directory or a non-file."""
    path = Path(database)
    if not path.parent.is_dir():
        raise ValueError(f"the directory of the SQLite database does not exist: {path.parent}")
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, DATA_FILE_MODE)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"the SQLite database path is not a regular file: {path}")
        os.fchmod(fd, DATA_FILE_MODE)
    finally:
        os.close(fd)
