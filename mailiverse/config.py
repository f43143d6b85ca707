"""Typed configuration of one appliance and the layout of its data directory.

``twistd mailiverse`` options and ``mailiverse-admin`` both end up here, so
every rule about defaults, endpoints and file locations lives in one place.
Validation errors name the option and say how to fix it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from twisted.logger import LogLevel

from mailiverse.contracts import InvalidDomain, normalise_domain
from mailiverse.logs import DEFAULT_LEVEL
from mailiverse.privatefile import write_private

DEFAULT_DATA_DIR = "./mailiverse-data"
DEFAULT_SMTP_PORT = 2525
DEFAULT_SMTPS_PORT = 4650
DEFAULT_WEB_PORT = 8443
DEFAULT_LISTEN = "127.0.0.1"
#: The SMTP SIZE limit, which is also the largest message the envelopes must handle.
DEFAULT_MAX_MESSAGE_SIZE = 50 * 1024 * 1024
#: Each account's storage quota unless the operator gives it its own (``--default-quota``).
DEFAULT_QUOTA_BYTES = 10 * 1024**3
#: The largest quota that can be set: 1 EiB, far past any disk and well inside a BIGINT.
MAX_QUOTA_BYTES = 1 << 60
#: Recipients one account may send to per hour, over every front end (``--send-limit-per-hour``).
DEFAULT_SEND_LIMIT_PER_HOUR = 200
MAX_SEND_LIMIT_PER_HOUR = 1_000_000
_SIZE_UNITS = {"": 1, "b": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}
#: The one file in the data dir where a running appliance records its settings,
#: so ``mailiverse-admin --data-dir`` finds the same database.
APPLIANCE_FILE = "appliance.json"


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the option and the fix."""


def normalize_domain(name: str, option: str = "--domain") -> str:
    """The contracts' domain rule, with an error that names the option: :class:`ConfigError`."""
    try:
        return normalise_domain(name)
    except InvalidDomain as e:
        raise ConfigError(f"{option} {name!r} is {e}") from None


def parse_size(text: str, maximum: int = MAX_QUOTA_BYTES) -> int:
    """A size such as ``10GiB``, ``512 KiB`` or ``1048576`` (bytes) in bytes, from 0 to ``maximum``.

    Units are binary (KiB, MiB, GiB, TiB; case does not matter). Raises ValueError saying what
    is wrong, for the caller to prefix with the option's name.
    """
    stripped = text.strip()
    digits = stripped.rstrip("BbIiKkMmGgTt ")
    unit = stripped[len(digits) :].strip().lower()
    if not digits.isascii() or not digits.isdigit() or unit not in _SIZE_UNITS or len(digits) > 20:
        raise ValueError(f"{text[:40]!r} is not a size: give whole bytes or KiB, MiB, GiB or TiB, e.g. 10GiB")
    size = int(digits) * _SIZE_UNITS[unit]
    if size > maximum:
        raise ValueError(f"{text[:40]!r} is more than the largest size, {format_size(maximum)}")
    return size


def format_size(size: int) -> str:
    """``size`` bytes in the largest binary unit that divides it exactly: ``10 GiB``, ``512 KiB``, ``1000 bytes``."""
    for name, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size and size % factor == 0:
            return f"{size // factor} {name}"
    return f"{size} bytes"


def with_interface(endpoint: str, listen: str) -> str:
    """Bind a bare ``tcp:PORT`` endpoint to ``listen``; anything explicit is kept.

    The appliance listens on loopback unless told otherwise, so a first run on a
    laptop never exposes a port to the network by accident.
    """
    parts = endpoint.split(":")
    kind = parts[0].lower()
    if kind in ("tcp", "tcp6") and not any(p.startswith("interface=") for p in parts[1:]):
        interface = listen.replace(":", "\\:")
        return f"{endpoint}:interface={interface}"
    return endpoint


@dataclass(frozen=True)
class DataDir:
    """Where an appliance keeps its state; created with mode 0700."""

    root: Path

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    @property
    def database_path(self) -> Path:
        return self.root / "mailiverse.sqlite3"

    @property
    def default_db_url(self) -> str:
        return f"sqlite:///{self.database_path.resolve()}"

    @property
    def appliance_file(self) -> Path:
        return self.root / APPLIANCE_FILE

    @property
    def address_key_file(self) -> Path:
        """The key of the alias directory's hashes (HMAC-SHA-256), kept here, never in the database."""
        return self.keys_dir / "address-hash.key"

    @property
    def log_key_file(self) -> Path:
        """The key directory's log key (Ed25519, PKCS#8 PEM) that signs every tree head and policy."""
        return self.keys_dir / "log.key.pem"

    def server_key_path(self, purpose: str) -> Path:
        return self.keys_dir / f"{purpose}.key.pem"

    def create(self) -> None:
        """Create the directory tree with owner-only permissions."""
        old = os.umask(0o077)
        try:
            for path in (self.root, self.tls_dir, self.keys_dir, self.tmp_dir):
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
                mode = stat.S_IMODE(path.stat().st_mode)
                if mode & 0o077:
                    path.chmod(0o700)
        finally:
            os.umask(old)


