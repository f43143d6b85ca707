"""A real ACME exchange with Debian's pebble: HTTP-01 answered by the appliance, certificate served after reload()."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted
from cryptography import x509
from twisted.internet import ssl
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS
from twisted.web.server import Site

from mailiverse.acme.certs import ensure_placeholder, needs_certificate
from mailiverse.acme.client import AcmeClient, new_account_key_pem
from mailiverse.acme.http01 import ChallengeStore, acme_http_resource
from mailiverse.acme.service import CertificateRenewal
from mailiverse.tls import TLSContexts, ensure_self_signed
from tests.support import pebble
from tests.support.harness import free_port

pytestmark = pytest.mark.skipif(
    not pebble.available(), reason="Debian's pebble package is not installed (apt-get install pebble)"
)

TEST_NAME = "mail.mailiverse.test"
MTA_STS_NAME = "mta-sts.mailiverse.test"


def _served_certificate(port: int, server_name: str) -> x509.Certificate:
    import socket
    import ssl as stdlib_ssl

    ctx = stdlib_ssl.SSLContext(stdlib_ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = stdlib_ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


@pytest_twisted.ensureDeferred
async def test_certificate_from_pebble_is_served_after_reload_without_restart(tmp_path: Path) -> None:
    """HTTP-01 through the appliance's challenge resource yields a pebble certificate
    that the same listener then serves."""
    import treq.client
    from twisted.internet import reactor, threads

    challenges = ChallengeStore()
    http_port = await threads.deferToThread(free_port)
    http_listener = await serverFromString(reactor, f"tcp:{http_port}:interface=127.0.0.1").listen(
        Site(acme_http_resource(challenges, https_port=443))
    )
    ca = await threads.deferToThread(pebble.start, tmp_path / "pebble", http_port)
    tls_listener = None
    try:
        data = tmp_path / "data"
        cert_path, key_path = data / "tls" / "acme.crt", data / "tls" / "acme.key"
        ensure_placeholder(cert_path, key_path, TEST_NAME)
        contexts = TLSContexts(self_signed=ensure_self_signed(data, TEST_NAME), ca=(cert_path, key_path))
        tls_listener = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
            TLSMemoryBIOFactory(contexts.server_context_factory("ca"), False, Factory.forProtocol(Protocol))
        )
        tls_port = tls_listener.getHost().port
        before = await threads.deferToThread(_served_certificate, tls_port, TEST_NAME)
        assert before.issuer == before.subject  # the placeholder

        trust = ssl.Certificate.loadPEM(ca.api_ca.read_bytes())
        http = treq.client.HTTPClient(Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trustRoot=trust)))
        client = AcmeClient(
            ca.directory, new_account_key_pem(), http, reactor, email="postmaster@mailiverse.test", poll_interval=0.2
        )
        renewal = CertificateRenewal(
            client,
            challenges,
            cert_path,
            key_path,
            (TEST_NAME,),
            contexts.reload,
            reactor,
            optional_names=(MTA_STS_NAME,),
        )
        assert await renewal.check() is True
        assert len(challenges) == 0
        assert not needs_certificate(cert_path, (TEST_NAME, MTA_STS_NAME))

        after = await threads.deferToThread(_served_certificate, tls_port, TEST_NAME)
        assert after.issuer != after.subject
        assert "Pebble" in after.issuer.rfc4514_string()
        san = after.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == [TEST_NAME, MTA_STS_NAME]
        # The MTA-STS policy host's name picks the same CA certificate through SNI.
        policy_host = await threads.deferToThread(_served_certificate, tls_port, MTA_STS_NAME)
        assert policy_host.serial_number == after.serial_number
        assert tls_listener.getHost().port == tls_port
        assert await renewal.check() is False  # fresh: nothing to renew
    finally:
        if tls_listener is not None:
            await tls_listener.stopListening()
        await http_listener.stopListening()
        ca.stop()
