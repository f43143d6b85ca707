"""The ``mailiverse-admin`` command line: its arguments, and the dispatch to each command.

Every command is a ``cmd_*(args)`` function; a failure the operator can act on is an
:class:`~mailiverse.admin.errors.AdminError` (or a :class:`~mailiverse.config.ConfigError`),
printed as one line on stderr with exit status 1.
"""

from __future__ import annotations

import argparse
import sys

from mailiverse.admin import backup_commands, commands, upgrade_backup
from mailiverse.admin.errors import AdminError
from mailiverse.admin.setup import commands as setup_commands
from mailiverse.admin.setup.configure import DEFAULT_ENV_FILE, LETS_ENCRYPT_DIRECTORY
from mailiverse.config import DEFAULT_DATA_DIR, ConfigError
from mailiverse.crypto.formats import FORMAT_V1, FORMAT_V2


def _add_operator_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = sub.add_parser("user", help="accounts").add_subparsers(dest="user_command", required=True)
    add = user.add_parser("add", help="provision an account whose keys were made elsewhere")
    add.add_argument("name")
    add.add_argument("--public-key", required=True, metavar="FILE", help="RSA public key, PEM or DER")
    add.add_argument(
        "--format",
        choices=[FORMAT_V1, FORMAT_V2],
        default=FORMAT_V1,
        help="envelope format of stored mail (default v1, the Mailiverse format)",
    )
    add.set_defaults(func=commands.cmd_user_add)
    user.add_parser("list", help="list accounts").set_defaults(func=commands.cmd_user_list)
    reset = user.add_parser(
        "reset-second-factor",
        help="remove an account's passkeys and recovery codes: its password alone logs in again",
    )
    reset.add_argument("name", metavar="NAME")
    reset.set_defaults(func=commands.cmd_user_reset_second_factor)
    move_home = user.add_parser(
        "move-home", help="move an account's mail to another home (copied, verified, flipped; mail keeps arriving)"
    )
    move_home.add_argument("name", metavar="NAME")
    move_home.add_argument("home", metavar="HOME")
    move_home.set_defaults(func=commands.cmd_user_move_home)
    homes = sub.add_parser("homes", help="the homes accounts live in: users, objects, sizes and health of each")
    homes.add_argument("--users", action="store_true", help="list each account with the name of its home")
    homes.set_defaults(func=commands.cmd_homes)
    quota = user.add_parser("quota", help="show an account's storage use and quota, or set the quota")
    quota.add_argument("name")
    quota.add_argument(
        "size",
        nargs="?",
        metavar="SIZE|default",
        help="the new quota (e.g. 10GiB, 500MiB, or bytes), or 'default' for the appliance's --default-quota",
    )
    quota.set_defaults(func=commands.cmd_user_quota)

    store = sub.add_parser("store", help="a user's stored objects").add_subparsers(dest="store_command", required=True)
    ls = store.add_parser("ls", help="list objects")
    ls.add_argument("name")
    ls.add_argument("prefix", nargs="?", default="")
    ls.set_defaults(func=commands.cmd_store_ls)
    cat = store.add_parser("cat", help="write one object's stored bytes to stdout")
    cat.add_argument("name")
    cat.add_argument("path")
    cat.add_argument("--private-key", metavar="FILE", help="decrypt and inflate with this private key (yours, locally)")
    cat.set_defaults(func=commands.cmd_store_cat)
    dump = store.add_parser("dump", help="write every object under PREFIX, raw, into DIR")
    dump.add_argument("name")
    dump.add_argument("prefix")
    dump.add_argument("dir")
    dump.set_defaults(func=commands.cmd_store_dump)

    invite = sub.add_parser("invite", help="one-time sign-up invites").add_subparsers(
        dest="invite_command", required=True
    )
    create = invite.add_parser("create", help="make a one-time invite code and print it")
    create.add_argument("--expires", type=float, metavar="DAYS", help="days until the code expires (default: never)")
    create.set_defaults(func=commands.cmd_invite_create)
    invite.add_parser("list", help="list invites (codes are stored hashed)").set_defaults(func=commands.cmd_invite_list)

    domain = sub.add_parser("domain", help="a domain's encryption policy").add_subparsers(
        dest="domain_command", required=True
    )
    policy = domain.add_parser(
        "policy", help="show DOMAIN's policy, or set it (a signed entry of the key log; only forward)"
    )
    policy.add_argument("domain", metavar="DOMAIN")
    policy.add_argument("policy", nargs="?", choices=["personal", "groups", "organisation"])
    policy.add_argument(
        "--officer", action="append", metavar="ADDRESS", help="organisation: an officer who holds its key (repeat)"
    )
    policy.add_argument(
        "--account", default="organisation", help="organisation: the account its copies go to (default organisation)"
    )
    policy.set_defaults(func=commands.cmd_domain_policy)
    keygen = sub.add_parser("keygen", help="make an RSA key pair for an account provisioned with 'user add'")
    keygen.add_argument("private_key", metavar="PRIVATE_KEY_FILE")
    keygen.add_argument("--public-key", metavar="FILE")
    keygen.add_argument("--bits", type=int, default=2048, choices=[2048, 3072, 4096])
    keygen.set_defaults(func=commands.cmd_keygen)

    legacy = sub.add_parser("legacy", help="the original Mailiverse protocol").add_subparsers(
        dest="legacy_command", required=True
    )
    legacy.add_parser(
        "keys", help="print the mail-auth and send public keys in the form the original web client embeds"
    ).set_defaults(func=commands.cmd_legacy_keys)