CaptchaPolicy = Literal["off", "token", "closed"]
CAPTCHA_POLICIES: tuple[CaptchaPolicy, ...] = ("off", "token", "closed")


@dataclass(frozen=True)
class LegacyOptions:
    """What ``--legacy*`` set.

    ``captcha`` is the sign-up policy: ``"off"`` accepts the original client's missing or
    any token (the original default, captcha ``NONE``); ``"token"`` requires a token issued
    by the operator (``issue_captcha_token``), good once for sign-up and once for StoreEnable
    within its lifetime; ``"closed"`` refuses every legacy sign-up.
    """

    enabled: bool = False
    keyserver_endpoint: str = "tcp:7000"
    mailserver_endpoint: str = "tcp:7001"
    plain: bool = False
    captcha: CaptchaPolicy = "off"
    domains: tuple[str, ...] = field(default_factory=tuple)
    hostname: str = "localhost"
    max_accounts: int = 1000
    #: Accepted distance between ``X-Mv-Date`` and the server clock.
    date_skew_seconds: int = 15 * 60
    #: Reader-idle timeout of a line connection (the original's AUTH_TIMEOUT).
    idle_timeout: float = 45.0
    #: Sign-ups that never deliver their server environment are forgotten after this.
    pending_lifetime_seconds: int = 24 * 3600

    def __post_init__(self) -> None:
        if self.captcha not in CAPTCHA_POLICIES:
            raise ValueError(f"legacy captcha policy must be one of {', '.join(CAPTCHA_POLICIES)}")
        if self.max_accounts < 1:
            raise ValueError("legacy max_accounts must be at least 1")


#: Names of homes: what ``--home NAME=URL`` and ``mailiverse-admin`` call them.
_HOME_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
MAX_HOMES = 64
MAX_HOME_WEIGHT = 1000


@dataclass(frozen=True)
class HomeSetting:
    """One ``--home``: its name, its PostgreSQL URL, and its share of new accounts (``--home-weight``)."""

    name: str
    url: str
    weight: int = 1

    def __repr__(self) -> str:
        # The URL may carry a password: keep it out of logs and tracebacks.
        return f"HomeSetting(name={self.name!r}, weight={self.weight})"


def _postgres_url(url: str, what: str) -> str:
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if not url.startswith(("postgresql:", "postgresql+psycopg:")):
        raise ConfigError(f"{what} must be a postgresql:// URL: homes and the metabase are PostgreSQL databases")
    return url


def parse_homes(
    metabase: str, homes: list[str] | tuple[str, ...], weights: list[str] | tuple[str, ...] = ()
) -> tuple[str, tuple[HomeSetting, ...]]:
    """The metabase URL and the homes of ``--metabase``, ``--home NAME=URL`` and ``--home-weight NAME=N``."""
    metabase = _postgres_url(metabase, "--metabase")
    if not homes:
        raise ConfigError("--metabase needs at least one --home NAME=URL: the databases accounts live in")
    if len(homes) > MAX_HOMES:
        raise ConfigError(f"at most {MAX_HOMES} homes")
    parsed: dict[str, str] = {}
    for spec in homes:
        name, sep, url = spec.partition("=")
        if not sep or not _HOME_NAME.match(name):
            raise ConfigError(
                "--home is NAME=URL, NAME being 1-32 lower-case letters, digits, '-' or '_' (e.g. home1=postgresql://...)"
            )
        if name in parsed:
            raise ConfigError(f"--home {name} is given twice")
        url = _postgres_url(url, f"--home {name}")
        if url in parsed.values() or url == metabase:
            raise ConfigError(f"--home {name} names a database already used by another home or the metabase")
        parsed[name] = url
    weight_of = {name: 1 for name in parsed}
    for spec in weights:
        name, sep, value = spec.partition("=")
        if not sep or name not in parsed:
            raise ConfigError(f"--home-weight is NAME=N for a NAME given by --home (got {spec!r})")
        try:
            weight = int(value)
        except ValueError:
            raise ConfigError(f"--home-weight {name}: {value!r} is not a whole number") from None
        if not 0 <= weight <= MAX_HOME_WEIGHT:
            raise ConfigError(f"--home-weight {name}: a weight is from 0 to {MAX_HOME_WEIGHT}")
        weight_of[name] = weight
    if not any(weight_of.values()):
        raise ConfigError("every home has weight 0: new accounts would have nowhere to go")
    return metabase, tuple(HomeSetting(name, url, weight_of[name]) for name, url in parsed.items())


