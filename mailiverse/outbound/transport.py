"""Where outbound mail goes: to a configured smarthost (STARTTLS and AUTH required) or to each domain's MX.

Both transports take one message for recipients of one domain and return a ``RecipientResult``
per recipient; nothing here touches the queue.  Direct delivery follows RFC 5321 §5.1: MX
records by preference, the domain's own A/AAAA when there are none, a null MX (RFC 7505) or a
non-existent domain is a permanent failure, a DNS failure a temporary one.  TLS towards an MX is
opportunistic (unverified, as RFC 7435 allows), falling back to plain text only when the handshake
itself breaks; with ``--trust-ca`` a verified handshake is tried first.  A domain whose MTA-STS policy
(RFC 8461, ``mtasts.py``) is ``enforce`` gets its mail only at the MX hosts the policy names, over TLS
verified for the MX host name, or not at all for now (4xx): never unverified, never in plain text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from zope.interface import implementer

from mailiverse.dns import Answer, DnsTemporaryError, IDnsResolver, InvalidDnsQuery, MailExchange
from mailiverse.logs import Logger
from mailiverse.outbound.smtpclient import (
    RecipientResult,
    Transaction,
    TransactionFailed,
    clean_reply,
    send_transaction,
)
from mailiverse.tls import SystemAndExtraTrust, verified_client_tls

if TYPE_CHECKING:  # MTA-STS is imported where direct delivery is set up (idle memory: docs/appliance.md)
    from mailiverse.outbound.mtasts import MtaSts, Policy

log = Logger()

MAX_MX_HOSTS = 5
#: Addresses tried per mail exchanger; RFC 5321 §5.1 asks for more than one where a host has several.
MAX_ADDRESSES_PER_HOST = 4
#: Verifying client contexts kept, one per MX host name (each holds the loaded trust roots).
MAX_VERIFYING_CONTEXTS = 256


class Transport(Protocol):
    """Delivers one message to recipients that share one domain."""

    async def deliver(
        self, *, mail_from: str, recipients: Sequence[str], domain: str, message: bytes
    ) -> list[RecipientResult]:
        """A result per recipient, in order (temporary failures included, never raised)."""
        ...

    @property
    def groups_by_domain(self) -> bool:
        """Whether recipients of different domains need separate transactions."""
        ...


def _all(recipients: Sequence[str], code: int, text: str) -> list[RecipientResult]:
    return [RecipientResult(address, code, text) for address in recipients]


def _temporary(recipients: Sequence[str], error: TransactionFailed, host: str) -> list[RecipientResult]:
    # A transaction that never got going is retried, whatever the server said: an AUTH or TLS
    # problem with the smarthost is the operator's to fix, not a reason to bounce users' mail.
    code = error.code if 400 <= error.code < 500 else 451
    return _all(recipients, code, f"{host}: {error.text}" if error.text else host)


def trust_root(ca_file: Path | None) -> Any:
    """Trust anchors for the smarthost certificate: the PEM file's certificates, or the platform's."""
    if ca_file is None:
        return ssl.platformTrust()
    pem = Path(ca_file).read_bytes()
    marker = b"-----END CERTIFICATE-----"
    certificates = [
        ssl.Certificate.loadPEM(block + marker)
        for block in pem.split(marker)
        if b"-----BEGIN CERTIFICATE-----" in block
    ]
    if not certificates:
        raise ValueError(f"no certificate in {ca_file}")
    return ssl.trustRootFromCertificates(certificates)


@dataclass
class SmarthostTransport:
    """Relays everything through one submission server; TLS with a verified certificate and AUTH are required."""

    reactor: Any
    host: str
    port: int
    helo: str
    username: str
    password: str
    ca_file: Path | None = None
    timeout_s: float = 120.0
    #: The system's roots and ``--trust-ca``, used when no ``ca_file`` (``--smarthost-ca``) replaces them.
    trust: SystemAndExtraTrust | None = None

    def __post_init__(self) -> None:
        root = trust_root(self.ca_file) if self.ca_file is not None or self.trust is None else self.trust
        self._tls = ssl.optionsForClientTLS(self.host, trustRoot=root)

    @property
    def groups_by_domain(self) -> bool:
        return False

    async def deliver(
        self, *, mail_from: str, recipients: Sequence[str], domain: str, message: bytes
    ) -> list[RecipientResult]:
        job = Transaction(
            host=self.host,
            port=self.port,
            helo=self.helo,
            mail_from=mail_from,
            recipients=list(recipients),
            message=message,
            tls=self._tls,
            require_tls=True,
            username=self.username.encode("utf-8"),
            password=self.password.encode("utf-8"),
            timeout_s=self.timeout_s,
        )
        try:
            return await send_transaction(self.reactor, job)
        except TransactionFailed as error:
            return _temporary(recipients, error, self.host)


class RouteError(Exception):
    """No way to reach a domain; ``permanent`` says whether retrying could help."""

    def __init__(self, text: str, *, permanent: bool) -> None:
        super().__init__(text)
        self.permanent = permanent


async def _lookup(resolver: IDnsResolver, name: str, rtype: str) -> Answer:
    try:
        return await resolver.lookup(name, rtype)
    except InvalidDnsQuery as error:
        raise RouteError(f"no name DNS can look up ({error})", permanent=True) from None
    except DnsTemporaryError as error:
        raise RouteError(f"DNS lookup failed: {error}", permanent=False) from None


async def mail_hosts(resolver: IDnsResolver, domain: str) -> list[str]:
    """The hosts to try for ``domain`` in order, per RFC 5321 §5.1 (raises ``RouteError``)."""
    mx = await _lookup(resolver, domain, "MX")
    if mx.nxdomain:
        raise RouteError("the domain does not exist", permanent=True)
    exchanges = sorted((r.preference, r.exchange) for r in mx.records if isinstance(r, MailExchange))
    if exchanges:
        hosts = [name for _, name in exchanges if name]
        if not hosts:
            raise RouteError("the domain accepts no mail (null MX)", permanent=True)
        return list(dict.fromkeys(hosts))[:MAX_MX_HOSTS]
    # No MX: the domain itself is the implicit MX, if it has an address.
    if not await host_addresses(resolver, domain):
        raise RouteError("the domain has no MX or address records", permanent=True)
    return [domain]


async def host_addresses(resolver: IDnsResolver, host: str) -> list[str]:
    """A mail exchanger's IPv4, then IPv6 addresses, through the appliance's resolver (raises ``RouteError``)."""
    addresses: list[str] = []
    for rtype in ("A", "AAAA"):
        answer = await _lookup(resolver, host, rtype)
        addresses += [record for record in answer.records if isinstance(record, str)]
    return list(dict.fromkeys(addresses))[:MAX_ADDRESSES_PER_HOST]


@implementer(IOpenSSLClientConnectionCreator)
class _Watched:
    """A verifying connection creator that remembers the connection it made, to tell a failed handshake from a
    failed transaction and to read the verified certificate afterwards."""

    def __init__(self, creator: IOpenSSLClientConnectionCreator) -> None:
        self._creator = creator
        self.connection: SSL.Connection | None = None

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        self.connection = self._creator.clientConnectionForTLS(tlsProtocol)
        return self.connection

    def peer_certificate(self) -> x509.Certificate | None:
        if self.connection is None:
            return None
        cert = self.connection.get_peer_certificate(as_cryptography=True)
        return cert if isinstance(cert, x509.Certificate) else None


def describe_certificate(cert: x509.Certificate) -> str:
    """A certificate for the debug log: its SHA-256 fingerprint, issuer and expiry (nothing about any message)."""
    issuer = cert.issuer.rfc4514_string()[:120]
    return (
        f"sha256 {cert.fingerprint(hashes.SHA256()).hex()}, issuer {issuer}, until {cert.not_valid_after_utc:%Y-%m-%d}"
    )


@dataclass(frozen=True)
class _Attempt:
    tls: Any  # a connection creator, or None for plain text
    verified: bool


@dataclass
class DirectTransport:
    """Delivers to each recipient domain's mail exchangers, with opportunistic STARTTLS, or verified TLS where the
    domain's MTA-STS policy enforces it.

    Every name is looked up through ``resolver`` (``--dns-server``): the MX and the exchangers' addresses,
    which are then connected to as they are, so no lookup goes around the appliance's resolver. ``mta_sts``
    gives the recipient domains' policies (None: none are asked for); ``trust`` holds the roots verified TLS
    checks against (the system's and ``--trust-ca``; None: the system's); ``verify_first`` tries a verified
    handshake before the unverified one even without a policy (set when ``--trust-ca`` is given).
    """

    reactor: Any
    resolver: IDnsResolver
    helo: str
    port: int = 25
    timeout_s: float = 120.0
    mta_sts: MtaSts | None = None
    trust: SystemAndExtraTrust | None = None
    verify_first: bool = False

    def __post_init__(self) -> None:
        # Unverified on purpose: most MX certificates would not verify, and refusing them would
        # mean sending in plain text instead (RFC 7435).
        self._tls = ssl.CertificateOptions(raiseMinimumTo=ssl.TLSVersion.TLSv1_2)
        self._verifying: dict[str, IOpenSSLClientConnectionCreator] = {}
        if self.trust is None:
            self.trust = SystemAndExtraTrust()

    @property
    def groups_by_domain(self) -> bool:
        return True

    def _verifying_tls(self, host: str) -> IOpenSSLClientConnectionCreator:
        creator = self._verifying.get(host)
        if creator is None:
            if len(self._verifying) >= MAX_VERIFYING_CONTEXTS:
                self._verifying.clear()
            assert self.trust is not None
            creator = self._verifying[host] = verified_client_tls(host, self.trust)
        return creator

    def _attempts(self, host: str, enforce: bool) -> list[_Attempt]:
        """What to try at one address, in order: verified TLS only when the policy enforces it; otherwise
        (verified TLS with ``--trust-ca``, then) unverified TLS, then plain text when the handshake breaks."""
        opportunistic = [_Attempt(self._tls, verified=False), _Attempt(None, verified=False)]
        if not (enforce or self.verify_first):
            return opportunistic
        verified = _Attempt(_Watched(self._verifying_tls(host)), verified=True)
        return [verified] if enforce else [verified, *opportunistic]

    async def deliver(
        self, *, mail_from: str, recipients: Sequence[str], domain: str, message: bytes
    ) -> list[RecipientResult]:
        try:
            hosts = await mail_hosts(self.resolver, domain)
        except RouteError as error:
            return _all(recipients, 550 if error.permanent else 451, f"{domain}: {error}")
        policy = await self.mta_sts.policy(domain) if self.mta_sts is not None else None
        enforce = policy is not None and policy.mode == "enforce"
        if policy is not None and enforce:
            hosts = [host for host in hosts if policy.allows(host)]
            if not hosts:
                return _all(
                    recipients,
                    451,
                    f"{domain}: no MX host matches the domain's MTA-STS policy (mode enforce, mx "
                    f"{clean_reply(' '.join(policy.mx))[:120]}); not sent",
                )
        last = TransactionFailed(0, "no mail exchanger answered")
        last_host = domain
        for host in hosts:
            try:
                addresses = await host_addresses(self.resolver, host)
            except RouteError as error:
                last, last_host = TransactionFailed(0, str(error)), host
                continue
            if not addresses:
                last, last_host = TransactionFailed(0, "the mail exchanger has no address"), host
            for address in addresses:
                for attempt in self._attempts(host, enforce):
                    job = Transaction(
                        host=address,
                        port=self.port,
                        helo=self.helo,
                        mail_from=mail_from,
                        recipients=list(recipients),
                        message=message,
                        tls=attempt.tls,
                        require_tls=enforce,
                        timeout_s=self.timeout_s,
                    )
                    try:
                        results = await send_transaction(self.reactor, job)
                    except TransactionFailed as error:
                        last, last_host = error, host
                        if not attempt.verified:
                            if not error.tls_failed:
                                break
                            continue
                        # A verifying attempt that began TLS and ended without a server reply failed in the
                        # handshake: the certificate did not verify for the host, or the handshake broke.
                        tls_broke = attempt.tls.connection is not None and error.code == 0
                        if enforce:
                            last = _enforced(error, tls_broke, host, domain)
                            break
                        if not tls_broke:
                            break
                        continue
                    if attempt.verified:
                        _record_verified(attempt.tls, host, address, domain, policy)
                    return results
        return _temporary(recipients, last, clean_reply(last_host))


def _enforced(error: TransactionFailed, tls_broke: bool, host: str, domain: str) -> TransactionFailed:
    """The failure of a delivery the domain's MTA-STS policy enforces, saying why nothing was sent."""
    rule = f"the MTA-STS policy of {domain} (enforce) requires TLS verified for {host}; not sent"
    if tls_broke:
        return TransactionFailed(
            0, f"TLS failed: the certificate is not trusted (system roots, --trust-ca) or not valid for {host}; {rule}"
        )
    return TransactionFailed(error.code, f"{error.text}; {rule}" if error.text else rule)


def _record_verified(watched: _Watched, host: str, address: str, domain: str, policy: Policy | None) -> None:
    """The debug log's line for a delivery over TLS whose certificate verified: the peer's certificate, not a
    word about the message."""
    cert = watched.peer_certificate()
    log.debug(
        "outbound TLS to {host} ({address}) for {domain} verified: {certificate}; MTA-STS {mode}",
        host=host,
        address=address,
        domain=domain,
        certificate=describe_certificate(cert) if cert is not None else "no certificate kept",
        mode=policy.mode if policy is not None else "none published",
        verified_certificate_sha256=cert.fingerprint(hashes.SHA256()).hex() if cert is not None else None,
    )
