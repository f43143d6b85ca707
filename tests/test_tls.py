"""Tests for mailiverse.tls: the self-signed pair, protocol and cipher policy, SNI and reload."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from OpenSSL import SSL

from mailiverse.testing import issue_test_certificate
from mailiverse.tls import TLSContexts, ensure_self_signed, name_matches


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("pki")
    cert, key = ensure_self_signed(base / "data", "mx.example.org")
    issued = issue_test_certificate(base / "ca", ["mail.example.net", "*.mx.example.net"])
    return {
        "cert": cert,
        "key": key,
        "ca_cert": issued.cert_path,
        "ca_key": issued.key_path,
    }


def _handshake(
    server: SSL.Connection,
    *,
    server_name: bytes | None = None,
    min_version: int | None = None,
    max_version: int | None = None,
    ciphers: bytes | None = None,
) -> SSL.Connection:
    """Run a client handshake against ``server`` entirely in memory; return the client connection."""
    ctx = SSL.Context(SSL.TLS_METHOD)
    if min_version is not None:
        ctx.set_min_proto_version(min_version)
    if max_version is not None:
        ctx.set_max_proto_version(max_version)
    if ciphers is not None:
        ctx.set_cipher_list(ciphers)
    client = SSL.Connection(ctx, None)
    client.set_connect_state()
    if server_name is not None:
        client.set_tlsext_host_name(server_name)
    server.set_accept_state()
    client_done = server_done = False
    for _ in range(20):
        for conn, done in ((client, client_done), (server, server_done)):
            if not done:
                try:
                    conn.do_handshake()
                    if conn is client:
                        client_done = True
                    else:
                        server_done = True
                except SSL.WantReadError:
                    pass
        for src, dst in ((client, server), (server, client)):
            try:
                data = src.bio_read(65536)
            except SSL.WantReadError:
                continue
            dst.bio_write(data)
        if client_done and server_done:
            return client
    raise AssertionError("handshake did not complete")


def _subject_names(conn: SSL.Connection) -> list[str]:
    cert = conn.get_peer_certificate(as_cryptography=True)
    assert cert is not None
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName)


def test_self_signed_pair_created_once(tmp_path: Path) -> None:
    """First start writes a 0600 key and certificate naming the host, localhost and 127.0.0.1;
    later starts reuse them."""
    cert_path, key_path = ensure_self_signed(tmp_path, "mx.example.org")
    for path in (cert_path, key_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"mx.example.org", "localhost"}
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    before = (cert_path.read_bytes(), key_path.read_bytes())
    assert ensure_self_signed(tmp_path, "mx.example.org") == (cert_path, key_path)
    assert (cert_path.read_bytes(), key_path.read_bytes()) == before


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("mail.example.net", "MAIL.example.net", True),
        ("mail.example.net.", "mail.example.net", True),
        ("*.mx.example.net", "a.mx.example.net", True),
        ("*.mx.example.net", "mx.example.net", False),
        ("*.mx.example.net", "a.b.mx.example.net", False),
        ("*.com", "example.com", False),
        ("f*.example.net", "foo.example.net", False),
        ("mail.example.net", "other.example.net", False),
    ],
)
def test_name_matching_follows_rfc6125(pattern: str, name: str, expected: bool) -> None:
    """Wildcards cover exactly one whole left-most label and names compare case-insensitively."""
    assert name_matches(pattern, name) is expected


@pytest.mark.parametrize("version", [SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION])
def test_tls12_and_tls13_accepted(pki: dict[str, Path], version: int) -> None:
    """Clients limited to TLS 1.2 or to TLS 1.3 complete the handshake with an AEAD cipher."""
    contexts = TLSContexts((pki["cert"], pki["key"]))
    server = contexts.server_context_factory("self-signed").serverConnectionForTLS(None)
    client = _handshake(server, min_version=version, max_version=version)
    assert (
        client.get_protocol_version_name()
        == {
            SSL.TLS1_2_VERSION: "TLSv1.2",
            SSL.TLS1_3_VERSION: "TLSv1.3",
        }[version]
    )
    cipher = client.get_cipher_name()
    assert cipher is not None and ("GCM" in cipher or "CHACHA20" in cipher)


def test_tls11_refused(pki: dict[str, Path]) -> None:
    """A client that can only speak TLS 1.1 (its own security level lowered) cannot connect."""
    contexts = TLSContexts((pki["cert"], pki["key"]))
    server = contexts.server_context_factory("self-signed").serverConnectionForTLS(None)
    with pytest.raises(SSL.Error):
        _handshake(
            server,
            min_version=SSL.TLS1_1_VERSION,
            max_version=SSL.TLS1_1_VERSION,
            ciphers=b"DEFAULT:@SECLEVEL=0",
        )


def test_cipher_without_forward_secrecy_refused(pki: dict[str, Path]) -> None:
    """A TLS 1.2 client offering only RSA key exchange (no forward secrecy) is refused."""
    contexts = TLSContexts((pki["cert"], pki["key"]))
    server = contexts.server_context_factory("self-signed").serverConnectionForTLS(None)
    with pytest.raises(SSL.Error):
        _handshake(server, max_version=SSL.TLS1_2_VERSION, ciphers=b"AES256-GCM-SHA384")


def test_context_options(pki: dict[str, Path]) -> None:
    """Compression and renegotiation are off and the server's cipher order wins."""
    contexts = TLSContexts((pki["cert"], pki["key"]))
    options = contexts.server_context_factory("ca").getContext().set_options(0)
    for flag in (
        SSL.OP_NO_COMPRESSION,
        SSL.OP_NO_RENEGOTIATION,
        SSL.OP_CIPHER_SERVER_PREFERENCE,
    ):
        assert options & flag