@dataclass(frozen=True)
class ApplianceConfig:
    """Everything one running appliance needs to know."""

    data_dir: DataDir
    domains: tuple[str, ...]
    hostname: str
    smtp_endpoints: tuple[str, ...]
    smtps_endpoints: tuple[str, ...]
    smtp_selfsigned_endpoints: tuple[str, ...] = ()
    smtps_selfsigned_endpoints: tuple[str, ...] = ()
    web_endpoints: tuple[str, ...] = ()
    web_plain_endpoints: tuple[str, ...] = ()
    #: ``--trusted-proxy``: peers of the ``--web-plain`` listeners whose X-Forwarded-For/Forwarded are believed.
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    db_url: str = ""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    open_signup: bool = False
    outbound_mode: str = "off"
    smarthost: str | None = None
    smarthost_user: str | None = None
    smarthost_password_file: Path | None = None
    smarthost_ca: Path | None = None
    dkim_selector: str = "mailiverse"
    mta_sts_mode: str = "testing"
    acme_directory: str | None = None
    acme_email: str | None = None
    acme_http_endpoints: tuple[str, ...] = ()
    legacy: LegacyOptions = field(default_factory=LegacyOptions)
    #: ``--default-quota``: the storage quota of every account without one of its own, in bytes.
    default_quota: int = DEFAULT_QUOTA_BYTES
    #: ``--send-limit-per-hour``: recipients each account may send to per hour.
    send_limit_per_hour: int = DEFAULT_SEND_LIMIT_PER_HOUR
    #: ``--workers``: isolated processes that seal incoming mail; 0 seals on threads of the main process.
    delivery_workers: int = 0
    #: ``--worker-socket``: reach the workers at this Unix socket (systemd starts them) instead of starting them.
    delivery_worker_socket: str | None = None
    #: ``--reuse-port``: the SMTP and web listeners bind with SO_REUSEPORT, so several appliances share their ports.
    reuse_port: bool = False
    #: ``--log-level``: the appliance's log lines below it are dropped before they are built.
    log_level: LogLevel = DEFAULT_LEVEL
    #: ``--dns-server``: the (address, port) of each DNS server every lookup asks, in order; empty: the system's.
    dns_servers: tuple[tuple[str, int], ...] = ()
    #: ``--trusted-arc-sealer``: ARC sealers whose chain may excuse a DMARC failure (issue 18).
    trusted_arc_sealers: tuple[str, ...] = ()
    #: ``--max-aliases``: live aliases each account may have; ``--alias-rate``: new ones per 15 minutes.
    max_aliases: int = 1000
    alias_rate: int = 10
    #: ``--dnsbl``: DNS blocklist zones the built-in spam check asks about the connecting address.
    dnsbl_zones: tuple[str, ...] = ()
    #: ``--rspamd``: the rspamd controller that checks received mail and learns from the clients; None: none.
    rspamd_url: str | None = None
    #: ``--rspamd-password-file``: where rspamd's controller password is (read at start, never recorded).
    rspamd_password_file: Path | None = None
    #: ``--trust-ca``: PEM files of trust roots added to the system's, for outbound TLS and fetches from other
    #: servers (MTA-STS policies, other appliances' discovery); each checked at start to hold certificates.
    trust_ca: tuple[Path, ...] = ()
    #: ``--home`` (with ``--metabase``, which is then ``db_url``): the homes accounts live in; empty: ``db_url`` alone.
    homes: tuple[HomeSetting, ...] = ()
    #: ``--lmtp``: endpoints an existing MTA delivers into (RFC 2033).
    lmtp_endpoints: tuple[str, ...] = ()

    @property
    def metabase_url(self) -> str | None:
        """The metabase's URL when accounts live in homes (``--metabase``); None with one database."""
        return self.db_url if self.homes else None

    def is_local_domain(self, domain: str) -> bool:
        try:
            return normalize_domain(domain) in self.domains
        except ConfigError:
            return False

    def record(self) -> None:
        """Write the settings ``mailiverse-admin`` reads (mode 0600, no secrets but the DB URL)."""
        content = {
            "db_url": self.db_url,
            "domains": list(self.domains),
            "hostname": self.hostname,
            "default_quota": self.default_quota,
            "homes": [[home.name, home.url, home.weight] for home in self.homes],
        }
        write_private(self.data_dir.appliance_file, (json.dumps(content, indent=2) + "\n").encode("utf-8"))


def read_recorded(data_dir: DataDir) -> dict[str, object]:
    """Return what the appliance recorded in its data dir, or ``{}`` before its first start."""
    try:
        value = json.loads(data_dir.appliance_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise ConfigError(
            f"{data_dir.appliance_file} is not valid JSON ({e}); delete it and restart the appliance"
        ) from None
    return value if isinstance(value, dict) else {}
