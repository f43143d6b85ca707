"""Where outbound mail goes: to a configured smarthost (STARTTLS and AUTH required) or to each domain's MX.

Both transports take one message for recipients of one domain and return a ``RecipientResult``
per recipient; nothing here touches the queue.  Direct delivery follows RFC 5321 §5.1: MX
records by preference, the domain's own A/AAAA when there are none, a null MX (RFC 7505) or a
non-existent domain is a permanent failure.  TLS towards an MX is opportunistic (unverified, as
RFC 7435 allows), falling back to plain text only when the handshake itself breaks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from twisted.internet import ssl

from mailiverse.outbound.smtpclient import (
    RecipientResult,
    Transaction,
    TransactionFailed,
    clean_reply,
    send_transaction,
)

MAX_MX_HOSTS = 5


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


async def mail_hosts(resolver: Any, domain: str) -> list[str]:
    """The hosts to try for ``domain`` in order, per RFC 5321 §5.1 (raises ``RouteError``)."""
    # twisted.names loads on the first direct delivery, not at start-up: idle memory (issue 9).
    from twisted.names import dns
    from twisted.names import error as dns_error

    try:
        answers, _, _ = await resolver.lookupMailExchange(domain)
    except dns_error.DNSNameError:
        raise RouteError("the domain does not exist", permanent=True) from None
    except Exception as error:  # noqa: BLE001 - any resolver failure is a temporary one
        raise RouteError(f"MX lookup failed ({type(error).__name__})", permanent=False) from None
    exchanges = sorted(
        (record.payload.preference, str(record.payload.name).rstrip(".")) for record in answers if record.type == dns.MX
    )
    if exchanges:
        hosts = [name for _, name in exchanges if name]
        if not hosts:
            raise RouteError("the domain accepts no mail (null MX)", permanent=True)
        return list(dict.fromkeys(hosts))[:MAX_MX_HOSTS]
    # No MX: the domain itself is the implicit MX, if it has an address.
    found = False
    for lookup in (resolver.lookupAddress, resolver.lookupIPV6Address):
        try:
            records, _, _ = await lookup(domain)
        except dns_error.DNSNameError:
            continue
        except Exception as error:  # noqa: BLE001 - any resolver failure is a temporary one
            raise RouteError(f"address lookup failed ({type(error).__name__})", permanent=False) from None
        found = found or any(r.type in (dns.A, dns.AAAA) for r in records)
    if not found:
        raise RouteError("the domain has no MX or address records", permanent=True)
    return [domain]


@dataclass
class DirectTransport:
    """Delivers to each recipient domain's mail exchangers, with opportunistic STARTTLS."""

    reactor: Any
    resolver: Any
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
            for tls in (self._tls, None):
                job = Transaction(
                    host=host,
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
