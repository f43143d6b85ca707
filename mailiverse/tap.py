"""``twistd mailiverse``: command-line options and the service tree.

``Options`` only parses and validates.  ``makeService`` prepares the data
directory (certificates, server keys, database migrations) and returns one
``MultiService`` of endpoint services, so a failed bind stops start-up and
``--uid`` can drop privileges after binding port 25.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from twisted.application.service import IService
from twisted.logger import LogLevel
from twisted.python import usage

from mailiverse.auth.forwarded import IPNetwork, parse_trusted_proxy
from mailiverse.config import (
    DEFAULT_DATA_DIR,
    DEFAULT_LISTEN,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_SEND_LIMIT_PER_HOUR,
    DEFAULT_SMTP_PORT,
    DEFAULT_SMTPS_PORT,
    DEFAULT_WEB_PORT,
    MAX_SEND_LIMIT_PER_HOUR,
    ApplianceConfig,
    ConfigError,
    DataDir,
    HomeSetting,
    LegacyOptions,
    normalize_domain,
    parse_homes,
    parse_size,
    with_interface,
)
from mailiverse.contracts.addresses import normalise_domain
from mailiverse.delivery.rspamd import parse_rspamd_url
from mailiverse.delivery.spamcheck import MAX_DNSBL_ZONES
from mailiverse.dns.servers import Server, parse_server
from mailiverse.logs import DEFAULT_LEVEL, set_level
from mailiverse.smtp.lmtp_endpoint import lmtp_endpoint
from mailiverse.tls import TLSConfigError, read_certificates

LOG_LEVELS = tuple(level.name for level in LogLevel.iterconstants())


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the mailiverse appliance: an ESMTP receiver that encrypts each message to its "
        "recipient's public key at once, and the HTTPS client. Endpoints are Twisted endpoint "
        "strings (tcp:PORT); the appliance adds TLS itself. Bare tcp endpoints listen on "
        "127.0.0.1 unless --listen says otherwise. Give 'none' to switch a listener kind off."
    )
    optParameters = [
        ["data-dir", None, DEFAULT_DATA_DIR, "Directory for keys, certificates and the SQLite database."],
        ["hostname", None, None, "Host name used in the SMTP greeting and certificates (default: the first --domain)."],
        ["web", None, None, f"HTTPS endpoint (default tcp:{DEFAULT_WEB_PORT})."],
        ["db", None, None, "Database URL (default: SQLite in the data dir; or postgresql://user@host/db)."],
        [
            "metabase",
            None,
            None,
            "PostgreSQL URL of the metabase (accounts' homes, the key log, state front ends share); with --home, "
            "instead of --db (docs/homes.md).",
        ],
        ["tls-cert", None, None, "PEM certificate (chain) issued by a CA, for the CA listeners."],
        ["tls-key", None, None, "PEM private key of --tls-cert."],
        ["listen", None, DEFAULT_LISTEN, "Address bare tcp:PORT endpoints bind to."],
        ["max-message-size", None, str(DEFAULT_MAX_MESSAGE_SIZE), "Largest message accepted, in bytes (SMTP SIZE)."],
        [
            "default-quota",
            None,
            "10GiB",
            "Storage quota of each account without its own (mailiverse-admin user quota), e.g. 10GiB or 500MiB.",
        ],
        [
            "send-limit-per-hour",
            None,
            str(DEFAULT_SEND_LIMIT_PER_HOUR),
            "Recipients each account may send mail to per hour (API and legacy Send together).",
        ],
        ["outbound", None, "off", "Mail to remote recipients: off, direct (to each domain's MX) or smarthost."],
        [
            "smarthost",
            None,
            None,
            "HOST[:PORT] of the relay for --outbound smarthost (default port 587; STARTTLS required).",
        ],
        ["smarthost-user", None, None, "AUTH user name at the smarthost."],
        ["smarthost-password-file", None, None, "File holding the smarthost password (mode 0600)."],
        ["smarthost-ca", None, None, "PEM trust roots for the smarthost's certificate (default: the system's)."],
        ["dkim-selector", None, "mailiverse", "DKIM selector used to sign outgoing mail."],
        [
            "acme-directory",
            None,
            None,
            "ACME directory URL: get and renew the CA certificate (--tls-cert/--tls-key files).",
        ],
        ["acme-email", None, None, "Contact address for the ACME account."],
        [
            "mta-sts-mode",
            None,
            "testing",
            "MTA-STS policy served at /.well-known/mta-sts.txt: testing, enforce or none (off).",
        ],
        ["legacy-keyserver", None, "tcp:7000", "Legacy KeyServer endpoint (TLS unless --legacy-plain)."],
        ["legacy-mailserver", None, "tcp:7001", "Legacy MailServer endpoint (TLS unless --legacy-plain)."],
        ["legacy-captcha", None, "off", "Legacy sign-up policy: off, token or closed."],
        [
            "workers",
            None,
            None,
            "Isolated processes that open and seal incoming mail (default: the number of usable cores; "
            "0 seals in the main process).",
        ],
        [
            "worker-socket",
            None,
            None,
            "Reach the delivery workers at this Unix socket, one connection each, instead of starting them "
            "(a systemd socket unit with Accept=yes starts each under a user of its own; docs/appliance.md); "
            "unused with --workers 0.",
        ],
        ["max-aliases", None, "1000", "Aliases (shield and chosen addresses) each account may have at once."],
        ["alias-rate", None, "10", "New aliases each account may create per 15 minutes."],
        [
            "rspamd",
            None,
            None,
            "URL of an rspamd controller (e.g. http://127.0.0.1:11334) that checks each received message and "
            "learns from the clients' spam buttons.",
        ],
        ["rspamd-password-file", None, None, "File holding rspamd's controller password (mode 0600), if it has one."],
        [
            "log-level",
            None,
            DEFAULT_LEVEL.name,
            f"Lowest level of the appliance's own lines that are logged: {', '.join(LOG_LEVELS)} "
            "(Twisted's own lines are all logged).",
        ],
    ]

    optFlags = [
        ["open-signup", None, "Let anyone sign up over the API (default: first account, then invites only)."],
        [
            "legacy",
            None,
            "Serve the original Mailiverse protocol (its 257-bit SRP group is breakable; see docs/legacy.md).",
        ],
        ["legacy-plain", None, "Legacy KeyServer/MailServer listeners without TLS."],
        [
            "reuse-port",
            None,
            "Bind the SMTP and web listeners with SO_REUSEPORT (Linux), so several appliances on one host and "
            "one database share their ports (tcp: endpoints only).",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["domain"] = []
        self["smtp"] = []
        self["smtps"] = []
        self["smtp-selfsigned"] = []
        self["smtps-selfsigned"] = []
        self["web-plain"] = []
        self["acme-http"] = []
        self["trusted-proxy"] = []
        self["dns-server"] = []
        self["trusted-arc-sealer"] = []
        self["dnsbl"] = []
        self["trust-ca"] = []
        self["home"] = []
        self["home-weight"] = []
        self["lmtp"] = []

    def opt_domain(self, name: str) -> None:
        """A mail domain served by this appliance (repeatable)."""
        self["domain"].append(name)

    def opt_smtp(self, endpoint: str) -> None:
        """SMTP listener with STARTTLS, CA certificate (repeatable; default tcp:2525)."""
        self["smtp"].append(endpoint)

    def opt_smtps(self, endpoint: str) -> None:
        """SMTP listener with implicit TLS, CA certificate (repeatable; default tcp:4650)."""
        self["smtps"].append(endpoint)

    def opt_smtp_selfsigned(self, endpoint: str) -> None:
        """SMTP listener with STARTTLS whose default certificate is the self-signed one (repeatable)."""
        self["smtp-selfsigned"].append(endpoint)

    def opt_smtps_selfsigned(self, endpoint: str) -> None:
        """SMTP listener with implicit TLS whose default certificate is the self-signed one (repeatable)."""
        self["smtps-selfsigned"].append(endpoint)

    def opt_web_plain(self, endpoint: str) -> None:
        """Plain-HTTP web endpoint, only for use behind a TLS-terminating reverse proxy (repeatable)."""
        self["web-plain"].append(endpoint)

    def opt_trusted_proxy(self, network: str) -> None:
        """CIDR of a TLS proxy in front of --web-plain whose X-Forwarded-For/Forwarded are believed (repeatable)."""
        self["trusted-proxy"].append(network)

    def opt_dns_server(self, server: str) -> None:
        """DNS server ADDRESS[:PORT] asked for every lookup: SPF, DKIM, DMARC, DNSBLs, outbound MX (repeatable, in
        order; port 53 by default; an IPv6 address with a port as [ADDRESS]:PORT; default: the system's resolvers)."""
        self["dns-server"].append(server)

    def opt_trusted_arc_sealer(self, domain: str) -> None:
        """Domain of an ARC sealer (a mailing list, a forwarder) whose chain may excuse a DMARC failure (repeatable)."""
        self["trusted-arc-sealer"].append(domain)

    def opt_dnsbl(self, zone: str) -> None:
        """DNS blocklist zone the connecting address is looked up in (RFC 5782); a listed sender's mail goes to the
        spam folder (repeatable, e.g. zen.spamhaus.org)."""
        self["dnsbl"].append(zone)

    def opt_trust_ca(self, path: str) -> None:
        """PEM file of trust roots (a private CA, another appliance's self-signed certificate) added to the system's
        for outbound TLS: MX hosts, MTA-STS policies, other appliances (repeatable)."""
        self["trust-ca"].append(path)

    def opt_home(self, spec: str) -> None:
        """NAME=URL of a home: a PostgreSQL database holding its accounts' mail (repeatable; with --metabase)."""
        self["home"].append(spec)

    def opt_home_weight(self, spec: str) -> None:
        """NAME=N: new accounts go to homes in proportion to their weights (default 1 each; 0: none new)."""
        self["home-weight"].append(spec)

    def opt_lmtp(self, endpoint: str) -> None:
        """LMTP endpoint (RFC 2033) an existing MTA delivers into: unix:PATH, or tcp:PORT on 127.0.0.1
        (repeatable; docs/running.md)."""
        self["lmtp"].append(endpoint)

    def opt_acme_http(self, endpoint: str) -> None:
        """Plain-HTTP endpoint answering ACME HTTP-01 challenges and redirecting to HTTPS (repeatable)."""
        self["acme-http"].append(endpoint)

    def postOptions(self) -> None:
        try:
            self["config"] = build_config(self)
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None


def _endpoints(values: list[str], default: str | None, listen: str) -> tuple[str, ...]:
    chosen = values or ([default] if default else [])
    if any(v.strip().lower() == "none" for v in chosen):
        return ()
    return tuple(with_interface(v, listen) for v in chosen)


def _choice(options: Any, name: str, allowed: tuple[str, ...]) -> str:
    value = str(options[name])
    if value not in allowed:
        raise ConfigError(f"--{name} must be one of: {', '.join(allowed)}")
    return value


def _legacy_options(options: Any, domains: tuple[str, ...], hostname: str, listen: str) -> LegacyOptions:
    try:
        return LegacyOptions(
            enabled=bool(options["legacy"]),
            keyserver_endpoint=with_interface(options["legacy-keyserver"], listen),
            mailserver_endpoint=with_interface(options["legacy-mailserver"], listen),
            plain=bool(options["legacy-plain"]),
            captcha=options["legacy-captcha"],
            domains=domains,
            hostname=hostname,
        )
    except ValueError as e:
        raise ConfigError(f"--legacy-captcha: {e}") from None


def _trusted_proxies(options: Any, listen: str) -> tuple[IPNetwork, ...]:
    """The --trusted-proxy networks; refused without a --web-plain listener, the only one that reads them."""
    networks: list[IPNetwork] = []
    for value in options["trusted-proxy"]:
        try:
            networks.append(parse_trusted_proxy(value))
        except ValueError as e:
            raise ConfigError(f"--trusted-proxy {e}") from None
    if networks and not _endpoints(options["web-plain"], None, listen):
        raise ConfigError(
            "--trusted-proxy needs a --web-plain listener: forwarding headers are read there only (a proxy in "
            "front of the HTTPS port passes TLS through and cannot add them); add --web-plain ENDPOINT for the "
            "proxy to reach, or drop --trusted-proxy"
        )
    return tuple(networks)


def _account_limits(options: Any) -> tuple[int, int]:
    """(--default-quota in bytes, --send-limit-per-hour), checked."""
    try:
        quota = parse_size(str(options["default-quota"]))
    except ValueError as e:
        raise ConfigError(f"--default-quota: {e}") from None
    text = str(options["send-limit-per-hour"]).strip()
    if not text.isascii() or not text.isdigit() or len(text) > 7 or not 1 <= int(text) <= MAX_SEND_LIMIT_PER_HOUR:
        raise ConfigError(
            f"--send-limit-per-hour must be a whole number of recipients from 1 to {MAX_SEND_LIMIT_PER_HOUR}"
        )
    return quota, int(text)


MAX_WORKERS = 256


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _workers(options: Any) -> int:
    """--workers: a whole number from 0 to MAX_WORKERS, or the usable cores when not given."""
    value = options["workers"]
    if value is None:
        return usable_cores()
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or len(text) > 3 or int(text) > MAX_WORKERS:
        raise ConfigError(f"--workers must be a whole number of processes from 0 to {MAX_WORKERS} (0: no workers)")
    return int(text)


def _worker_socket(options: Any, workers: int) -> str | None:
    """--worker-socket: an absolute path; unused with ``workers`` 0 (the systemd unit always names the socket,
    and an operator's --workers 0 in the options file still means sealing in the main process)."""
    value = options["worker-socket"]
    if value is None:
        return None
    path = str(value)
    if not os.path.isabs(path) or "\0" in path or len(path.encode()) > 107:
        raise ConfigError("--worker-socket must be the absolute path of a Unix socket (at most 107 bytes)")
    return path if workers else None


def _reuse_port(options: Any, listeners: tuple[str, ...]) -> bool:
    """--reuse-port: refused where SO_REUSEPORT is missing, and for any SMTP or web listener that is not tcp:."""
    if not options["reuse-port"]:
        return False
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ConfigError(
            "--reuse-port needs the SO_REUSEPORT socket option (Linux 3.9 or later); this system lacks it"
        )
    for endpoint in listeners:
        if endpoint.split(":", 1)[0].strip().lower() not in ("tcp", "tcp6"):
            raise ConfigError(
                f"--reuse-port works with tcp: endpoints only, and {endpoint!r} is not one: give the SMTP and web "
                "listeners as tcp:PORT (TLS is the appliance's own, not the endpoint's), or drop --reuse-port"
            )
    return True


MAX_DNS_SERVERS = 8


def _trusted_arc_sealers(options: Any) -> tuple[str, ...]:
    """The --trusted-arc-sealer domains, normalised, each once."""
    sealers: list[str] = []
    for value in options["trusted-arc-sealer"]:
        try:
            domain = normalise_domain(value)
        except ValueError:
            raise ConfigError(f"--trusted-arc-sealer {value!r} is not a domain name") from None
        if domain not in sealers:
            sealers.append(domain)
    return tuple(sealers)


def _count(options: Any, name: str, least: int, most: int) -> int:
    value = str(options[name]).strip()
    if not value.isascii() or not value.isdigit() or not least <= int(value) <= most:
        raise ConfigError(f"--{name} is a whole number from {least} to {most}")
    return int(value)


def _dnsbl_zones(options: Any) -> tuple[str, ...]:
    """The --dnsbl zones, normalised, each once, at most MAX_DNSBL_ZONES."""
    zones: list[str] = []
    for value in options["dnsbl"]:
        try:
            zone = normalise_domain(value)
        except ValueError:
            raise ConfigError(f"--dnsbl {value!r} is not a DNS zone name") from None
        if zone not in zones:
            zones.append(zone)
    if len(zones) > MAX_DNSBL_ZONES:
        raise ConfigError(f"--dnsbl is given {len(zones)} zones; each message asks at most {MAX_DNSBL_ZONES}")
    return tuple(zones)


def _rspamd_settings(options: Any) -> dict[str, Any]:
    url, password_file = options["rspamd"], options["rspamd-password-file"]
    if password_file and not url:
        raise ConfigError("--rspamd-password-file needs --rspamd")
    if not url:
        return {}
    try:
        checked = parse_rspamd_url(url)
    except ValueError as e:
        raise ConfigError(f"--rspamd {e}") from None
    if password_file and not Path(password_file).is_file():
        raise ConfigError(f"--rspamd-password-file {password_file}: no such file")
    return {"rspamd_url": checked, "rspamd_password_file": Path(password_file) if password_file else None}


def _dns_servers(options: Any) -> tuple[Server, ...]:
    """The --dns-server values, checked, in order, each once."""
    servers: list[Server] = []
    for value in options["dns-server"]:
        try:
            servers.append(parse_server(value))
        except ValueError as e:
            raise ConfigError(f"--dns-server {e}") from None
    unique = tuple(dict.fromkeys(servers))
    if len(unique) > MAX_DNS_SERVERS:
        raise ConfigError(
            f"--dns-server is given {len(unique)} times; at most {MAX_DNS_SERVERS} servers share a lookup's "
            "5 s, so name the few nearest ones"
        )
    return unique


MAX_TRUST_CA_FILES = 32


def _homes(options: Any) -> tuple[str | None, tuple[HomeSetting, ...]]:
    """--metabase and its --home/--home-weight settings: (None, ()) for the one --db database."""
    metabase = options["metabase"]
    if metabase is None:
        if options["home"] or options["home-weight"]:
            raise ConfigError("--home and --home-weight need --metabase URL (the database mapping accounts to homes)")
        return None, ()
    if options["db"]:
        raise ConfigError("--db and --metabase exclude each other: with homes, --metabase names the directory database")
    return parse_homes(metabase, options["home"], options["home-weight"])


def _trust_ca(options: Any) -> tuple[Path, ...]:
    """The --trust-ca files, each once, each read now: a missing, unreadable or non-PEM file stops start-up."""
    files = tuple(dict.fromkeys(Path(value).expanduser() for value in options["trust-ca"]))
    if len(files) > MAX_TRUST_CA_FILES:
        raise ConfigError(
            f"--trust-ca is given {len(files)} files; put the certificates into at most {MAX_TRUST_CA_FILES}"
        )
    for path in files:
        try:
            read_certificates(path)
        except TLSConfigError as e:
            raise ConfigError(f"--trust-ca {e}; give a PEM file of CA certificates") from None
    return files


def _outbound_settings(options: Any) -> dict[str, Any]:
    mode = options["outbound"]
    if mode not in ("off", "direct", "smarthost"):
        raise ConfigError("--outbound must be off, direct or smarthost")
    if mode == "smarthost" and not options["smarthost"]:
        raise ConfigError("--outbound smarthost needs --smarthost HOST[:PORT]")
    if bool(options["smarthost-user"]) != bool(options["smarthost-password-file"]):
        raise ConfigError("--smarthost-user and --smarthost-password-file go together")
    for opt in ("smarthost-password-file", "smarthost-ca"):
        if options[opt] and not Path(options[opt]).is_file():
            raise ConfigError(f"--{opt} {options[opt]}: no such file")
    return {
        "outbound_mode": mode,
        "smarthost": options["smarthost"],
        "smarthost_user": options["smarthost-user"],
        "smarthost_password_file": Path(options["smarthost-password-file"])
        if options["smarthost-password-file"]
        else None,
        "smarthost_ca": Path(options["smarthost-ca"]) if options["smarthost-ca"] else None,
        "dkim_selector": options["dkim-selector"],
    }


def build_config(options: Any) -> ApplianceConfig:
    """Turn parsed options into an :class:`ApplianceConfig`, validating as we go."""
    data_dir = DataDir(Path(options["data-dir"]).expanduser())
    domains = tuple(dict.fromkeys(normalize_domain(d) for d in options["domain"]))
    hostname_option = options["hostname"]
    if hostname_option:
        hostname = normalize_domain(hostname_option, "--hostname")
    elif domains:
        hostname = domains[0]
    else:
        hostname = normalize_domain(socket.getfqdn() or "localhost", "--hostname")
    if not domains:
        domains = (hostname,)
    listen = options["listen"]
    cert, key = options["tls-cert"], options["tls-key"]
    if bool(cert) != bool(key):
        raise ConfigError("--tls-cert and --tls-key go together: give both files, or neither")
    acme = options["acme-directory"]
    if acme and not cert:
        raise ConfigError("--acme-directory needs --tls-cert and --tls-key: the files the certificate is written to")
    for opt, value in (("--tls-cert", cert), ("--tls-key", key)):
        if value and not acme and not Path(value).is_file():
            raise ConfigError(f"{opt} {value}: no such file")
    try:
        max_size = int(options["max-message-size"])
    except ValueError:
        raise ConfigError("--max-message-size must be a number of bytes, e.g. 52428800") from None
    if not 1024 <= max_size <= 1024 * 1024 * 1024:
        raise ConfigError("--max-message-size must be between 1 KiB and 1 GiB")
    web = options["web"]
    db_url = options["db"] or data_dir.default_db_url
    if db_url.startswith("postgres://"):
        db_url = "postgresql://" + db_url[len("postgres://") :]
    if not db_url.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
        raise ConfigError("--db must be a sqlite:/// or postgresql:// URL")
    metabase_url, homes = _homes(options)
    if metabase_url is not None:
        db_url = metabase_url
        if options["legacy"]:
            raise ConfigError(
                "--legacy runs with one database (--db): the original protocol's store is not split across homes"
            )
    default_quota, send_limit_per_hour = _account_limits(options)
    smtp = _endpoints(options["smtp"], f"tcp:{DEFAULT_SMTP_PORT}", listen)
    smtps = _endpoints(options["smtps"], f"tcp:{DEFAULT_SMTPS_PORT}", listen)
    smtp_selfsigned = _endpoints(options["smtp-selfsigned"], None, listen)
    smtps_selfsigned = _endpoints(options["smtps-selfsigned"], None, listen)
    web_endpoints = _endpoints([web] if web else [], f"tcp:{DEFAULT_WEB_PORT}", listen)
    web_plain = _endpoints(options["web-plain"], None, listen)
    listeners = smtp + smtps + smtp_selfsigned + smtps_selfsigned + web_endpoints + web_plain
    workers = _workers(options)
    return ApplianceConfig(
        data_dir=data_dir,
        domains=domains,
        hostname=hostname,
        smtp_endpoints=smtp,
        smtps_endpoints=smtps,
        smtp_selfsigned_endpoints=smtp_selfsigned,
        smtps_selfsigned_endpoints=smtps_selfsigned,
        web_endpoints=web_endpoints,
        web_plain_endpoints=web_plain,
        trusted_proxies=_trusted_proxies(options, listen),
        db_url=db_url,
        tls_cert=Path(cert) if cert else None,
        tls_key=Path(key) if key else None,
        max_message_size=max_size,
        open_signup=bool(options["open-signup"]),
        **_outbound_settings(options),
        mta_sts_mode=_choice(options, "mta-sts-mode", ("testing", "enforce", "none")),
        acme_directory=acme,
        acme_email=options["acme-email"],
        acme_http_endpoints=_endpoints(options["acme-http"], None, listen),
        legacy=_legacy_options(options, domains, hostname, listen),
        default_quota=default_quota,
        send_limit_per_hour=send_limit_per_hour,
        delivery_workers=workers,
        delivery_worker_socket=_worker_socket(options, workers),
        reuse_port=_reuse_port(options, listeners),
        log_level=LogLevel.levelWithName(_choice(options, "log-level", LOG_LEVELS)),
        dns_servers=_dns_servers(options),
        trusted_arc_sealers=_trusted_arc_sealers(options),
        dnsbl_zones=_dnsbl_zones(options),
        max_aliases=_count(options, "max-aliases", 1, 1_000_000),
        alias_rate=_count(options, "alias-rate", 1, 10_000),
        **_rspamd_settings(options),
        trust_ca=_trust_ca(options),
        homes=homes,
        lmtp_endpoints=tuple(dict.fromkeys(lmtp_endpoint(value) for value in options["lmtp"])),
    )


def makeService(options: Options) -> IService:
    from mailiverse.appliance import build_appliance

    set_level(options["config"].log_level)
    return build_appliance(options["config"])
