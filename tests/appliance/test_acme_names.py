"""Optional certificate names (mta-sts.<domain>) never cost the appliance its certificate, nor flood the CA."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet.task import Clock

from mailiverse.acme.certs import ensure_placeholder
from mailiverse.acme.http01 import ChallengeStore
from mailiverse.acme.service import CertificateRenewal
from mailiverse.tls import dns_names

HOST = "mail.example.test"
POLICY_HOST = "mta-sts.example.test"


def _issued_chain(names: tuple[str, ...], key_pem: bytes, days: int = 90) -> bytes:
    """A certificate for ``names`` on ``key_pem``, signed by a throwaway issuer (what a CA returns)."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test issuer")]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


class _CertificateAuthority:
    """An ACME client stand-in that issues real certificates, except for names whose DNS is 'not published'."""

    def __init__(self, unreachable: set[str]) -> None:
        self.unreachable = unreachable
        self.orders: list[tuple[str, ...]] = []

    async def issue(self, names: tuple[str, ...], challenges: ChallengeStore, key_pem: bytes) -> bytes:
        self.orders.append(tuple(names))
        failing = [n for n in names if n in self.unreachable]
        if failing:
            raise RuntimeError(f"HTTP-01 failed for {failing[0]}: NXDOMAIN")
        return _issued_chain(tuple(names), key_pem)


def _renewal(tmp_path: Path, ca: _CertificateAuthority) -> tuple[CertificateRenewal, Path, list[int]]:
    cert_path, key_path = tmp_path / "acme.crt", tmp_path / "acme.key"
    ensure_placeholder(cert_path, key_path, HOST)
    reloads: list[int] = []
    renewal = CertificateRenewal(
        ca,
        ChallengeStore(),
        cert_path,
        key_path,
        (HOST,),  # type: ignore[arg-type]
        lambda: reloads.append(1),
        Clock(),
        optional_names=(POLICY_HOST, HOST),
    )
    return renewal, cert_path, reloads


@pytest_twisted.ensureDeferred
async def test_the_policy_host_is_covered_when_its_dns_is_published(tmp_path: Path) -> None:
    ca = _CertificateAuthority(unreachable=set())
    renewal, cert_path, reloads = _renewal(tmp_path, ca)
    assert await renewal.check() is True
    assert dns_names(cert_path.read_bytes()) == (HOST, POLICY_HOST)
    assert ca.orders == [(HOST, POLICY_HOST)]
    assert await renewal.check() is False
    assert ca.orders == [(HOST, POLICY_HOST)] and reloads == [1]


@pytest_twisted.ensureDeferred
async def test_an_unpublished_policy_host_falls_back_to_the_host_name_alone(tmp_path: Path) -> None:
    ca = _CertificateAuthority(unreachable={POLICY_HOST})
    renewal, cert_path, reloads = _renewal(tmp_path, ca)
    assert await renewal.check() is True
    assert dns_names(cert_path.read_bytes()) == (HOST,)
    assert ca.orders == [(HOST, POLICY_HOST), (HOST,)]
    # Twelve hours later the certificate is fine: no new order, no retry of the failing name.
    assert await renewal.check() is False
    assert len(ca.orders) == 2 and reloads == [1]


def _restarted(tmp_path: Path, ca: _CertificateAuthority, cert_path: Path) -> CertificateRenewal:
    """The renewal service of a restarted appliance: the same files, the policy host optional."""
    return CertificateRenewal(
        ca,
        ChallengeStore(),
        cert_path,
        tmp_path / "acme.key",
        (HOST,),  # type: ignore[arg-type]
        lambda: None,
        Clock(),
        optional_names=(POLICY_HOST,),
    )


@pytest_twisted.ensureDeferred
async def test_a_valid_certificate_gains_the_policy_host_once_dns_appears(tmp_path: Path) -> None:
    """After a restart (a new renewal service), a certificate lacking the optional name is widened once."""
    ca = _CertificateAuthority(unreachable={POLICY_HOST})
    first, cert_path, _ = _renewal(tmp_path, ca)
    assert await first.check() is True
    ca.unreachable.clear()
    second = _restarted(tmp_path, ca, cert_path)
    assert await second.check() is True
    assert dns_names(cert_path.read_bytes()) == (HOST, POLICY_HOST)


@pytest_twisted.ensureDeferred
async def test_a_failed_widening_keeps_the_valid_certificate(tmp_path: Path) -> None:
    ca = _CertificateAuthority(unreachable={POLICY_HOST})
    first, cert_path, _ = _renewal(tmp_path, ca)
    assert await first.check() is True
    before = cert_path.read_bytes()
    second = _restarted(tmp_path, ca, cert_path)
    assert await second.check() is False
    assert cert_path.read_bytes() == before
    assert ca.orders[-1] == (HOST, POLICY_HOST)
