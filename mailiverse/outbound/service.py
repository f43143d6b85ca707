"""Assembling outbound mail from configuration: ``OutboundConfig``, ``build_outbound`` and the worker service."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall

from mailiverse.config import ConfigError, normalize_domain
from mailiverse.contracts import IInbox
from mailiverse.dns import IDnsResolver, Resolver
from mailiverse.logs import Logger
from mailiverse.outbound.dkim import DEFAULT_SELECTOR, DkimSigner, _check_selector
from mailiverse.outbound.queue import (
    DEFAULT_MAX_AGE_S,
    DEFAULT_RETRY_SCHEDULE_S,
    Outbound,
    QueuePolicy,
)
from mailiverse.outbound.queuekey import QueueCipher, load_or_create_queue_key
from mailiverse.outbound.transport import DirectTransport, SmarthostTransport, Transport
from mailiverse.store.db import Database
from mailiverse.tls import TLSConfigError, trust_roots
from mailiverse.webfetch import WebFetch

if TYPE_CHECKING:
    from mailiverse.outbound.mtasts import MtaSts

log = Logger()

OutboundMode = Literal["off", "direct", "smarthost"]
SUBMISSION_PORT = 587
MAX_PASSWORD_FILE_BYTES = 4096


def parse_smarthost(text: str) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6-address]:port`` -> (host, port); the port defaults to 587."""
    value = text.strip()
    if not value:
        raise ConfigError("--smarthost is empty; give host:port, e.g. smtp.example.net:587")
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(f"--smarthost {text!r} is malformed; use [address]:port")
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    elif ":" in value:
        raise ConfigError(f"--smarthost {text!r}: write an IPv6 address as [address]:port")
    else:
        host, port_text = value, ""
    if not host:
        raise ConfigError(f"--smarthost {text!r} names no host")
    port = SUBMISSION_PORT
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError(f"--smarthost {text!r} has an invalid port")
        port = int(port_text)
    return host, port


