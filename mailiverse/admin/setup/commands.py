"""The ``setup`` and ``dkim`` commands of ``mailiverse-admin``.

Each ``cmd_*(args)`` reads ``args.data_dir`` and ``args.db`` from the main parser and raises
:class:`~mailiverse.admin.errors.AdminError` for a failure the operator can act on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mailiverse.admin.errors import AdminError
from mailiverse.config import ConfigError


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
    from mailiverse.admin.setup.configure import SetupError, SetupOptions, check_dns, describe, prepare

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
        raise AdminError(str(e)) from None
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


def cmd_dkim(args: argparse.Namespace) -> None:
    """``mailiverse-admin dkim DOMAIN``: make the DKIM key if missing and print its TXT record."""
    from mailiverse.config import DataDir
    from mailiverse.dnsrecords import DnsRecord, zone_text
    from mailiverse.outbound.dkim import dkim_dns_record, dkim_record_name

    keys_dir = DataDir(Path(args.data_dir)).keys_dir
    try:
        value = dkim_dns_record(args.domain, args.selector, keys_dir=keys_dir)
        name = dkim_record_name(args.domain, args.selector)
    except ConfigError as e:
        raise AdminError(str(e)) from None
    sys.stdout.write(zone_text([DnsRecord(name, "TXT", value, "DKIM public key of outgoing mail")]))
