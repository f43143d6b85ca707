"""TLS for every listener (the self-signed pair, an optional CA-issued pair, SNI between them), and the trust
roots of outbound TLS (the system's plus ``--trust-ca``, :func:`trust_roots`).

Two listener kinds exist (docs/protocol.md §1.3, §11.12): the "CA listener", whose default
certificate is the CA-issued one (falling back to the self-signed one when none is
configured), and the "self-signed listener", whose default is the self-signed one.  On
either, a client that sends SNI naming one of the CA certificate's DNS names (wildcards as
in RFC 6125 §6.4.3) gets the CA certificate; any other name gets the self-signed one; no
SNI gets the listener's default.

The connection creator returned by ``TLSContexts.server_context_factory`` provides
``IOpenSSLServerConnectionCreator`` (for ``TLSMemoryBIOFactory``) and the older
``getContext()`` (for ``ITLSTransport.startTLS``), and asks ``TLSContexts`` for the current
contexts on every connection, so ``reload()`` takes effect without restarting listeners.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import idna
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IOpenSSLServerConnectionCreator
from zope.interface import implementer

from mailiverse.privatefile import private_dir, write_private

ListenerKind = Literal["ca", "self-signed"]

#: A trust-root file (``--trust-ca``) is a few certificates, or a CA bundle; more than this is no such file.
MAX_TRUST_FILE_BYTES = 8 * 1024 * 1024

SELF_SIGNED_CERT_NAME = "self-signed.crt"
SELF_SIGNED_KEY_NAME = "self-signed.key"
_SELF_SIGNED_VALID_DAYS = 3650

# TLS 1.2 suites: ECDHE (forward secrecy) with an AEAD only.  TLS 1.3 suites all qualify.
_TLS12_CIPHERS = b":".join(
    [
        b"ECDHE-ECDSA-AES256-GCM-SHA384",
        b"ECDHE-RSA-AES256-GCM-SHA384",
        b"ECDHE-ECDSA-CHACHA20-POLY1305",
        b"ECDHE-RSA-CHACHA20-POLY1305",
        b"ECDHE-ECDSA-AES128-GCM-SHA256",
        b"ECDHE-RSA-AES128-GCM-SHA256",
    ]
)


class TLSConfigError(Exception):
    """A certificate or key file is missing, unreadable or does not match; the text names the file."""


SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Issuer:
    """Who signs a certificate: its name and key (a CA); without one the certificate signs itself."""

    name: x509.Name
    key: SigningKey


def build_certificate(
    key: SigningKey,
    common_name: str,
    sans: Sequence[x509.GeneralName] = (),
    *,
    days: int,
    backdate: datetime.timedelta = datetime.timedelta(days=1),
    organization: str | None = None,
    issuer: Issuer | None = None,
    ca: bool = False,
    server_auth: bool = False,
) -> x509.Certificate:
    """The one X.509 builder: the self-signed pair, the ACME placeholder and test CAs all use it.

    ``key`` is the subject's key; the certificate is valid from ``backdate`` ago for ``days``
    days, signed with SHA-256 by ``issuer`` (or by ``key`` itself).  A CA certificate gets
    ``BasicConstraints(ca=True, path_length=0)`` and may only sign certificates and CRLs; any
    other gets ``BasicConstraints(ca=False)``.
    """
    attributes = []
    if organization is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]))
    name = x509.Name(attributes)
    signer = issuer or Issuer(name, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(signer.name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - backdate)
        .not_valid_after(now + datetime.timedelta(days=days))
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        builder = builder.add_extension(
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
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    if server_auth:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    return builder.sign(signer.key, hashes.SHA256())


def _hostname_san(hostname: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        return x509.DNSName(idna.encode(hostname, uts46=True).decode("ascii"))


def self_signed_names(hostname: str, domains: Sequence[str] = ()) -> list[x509.GeneralName]:
    """The names of the self-signed certificate: ``hostname``, each served domain and its ``mta-sts.`` host
    (so ``https://<domain>/.well-known/...`` and MTA-STS verify for a peer that trusts the certificate
    with ``--trust-ca``), ``localhost`` and 127.0.0.1; each once, in that order."""
    sans: list[x509.GeneralName] = [_hostname_san(hostname)]
    extras = [_hostname_san(name) for domain in domains for name in (domain, f"mta-sts.{domain}")]
    extras += [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    for extra in extras:
        if extra not in sans:
            sans.append(extra)
    return sans


def ensure_self_signed(data_dir: Path, hostname: str, domains: Sequence[str] = ()) -> tuple[Path, Path]:
    """Return (cert_path, key_path) of the self-signed pair, creating it on first start.

    The key is RSA-2048 (every SMTP client can use it); the certificate names what
    :func:`self_signed_names` lists.  Both files are mode 0600 under ``<data_dir>/tls``; files
    that exist are kept as they are (a certificate made before ``domains`` were named keeps its names).
    """
    tls_dir = private_dir(Path(data_dir) / "tls")
    cert_path = tls_dir / SELF_SIGNED_CERT_NAME
    key_path = tls_dir / SELF_SIGNED_KEY_NAME
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    common_name = hostname if len(hostname) <= 64 else "mailiverse"
    sans = self_signed_names(hostname, domains)
    cert = build_certificate(key, common_name, sans, days=_SELF_SIGNED_VALID_DAYS, server_auth=True)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(key_path, key_pem)
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def read_certificates(path: Path) -> list[x509.Certificate]:
    """The certificates of a PEM file (one, a chain or a CA bundle); :class:`TLSConfigError` naming the file when
    it cannot be read, is too large or holds no well-formed certificate."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_TRUST_FILE_BYTES + 1)
    except OSError as exc:
        raise TLSConfigError(f"{path}: {exc.strerror or type(exc).__name__}") from None
    if len(data) > MAX_TRUST_FILE_BYTES:
        raise TLSConfigError(f"{path} is over {MAX_TRUST_FILE_BYTES // (1024 * 1024)} MiB: not a file of certificates")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise TLSConfigError(
            f"{path} holds no readable PEM certificate (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----)"
        ) from None


