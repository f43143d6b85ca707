"""The appliance's database for one ``mailiverse-admin`` command: found, opened, and closed again."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from mailiverse.admin.errors import AdminError
from mailiverse.config import DataDir, read_recorded

if TYPE_CHECKING:
    from mailiverse.store.db import Database


def database_url(args: argparse.Namespace) -> str:
    """``--db``, else the URL the appliance recorded in its data dir, else the data dir's SQLite file."""
    data_dir = DataDir(Path(args.data_dir).expanduser())
    url = str(args.db or "")
    if not url:
        url = str(read_recorded(data_dir).get("db_url") or "")
    if not url:
        if not data_dir.root.is_dir():
            raise AdminError(f"{data_dir.root} is not an appliance data dir; start the appliance once or pass --db URL")
        url = data_dir.default_db_url
    return url


@contextlib.contextmanager
def appliance_database(args: argparse.Namespace) -> Iterator[Database]:
    """The database of ``args`` (see :func:`database_url`), migrated to the current schema, closed on exit."""
    from mailiverse.store.db import Database

    database = Database.open(database_url(args), reactor=None, migrate=True)
    try:
        yield database
    finally:
        database.close()
