"""The ``backup`` and ``restore`` commands of ``mailiverse-admin``, and where their passphrase comes from."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from mailiverse.admin.errors import AdminError

PASSPHRASE_ENV = "MAILIVERSE_BACKUP_PASSPHRASE"  # noqa: S105 -- a variable name, not a secret


def _passphrase(args: argparse.Namespace, confirm: bool) -> str:
    if args.passphrase_file:
        try:
            return Path(args.passphrase_file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as e:
            raise AdminError(f"cannot read --passphrase-file {args.passphrase_file}: {e.strerror}") from None
    if os.environ.get(PASSPHRASE_ENV):
        return os.environ[PASSPHRASE_ENV]
    if not sys.stdin.isatty():
        raise AdminError(f"give the passphrase with --passphrase-file FILE or ${PASSPHRASE_ENV}")
    first = getpass.getpass("Backup passphrase: ")
    if confirm and getpass.getpass("Again: ") != first:
        raise AdminError("the passphrases differ")
    return first


def _one_database(args: argparse.Namespace) -> None:
    """A backup holds one database: with homes it would silently miss every account's mail, so it is refused."""
    from mailiverse.admin.database import home_settings

    if args.db is None and home_settings(args)[1]:
        raise AdminError(
            "this appliance keeps its accounts in homes: back up the metabase and every home with pg_dump "
            "(docs/homes.md), and the data dir's keys"
        )


def cmd_backup(args: argparse.Namespace) -> None:
    """``mailiverse-admin backup FILE``: an encrypted, consistent snapshot of the database and keys."""
    from mailiverse.admin.backup_archive import create_backup

    _one_database(args)
    manifest = create_backup(Path(args.data_dir), Path(args.file), _passphrase(args, confirm=True), db_url=args.db)
    print(
        f"backup written to {args.file}: {len(manifest['files'])} key file(s) and the {manifest['database']} database"
    )


def cmd_restore(args: argparse.Namespace) -> None:
    """``mailiverse-admin restore FILE``: put a backup back (stop the service first)."""
    from mailiverse.admin.backup_archive import restore_backup

    _one_database(args)
    result = restore_backup(Path(args.data_dir), Path(args.file), _passphrase(args, confirm=False), db_url=args.db)
    rows = sum(result.tables.values())
    print(f"restored {len(result.files)} file(s) and {rows} row(s) into {Path(args.data_dir)}; start the service again")