@implementer(IOpenSSLTrustRoot)
class SystemAndExtraTrust:
    """The platform's trust roots plus extra ones (``--trust-ca``): a private CA, or a peer's self-signed
    certificate, added to what the system trusts rather than replacing it."""

    def __init__(self, extra: Sequence[x509.Certificate] = ()) -> None:
        self.extra = tuple(extra)
        self._x509 = [crypto.X509.from_cryptography(cert) for cert in self.extra]

    def _addCACertsToContext(self, context: SSL.Context) -> None:
        context.set_default_verify_paths()
        store = context.get_cert_store()
        assert store is not None
        for cert in self._x509:
            store.add_cert(cert)


def trust_roots(extra_files: Sequence[Path] = ()) -> SystemAndExtraTrust:
    """System roots plus the certificates of ``extra_files`` (:class:`TLSConfigError` naming a bad file)."""
    return SystemAndExtraTrust([cert for path in extra_files for cert in read_certificates(path)])


def verified_client_tls(hostname: str, trust: SystemAndExtraTrust) -> IOpenSSLClientConnectionCreator:
    """Client TLS 1.2+ that verifies the peer's chain against ``trust`` and its name against ``hostname``
    (service_identity), sending ``hostname`` as SNI when it is a DNS name."""
    return ssl.optionsForClientTLS(
        hostname, trustRoot=trust, extraCertificateOptions={"raiseMinimumTo": ssl.TLSVersion.TLSv1_2}
    )