def _add_setup_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    setup = sub.add_parser("setup", help="configure the appliance, make DKIM keys, print and check DNS records")
    setup.add_argument("--domain", action="append", required=True, help="a mail domain to serve (repeatable)")
    setup.add_argument("--hostname", help="the MX host name (default: the first --domain)")
    setup.add_argument(
        "--config", default=str(DEFAULT_ENV_FILE), help=f"the service's option file (default {DEFAULT_ENV_FILE})"
    )
    setup.add_argument("--listen", default="0.0.0.0", help="address to serve on (default 0.0.0.0)")  # noqa: S104
    setup.add_argument(
        "--test-ports", action="store_true", help="keep the unprivileged default ports (2525, 4650, 8443)"
    )
    setup.add_argument("--production-ports", action="store_true", help="ports 25, 465, 443 and 80 (the default)")
    setup.add_argument("--no-acme", action="store_true", help="no CA certificate from ACME (self-signed only)")
    setup.add_argument(
        "--acme-directory", default=LETS_ENCRYPT_DIRECTORY, help="ACME directory URL (default Let's Encrypt)"
    )
    setup.add_argument("--acme-email", help="contact address for the ACME account")
    setup.add_argument("--no-dns-check", action="store_true", help="print the records without looking them up")
    setup.set_defaults(func=setup_commands.cmd_setup)

    env = backup_commands.PASSPHRASE_ENV
    for name, func, text in (
        ("backup", backup_commands.cmd_backup, "write an encrypted backup of the database and keys to FILE"),
        ("restore", backup_commands.cmd_restore, "restore a backup from FILE (service stopped)"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("file", metavar="FILE")
        command.add_argument(
            "--passphrase-file", metavar="FILE", help=f"read the passphrase from FILE (or ${env}, or a prompt)"
        )
        command.set_defaults(func=func)
    upgrade = sub.add_parser(
        "backup-before-upgrade",
        help="before a schema migration, back up to DATA_DIR/upgrade-backups (the unit's ExecStartPre)",
    )
    upgrade.add_argument(
        "--keep",
        type=upgrade_backup.keep_count,
        default=upgrade_backup.DEFAULT_KEEP,
        metavar="N",
        help=f"keep the newest N upgrade backups (default {upgrade_backup.DEFAULT_KEEP})",
    )
    upgrade.add_argument("--no-backup", action="store_true", help="migrate without a backup: only warn")
    upgrade.set_defaults(func=upgrade_backup.cmd_backup_before_upgrade)

    dkim = sub.add_parser("dkim", help="make the DKIM key of DOMAIN if missing and print its DNS record")
    dkim.add_argument("domain", metavar="DOMAIN")
    dkim.add_argument("--selector", default="mailiverse")
    dkim.set_defaults(func=setup_commands.cmd_dkim)


def build_parser() -> argparse.ArgumentParser:
    """The whole ``mailiverse-admin`` parser; each command sets ``func(args)``."""
    parser = argparse.ArgumentParser(prog="mailiverse-admin", description="Operate a mailiverse appliance.")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help=f"appliance data dir (default {DEFAULT_DATA_DIR})")
    parser.add_argument("--db", default=None, help="database URL (default: the one the appliance recorded)")
    parser.add_argument("--metabase", default=None, help="the metabase's URL, with --home (default: as recorded)")
    parser.add_argument(
        "--home",
        action="append",
        default=[],
        dest="home_urls",
        metavar="NAME=URL",
        help="a home (repeatable; with --metabase)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_operator_commands(sub)
    _add_setup_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one ``mailiverse-admin`` command; 0 on success, 1 after a one-line error on stderr."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (AdminError, ConfigError) as e:
        print(f"mailiverse-admin: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    return 0
