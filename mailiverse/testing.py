"""Public in-memory fakes of mailiverse's collaborator interfaces, for tests of code that uses them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import idna
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from zope.interface import implementer

from mailiverse.contracts import (
    INBOX_FOLDER,
    SENT_FOLDER,
    Envelope,
    IInbox,
    IOutbound,
    ISpooled,
    MailboxFull,
    Recipient,
    SealedObjects,
)
from mailiverse.tls import Issuer, build_certificate


@dataclass(frozen=True)
class DeliveredMessage:
    """One message as MemoryInbox received it: the bytes are copied before the spool is closed."""

    data: bytes
    mail_from: str
    recipients: tuple[Recipient, ...]
    folder: str = INBOX_FOLDER
    #: How the message arrived from outside (None for mail of a logged-in user); kept, never judged.
    envelope: Envelope | None = None


class DeliveryFailed(Exception):
    """Raised by MemoryInbox.deliver when told to fail."""


@implementer(IInbox)
@dataclass
class MemoryInbox:
    """An IInbox over a dict of users.

    ``users`` maps a lowercased local part to the canonical account name; ``domains`` are the
    served domains.  Delivered messages are appended to ``delivered``; with ``fail`` set,
    ``deliver`` raises ``DeliveryFailed`` and records nothing.  The accounts in ``full`` have no room
    left: ``resolve`` marks them ``over_quota``, and ``deliver`` raises ``MailboxFull`` (recording
    nothing) for a message to any of them, except their own Sent copy, which is never refused.
    """

    users: dict[str, str] = field(default_factory=dict)
    domains: Iterable[str] = ("example.com",)
    fail: bool = False
    delivered: list[DeliveredMessage] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    full: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.domains = tuple(idna.encode(d, uts46=True).decode("ascii") for d in self.domains)
        self.users = {local.lower(): user for local, user in self.users.items()}

    async def resolve(self, address: str, mail_from: str | None = None) -> Recipient | None:
        self.resolved.append(address)
        local, at, domain = address.rpartition("@")
        if not at or domain.lower() not in self.domains:
            return None
        user = self.users.get(local.lower())
        if user is None:
            return None
        return Recipient(address=f"{local.lower()}@{domain.lower()}", user=user, over_quota=user in self.full)

    async def deliver(
        self,
        message: ISpooled,
        mail_from: str,
        recipients: list[Recipient],
        folder: str = INBOX_FOLDER,
        envelope: Envelope | None = None,
    ) -> str:
        if self.fail:
            raise DeliveryFailed("delivery refused by MemoryInbox(fail=True)")
        if folder != SENT_FOLDER and any(r.user in self.full for r in recipients):
            raise MailboxFull("the message would take a recipient's mailbox past its quota")
        self.delivered.append(DeliveredMessage(message.read_all(), mail_from, tuple(recipients), folder, envelope))
        return f"{folder}/{len(self.delivered)}"

    async def deliver_sealed(
        self,
        copies: list[tuple[Recipient, SealedObjects]],
        mail_from: str,
        key_base: str,
        folder: str = INBOX_FOLDER,
        organisation: dict[str, SealedObjects] | None = None,
        stamps: tuple[str, ...] = (),
    ) -> str:
        """Record each recipient's sealed original (``data``), with the same failures as ``deliver``."""
        if self.fail:
            raise DeliveryFailed("delivery refused by MemoryInbox(fail=True)")
        if folder != SENT_FOLDER and any(r.user in self.full for r, _ in copies):
            raise MailboxFull("the message would take a recipient's mailbox past its quota")
        for recipient, sealed in copies:
            self.delivered.append(DeliveredMessage(sealed.original, mail_from, (recipient,), folder))
        return f"{folder}/{key_base}"


@dataclass(frozen=True)
class Submitted:
    """One message handed to ``MemoryOutbound``."""

    queue_id: str
    user: str
    mail_from: str
    recipients: tuple[str, ...]
    message: bytes


@implementer(IOutbound)
@dataclass
class MemoryOutbound:
    """An in-memory ``IOutbound``: records each submission, returns queue ids ``q1``, ``q2``, ...;
    with ``fail``, raises."""

    submitted: list[Submitted] = field(default_factory=list)
    fail: bool = False

    async def submit(self, *, user: str, mail_from: str, recipients: list[str], message: bytes) -> str:
        if self.fail:
            raise RuntimeError("the outbound queue is unavailable")
        queue_id = f"q{len(self.submitted) + 1}"
        self.submitted.append(Submitted(queue_id, user, mail_from, tuple(recipients), bytes(message)))
        return queue_id


@dataclass(frozen=True)
class IssuedCertificate:
    """Files written by ``issue_test_certificate``."""

    cert_path: Path  # leaf then CA, PEM (a chain, as a CA would deliver it)
    key_path: Path
    ca_cert_path: Path


def issue_test_certificate(directory: Path, names: Iterable[str]) -> IssuedCertificate:
    """Make a throwaway CA and a server certificate it signs for the DNS ``names`` (P-256 keys)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = build_certificate(ca_key, "mailiverse test CA", days=30, ca=True)
    names = list(names)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = build_certificate(
        leaf_key,
        names[0],
        [x509.DNSName(n) for n in names],
        days=30,
        issuer=Issuer(ca_cert.subject, ca_key),
    )
    pem = serialization.Encoding.PEM
    cert_path = directory / "ca-issued.crt"
    key_path = directory / "ca-issued.key"
    ca_path = directory / "test-ca.crt"
    cert_path.write_bytes(leaf_cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    key_path.write_bytes(leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key_path.chmod(0o600)
    ca_path.write_bytes(ca_cert.public_bytes(pem))
    return IssuedCertificate(cert_path, key_path, ca_path)
