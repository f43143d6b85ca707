"""Request bodies as they reach the Site: kept in the encrypted spool (never plaintext in any temp file),
and capped from the headers on: a few KiB without a credential that verifies, the route's cap with one.

Each test drives the real ``WebApp.site()`` over a ``StringTransport`` with the real database, feeding
the body the way TCP would: nothing more while the Site has paused the transport to check a credential.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from pathlib import Path

import pytest
import pytest_twisted
from cryptography.hazmat.primitives.asymmetric import rsa

from mailiverse.web.headers import SECURITY_HEADERS
from mailiverse.web.intake import REFUSAL_GRACE
from tests.support import webapi
from tests.support.webapi import Api, ApiClient
from tests.support.wire import PIECE, Wire, chunked, request_head

#: The anonymous body cap docs/api.md promises: a sign-up fits, a flood does not.
ANONYMOUS_CAP = 16 * 1024
PASSWORD = "a long enough passphrase 4471"


async def logged_in(api: Api, name: str = "alice") -> ApiClient:
    client = api.client()
    assert (await client.signup(name, PASSWORD)).status == 201
    assert (await client.login(name, PASSWORD)).status == 200
    return client


def files_holding(canary: bytes, directories: list[Path]) -> list[str]:
    """Every file under ``directories``, named or open in this process (unlinked ones too), that holds ``canary``."""
    found = []
    for directory in directories:
        for path in directory.rglob("*"):
            if path.is_file() and canary in path.read_bytes():
                found.append(str(path))
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
                if target.startswith(str(directory)):
                    with open(f"/proc/self/fd/{fd}", "rb") as handle:
                        if canary in handle.read():
                            found.append(target)
            except (FileNotFoundError, IsADirectoryError, PermissionError):
                continue
    return found


def test_anonymous_cap_is_the_documented_one() -> None:
    """The cap every body without a verified credential gets is the 16 KiB docs/api.md names."""
    from mailiverse.contracts import ANONYMOUS_BODY_BYTES

    assert ANONYMOUS_BODY_BYTES == ANONYMOUS_CAP


@pytest.mark.parametrize("route", ["send", "store"])
@pytest_twisted.ensureDeferred
async def test_large_body_is_never_plaintext_in_a_temp_file(
    open_api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, route: str
) -> None:
    """A body over 100,000 bytes (where Twisted would use a temp file) is nowhere on disk in plaintext,
    neither in the system temp directory nor in the spool directory, while it arrives nor after."""
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    client = await logged_in(open_api)
    canary = b"PLAINTEXT-CANARY-" + secrets.token_hex(12).encode()
    line = canary + b" " + b"m" * 60 + b"\n"
    if route == "send":
        text = (line * (300_000 // len(line))).decode()
        body = json.dumps({"to": ["alice@example.org"], "subject": "big", "text": text}).encode()
        head = request_head(
            "POST",
            "/api/send",
            {"Authorization": f"Bearer {client.token}", "Content-Type": "application/json"},
            len(body),
        )
    else:
        body = line * (300_000 // len(line))
        head = request_head("PUT", "/api/store/Cache/big", {"Authorization": f"Bearer {client.token}"}, len(body))
    assert len(body) > 100_000
    watched = [tmp_path]  # the system temp directory above, and the app's spool directory (make_api)
    wire = Wire(open_api.app.site())
    wire.send(head)
    await wire.stream(body, stop_before=1)
    assert not wire.answered
    assert files_holding(canary, watched) == []
    wire.send(body[-1:])
    await wire.until(lambda: wire.complete)
    status, _, _ = wire.response()
    assert status in (200, 201), wire.transport.value()[-300:]
    assert files_holding(canary, watched) == []
    assert list(system_tmp.iterdir()) == []


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/api/store/Cache/x"), ("PUT", "/Mailiverse/StorePut?Resource=Cache/x"), ("POST", "/api/send")],
)
@pytest.mark.parametrize("declared", [True, False], ids=["declared", "chunked"])
def test_anonymous_body_is_cut_off_after_a_few_kib(api: Api, method: str, path: str, declared: bool) -> None:
    """A 64 MiB body without any credential is answered 413 (JSON, security headers, connection closed)
    once it passes the anonymous cap, and nothing more of it is read."""
    total = 64 * 1024 * 1024
    wire = Wire(api.app.site())
    wire.send(request_head(method, path, {"Content-Type": "application/octet-stream"}, total if declared else None))
    piece = b"Z" * PIECE if declared else chunked(b"Z" * PIECE)
    while not wire.answered and wire.fed < 1024 * 1024:
        wire.send(piece)
    status, headers, body = wire.response()
    assert status == 413
    assert json.loads(body) == {
        "error": "body_too_large",
        "message": "the request body is larger than this route accepts",
    }
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    assert headers["connection"] == "close"
    for name in SECURITY_HEADERS:
        assert name.decode().lower() in headers
    assert wire.transport.disconnecting
    if declared:
        assert wire.fed < 1024, "a declared length over the cap is refused before the body"
    else:
        assert wire.fed <= ANONYMOUS_CAP + 2 * len(piece) + 1024
    written = wire.transport.value()
    for _ in range(10):
        wire.send(piece)
    assert wire.transport.value() == written, "what arrives after the answer is dropped"
    assert not wire.transport.disconnected
    wire.clock.advance(REFUSAL_GRACE)
    assert wire.transport.disconnected, "a connection the client does not close is aborted"


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "chunked"])
@pytest_twisted.ensureDeferred
async def test_forged_bearer_is_refused_before_the_body(api: Api, declared: bool) -> None:
    """A large PUT with a well-formed but unknown bearer token is paused while the token is checked,
    then answered 401 with at most the anonymous cap read; nothing is stored."""
    forged = secrets.token_urlsafe(32)
    total = 8 * 1024 * 1024
    wire = Wire(api.app.site())
    wire.send(
        request_head("PUT", "/api/store/Cache/x", {"Authorization": f"Bearer {forged}"}, total if declared else None)
    )
    body = b"Z" * (1024 * 1024)
    await wire.stream(body if declared else chunked(body))
    status, headers, reply = wire.response()
    assert status == 401
    assert json.loads(reply)["error"] == "unauthenticated"
    assert headers["www-authenticate"] == 'Bearer realm="mailiverse"'
    assert wire.transport.disconnecting
    assert wire.fed <= len(wire.transport.value()) + ANONYMOUS_CAP + 2 * PIECE + 4096
    if declared:
        assert wire.fed < 2048, "a declared length over the anonymous cap is refused before the body"


@pytest_twisted.ensureDeferred
async def test_cookie_session_without_csrf_token_gets_no_large_body(open_api: Api) -> None:
    """A live session cookie without its CSRF token lifts nothing: the large PUT is answered 403 at once."""
    client = await logged_in(open_api)
    wire = Wire(open_api.app.site())
    assert client.cookie is not None
    wire.send(request_head("PUT", "/api/store/Cache/x", {"Cookie": client.cookie}, 4 * 1024 * 1024))
    await wire.stream(b"Z" * (1024 * 1024))
    status, _, reply = wire.response()
    assert status == 403
    assert json.loads(reply)["error"] == "csrf_failed"
    assert wire.fed < 2048


@pytest.mark.parametrize("auth", ["bearer", "cookie"])
@pytest_twisted.ensureDeferred
async def test_authenticated_large_put_is_stored(open_api: Api, auth: str) -> None:
    """With a live session (bearer, or cookie and CSRF token) a 3 MiB PUT streams through and reads back whole."""
    client = await logged_in(open_api)
    headers = (
        {"Authorization": f"Bearer {client.token}"}
        if auth == "bearer"
        else {"Cookie": str(client.cookie), "X-CSRF-Token": str(client.csrf)}
    )
    data = secrets.token_bytes(3 * 1024 * 1024)
    wire = Wire(open_api.app.site())
    wire.send(request_head("PUT", "/api/store/Cache/large", headers, len(data)))
    await wire.stream(data)
    await wire.until(lambda: wire.complete)
    status, _, _ = wire.response()
    assert status == 201, wire.transport.value()[-300:]
    reply = await client.call("GET", "/api/store/Cache/large")
    assert reply.status == 200 and reply.body == data


@pytest_twisted.ensureDeferred
async def test_signup_fits_the_anonymous_cap(open_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real sign-up body (4096-bit key, the largest the server takes) is well under the anonymous cap
    and goes through the Site without any credential."""
    client = open_api.client()
    small = json.dumps(client.signup_body("bob", PASSWORD)).encode()
    big = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    monkeypatch.setattr(webapi, "rsa_key", lambda index: big)
    largest = json.dumps(client.signup_body("a" * 64, PASSWORD, invite="i" * 64)).encode()
    assert len(largest) * 2 < ANONYMOUS_CAP, len(largest)
    wire = Wire(open_api.app.site())
    wire.send(request_head("POST", "/api/signup", {"Content-Type": "application/json"}, len(small)) + small)
    await wire.until(lambda: wire.complete)
    assert wire.response()[0] == 201
