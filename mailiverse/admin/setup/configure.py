"""``mailiverse-admin setup``: write the service configuration, make the DKIM keys, print and check DNS.

The configuration is one environment file read by the systemd unit (``MAILIVERSE_OPTIONS`` holds
the ``twistd mailiverse`` options).  Everything set-up makes in the data dir is given to the data
dir's owner, so running set-up as root leaves files the ``mailiverse`` service user can read.
"""

from __future__ import annotations

import base64
import contextlib
import grp
import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from mailiverse.admin.ownership import own_like
from mailiverse.admin.setup.dnscheck import CheckResult, check_record, report
from mailiverse.config import ConfigError, DataDir, normalize_domain
from mailiverse.dnsrecords import DnsRecord, mail_records, mta_sts_policy, zone_text
from mailiverse.privatefile import private_writer

DEFAULT_ENV_FILE = Path("/etc/mailiverse/mailiverse.env")
LETS_ENCRYPT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"
ACME_CERT_NAME = "acme.crt"
ACME_KEY_NAME = "acme.key"
SERVICE_GROUP = "mailiverse"
_ENV_VARIABLE = "MAILIVERSE_OPTIONS"


class SetupError(Exception):
    """Set-up cannot go on; the message says what to change."""


@dataclass(frozen=True)
class SetupOptions:
    """The answers set-up needs; everything but the domain has a default."""

    domains: tuple[str, ...]
    data_dir: Path
    hostname: str | None = None
    env_file: Path = DEFAULT_ENV_FILE
    listen: str = "0.0.0.0"  # noqa: S104 -- an appliance serves the network; set-up is explicit about it
    production_ports: bool = True
    acme: bool = True
    acme_directory: str = LETS_ENCRYPT_DIRECTORY
    acme_email: str | None = None
    db_url: str | None = None
    selector: str = "mailiverse"
    extra_options: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class SetupResult:
    """What set-up wrote and what DNS must hold."""

    options: tuple[str, ...]
    env_file: Path
    records: tuple[DnsRecord, ...]
    dkim_keys: tuple[Path, ...]
    checks: tuple[CheckResult, ...] = ()


def _validated(options: SetupOptions) -> tuple[tuple[str, ...], str]:
    if not options.domains:
        raise SetupError("give the mail domain: mailiverse-admin setup --domain example.org")
    try:
        domains = tuple(dict.fromkeys(normalize_domain(d) for d in options.domains))
        hostname = normalize_domain(options.hostname, "--hostname") if options.hostname else domains[0]
    except ConfigError as e:
        raise SetupError(str(e)) from None
    if options.acme_email is not None and (
        "@" not in options.acme_email or any(c in options.acme_email for c in " \t\r\n\"'")
    ):
        raise SetupError(f"--acme-email {options.acme_email!r} is not an e-mail address")
    if options.acme and not options.acme_directory.startswith("https://"):
        raise SetupError("--acme-directory must be an https:// URL")
    return domains, hostname


def twistd_options(options: SetupOptions, domains: tuple[str, ...], hostname: str) -> list[str]:
    """The ``twistd mailiverse`` options the service runs with."""
    data = DataDir(options.data_dir)
    args: list[str] = []
    for domain in domains:
        args += ["--domain", domain]
    args += ["--hostname", hostname, "--listen", options.listen]
    if options.production_ports:
        args += ["--smtp", "tcp:25", "--smtps", "tcp:465", "--web", "tcp:443"]
    if options.db_url:
        args += ["--db", options.db_url]
    if options.acme:
        args += ["--tls-cert", str(data.tls_dir / ACME_CERT_NAME), "--tls-key", str(data.tls_dir / ACME_KEY_NAME)]
        args += ["--acme-directory", options.acme_directory]
        if options.acme_email:
            args += ["--acme-email", options.acme_email]
        if options.production_ports:
            args += ["--acme-http", "tcp:80"]
    return args + list(options.extra_options)


