"""Where outbound mail goes: to a configured smarthost (STARTTLS and AUTH required) or to each domain's MX.

Both transports take one message for recipients of one domain and return a ``RecipientResult``
per recipient; nothing here touches the queue.  Direct delivery follows RFC 5321 §5.1: MX
records by preference, the domain's own A/AAAA when there are none, a null MX (RFC 7505) or a
non-existent domain is a permanent failure, a DNS failure a temporary one.  TLS towards an MX is
opportunistic (unverified, as RFC 7435 allows), falling back to plain text only when the handshake
itself breaks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from twisted.internet import ssl

from mailiverse.dns import Answer, DnsTemporaryError, IDnsResolver, InvalidDnsQuery, MailExchange
from mailiverse.outbound.smtpclient import (
    RecipientResult,
    Transaction,
    TransactionFailed,
    clean_reply,
    send_transaction,
)

MAX_MX_HOSTS = 5
#: Addresses tried per mail exchanger; RFC 5321 §5.1 asks for more than one where a host has several.
MAX_ADDRESSES_PER_HOST = 4


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

    def __post_init__(self) -> None:
        self._tls = ssl.optionsForClientTLS(self.host, trustRoot=trust_root(self.ca_file))

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


@dataclass
class DirectTransport:
    """Delivers to each recipient domain's mail exchangers, with opportunistic STARTTLS.

    Every name is looked up through ``resolver`` (``--dns-server``): the MX and the exchangers' addresses,
    which are then connected to as they are, so no lookup goes around the appliance's resolver.
    """

    reactor: Any
    resolver: IDnsResolver
    helo: str
    port: int = 25
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        # Unverified on purpose: most MX certificates would not verify, and refusing them would
        # mean sending in plain text instead (RFC 7435).
        self._tls = ssl.CertificateOptions(raiseMinimumTo=ssl.TLSVersion.TLSv1_2)

    @property
    def groups_by_domain(self) -> bool:
        return True

    async def deliver(
        self, *, mail_from: str, recipients: Sequence[str], domain: str, message: bytes
    ) -> list[RecipientResult]:
        try:
            hosts = await mail_hosts(self.resolver, domain)
        except RouteError as error:
            return _all(recipients, 550 if error.permanent else 451, f"{domain}: {error}")
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
                for tls in (self._tls, None):
                    job = Transaction(
                        host=address,
                        port=self.port,
                        helo=self.helo,
                        mail_from=mail_from,
                        recipients=list(recipients),
                        message=message,
                        tls=tls,
                        timeout_s=self.timeout_s,
                    )
                    try:
                        return await send_transaction(self.reactor, job)
                    except TransactionFailed as error:
                        last, last_host = error, host
                        if not error.tls_failed:
                            break
        return _temporary(recipients, last, clean_reply(last_host))
