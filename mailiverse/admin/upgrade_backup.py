"""``mailiverse-admin backup-before-upgrade``: an encrypted backup of the database taken before a schema migration.

The Debian unit runs it as ``ExecStartPre`` before every start (docs/upgrading.md). When the database is at the
code's schema, or there is none yet, it says so and exits at once, without loading Alembic (one query of
``alembic_version``, as the appliance's own :func:`mailiverse.store.migrate.at_head`). When the new version is
about to migrate an older schema, it first writes a ``mailiverse-admin backup`` archive to
``<data-dir>/upgrade-backups/`` and keeps the newest few. A schema newer than the code (the package was
downgraded) is refused, as the appliance refuses it.

These backups live beside the data, under a passphrase kept in the same directory: they are exactly as safe as the
data dir, and as lost with it. They exist to roll back a failed upgrade, not as off-device backups (``backup``).
"""

from __future__ import annotations

import argparse
import base64
import datetime
import math
import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mailiverse.admin.errors import AdminError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

UPGRADE_BACKUP_DIR = "upgrade-backups"
PASSPHRASE_FILE = "passphrase"  # noqa: S105 -- a file name, not a secret
DEFAULT_KEEP = 3
#: The archive is about the database's size (a tar, sealed, not compressed); the rest is headroom.
ARCHIVE_MARGIN = 1.2
_PASSPHRASE_BYTES = 32
_BACKUP_NAME = re.compile(r"^before-[0-9A-Za-z_]{1,32}-to-[0-9A-Za-z_]{1,32}-(?P<when>\d{8}T\d{6}Z)\.mvb$")


def keep_count(text: str) -> int:
    """``--keep``: how many upgrade backups to keep, at least 1 (the one just written)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--keep wants a whole number, not {text[:20]!r}") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError("--keep must be between 1 and 1000")
    return value


@dataclass(frozen=True)
class SchemaState:
    """Where one database's schema stands against the code's: ``due`` (older), ``newer``, or neither."""

    url: str
    revision: str | None
    due: bool = False
    newer: bool = False


def _engine(url: str) -> Engine | None:
    """An engine on ``url``; None for a SQLite file that does not exist (opening it would create it)."""
    from sqlalchemy import create_engine

    from mailiverse.store.engine import normalise_url

    try:
        parsed = normalise_url(url)
    except ValueError as e:
        raise AdminError(str(e)) from None
    if parsed.get_backend_name() == "sqlite" and not Path(str(parsed.database)).expanduser().is_file():
        return None
    return create_engine(parsed)


def _stored_revisions(engine: Engine) -> list[str]:
    from sqlalchemy import inspect, text

    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return []
        return [str(row[0]) for row in connection.execute(text("SELECT version_num FROM alembic_version"))]


def _known_revisions() -> set[str]:
    """Every revision of this code's migration scripts (Alembic is loaded: a migration is due or refused anyway)."""
    from alembic.script import ScriptDirectory

    from mailiverse.store.migrate import alembic_config

    return {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def schema_state(url: str) -> SchemaState:
    """The schema of the database at ``url`` against the code's; reads only, and creates no SQLite file."""
    from sqlalchemy.exc import SQLAlchemyError

    from mailiverse.store.migrate import HEAD_REVISION

    engine = _engine(url)
    if engine is None:
        return SchemaState(url, None)
    try:
        revisions = _stored_revisions(engine)
    except SQLAlchemyError as e:
        raise AdminError(f"cannot read the schema revision of the database ({type(e).__name__})") from None
    finally:
        engine.dispose()
    if revisions == [HEAD_REVISION]:
        return SchemaState(url, HEAD_REVISION)
    if not revisions:
        return SchemaState(url, None)  # a fresh database: the first start creates every table, nothing to save
    if len(revisions) != 1:
        raise AdminError(f"the database records {len(revisions)} schema revisions; mailiverse keeps exactly one")
    (revision,) = revisions
    if revision in _known_revisions():
        return SchemaState(url, revision, due=True)
    return SchemaState(url, revision, newer=True)


def database_size(url: str) -> int:
    """The database's size in bytes: the SQLite file and its WAL, or PostgreSQL's ``pg_database_size``."""
    from sqlalchemy import text

    from mailiverse.store.engine import normalise_url

    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(str(parsed.database)).expanduser()
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.is_file())
    engine = _engine(url)
    assert engine is not None  # noqa: S101 -- only SQLite has no engine
    try:
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
    finally:
        engine.dispose()


