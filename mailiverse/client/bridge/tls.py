"""The bridge's own certificate for 127.0.0.1 and ``localhost``: made on first run, reused after, and the
server TLS contexts for STARTTLS and implicit TLS built from it (TLS 1.2 and later only).

Self-contained on purpose: the client never imports the appliance's ``mailiverse.tls`` (.importlinter's
client contract). The key stays in ``--cert-dir`` (0600); the certificate (0644) is what a mail app is told to
trust. It is a self-signed end-entity certificate with ``CA:FALSE``, so trusting it lets it vouch only for
itself, never for other names.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from twisted.internet import ssl

from mailiverse.privatefile import private_dir, write_private

CERT_NAME, KEY_NAME = "bridge.crt", "bridge.key"
CERT_MODE, KEY_MODE = 0o644, 0o600
#: Ten years: a local certificate the user pinned in a mail app should not expire under them.
VALID_DAYS = 3650
NAMES = ("localhost", "127.0.0.1", "::1")
_CIPHERS = b"ECDHE+AESGCM:ECDHE+CHACHA20"


class BridgeTLSError(Exception):
    """The certificate directory cannot be used; the message names the path and the fix."""


@dataclass(frozen=True)
class BridgeCertificate:
    """Where the pair is, and the certificate's SHA-256 (a mail app may show it)."""

    cert_path: Path
    key_path: Path
    sha256: str


def _subject_names() -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for name in NAMES:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    return names


def _new_pair() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailiverse bridge (localhost)")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(_subject_names()), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def ensure_certificate(cert_dir: Path | str) -> BridgeCertificate:
    """The pair in ``cert_dir`` (``~`` expanded), made there on first run (key 0600, certificate 0644)."""
    directory = Path(cert_dir).expanduser()
    cert_path, key_path = directory / CERT_NAME, directory / KEY_NAME
    try:
        private_dir(directory)
        if not (cert_path.exists() and key_path.exists()):
            cert_pem, key_pem = _new_pair()
            write_private(key_path, key_pem, mode=KEY_MODE)
            write_private(cert_path, cert_pem, mode=CERT_MODE)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except OSError as error:
        raise BridgeTLSError(
            f"cannot use --cert-dir {directory}: {error.strerror or error}; choose a writable directory"
        ) from None
    except ValueError:
        raise BridgeTLSError(f"{cert_path} is not a PEM certificate; delete it and start again") from None
    if os.stat(key_path).st_mode & 0o077:
        raise BridgeTLSError(f"{key_path} is readable by others; run chmod 600 {key_path}")
    return BridgeCertificate(cert_path, key_path, cert.fingerprint(hashes.SHA256()).hex())


class _ContextFactory(ssl.ContextFactory):
    """One OpenSSL server context, made once: TLS 1.2+, forward-secret AEAD ciphers under 1.2."""

    def __init__(self, certificate: BridgeCertificate) -> None:
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_RENEGOTIATION)
        context.set_cipher_list(_CIPHERS)
        try:
            context.use_certificate_file(str(certificate.cert_path))
            context.use_privatekey_file(str(certificate.key_path))
            context.check_privatekey()
        except SSL.Error:
            raise BridgeTLSError(
                f"{certificate.key_path} does not match {certificate.cert_path}; delete both and start again"
            ) from None
        self._context = context

    def getContext(self) -> SSL.Context:
        return self._context


def server_context(certificate: BridgeCertificate) -> ssl.ContextFactory:
    """The context factory both STARTTLS (``startTLS``) and implicit TLS (``TLSMemoryBIOFactory``) use."""
    return _ContextFactory(certificate)
