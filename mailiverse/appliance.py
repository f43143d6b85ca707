"""Assemble one running appliance from an :class:`ApplianceConfig`.

First start creates the data dir (0700), the self-signed certificate, the
server's RSA keys and the database (Alembic migrations); later starts reuse
them and upgrade the schema.  The result is one ``MultiService``.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any, Literal

from twisted.application.internet import StreamServerEndpointService, TimerService
from twisted.application.service import MultiService, Service
from twisted.internet import defer, tcp
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint, serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from zope.interface import implementer

from mailiverse.auth.connections import ConnectionLimiter, LimitedFactory
from mailiverse.auth.forwarded import TrustedProxies
from mailiverse.config import ApplianceConfig
from mailiverse.delivery.isolation import IsolationSettings
from mailiverse.delivery.pipeline import Delivery
from mailiverse.delivery.pool import WorkerPool
from mailiverse.delivery.rspamd import RspamdClient
from mailiverse.dns import Resolver
from mailiverse.federation.discovery import Discovery
from mailiverse.logs import Logger
from mailiverse.memory import TrimService
from mailiverse.outbound.service import OutboundConfig, build_outbound, read_password_file
from mailiverse.privatefile import create_private_once
from mailiverse.smtp.limits import SmtpLimits
from mailiverse.smtp.service import smtp_server_factory
from mailiverse.store.aliases import ADDRESS_KEY_BYTES, AddressHasher
from mailiverse.store.db import Database
from mailiverse.store.homes import Homes
from mailiverse.store.keylog import KeyLog, load_log_key
from mailiverse.store.migrate import upgrade_in_child
from mailiverse.submission import Submission
from mailiverse.tls import TLSContexts, ensure_self_signed
from mailiverse.web.listeners import WebLimits, https_listener_factory, plain_listener_factory
from mailiverse.web.routes.aliases import AliasSettings
from mailiverse.web.wiring import build_web_app
from mailiverse.webfetch import WebFetch

log = Logger()

MIB = 1024 * 1024
#: How often receipts older than a week are forgotten (store/receipts.py).
RECEIPT_PURGE_INTERVAL_S = 3600


class _ReusePort(tcp.Port):
    """A TCP port bound with SO_REUSEPORT, so several appliance processes on one host share it."""

    def createInternetSocket(self) -> socket.socket:
        sock: socket.socket = super().createInternetSocket()
        option = getattr(socket, "SO_REUSEPORT", None)
        try:
            if option is None:
                raise OSError(errno.ENOPROTOOPT, "SO_REUSEPORT is not available on this system")
            sock.setsockopt(socket.SOL_SOCKET, option, 1)
        except OSError as e:
            sock.close()
            raise CannotListenError(self.interface, self.port, e) from None
        return sock


@implementer(IStreamServerEndpoint)
class _ReusePortEndpoint:
    """``tcp:``/``tcp6:`` endpoint whose port is a :class:`_ReusePort` (serverFromString offers no SO_REUSEPORT)."""

    def __init__(self, reactor: Any, port: int, backlog: int, interface: str) -> None:
        self._reactor, self._port, self._backlog, self._interface = reactor, port, backlog, interface

    def listen(self, factory: IProtocolFactory) -> defer.Deferred[IListeningPort]:
        def start() -> IListeningPort:
            port = _ReusePort(self._port, factory, self._backlog, self._interface, self._reactor)
            port.startListening()
            return port

        return defer.execute(start)


@implementer(IStreamServerEndpoint)
class _NamedBindFailure:
    """Wraps an endpoint so that a port another process holds is reported with what to do about it."""

    def __init__(self, endpoint: IStreamServerEndpoint, description: str) -> None:
        self._endpoint, self._description = endpoint, description

    def listen(self, factory: IProtocolFactory) -> defer.Deferred[IListeningPort]:
        def explain(failure: Any) -> Any:
            error = failure.value
            if isinstance(error, CannotListenError) and getattr(error.socketError, "errno", None) == errno.EADDRINUSE:
                raise CannotListenError(
                    error.interface,
                    error.port,
                    f"{self._description}: the port is in use by another process (several appliances share "
                    "one port only when every one of them is started with --reuse-port)",
                ) from None
            return failure

        return self._endpoint.listen(factory).addErrback(explain)


def listener_endpoint(reactor: Any, description: str, reuse_port: bool) -> IStreamServerEndpoint:
    """The endpoint of an SMTP or web listener; with ``reuse_port`` (tcp: only) bound with SO_REUSEPORT."""
    endpoint = serverFromString(reactor, description)
    if reuse_port:
        if not isinstance(endpoint, TCP4ServerEndpoint | TCP6ServerEndpoint):
            raise ValueError(f"--reuse-port works with tcp: endpoints only, not {description!r}")
        endpoint = _ReusePortEndpoint(reactor, endpoint._port, endpoint._backlog, endpoint._interface)
    return _NamedBindFailure(endpoint, description)


def _listen(root: MultiService, endpoint: IStreamServerEndpoint, factory: IProtocolFactory) -> None:
    """A listener service whose failed bind stops start-up (as twistd's strports do) instead of only logging."""
    service = StreamServerEndpointService(endpoint, factory)
    service._raiseSynchronously = True
    service.setServiceParent(root)


class _Closing(Service):
    """Runs ``close`` when the appliance stops (database pools, delivery workers)."""

    def __init__(self, name: str, close: Any) -> None:
        self.setName(name)
        self._close = close

    def stopService(self) -> None:
        super().stopService()
        self._close()


class _Announce(Service):
    def __init__(self, config: ApplianceConfig) -> None:
        self.config = config

    def startService(self) -> None:
        super().startService()
        c = self.config
        log.info(
            "mailiverse serving {domains} as {hostname}; smtp {smtp}, smtps {smtps}, web {web}; data in {data}",
            domains=", ".join(c.domains),
            hostname=c.hostname,
            smtp=", ".join(c.smtp_endpoints + c.smtp_selfsigned_endpoints) or "off",
            smtps=", ".join(c.smtps_endpoints + c.smtps_selfsigned_endpoints) or "off",
            web=", ".join(c.web_endpoints + c.web_plain_endpoints) or "off",
            data=str(c.data_dir.root),
        )


def _outbound_config(config: ApplianceConfig) -> OutboundConfig:
    password_file = config.smarthost_password_file
    return OutboundConfig(
        mode=config.outbound_mode,  # type: ignore[arg-type]
        data_dir=config.data_dir.root,
        hostname=config.hostname,
        local_domains=config.domains,
        smarthost=config.smarthost,
        smarthost_user=config.smarthost_user,
        smarthost_password=read_password_file(password_file) if password_file else None,
        smarthost_ca_file=config.smarthost_ca,
        dkim_selector=config.dkim_selector,
        max_message_size=config.max_message_size,
        trust_ca=config.trust_ca,
    )


def _add_acme(
    root: MultiService,
    config: ApplianceConfig,
    tls: TLSContexts,
    reactor: Any,
    connections: ConnectionLimiter,
    database: Database,
) -> None:
    """Serve HTTP-01 challenges on the --acme-http endpoints (behind ``connections``' caps) and renew the CA
    certificate in place; with a metabase, the challenges and the certificate are every front end's."""
    from treq.client import HTTPClient
    from twisted.web.client import Agent

    from mailiverse.acme.client import AcmeClient
    from mailiverse.acme.http01 import ChallengeStore, acme_http_site
    from mailiverse.acme.service import CertificateRenewal, load_or_create_account_key
    from mailiverse.acme.shared import DatabaseChallengeStore, SharedCertificates

    assert config.acme_directory and config.tls_cert and config.tls_key
    shared = config.metabase_url is not None
    challenges = DatabaseChallengeStore(database, reactor) if shared else ChallengeStore()
    for endpoint in config.acme_http_endpoints:
        site = LimitedFactory(acme_http_site(challenges), connections)
        StreamServerEndpointService(serverFromString(reactor, endpoint), site).setServiceParent(root)
    client = AcmeClient(
        config.acme_directory,
        load_or_create_account_key(config.data_dir.keys_dir / "acme-account.key.pem"),
        HTTPClient(Agent(reactor)),
        reactor,
        email=config.acme_email,
    )
    # Senders fetch the MTA-STS policy from https://mta-sts.<domain>/, so the certificate should name it too.
    mta_sts_names = tuple(f"mta-sts.{d}" for d in config.domains) if config.mta_sts_mode != "none" else ()
    CertificateRenewal(
        client,
        challenges,
        config.tls_cert,
        config.tls_key,
        (config.hostname,),
        tls.reload,
        reactor,
        optional_names=mta_sts_names,
        shared=SharedCertificates(database, config.hostname, reactor) if shared else None,
    ).setServiceParent(root)


def _spam_filter(config: ApplianceConfig, reactor: Any) -> RspamdClient | None:
    """The --rspamd controller's client, or None; its password read now, from its file, and never logged."""
    if config.rspamd_url is None:
        log.info("spam: the built-in check (GTUBE, --dnsbl zones, failed authentication); no --rspamd")
        return None
    password_file = config.rspamd_password_file
    password = read_password_file(password_file, "--rspamd-password-file") if password_file else None
    log.info("spam: received mail is checked by rspamd at {url}", url=config.rspamd_url)
    return RspamdClient.connect(config.rspamd_url, reactor, password=password)


def _open_homes(config: ApplianceConfig, metabase: Database, reactor: Any) -> Homes:
    """The homes of ``--home`` (each migrated now, in a child process), or the one database as its own home.

    A home that does not answer at start does not stop the appliance: its accounts get 451 (SMTP) and 503 (the
    API) until it does, and it is migrated by the next start (docs/homes.md)."""
    if not config.homes:
        return Homes.single(metabase)
    databases: dict[str, Database] = {}
    for home in config.homes:
        database = Database.open(home.url, reactor=reactor, migrate=False)
        try:
            with database.blocking_allowed():
                upgrade_in_child(database.engine, home.url)
        except Exception as error:  # noqa: BLE001 - one home down must not keep the others' accounts from mail
            log.error("home {home} is unavailable at start ({why})", home=home.name, why=type(error).__name__)
        databases[home.name] = database
    names = ", ".join(home.name for home in config.homes)
    log.info("homes: {names}; the metabase maps accounts to them (docs/homes.md)", names=names)
    return Homes(metabase, databases, {home.name: home.weight for home in config.homes})


def build_appliance(config: ApplianceConfig, reactor: Any = None) -> MultiService:
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    config.data_dir.create()
    self_signed = ensure_self_signed(config.data_dir.root, config.hostname, config.domains)
    ca = (config.tls_cert, config.tls_key) if config.tls_cert and config.tls_key else None
    if ca and config.acme_directory:
        from mailiverse.acme.certs import ensure_placeholder

        ensure_placeholder(ca[0], ca[1], config.hostname)
    tls = TLSContexts(self_signed=self_signed, ca=ca)
    database = Database.open(config.db_url, reactor=reactor, migrate=False)
    with database.blocking_allowed():
        # In a child process: Alembic's ~10 MB never load into the long-running server.
        upgrade_in_child(database.engine, config.db_url)
    homes = _open_homes(config, database, reactor)
    config.record()
    # One resolver, one cache, for every lookup the appliance makes: the outbound MX and the receipt-time checks.
    resolver = Resolver(config.dns_servers, reactor=reactor)
    log.info("DNS: lookups go to {servers}", servers=resolver.describe())
    # One HTTPS fetcher for everything asked of other servers (MTA-STS policies, other appliances' discovery):
    # the same resolver, and the system's trust roots plus --trust-ca, which also verify outbound SMTP TLS.
    web_fetch = WebFetch(reactor, resolver, config.trust_ca)
    spam_filter = _spam_filter(config, reactor)
    hasher = AddressHasher(create_private_once(config.data_dir.address_key_file, lambda: os.urandom(ADDRESS_KEY_BYTES)))
    workers = None
    if config.delivery_workers:
        # Room for the message, its twin's pieces and the ciphertext on their way out.
        budget = max(512 * MIB, 4 * config.max_message_size + 256 * MIB)
        workers = WorkerPool(
            config.delivery_workers,
            reactor=reactor,
            tmp_dir=str(config.data_dir.tmp_dir),
            settings=IsolationSettings(address_space_budget=budget),
            socket_path=config.delivery_worker_socket,
        )
    trim = TrimService(reactor)
    delivery = Delivery(
        database,
        config.is_local_domain,
        tmp_dir=config.data_dir.tmp_dir,
        reactor=reactor,
        default_quota=config.default_quota,
        worker_pool=workers,
        # the receipt-time checks ask their DNS questions of the appliance's one resolver
        resolve=resolver.lookup,
        trusted_arc_sealers=config.trusted_arc_sealers,
        spam_filter=spam_filter,
        dnsbl_zones=config.dnsbl_zones,
        aliases=hasher,
        after_store=trim.activity,
        homes=homes,
    )

    root = MultiService()
    _Announce(config).setServiceParent(root)
    trim.setServiceParent(root)
    if workers is None:
        log.info("delivery workers: none (--workers 0): mail is opened and sealed in the main process")
    else:
        workers.setServiceParent(root)
    _Closing("database", database.close).setServiceParent(root)
    _Closing("homes", homes.close).setServiceParent(root)
    _Closing("delivery", delivery.stop).setServiceParent(root)
    # Receipts of mail received (a sender's retry kept once) are kept a week: forgotten hourly after that.
    TimerService(RECEIPT_PURGE_INTERVAL_S, lambda: defer.ensureDeferred(delivery.purge_receipts())).setServiceParent(
        root
    )
    limits = SmtpLimits(max_message_size=config.max_message_size)
    # One count for every SMTP listener, so opening more listeners does not multiply the caps.
    smtp_connections = ConnectionLimiter(limits.max_connections, limits.max_connections_per_ip)

    def add_smtp(endpoints: tuple[str, ...], kind: Literal["ca", "self-signed"], implicit: bool) -> None:
        for endpoint in endpoints:
            factory = smtp_server_factory(
                delivery,
                hostname=config.hostname,
                limits=limits,
                tls=tls,
                listener_kind=kind,
                implicit_tls=implicit,
                spool_dir=config.data_dir.tmp_dir,
                reactor=reactor,
                domains=config.domains,
                connections=smtp_connections,
            )
            _listen(root, listener_endpoint(reactor, endpoint, config.reuse_port), factory)

    add_smtp(config.smtp_endpoints, "ca", False)
    add_smtp(config.smtps_endpoints, "ca", True)
    add_smtp(config.smtp_selfsigned_endpoints, "self-signed", False)
    add_smtp(config.smtps_selfsigned_endpoints, "self-signed", True)
    for endpoint in config.lmtp_endpoints:
        # The MTA in front delivers here (RFC 2033); the endpoint was checked to be local (smtp/lmtp_endpoint.py).
        # Loaded only with --lmtp: an appliance without it does not carry the module.
        from mailiverse.smtp.lmtp import lmtp_server_factory

        lmtp = lmtp_server_factory(
            delivery,
            hostname=config.hostname,
            domains=config.domains,
            limits=limits,
            spool_dir=config.data_dir.tmp_dir,
            reactor=reactor,
        )
        _listen(root, _NamedBindFailure(serverFromString(reactor, endpoint), endpoint), lmtp)
        log.info("LMTP: an MTA on this host delivers on {endpoint}", endpoint=endpoint)

    outbound_service, outbound = build_outbound(
        _outbound_config(config),
        database,
        reactor=reactor,
        local_delivery=delivery,
        resolver=resolver,
        web_fetch=web_fetch,
    )
    outbound_service.setServiceParent(root)
    if outbound.enabled:
        from mailiverse.outbound.forwarding import Forwarder, ForwardingService

        # A moved account's mail, forwarded as stored (ciphertext) to its new address in the grace period.
        forwarder = Forwarder(database, outbound, domains=config.domains, hostname=config.hostname, homes=homes)
        ForwardingService(forwarder, reactor).setServiceParent(root)

    # Front ends sharing a metabase spend from the same rate-limit buckets (store/ratebuckets.py); one database
    # keeps them in memory, as before.
    rate_limits = None
    if config.metabase_url is not None:
        from mailiverse.store.ratebuckets import DatabaseRateLimits

        rate_limits = DatabaseRateLimits.open(database, reactor)
    # One submission service for every front end a user sends from (the JSON API, the legacy relay).
    submission = Submission(
        delivery,
        config.domains,
        outbound=outbound if outbound.enabled else None,
        max_message_size=config.max_message_size,
        send_limit_per_hour=config.send_limit_per_hour,
        clock=reactor,
        on_sent=delivery.approve_correspondents,
        hostname=config.hostname,
        rate_limits=rate_limits,
    )
    web_limits = WebLimits()
    legacy_resource = None
    if config.legacy.enabled:
        from mailiverse.legacy.service import build_legacy

        legacy = build_legacy(
            config.legacy,
            database=database,
            tls_contexts=tls,
            data_dir=config.data_dir,
            reactor=reactor,
            submission=submission,
            open_signup=config.open_signup,
            default_quota=config.default_quota,
            connections=web_limits.limiter(),
            rate_limits=rate_limits,
        )
        for service in legacy.services:
            service.setServiceParent(root)
        legacy_resource = legacy.web_resource
    mta_sts = None
    if config.mta_sts_mode != "none":
        from mailiverse.dnsrecords import mta_sts_policy

        mta_sts = mta_sts_policy(config.hostname, config.mta_sts_mode)
    web_app, session_purger = build_web_app(
        database,
        homes=homes,
        hostname=config.hostname,
        domains=config.domains,
        submission=submission,
        reactor=reactor,
        tls=True,
        open_signup=config.open_signup,
        max_message_size=config.max_message_size,
        legacy_resource=legacy_resource,
        mta_sts_policy=mta_sts,
        default_quota=config.default_quota,
        spool_dir=config.data_dir.tmp_dir,
        spam_filter=spam_filter,
        alias_settings=AliasSettings(hasher, max_aliases=config.max_aliases, rate=config.alias_rate),
        key_log=KeyLog(load_log_key(config.data_dir.log_key_file)),
        discovery=Discovery(resolver, web_fetch),
        rate_limits=rate_limits,
    )
    session_purger.setServiceParent(root)
    if config.acme_directory and ca:
        _add_acme(root, config, tls, reactor, web_limits.limiter(), database)
    https_connections, plain_connections = web_limits.limiter(), web_limits.plain_limiter()
    for endpoint in config.web_endpoints:
        factory = https_listener_factory(web_app.site(), tls.server_context_factory("ca"), https_connections)
        _listen(root, listener_endpoint(reactor, endpoint, config.reuse_port), factory)
    for endpoint in config.web_plain_endpoints:
        plain_site = web_app.plain(TrustedProxies(config.trusted_proxies)).site()
        factory = plain_listener_factory(plain_site, plain_connections)
        _listen(root, listener_endpoint(reactor, endpoint, config.reuse_port), factory)
    return root
