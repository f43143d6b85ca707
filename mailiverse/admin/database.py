"""The appliance's database for one ``mailiverse-admin`` command: found, opened, and closed again."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mailiverse.admin.errors import AdminError
from mailiverse.config import DataDir, HomeSetting, parse_homes, read_recorded

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


@dataclass
class ApplianceHomes:
    """The metabase and every home of the appliance, open for one command (``homes`` includes ``metabase``)."""

    meta: Database
    homes: dict[str, Database]
    weights: dict[str, int]

    @property
    def multi(self) -> bool:
        return bool(self.weights)

    def home_of(self, name: str) -> tuple[str, Database]:
        """The home of the account ``name`` and its database; AdminError for an unknown account."""
        from mailiverse.store.homes import home_of_txn
        from mailiverse.store.users import get_user_txn

        user = self.meta.run_sync(get_user_txn, name)
        if user is None:
            raise AdminError(f"no user named {name!r}")
        home = self.meta.run_sync(home_of_txn, user.id)
        return home, self.homes[home]


def home_settings(args: argparse.Namespace) -> tuple[str, tuple[HomeSetting, ...]]:
    """The metabase URL and homes of ``--metabase``/``--home`` or as the appliance recorded them; with one
    database, (its URL, ())."""
    metabase, homes = getattr(args, "metabase", None), list(getattr(args, "home_urls", None) or [])
    if metabase:
        return parse_homes(metabase, homes)
    if homes:
        raise AdminError("--home needs --metabase URL")
    if not args.db:
        recorded = read_recorded(DataDir(Path(args.data_dir).expanduser())).get("homes")
        if isinstance(recorded, list) and recorded:
            settings = tuple(HomeSetting(str(h[0]), str(h[1]), int(h[2])) for h in recorded)
            return database_url(args), settings
    return database_url(args), ()


@contextlib.contextmanager
def appliance_homes(args: argparse.Namespace) -> Iterator[ApplianceHomes]:
    """The metabase (migrated) and each home (migrated), closed on exit; one database is its own only home."""
    from mailiverse.store.db import Database
    from mailiverse.store.homes import METABASE_HOME

    url, settings = home_settings(args)
    opened: list[Database] = []
    try:
        meta = Database.open(url, reactor=None, migrate=True)
        opened.append(meta)
        homes = {METABASE_HOME: meta}
        for setting in settings:
            database = Database.open(setting.url, reactor=None, migrate=False)
            opened.append(database)
            homes[setting.name] = database
        yield ApplianceHomes(meta, homes, {s.name: s.weight for s in settings})
    finally:
        for database in opened:
            database.close()
