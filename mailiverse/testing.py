"""Public in-memory fakes of mailiverse's collaborator interfaces, for tests of code that uses them."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import idna
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from zope.interface import implementer

from mailiverse.contracts import INBOX_FOLDER, IInbox, IOutbound, ISpooled, Recipient


@dataclass(frozen=True)
class DeliveredMessage:
    """One message as MemoryInbox received it: the bytes are copied before the spool is closed."""

    data: bytes
    mail_from: str
    recipients: tuple[Recipient, ...]
    folder: str = INBOX_FOLDER


class DeliveryFailed(Exception):
    """Raised by MemoryInbox.deliver when told to fail."""


@implementer(IInbox)
@dataclass
class MemoryInbox:
    """An IInbox over a dict of users.

    ``users`` maps a lowercased local part to the canonical account name; ``domains`` are the
    served domains.  Delivered messages are appended to ``delivered``; with ``fail`` set,
    ``deliver`` raises ``DeliveryFailed`` and records nothing.
    """

    users: dict[str, str] = field(default_factory=dict)
    domains: Iterable[str] = ("example.com",)
    fail: bool = False
    delivered: list[DeliveredMessage] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.domains = tuple(
            idna.encode(d, uts46=True).decode("ascii") for d in self.domains
        )
        self.users = {local.lower(): user for local, user in self.users.items()}

    async def resolve(self, address: str) -> Recipient | None:
        self.resolved.append(address)
        local, at, domain = address.rpartition("@")
        if not at or domain.lower() not in self.domains:
            return None
        user = self.users.get(local.lower())
        if user is None:
            return None
        return Recipient(address=f"{local.lower()}@{domain.lower()}", user=user)

    async def deliver(
        self, message: ISpooled, mail_from: str, recipients: list[Recipient], folder: str = INBOX_FOLDER
    ) -> str:
        if self.fail:
            raise DeliveryFailed("delivery refused by MemoryInbox(fail=True)")
        self.delivered.append(
            DeliveredMessage(message.read_all(), mail_from, tuple(recipients), folder)
        )
        return f"{folder}/{len(self.delivered)}"


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
    """An in-memory ``IOutbound``: records each submission, returns queue ids ``q1``, ``q2``, ...; with ``fail``, raises."""

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
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailiverse test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    names = list(names)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    cert_path = directory / "ca-issued.crt"
    key_path = directory / "ca-issued.key"
    ca_path = directory / "test-ca.crt"
    cert_path.write_bytes(leaf_cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    key_path.write_bytes(
        leaf_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    ca_path.write_bytes(ca_cert.public_bytes(pem))
    return IssuedCertificate(cert_path, key_path, ca_path)
