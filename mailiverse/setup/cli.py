"""The ``setup``, ``backup``, ``restore`` and ``dkim`` commands of ``mailiverse-admin``.

``register_commands(sub)`` adds them to the admin parser's sub-parsers; each sets ``func(args)``
and reads ``args.data_dir`` and ``args.db`` from the main parser.  Failures exit with status 1
and one line on stderr.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any

from mailiverse.config import ConfigError

PASSPHRASE_ENV = "MAILIVERSE_BACKUP_PASSPHRASE"  # noqa: S105 -- a variable name, not a secret


def _fail(message: str) -> None:
    raise SystemExit(f"mailiverse-admin: {message}")


def run_reactor(make_coroutine: Any) -> Any:
    """Run ``await make_coroutine(reactor)`` on the global reactor (command-line use only) and return its result."""
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred
    from twisted.python.failure import Failure

    box: dict[str, Any] = {}

    def start() -> None:
        d = Deferred.fromCoroutine(make_coroutine(reactor))
        d.addBoth(lambda r: box.setdefault("result", r))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    reactor.run(installSignalHandlers=False)  # type: ignore[call-arg]
    result = box.get("result")
    if isinstance(result, Failure):
        result.raiseException()
    return result


def cmd_setup(args: argparse.Namespace) -> None:
    """``mailiverse-admin setup --domain D``: configuration, DKIM keys, DNS records and their check."""
    from mailiverse.setup.configure import SetupError, SetupOptions, check_dns, describe, prepare

    options = SetupOptions(
        domains=tuple(args.domain),
        data_dir=Path(args.data_dir),
        hostname=args.hostname,
        env_file=Path(args.config),
        listen=args.listen,
        production_ports=not args.test_ports,
        acme=not args.no_acme,
        acme_directory=args.acme_directory,
        acme_email=args.acme_email,
        db_url=args.db,
    )
    try:
        result = prepare(options)
    except (SetupError, ConfigError) as e:
        _fail(str(e))
        return
    if not args.no_dns_check:
        from twisted.names import client

        async def check(reactor: Any) -> Any:
            return await check_dns(client.createResolver(), result.records)

        try:
            checks = run_reactor(check)
        except Exception as e:  # noqa: BLE001 -- a DNS failure must not undo a finished set-up
            print(f"(DNS check skipped: {type(e).__name__})", file=sys.stderr)
        else:
            from dataclasses import replace

            result = replace(result, checks=tuple(checks))
    describe(result, options.hostname or result.options[result.options.index("--hostname") + 1], sys.stdout)


def _passphrase(args: argparse.Namespace, confirm: bool) -> str:
    if args.passphrase_file:
        try:
            return Path(args.passphrase_file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as e:
            _fail(f"cannot read --passphrase-file {args.passphrase_file}: {e.strerror}")
    if os.environ.get(PASSPHRASE_ENV):
        return os.environ[PASSPHRASE_ENV]
    if not sys.stdin.isatty():
        _fail(f"give the passphrase with --passphrase-file FILE or ${PASSPHRASE_ENV}")
    first = getpass.getpass("Backup passphrase: ")
    if confirm and getpass.getpass("Again: ") != first:
        _fail("the passphrases differ")
    return first


def cmd_backup(args: argparse.Namespace) -> None:
    """``mailiverse-admin backup FILE``: an encrypted, consistent snapshot of the database and keys."""
    from mailiverse.backup import BackupError, create_backup

    try:
        manifest = create_backup(Path(args.data_dir), Path(args.file), _passphrase(args, confirm=True), db_url=args.db)
    except BackupError as e:
        _fail(str(e))
        return
    print(f"backup written to {args.file}: {len(manifest['files'])} key file(s) and the {manifest['database']} database")


def cmd_restore(args: argparse.Namespace) -> None:
    """``mailiverse-admin restore FILE``: put a backup back (stop the service first)."""
    from mailiverse.backup import BackupError, restore_backup

    try:
        result = restore_backup(Path(args.data_dir), Path(args.file), _passphrase(args, confirm=False), db_url=args.db)
    except BackupError as e:
        _fail(str(e))
        return
    rows = sum(result.tables.values())
    print(f"restored {len(result.files)} file(s) and {rows} row(s) into {Path(args.data_dir)}; start the service again")


def cmd_dkim(args: argparse.Namespace) -> None:
    """``mailiverse-admin dkim DOMAIN``: make the DKIM key if missing and print its TXT record."""
    from mailiverse.config import DataDir
    from mailiverse.outbound.dkim import dkim_dns_record, dkim_record_name
    from mailiverse.setup.records import DnsRecord, zone_text

    keys_dir = DataDir(Path(args.data_dir)).keys_dir
    try:
        value = dkim_dns_record(args.domain, args.selector, keys_dir=keys_dir)
        name = dkim_record_name(args.domain, args.selector)
    except ConfigError as e:
        _fail(str(e))
        return
    sys.stdout.write(zone_text([DnsRecord(name, "TXT", value, "DKIM public key of outgoing mail")]))


def register_commands(sub: Any) -> None:
    """Add ``setup``, ``backup``, ``restore`` and ``dkim`` to ``mailiverse-admin``'s sub-parsers."""
    from mailiverse.setup.configure import DEFAULT_ENV_FILE, LETS_ENCRYPT_DIRECTORY

    setup = sub.add_parser("setup", help="configure the appliance, make DKIM keys, print and check DNS records")
    setup.add_argument("--domain", action="append", required=True, help="a mail domain to serve (repeatable)")
    setup.add_argument("--hostname", help="the MX host name (default: the first --domain)")
    setup.add_argument("--config", default=str(DEFAULT_ENV_FILE), help=f"the service's option file (default {DEFAULT_ENV_FILE})")
    setup.add_argument("--listen", default="0.0.0.0", help="address to serve on (default 0.0.0.0)")  # noqa: S104
    setup.add_argument("--test-ports", action="store_true", help="keep the unprivileged default ports (2525, 4650, 8443)")
    setup.add_argument("--production-ports", action="store_true", help="ports 25, 465, 443 and 80 (the default)")
    setup.add_argument("--no-acme", action="store_true", help="no CA certificate from ACME (self-signed only)")
    setup.add_argument("--acme-directory", default=LETS_ENCRYPT_DIRECTORY, help="ACME directory URL (default Let's Encrypt)")
    setup.add_argument("--acme-email", help="contact address for the ACME account")
    setup.add_argument("--no-dns-check", action="store_true", help="print the records without looking them up")
    setup.set_defaults(func=cmd_setup)

    for name, func, text in (("backup", cmd_backup, "write an encrypted backup of the database and keys to FILE"),
                             ("restore", cmd_restore, "restore a backup from FILE (service stopped)")):
        command = sub.add_parser(name, help=text)
        command.add_argument("file", metavar="FILE")
        command.add_argument("--passphrase-file", metavar="FILE", help=f"read the passphrase from FILE (or ${PASSPHRASE_ENV}, or a prompt)")
        command.set_defaults(func=func)

    dkim = sub.add_parser("dkim", help="make the DKIM key of DOMAIN if missing and print its DNS record")
    dkim.add_argument("domain", metavar="DOMAIN")
    dkim.add_argument("--selector", default="mailiverse")
    dkim.set_defaults(func=cmd_dkim)