def space_needed(db_size: int, scratch_on_same_fs: bool) -> int:
    """Bytes the backup needs on the data dir's file system: the archive, and while it is written, the database
    snapshot it is made from when that scratch copy lands there too (``<data-dir>/tmp``)."""
    return math.ceil(db_size * ARCHIVE_MARGIN) + (db_size if scratch_on_same_fs else 0)


def _approx(size: int) -> str:
    for name, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            return f"{size / factor:.1f} {name}"
    return f"{size} bytes"


def _check_space(data_dir: Path, backup_dir: Path, db_size: int) -> None:
    """AdminError naming the space needed and free when the backup would not fit."""
    scratch = data_dir / "tmp"
    same_fs = scratch.is_dir() and scratch.stat().st_dev == backup_dir.stat().st_dev
    needed = space_needed(db_size, same_fs)
    free = shutil.disk_usage(backup_dir).free
    if free < needed:
        raise AdminError(
            f"not enough free space for the backup before the upgrade: it needs about {_approx(needed)} on the file "
            f"system of {data_dir} (the database is {_approx(db_size)}), and {_approx(free)} is free. Free some "
            "space and start again, or migrate without a backup with --no-backup (docs/upgrading.md)"
        )


def upgrade_passphrase(backup_dir: Path) -> str:
    """The passphrase of the upgrade backups: ``<dir>/passphrase``, made (random, 0600) on first use."""
    from mailiverse.admin.backup_archive import MIN_PASSPHRASE_LENGTH
    from mailiverse.privatefile import create_private_once

    def make() -> bytes:
        return base64.urlsafe_b64encode(secrets.token_bytes(_PASSPHRASE_BYTES)).rstrip(b"=") + b"\n"

    path = backup_dir / PASSPHRASE_FILE
    try:
        passphrase = create_private_once(path, make).decode("utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        raise AdminError(f"cannot use the upgrade backups' passphrase file {path}: {e}") from None
    if len(passphrase) < MIN_PASSPHRASE_LENGTH:
        raise AdminError(f"the passphrase in {path} is too short; remove the file and a new one is made")
    return passphrase


def backup_name(revision: str, head: str, when: datetime.datetime) -> str:
    """``before-<revision>-to-<head>-<UTC time>.mvb``."""
    stamp = when.astimezone(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"before-{revision}-to-{head}-{stamp}.mvb"


def prune(backup_dir: Path, keep: int) -> list[str]:
    """Remove all but the ``keep`` newest upgrade backups (by the time in their names); return the names removed.

    Only regular files named as :func:`backup_name` names them are counted or removed; nothing else is touched.
    """
    found = [
        (match["when"], entry.name)
        for entry in os.scandir(backup_dir)
        if (match := _BACKUP_NAME.match(entry.name)) and entry.is_file(follow_symlinks=False)
    ]
    found.sort(reverse=True)
    removed = []
    for _, name in found[keep:]:
        (backup_dir / name).unlink(missing_ok=True)
        removed.append(name)
    return removed


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _database_urls(args: argparse.Namespace) -> list[str] | None:
    """The database (and each home) of the appliance; None before the data dir exists (a first start)."""
    from mailiverse.admin.database import home_settings

    if not args.db and not getattr(args, "metabase", None) and not Path(args.data_dir).expanduser().is_dir():
        return None
    url, homes = home_settings(args)
    return [url, *(home.url for home in homes)]


def backup_before_upgrade(
    args: argparse.Namespace,
    *,
    clock: Callable[[], datetime.datetime] = _utc_now,
    log2_n: int | None = None,
) -> Path | None:
    """The command's work (see the module docstring); the backup written, or None when none was due or wanted."""
    from mailiverse.store.migrate import HEAD_REVISION

    data_dir = Path(args.data_dir).expanduser()
    urls = _database_urls(args)
    if urls is None:
        print(f"no migration is due: {data_dir} holds no appliance yet")
        return None
    states = [schema_state(urls[0])]
    for url in urls[1:]:
        try:
            states.append(schema_state(url))
        except AdminError as e:
            # As at the appliance's start, a home that does not answer does not hold up the others.
            print(f"warning: a home was not checked: {e}", file=sys.stderr)
    newer = [s for s in states if s.newer]
    if newer:
        raise AdminError(
            f"the database's schema is at revision {newer[0].revision}, newer than this version of mailiverse knows "
            f"(its newest is {HEAD_REVISION}): the package was downgraded, and the appliance will not start against "
            "a schema it does not know. Reinstall the newer version, or restore the backup taken before upgrading "
            "to it (docs/upgrading.md, 'Rolling back')"
        )
    due = [s for s in states if s.due]
    if not due:
        if states[0].revision:
            print(f"no migration is due: the database is at {states[0].revision}, this version's schema")
        else:
            print("no migration is due: the database is empty (the first start creates its schema)")
        return None
    revision = str(due[0].revision)
    if args.no_backup:
        print(
            f"warning: the schema will be migrated from {revision} to {HEAD_REVISION} WITHOUT a backup (--no-backup)",
            file=sys.stderr,
        )
        return None
    if len(urls) > 1:
        raise AdminError(
            "this appliance keeps its accounts in homes, which an upgrade backup cannot hold: back up the metabase "
            "and every home with pg_dump (docs/homes.md), and the data dir's keys, then start once with --no-backup "
            "(docs/upgrading.md)"
        )
    return _write_backup(args, data_dir, due[0].url, revision, clock(), log2_n)


def _write_backup(
    args: argparse.Namespace, data_dir: Path, url: str, revision: str, when: datetime.datetime, log2_n: int | None
) -> Path:
    from sqlalchemy.exc import SQLAlchemyError

    from mailiverse.admin.backup_archive import SCRYPT_LOG2_N, create_backup
    from mailiverse.privatefile import private_dir
    from mailiverse.store.migrate import HEAD_REVISION

    backup_dir = private_dir(data_dir / UPGRADE_BACKUP_DIR)
    _check_space(data_dir, backup_dir, database_size(url))
    passphrase = upgrade_passphrase(backup_dir)
    target = backup_dir / backup_name(revision, HEAD_REVISION, when)
    try:
        # create_backup writes to a temporary name in backup_dir and gives it this name only once complete.
        create_backup(data_dir, target, passphrase, db_url=url, log2_n=log2_n or SCRYPT_LOG2_N)
    except SQLAlchemyError as e:
        raise AdminError(
            f"the backup before the upgrade from {revision} failed reading the database ({type(e).__name__}); "
            "back it up by hand (docs/appliance.md) and start once with --no-backup (docs/upgrading.md)"
        ) from None
    print(f"backup before the upgrade from {revision} to {HEAD_REVISION}: {target} ({_approx(target.stat().st_size)})")
    for name in prune(backup_dir, args.keep):
        print(f"removed the older upgrade backup {name}")
    return target


def cmd_backup_before_upgrade(args: argparse.Namespace) -> None:
    """``mailiverse-admin backup-before-upgrade``: the unit's ``ExecStartPre`` (see the module docstring)."""
    backup_before_upgrade(args)


__all__ = [
    "DEFAULT_KEEP",
    "UPGRADE_BACKUP_DIR",
    "SchemaState",
    "backup_before_upgrade",
    "backup_name",
    "cmd_backup_before_upgrade",
    "keep_count",
    "prune",
    "schema_state",
    "space_needed",
    "upgrade_passphrase",
]