def read_password_file(path: Path, option: str = "--smarthost-password-file") -> str:
    """A password (the smarthost's, rspamd's): the first line of a file that only its owner may read;
    errors name ``option``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as error:
        raise ConfigError(f"{option} {path}: {error.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{option} {path} is not a regular file")
        if info.st_mode & 0o077:
            raise ConfigError(f"{option} {path} is readable by others; chmod 600 it")
        data = os.read(fd, MAX_PASSWORD_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_PASSWORD_FILE_BYTES:
        raise ConfigError(f"{option} {path} is too large")
    lines = data.decode("utf-8").splitlines()
    password = lines[0] if lines else ""
    if not password:
        raise ConfigError(f"{option} {path} is empty")
    return password


@dataclass(frozen=True)
class OutboundConfig:
    """Everything outbound mail needs; ``validate()`` names the option at fault."""

    mode: OutboundMode = "off"
    data_dir: Path = Path("./mailiverse-data")
    hostname: str = "localhost"
    local_domains: tuple[str, ...] = ()
    smarthost: str | None = None
    smarthost_user: str | None = None
    smarthost_password: str | None = field(default=None, repr=False)
    smarthost_ca_file: Path | None = None
    dkim_selector: str | None = DEFAULT_SELECTOR
    max_message_size: int = 50 * 1024 * 1024
    max_recipients: int = 100
    poll_interval_s: float = 30.0
    lease_s: int = 15 * 60
    retry_schedule_s: tuple[int, ...] = DEFAULT_RETRY_SCHEDULE_S
    max_age_s: int = DEFAULT_MAX_AGE_S
    smtp_timeout_s: float = 120.0
    #: Port for direct delivery; only tests use anything but 25.
    direct_port: int = 25
    #: ``--trust-ca``: PEM files of trust roots added to the system's for verified outbound TLS.
    trust_ca: tuple[Path, ...] = ()

    @property
    def keys_dir(self) -> Path:
        return Path(self.data_dir) / "keys"

    def validate(self) -> None:
        """Raise ``ConfigError`` naming the option when the combination cannot work."""
        if self.mode not in ("off", "direct", "smarthost"):
            raise ConfigError(f"--outbound {self.mode!r} is not one of direct, smarthost, off")
        if self.mode == "smarthost":
            if not self.smarthost:
                raise ConfigError("--outbound smarthost needs --smarthost host:port")
            parse_smarthost(self.smarthost)
            if not self.smarthost_user or not self.smarthost_password:
                raise ConfigError(
                    "--outbound smarthost needs --smarthost-user and --smarthost-password-file (AUTH is required)"
                )
            if self.smarthost_ca_file is not None and not Path(self.smarthost_ca_file).is_file():
                raise ConfigError(f"--smarthost-ca {self.smarthost_ca_file} does not exist")
        if self.dkim_selector is not None:
            _check_selector(self.dkim_selector)
        for domain in self.local_domains:
            normalize_domain(domain)
        if self.max_recipients < 1 or self.max_message_size < 1:
            raise ConfigError("outbound limits must be positive")
        if self.poll_interval_s <= 0 or self.lease_s <= 0:
            raise ConfigError("outbound timings must be positive")

    def policy(self) -> QueuePolicy:
        return QueuePolicy(
            max_message_size=self.max_message_size,
            max_recipients=self.max_recipients,
            retry_schedule_s=self.retry_schedule_s,
            max_age_s=self.max_age_s,
            lease_s=self.lease_s,
        )


class OutboundService(Service):
    """Runs the queue worker every ``interval`` seconds while the appliance runs."""

    name = "outbound"  # type: ignore[assignment]

    def __init__(self, outbound: Outbound, interval: float, clock: Any) -> None:
        self.outbound = outbound
        self._interval = interval
        self._clock = clock
        self._loop: LoopingCall | None = None
        self._loop_done: Deferred[LoopingCall] | None = None

    def _tick(self) -> Deferred[None]:
        # A failed pass (say, the database restarting) is logged and retried at the next tick;
        # letting it propagate would stop the LoopingCall for good.
        d = Deferred.fromCoroutine(self.outbound.run_pending())
        return d.addCallbacks(lambda _: None, lambda failure: log.failure("outbound queue pass failed", failure))

    def startService(self) -> None:
        super().startService()
        if not self.outbound.enabled:
            return
        self.outbound.start()
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self._clock
        self._loop_done = self._loop.start(self._interval, now=True)
        self._loop_done.addErrback(lambda failure: log.failure("the outbound worker stopped", failure))

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self.outbound.stop()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        return Deferred.fromCoroutine(self.outbound.wait_idle())


def build_transport(
    config: OutboundConfig,
    *,
    reactor: Any,
    resolver: IDnsResolver | None = None,
    web_fetch: WebFetch | None = None,
) -> Transport | None:
    """The transport the configuration asks for (None when outbound mail is off); direct delivery looks the
    MX up through ``resolver`` (by default one asking the system's resolvers) and the domains' MTA-STS policies
    with ``web_fetch`` (the appliance's one; by default one made here from ``resolver`` and ``config.trust_ca``),
    whose trust roots also verify the MX hosts' TLS."""
    try:
        if config.mode == "smarthost":
            assert config.smarthost and config.smarthost_user and config.smarthost_password
            host, port = parse_smarthost(config.smarthost)
            trust = web_fetch.trust if web_fetch is not None else trust_roots(config.trust_ca)
            return SmarthostTransport(
                reactor=reactor,
                host=host,
                port=port,
                helo=config.hostname,
                username=config.smarthost_user,
                password=config.smarthost_password,
                ca_file=config.smarthost_ca_file,
                timeout_s=config.smtp_timeout_s,
                # --trust-ca adds to the system's roots; without it the smarthost is checked as it always was.
                trust=trust if trust.extra else None,
            )
        if config.mode == "direct":
            resolver = resolver if resolver is not None else Resolver(reactor=reactor)
            if web_fetch is None:
                web_fetch = WebFetch(reactor, resolver, config.trust_ca)
            return DirectTransport(
                reactor=reactor,
                resolver=resolver,
                helo=config.hostname,
                port=config.direct_port,
                timeout_s=config.smtp_timeout_s,
                mta_sts=_mta_sts(resolver, web_fetch, reactor),
                trust=web_fetch.trust,
                verify_first=bool(web_fetch.trust.extra),
            )
    except TLSConfigError as error:
        raise ConfigError(f"--trust-ca {error}") from None
    return None


def build_outbound(
    config: OutboundConfig,
    database: Database,
    *,
    reactor: Any,
    local_delivery: IInbox,
    resolver: IDnsResolver | None = None,
    web_fetch: WebFetch | None = None,
    clock: Any = None,
) -> tuple[IService, Outbound]:
    """The worker service (add it to the appliance's MultiService) and the ``Outbound`` the web layer calls.

    With ``mode="off"`` the service does nothing and ``submit`` raises ``SubmissionRejected``
    with code ``outbound_disabled``.  ``resolver`` is the appliance's (``--dns-server``), ``web_fetch`` its
    one HTTPS fetcher (MTA-STS policies; its ``--trust-ca`` roots verify outbound TLS); ``clock`` exists for
    tests.
    """
    config.validate()
    cipher = QueueCipher(load_or_create_queue_key(config.keys_dir))
    signer = None
    if config.dkim_selector is not None and config.local_domains:
        signer = DkimSigner(config.keys_dir, config.dkim_selector, config.local_domains)
    outbound = Outbound(
        database,
        cipher=cipher,
        transport=build_transport(config, reactor=reactor, resolver=resolver, web_fetch=web_fetch),
        local_delivery=local_delivery,
        hostname=config.hostname,
        local_domains=[normalize_domain(d) for d in config.local_domains],
        reactor=reactor,
        clock=clock,
        signer=signer,
        policy=config.policy(),
    )
    return OutboundService(outbound, config.poll_interval_s, clock or reactor), outbound


def _mta_sts(resolver: Any, web_fetch: WebFetch, reactor: Any) -> MtaSts:
    """MTA-STS for direct delivery, imported only when the appliance delivers directly (idle memory)."""
    from mailiverse.outbound.mtasts import MtaSts

    return MtaSts(resolver, web_fetch, reactor)