@pytest.mark.parametrize(
    ("kind", "server_name", "expected"),
    [
        ("ca", b"mail.example.net", "mail.example.net"),
        ("ca", b"MAIL.EXAMPLE.NET", "mail.example.net"),
        ("ca", b"smtp.mx.example.net", "mail.example.net"),
        ("ca", b"other.example.org", "mx.example.org"),
        ("ca", None, "mail.example.net"),
        ("self-signed", b"mail.example.net", "mail.example.net"),
        ("self-signed", b"mx.example.org", "mx.example.org"),
        ("self-signed", None, "mx.example.org"),
    ],
)
def test_sni_selects_certificate(pki: dict[str, Path], kind: str, server_name: bytes | None, expected: str) -> None:
    """SNI naming a CA SAN gets the CA certificate, other names the self-signed one, no SNI the listener default."""
    contexts = TLSContexts((pki["cert"], pki["key"]), (pki["ca_cert"], pki["ca_key"]))
    server = contexts.server_context_factory(kind).serverConnectionForTLS(None)  # type: ignore[arg-type]
    client = _handshake(server, server_name=server_name)
    assert expected in _subject_names(client)


def test_ca_listener_without_ca_falls_back(pki: dict[str, Path]) -> None:
    """Without a CA-issued pair the CA listener serves the self-signed certificate, even for SNI."""
    contexts = TLSContexts((pki["cert"], pki["key"]))
    for name in (None, b"mail.example.net"):
        server = contexts.server_context_factory("ca").serverConnectionForTLS(None)
        assert "mx.example.org" in _subject_names(_handshake(server, server_name=name))


def test_chain_is_sent(pki: dict[str, Path]) -> None:
    """The CA-issued certificate is served with its chain."""
    contexts = TLSContexts((pki["cert"], pki["key"]), (pki["ca_cert"], pki["ca_key"]))
    server = contexts.server_context_factory("ca").serverConnectionForTLS(None)
    client = _handshake(server)
    chain = client.get_peer_cert_chain(as_cryptography=True)
    assert chain is not None and len(chain) == 2


def test_reload_picks_up_new_files(tmp_path: Path, pki: dict[str, Path]) -> None:
    """reload() re-reads the files, so an existing connection creator serves the renewed certificate."""
    first = issue_test_certificate(tmp_path / "one", ["mail.example.net"])
    contexts = TLSContexts((pki["cert"], pki["key"]), (first.cert_path, first.key_path))
    creator = contexts.server_context_factory("ca")
    renewed = issue_test_certificate(tmp_path / "two", ["mail.example.net", "new.example.net"])
    for suffix in ("crt", "key"):
        (first.cert_path if suffix == "crt" else first.key_path).write_bytes(
            (renewed.cert_path if suffix == "crt" else renewed.key_path).read_bytes()
        )
    assert "new.example.net" not in _subject_names(_handshake(creator.serverConnectionForTLS(None)))
    contexts.reload()
    assert "new.example.net" in _subject_names(_handshake(creator.serverConnectionForTLS(None)))


def test_mismatched_key_is_a_clear_error(tmp_path: Path, pki: dict[str, Path]) -> None:
    """A CA certificate with someone else's key is refused with an error naming the file."""
    from mailiverse.tls import TLSConfigError

    with pytest.raises(TLSConfigError, match="does not match"):
        TLSContexts((pki["cert"], pki["key"]), (pki["ca_cert"], pki["key"]))