def write_env_file(path: Path, args: list[str]) -> None:
    """Write the unit's environment file atomically: mode 0640, group ``mailiverse`` when it exists."""
    for arg in args:
        if any(c in arg for c in "\"'\\$`\n\r") or not arg:
            raise SetupError(f"the option value {arg[:60]!r} has a character the service file cannot hold")
    text = (
        "# Written by `mailiverse-admin setup`; options of `twistd mailiverse` for the systemd unit.\n"
        f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n"
        f'{_ENV_VARIABLE}="{" ".join(args)}"\n'
    )
    path.parent.mkdir(parents=True, exist_ok=True)  # e.g. /etc/default: not a private directory
    with private_writer(path, mode=0o640) as handle:
        handle.write(text.encode("utf-8"))
        if os.geteuid() == 0:
            with contextlib.suppress(KeyError, OSError):
                os.fchown(handle.fileno(), 0, grp.getgrnam(SERVICE_GROUP).gr_gid)


def read_env_options(path: Path) -> list[str]:
    """The options recorded in an environment file written by :func:`write_env_file` (``[]`` if none)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        if line.startswith(f"{_ENV_VARIABLE}="):
            value = shlex.split(line.split("=", 1)[1])
            return value[0].split() if value else []
    return []


def prepare(options: SetupOptions) -> SetupResult:
    """Everything but the DNS check: data dir, DKIM keys, the ACME placeholder, the environment file."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from mailiverse.acme.certs import ensure_placeholder
    from mailiverse.outbound.dkim import dkim_dns_record, dkim_key_path
    from mailiverse.store.keylog import load_log_key

    domains, hostname = _validated(options)
    data = DataDir(Path(options.data_dir))
    data.create()
    records: list[DnsRecord] = []
    keys: list[Path] = []
    policy_id = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    # The key directory's log key, made now if the appliance has not made it yet: its public half goes into
    # each domain's discovery record, so other appliances can pin it from DNS.
    log_key = base64.b64encode(
        load_log_key(data.log_key_file).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    ).decode("ascii")
    own_like(data.log_key_file, data.root)
    for domain in domains:
        value = dkim_dns_record(domain, options.selector, keys_dir=data.keys_dir)
        key_path = dkim_key_path(data.keys_dir, domain)
        own_like(key_path, data.root)
        keys.append(key_path)
        records += mail_records(
            domain, hostname, value, selector=options.selector, policy_id=policy_id, log_key=log_key
        )
    if options.acme:
        for made in ensure_placeholder(data.tls_dir / ACME_CERT_NAME, data.tls_dir / ACME_KEY_NAME, hostname):
            own_like(made, data.root)
    for sub in (data.tls_dir, data.keys_dir, data.tmp_dir):
        own_like(sub, data.root)
    args = twistd_options(options, domains, hostname)
    try:
        write_env_file(Path(options.env_file), args)
    except PermissionError:
        raise SetupError(
            f"cannot write {options.env_file}: run set-up as root (sudo mailiverse-admin setup ...)"
        ) from None
    return SetupResult(tuple(args), Path(options.env_file), tuple(records), tuple(keys))


async def check_dns(resolver: Any, records: tuple[DnsRecord, ...]) -> list[CheckResult]:
    """Check all records at once (each lookup has its own short timeout)."""
    from twisted.internet.defer import Deferred, gatherResults

    return list(await gatherResults([Deferred.fromCoroutine(check_record(resolver, r)) for r in records]))


def describe(result: SetupResult, hostname: str, out: TextIO) -> None:
    """Print what was written and the DNS records to publish, as a new owner reads them."""
    out.write(f"Configuration written to {result.env_file}:\n  twistd mailiverse {' '.join(result.options)}\n\n")
    for key in result.dkim_keys:
        out.write(f"DKIM key: {key}\n")
    out.write("\nPublish these DNS records at your DNS provider (zone-file syntax):\n\n")
    out.write(zone_text(list(result.records)))
    out.write(f"\n; and an A/AAAA record for {hostname} pointing at this machine's public address.\n")
    out.write("\nMTA-STS policy (served at https://mta-sts.<domain>/.well-known/mta-sts.txt):\n\n")
    out.write(mta_sts_policy(hostname).replace("\r\n", "\n"))
    if result.checks:
        out.write("\nDNS check (records are 'missing' until you publish them):\n\n")
        out.write(report(list(result.checks)))
    out.write("\nThen start the service: systemctl restart mailiverse\n")
