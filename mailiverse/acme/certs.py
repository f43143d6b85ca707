"""The CA-certificate files: a placeholder until the first issuance, when to renew, atomic replacement."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mailiverse.privatefile import private_dir, private_writer
from mailiverse.tls import build_certificate, dns_names, name_matches

#: Renew when fewer days than this are left (Let's Encrypt certificates last 90 days).
RENEW_BEFORE_DAYS = 30
PLACEHOLDER_ORGANIZATION = "mailiverse placeholder"


def _write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically (0600); running as root, the new file keeps the old one's owner."""
    private_dir(path.parent)
    with private_writer(path) as handle:
        handle.write(data)
        if os.geteuid() == 0 and path.exists():
            st = path.stat()
            os.fchown(handle.fileno(), st.st_uid, st.st_gid)


def new_key_pem() -> bytes:
    """A fresh P-256 key for a certificate (every TLS 1.2/1.3 client supports ECDSA P-256)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def ensure_placeholder(cert_path: Path, key_path: Path, hostname: str) -> list[Path]:
    """Create a self-issued stand-in for the CA certificate if there is none; return the files made.

    The service is started with ``--tls-cert``/``--tls-key`` naming these files from the very
    first start, so the real certificate later replaces them and ``TLSContexts.reload()`` picks
    it up without a restart.
    """
    if cert_path.exists() and key_path.exists():
        return []
    key_pem = new_key_pem()
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    cert = build_certificate(
        key,
        hostname,
        [x509.DNSName(hostname)],
        days=30,
        backdate=datetime.timedelta(minutes=5),
        organization=PLACEHOLDER_ORGANIZATION,
    )
    _write_private(key_path, key_pem)
    _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return [key_path, cert_path]


def needs_certificate(
    cert_path: Path,
    names: tuple[str, ...],
    now: datetime.datetime | None = None,
    renew_before_days: int = RENEW_BEFORE_DAYS,
) -> bool:
    """Whether to order a certificate: none, a placeholder, a name not covered, or expiring soon."""
    try:
        pem = cert_path.read_bytes()
        cert = x509.load_pem_x509_certificate(pem)
    except (OSError, ValueError):
        return True
    if cert.issuer == cert.subject:
        return True
    covered = dns_names(pem)
    if not all(any(name_matches(p, n) for p in covered) for n in names):
        return True
    now = now or datetime.datetime.now(datetime.UTC)
    return cert.not_valid_after_utc - now < datetime.timedelta(days=renew_before_days)


def install_certificate(cert_path: Path, key_path: Path, chain_pem: bytes, key_pem: bytes) -> None:
    """Replace the certificate files: the key first, then the chain, each atomically.

    A reload between the two renames fails the key check and keeps the previous contexts, and the
    caller reloads again after both are in place.
    """
    x509.load_pem_x509_certificates(chain_pem)  # refuse to install anything but PEM certificates
    _write_private(key_path, key_pem)
    _write_private(cert_path, chain_pem)


def improves_on(chain_pem: bytes, cert_path: Path, names: tuple[str, ...]) -> bool:
    """Whether ``chain_pem`` (another front end's certificate) should replace the file at ``cert_path``.

    Yes when it covers ``names`` and the file is missing, a placeholder, does not cover them, or
    expires earlier; never for the very same chain.
    """
    try:
        offered = x509.load_pem_x509_certificate(chain_pem)
    except ValueError:
        return False
    covered = dns_names(chain_pem)
    if not all(any(name_matches(p, n) for p in covered) for n in names):
        return False
    try:
        current_pem = cert_path.read_bytes()
        current = x509.load_pem_x509_certificate(current_pem)
    except (OSError, ValueError):
        return True
    if current_pem == chain_pem:
        return False
    if current.issuer == current.subject:
        return True
    current_covered = dns_names(current_pem)
    if not all(any(name_matches(p, n) for p in current_covered) for n in names):
        return True
    return offered.not_valid_after_utc > current.not_valid_after_utc
