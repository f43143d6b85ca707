"""The plain-HTTP port: ACME challenge answers, and a redirect to HTTPS for everything else."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from mailiverse.acme.http01 import ChallengeStore, acme_http_resource, acme_http_site

TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"


@pytest_twisted.ensureDeferred
async def test_pending_challenge_is_answered_and_others_are_not() -> None:
    """A stored token gets its key authorization; an unknown or malformed token gets 404."""
    store = ChallengeStore()
    store.put(TOKEN, f"{TOKEN}.thumb")
    client = StubTreq(acme_http_resource(store))
    response = await client.get(f"http://mail.example.org/.well-known/acme-challenge/{TOKEN}")
    assert response.code == 200 and await response.content() == f"{TOKEN}.thumb".encode()
    for path in ("/.well-known/acme-challenge/" + "x" * 20, "/.well-known/acme-challenge/../../etc"):
        assert (await client.get("http://mail.example.org" + path)).code == 404
    store.remove(TOKEN)
    assert (await client.get(f"http://mail.example.org/.well-known/acme-challenge/{TOKEN}")).code == 404


@pytest_twisted.ensureDeferred
async def test_everything_else_redirects_to_https() -> None:
    """Any other path on port 80 is a 301 to the same path over HTTPS, never the API."""
    client = StubTreq(acme_http_resource(ChallengeStore(), https_port=443))
    response = await client.get("http://mail.example.org/api/health", allow_redirects=False)
    assert response.code == 301
    assert response.headers.getRawHeaders(b"location") == [b"https://mail.example.org/api/health"]


def test_store_rejects_bad_tokens_and_floods() -> None:
    """Only base64url tokens are stored, and at most 100 at once."""
    store = ChallengeStore()
    with pytest.raises(ValueError):
        store.put("../etc/passwd", "x")
    for i in range(100):
        store.put(f"{i:020d}", "x")
    with pytest.raises(ValueError):
        store.put("a" * 30, "x")


def test_request_bodies_are_never_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The port needs no request body: a 300 KB one (which Twisted would write to a plaintext file in
    the system temp directory) is dropped as it arrives, and the request is answered as any other."""
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    canary = b"HTTP01-CANARY-" + b"z" * 50
    body = canary * (300_000 // len(canary))
    channel = acme_http_site(ChallengeStore()).buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
    transport = StringTransport()
    channel.makeConnection(transport)
    head = b"POST /upload HTTP/1.1\r\nHost: mail.example.org\r\nContent-Length: %d\r\n\r\n" % len(body)
    channel.dataReceived(head + body[: len(body) // 2])
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith(str(system_tmp)):
                held.append(fd)
        except FileNotFoundError:
            continue
    assert held == [], "the body went to a file in the system temp directory"
    channel.dataReceived(body[len(body) // 2 :])
    assert transport.value().startswith(b"HTTP/1.1 301 ")
    assert list(system_tmp.iterdir()) == []