def dns_names(cert_pem: bytes) -> tuple[str, ...]:
    """The SAN DNS names of the first certificate in ``cert_pem``, lowercased, without trailing dot."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(n.lower().rstrip(".") for n in san.get_values_for_type(x509.DNSName))


def name_matches(pattern: str, name: str) -> bool:
    """RFC 6125 §6.4: exact match, or ``*.`` as the whole left-most label matching one label."""
    pattern = pattern.lower().rstrip(".")
    name = name.lower().rstrip(".")
    if not pattern or not name:
        return False
    if pattern.startswith("*."):
        suffix = pattern[2:]
        head, dot, tail = name.partition(".")
        # the wildcard never covers a public suffix alone ("*.com") nor an empty label
        return bool(dot) and bool(head) and tail == suffix and "." in suffix
    if "*" in pattern:
        return False  # partial-label wildcards are not honoured
    return pattern == name


def _server_context(cert_path: Path, key_path: Path) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_RENEGOTIATION)
    ctx.set_cipher_list(_TLS12_CIPHERS)
    try:
        ctx.use_certificate_chain_file(str(cert_path))
    except (SSL.Error, OSError) as exc:
        raise TLSConfigError(f"cannot load the certificate chain from {cert_path}") from exc
    try:
        ctx.use_privatekey_file(str(key_path))
        ctx.check_privatekey()
    except (SSL.Error, OSError) as exc:
        raise TLSConfigError(f"cannot load the private key {key_path}, or it does not match {cert_path}") from exc
    ctx.set_session_id(b"mailiverse")
    return ctx


@dataclass(frozen=True)
class _Generation:
    """One loaded set of contexts; replaced as a whole by reload()."""

    self_signed: SSL.Context
    ca: SSL.Context | None
    ca_names: tuple[str, ...]

    def for_name(self, server_name: str | None) -> SSL.Context | None:
        if server_name is None:
            return None
        if self.ca is not None and any(name_matches(p, server_name) for p in self.ca_names):
            return self.ca
        return self.self_signed


class TLSContexts:
    """The server's certificates, loaded from PEM files and reloadable in place."""

    def __init__(
        self,
        self_signed: tuple[Path, Path],
        ca: tuple[Path, Path] | None = None,
    ) -> None:
        self._self_signed_paths = (Path(self_signed[0]), Path(self_signed[1]))
        self._ca_paths = None if ca is None else (Path(ca[0]), Path(ca[1]))
        self._generation = self._load()

    @property
    def has_ca(self) -> bool:
        """Whether a CA-issued certificate is configured."""
        return self._generation.ca is not None

    @property
    def ca_names(self) -> tuple[str, ...]:
        """DNS names the CA-issued certificate is valid for."""
        return self._generation.ca_names

    def reload(self) -> None:
        """Re-read every file; on error the previous certificates stay in use and the error is raised."""
        self._generation = self._load()

    def default_context(self, default: ListenerKind) -> SSL.Context:
        """The context a connection starts with on a listener of kind ``default``."""
        generation = self._generation
        if default == "ca" and generation.ca is not None:
            return generation.ca
        return generation.self_signed

    def server_context_factory(self, default: ListenerKind = "ca") -> ServerConnectionCreator:
        """A connection creator for a listener of kind ``default`` ("ca" or "self-signed")."""
        if default not in ("ca", "self-signed"):
            raise ValueError(f"listener kind must be 'ca' or 'self-signed', not {default!r}")
        return ServerConnectionCreator(self, default)

    def _load(self) -> _Generation:
        self_signed = _server_context(*self._self_signed_paths)
        ca = None
        ca_names: tuple[str, ...] = ()
        if self._ca_paths is not None:
            ca = _server_context(*self._ca_paths)
            try:
                ca_names = dns_names(self._ca_paths[0].read_bytes())
            except (OSError, ValueError) as exc:
                raise TLSConfigError(f"cannot read DNS names from {self._ca_paths[0]}") from exc
        generation = _Generation(self_signed, ca, ca_names)

        def on_server_name(connection: SSL.Connection) -> None:
            raw = connection.get_servername()
            name = None
            if raw:
                try:
                    name = raw.decode("ascii")
                except UnicodeDecodeError:
                    name = ""  # not a valid host name: treat as "no match"
            chosen = generation.for_name(name)
            if chosen is not None and chosen is not connection.get_context():
                connection.set_context(chosen)

        for ctx in (self_signed, ca):
            if ctx is not None:
                ctx.set_tlsext_servername_callback(on_server_name)
        return generation


@implementer(IOpenSSLServerConnectionCreator)
class ServerConnectionCreator:
    """Creates server-side TLS connections for one listener kind, from the current contexts."""

    def __init__(self, contexts: TLSContexts, default: ListenerKind) -> None:
        self._contexts = contexts
        self.default = default

    def getContext(self) -> SSL.Context:
        """The listener's default context (the older context-factory interface)."""
        return self._contexts.default_context(self.default)

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        """A fresh server connection starting from the listener's default context."""
        return SSL.Connection(self.getContext(), None)
