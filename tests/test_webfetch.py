"""``mailiverse.webfetch.WebFetch`` against a real HTTPS server on 127.0.0.1, its name answered by a real DNS
server: verified TLS with ``--trust-ca`` roots, refused without them or for another name, bounded bodies, a
deadline, and URLs it never fetches."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor

from mailiverse.dns import Resolver
from mailiverse.testing import IssuedCertificate, issue_test_certificate
from mailiverse.tls import TLSConfigError, ensure_self_signed
from mailiverse.webfetch import FetchError, WebFetch, check_url
from tests.support.dnsserver import SERVFAIL, DnsServer, start_dns_server
from tests.support.https_server import Answer, HttpsServer, start_https_server

DOCUMENT = b'{"v": 1, "directory": "https://web.test/.well-known/mailiverse"}'


@pytest_twisted.async_yield_fixture
async def dns() -> AsyncIterator[DnsServer]:
    """A real DNS server on 127.0.0.1 whose zone each test fills."""
    running = start_dns_server()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
def issued(tmp_path: Path) -> IssuedCertificate:
    """A test CA and a certificate it signs for web.test."""
    return issue_test_certificate(tmp_path / "pki", ["web.test"])


@pytest_twisted.async_yield_fixture
async def web(issued: IssuedCertificate, dns: DnsServer) -> AsyncIterator[HttpsServer]:
    """The HTTPS server with the CA-issued certificate; web.test and other.test both lead to it in DNS."""
    dns.zone.update(
        {
            "web.test": {"A": ["127.0.0.1"]},
            "other.test": {"A": ["127.0.0.1"]},
            "noaddress.test": {"TXT": ["nothing else"]},
        }
    )
    running = start_https_server(
        issued.cert_path,
        issued.key_path,
        {
            "/doc": Answer(body=DOCUMENT),
            "/big": Answer(body=b"y" * 5000),
            "/stream": Answer(stream=200_000, content_type="text/plain"),
            "/hang": Answer(hang=True),
            "/moved": Answer(status=302, body=b"", headers=(("location", "https://web.test/doc"),)),
        },
    )
    try:
        yield running
    finally:
        await running.stop()


def fetcher(dns: DnsServer, server: HttpsServer, trust: list[Path], **kwargs: float) -> WebFetch:
    return WebFetch(reactor, Resolver([dns.address], reactor=reactor), trust, port=server.port, **kwargs)


@pytest_twisted.ensureDeferred
async def test_a_certificate_from_a_trusted_ca_verifies(
    web: HttpsServer,
    issued: IssuedCertificate,
    dns: DnsServer,
) -> None:
    """With the test CA given as a trust root, the document comes back whole, asked of the host the DNS server
    named, with the Host and Accept headers the caller meant."""
    fetched = await fetcher(dns, web, [issued.ca_cert_path]).get("https://web.test/doc?x=1", max_bytes=1024)
    assert (fetched.status, fetched.content_type, fetched.body) == (200, "application/json", DOCUMENT)
    assert [(s.path, s.host, s.accept) for s in web.seen] == [(b"/doc?x=1", b"web.test", b"application/json")]
    assert dns.log.count("web.test", "A") == 1


@pytest_twisted.ensureDeferred
async def test_without_the_trust_root_the_server_is_refused(web: HttpsServer, dns: DnsServer) -> None:
    """The system's roots alone do not trust the test CA: the fetch fails naming the certificate, and no request
    reaches the server."""
    with pytest.raises(FetchError, match="not signed by a trusted authority"):
        await fetcher(dns, web, []).get("https://web.test/doc", max_bytes=1024)
    assert web.seen == []


@pytest_twisted.ensureDeferred
async def test_a_certificate_for_another_name_is_refused(
    web: HttpsServer,
    issued: IssuedCertificate,
    dns: DnsServer,
) -> None:
    """A trusted certificate that names web.test does not pass for other.test, even at the same address."""
    with pytest.raises(FetchError, match="not valid for the name other.test"):
        await fetcher(dns, web, [issued.ca_cert_path]).get("https://other.test/doc", max_bytes=1024)
    assert web.seen == []


@pytest.mark.parametrize("path", ["/big", "/stream"])
@pytest_twisted.ensureDeferred
async def test_a_body_over_the_limit_is_refused(
    web: HttpsServer,
    issued: IssuedCertificate,
    dns: DnsServer,
    path: str,
) -> None:
    """A body longer than max_bytes, announced (Content-Length) or streamed without a length, is an error, not a
    truncated document."""
    fetch = fetcher(dns, web, [issued.ca_cert_path])
    with pytest.raises(FetchError, match="is over 4096 bytes"):
        await fetch.get(f"https://web.test{path}", max_bytes=4096)
    assert (await fetch.get("https://web.test/big", max_bytes=5000)).body == b"y" * 5000


@pytest_twisted.ensureDeferred
async def test_redirects_are_not_followed(web: HttpsServer, issued: IssuedCertificate, dns: DnsServer) -> None:
    """A 302 comes back as it is: one request, to the URL given."""
    fetched = await fetcher(dns, web, [issued.ca_cert_path]).get("https://web.test/moved", max_bytes=1024)
    assert fetched.status == 302
    assert [s.path for s in web.seen] == [b"/moved"]


@pytest_twisted.ensureDeferred
async def test_a_server_that_never_answers_costs_the_deadline_only(
    web: HttpsServer,
    issued: IssuedCertificate,
    dns: DnsServer,
) -> None:
    """Headers that never come end the fetch at its deadline with an error saying so."""
    fetch = fetcher(dns, web, [issued.ca_cert_path], timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(FetchError, match="no complete answer within 0.5 s"):
        await fetch.get("https://web.test/hang", max_bytes=1024)
    assert time.monotonic() - started < 5
    assert [s.path for s in web.seen] == [b"/hang"]


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://web.test/doc", "only https://"),
        ("ftp://web.test/doc", "only https://"),
        ("https://user:secret@web.test/doc", "user name or password"),
        ("https://user@web.test/doc", "user name or password"),
        ("https://web.test:0/doc", "port"),
        ("https://web.test:99999/doc", "port"),
        ("https://web.test:x/doc", "port"),
        ("https:///doc", "no host"),
        ("https://web test/doc", "spaces"),
        ("https://web.test/doc\r\nX-Injected: 1", "control characters"),
        ("https://wéb.test/doc", "other than ASCII"),
        ("https://web_test.test/doc", "not a host name"),
        ("https://" + "a" * 64 + ".test/", "not a host name"),
        ("https://web.test/" + "p" * 3000, "longer than"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_urls_it_never_fetches(web: HttpsServer, dns: DnsServer, url: str, why: str) -> None:
    """Anything but a plain https:// URL to a host name or address is refused before any lookup or connection,
    and the error does not repeat a password."""
    with pytest.raises(FetchError, match=why) as raised:
        await fetcher(dns, web, []).get(url, max_bytes=1024)
    assert "secret" not in str(raised.value)
    assert dns.log.queries == []
    assert web.seen == []


def test_the_port_is_the_urls_own_else_the_default() -> None:
    """An explicit port is kept (and sent in Host), an IPv6 address keeps its brackets, the fragment is dropped."""
    assert check_url("https://Web.Test/a#frag").uri == b"https://web.test/a"
    assert check_url("https://web.test/a").port == 443
    explicit = check_url("https://web.test:8443/a?b=c")
    assert (explicit.port, explicit.uri) == (8443, b"https://web.test:8443/a?b=c")
    v6 = check_url("https://[::1]/x", 8443)
    assert (v6.host, v6.port, v6.uri, v6.is_address) == ("::1", 8443, b"https://[::1]/x", True)


@pytest_twisted.ensureDeferred
async def test_dns_failures_are_fetch_errors(web: HttpsServer, dns: DnsServer) -> None:
    """A host without an address, one unknown to DNS, and a lookup that fails are each reported as such."""
    fetch = fetcher(dns, web, [])
    with pytest.raises(FetchError, match="noaddress.test has no address"):
        await fetch.get("https://noaddress.test/", max_bytes=10)
    with pytest.raises(FetchError, match="missing.test has no address"):
        await fetch.get("https://missing.test/", max_bytes=10)
    with pytest.raises(FetchError, match=f"DNS lookup of {SERVFAIL} failed"):
        await fetch.get(f"https://{SERVFAIL}/", max_bytes=10)


@pytest_twisted.ensureDeferred
async def test_nothing_listening_is_a_connection_error(issued: IssuedCertificate, dns: DnsServer) -> None:
    """An address where nothing listens gives 'cannot connect', naming the host and port."""
    dns.zone.update({"web.test": {"A": ["127.0.0.1"]}})
    from tests.support.harness import free_port

    port = free_port()
    fetch = WebFetch(reactor, Resolver([dns.address], reactor=reactor), [issued.ca_cert_path], port=port)
    with pytest.raises(FetchError, match=f"cannot connect to web.test port {port}"):
        await fetch.get("https://web.test/", max_bytes=10)


@pytest_twisted.ensureDeferred
async def test_the_appliances_self_signed_certificate_verifies_for_its_domains(
    tmp_path: Path,
    dns: DnsServer,
) -> None:
    """An appliance's self-signed certificate, given to another as --trust-ca, verifies for each served domain and
    its mta-sts. host (discovery and MTA-STS between appliances with no public CA), and for no other name."""
    cert, key = ensure_self_signed(tmp_path / "data", "mx.example.org", ("example.org", "example.net"))
    dns.zone.update(
        {name: {"A": ["127.0.0.1"]} for name in ("example.org", "mta-sts.example.net", "mx.example.org", "x.test")}
    )
    server = start_https_server(cert, key, {"/.well-known/mailiverse": Answer(body=DOCUMENT)})
    try:
        fetch = fetcher(dns, server, [cert])
        for host in ("example.org", "mta-sts.example.net", "mx.example.org"):
            fetched = await fetch.get(f"https://{host}/.well-known/mailiverse", max_bytes=1024)
            assert fetched.body == DOCUMENT
        with pytest.raises(FetchError, match="not valid for the name x.test"):
            await fetch.get("https://x.test/.well-known/mailiverse", max_bytes=1024)
    finally:
        await server.stop()


def test_a_trust_root_file_must_hold_certificates(tmp_path: Path) -> None:
    """A missing file, a directory and a file without a PEM certificate are configuration errors naming the file."""
    not_pem = tmp_path / "key.pem"
    not_pem.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    for path, why in (
        (tmp_path / "missing.pem", "No such file"),
        (tmp_path, "Is a directory"),
        (not_pem, "no readable PEM"),
    ):
        with pytest.raises(TLSConfigError, match=why) as raised:
            WebFetch(reactor, Resolver(reactor=reactor), [path])
        assert str(path) in str(raised.value)


@pytest_twisted.ensureDeferred
async def test_endless_headers_are_cut_off(web: HttpsServer, issued: IssuedCertificate, dns: DnsServer) -> None:
    """A server that sends more header bytes than any document needs is cut off, not read to the end."""
    web.answers["/headers"] = Answer(headers=tuple((f"x-filler-{n}", "v" * 1000) for n in range(100)))
    with pytest.raises(FetchError, match="is over 1024 bytes"):
        await fetcher(dns, web, [issued.ca_cert_path]).get("https://web.test/headers", max_bytes=1024)
