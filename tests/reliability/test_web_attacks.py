"""Attacks on a real ``twistd`` over HTTPS: SRP edge values, brute force, fixation, CSRF,
cookies, paths, bodies, headers, tamper.

Legitimate users sign up with the real Python client (``mailiverse.client``); attacks are raw
``http.client`` requests, each from a chosen 127.0.0.x source address so that the per-address
limits of one test do not spill into another.  SRP is computed here from the formulas of
docs/auth.md (an independent client), which is what lets the test forge the proof a broken
server would accept for A in {0, N, 2N}.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import secrets
import socket
import sqlite3
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import srp._pysrp as srp_reference

from mailiverse.client import Client, HttpsTransport
from mailiverse.crypto.kdf import derive_keys
from tests.support.appliance_state import rss_kib
from tests.support.harness import BIN, DOMAIN, Appliance, self_signed_cert
from tests.support.smtp import make_message, send_starttls

pytestmark = pytest.mark.integration

N, G = srp_reference.get_ng(srp_reference.NG_2048, None, None)
GROUP_BYTES = 256
COOKIE = "__Host-mv-session"
DEVICE_COOKIE = "__Host-mv-device"
AUTH_FAILED = {"error": "auth_failed", "message": "authentication failed"}
#: Failed logins allowed per account and per address in 15 minutes (docs/api.md).
PER_ACCOUNT, PER_ADDRESS = 10, 30
MIB = 1024 * 1024
#: Largest RSS growth of twistd tolerated while it drops an oversized body.
BODY_RSS_LIMIT_KIB = 24 * 1024
PASSWORDS = {name: f"{name} has a long passphrase 7731" for name in ("alice", "bob", "carol", "victim", "dave")}
ALICE_CANARY = b"ALICE-ONLY-CANARY-5f1c9e"


# -- plumbing --------------------------------------------------------------------------------


@dataclass
class Reply:
    """One HTTP response as received."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        found = self.all(name)
        return found[0] if found else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


def _tls(app: Appliance) -> ssl.SSLContext:
    """Trust exactly the appliance's self-signed certificate (its SAN holds 127.0.0.1)."""
    return ssl.create_default_context(cafile=str(self_signed_cert(app)))


def raw(
    app: Appliance,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    *,
    source: str = "127.0.0.1",
) -> Reply:
    """One request on a fresh TLS connection from ``source``; headers are sent exactly as given."""
    conn = http.client.HTTPSConnection(
        "127.0.0.1", app.web_port, context=_tls(app), timeout=120, source_address=(source, 0)
    )
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        sent = dict(headers or {})
        if body is not None:
            sent.setdefault("Content-Length", str(len(body)))
        for name, value in sent.items():
            conn.putheader(name, value)
        conn.endheaders(body)
        answer = conn.getresponse()
        return Reply(answer.status, answer.getheaders(), answer.read())
    finally:
        conn.close()


def post_json(app: Appliance, path: str, value: Any, headers: dict[str, str] | None = None, **kw: Any) -> Reply:
    return raw(
        app, "POST", path, json.dumps(value).encode(), {"Content-Type": "application/json", **(headers or {})}, **kw
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _h(*parts: bytes) -> bytes:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.digest()


def _minimal(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _pad(value: int) -> bytes:
    return value.to_bytes(GROUP_BYTES, "big")


def srp_proof(user: str, salt: bytes, a_pub: int, b_pub: int, key: bytes) -> bytes:
    """M = H((H(N) xor H(PAD(g))) | H(I) | s | A | B | K), as docs/auth.md states it."""
    mix = bytes(x ^ y for x, y in zip(_h(_minimal(N)), _h(_pad(G)), strict=True))
    return _h(mix, _h(user.encode("ascii")), salt, _minimal(a_pub), _minimal(b_pub), key)


@dataclass
class Login:
    """A finished login: the reply and what it handed out."""

    reply: Reply
    token: str
    csrf: str
    cookie: str
    device: str
    device_cookie: str


class SrpClient:
    """An SRP-6a client written from docs/auth.md, independent of mailiverse.auth."""

    def __init__(self, app: Appliance, user: str, vkey: bytes, source: str = "127.0.0.1") -> None:
        self.app, self.user, self.vkey, self.source = app, user, vkey, source

    def start(self, headers: dict[str, str] | None = None) -> Reply:
        return post_json(self.app, "/api/login/start", {"user": self.user}, headers, source=self.source)

    def finish(self, handle: str, a_pub: bytes, proof: bytes, headers: dict[str, str] | None = None) -> Reply:
        body = {"handle": handle, "A": b64(a_pub), "M": b64(proof)}
        return post_json(self.app, "/api/login/finish", body, headers, source=self.source)

    def honest(self, start: Reply) -> tuple[bytes, bytes, bytes]:
        """(A, M, expected HAMK) for the challenge in ``start``."""
        challenge = start.json()
        salt, b_pub = base64.b64decode(challenge["salt"]), int.from_bytes(base64.b64decode(challenge["B"]), "big")
        a = secrets.randbits(256) | 1 << 255
        a_pub = pow(G, a, N)
        u = int.from_bytes(_h(_pad(a_pub), _pad(b_pub)), "big")
        x = int.from_bytes(_h(salt, _h(self.user.encode("ascii"), b":", self.vkey)), "big")
        k = int.from_bytes(_h(_minimal(N), _pad(G)), "big")
        shared = pow((b_pub - k * pow(G, x, N)) % N, a + u * x, N)
        key = _h(_minimal(shared))
        proof = srp_proof(self.user, salt, a_pub, b_pub, key)
        return _minimal(a_pub), proof, _h(_minimal(a_pub), proof, key)

    def login(self, headers: dict[str, str] | None = None) -> Login:
        """A full login; asserts success and that the server proved it knows the verifier."""
        start = self.start(headers)
        assert start.status == 200, start.body
        a_pub, proof, hamk = self.honest(start)
        reply = self.finish(start.json()["handle"], a_pub, proof, headers)
        assert reply.status == 200, reply.body
        answer = reply.json()
        assert base64.b64decode(answer["HAMK"]) == hamk
        cookies = reply.all("Set-Cookie")
        assert len(cookies) == 2 and cookies[1].startswith(f"{DEVICE_COOKIE}={answer['device']};"), cookies
        return Login(reply, answer["token"], answer["csrf"], cookies[0], answer["device"], cookies[1])

    def wrong(self) -> tuple[Reply, Reply]:
        """One failed attempt (a proof from a wrong password): the start and finish replies."""
        start = self.start()
        if start.status != 200:
            return start, start
        a_pub, _proof, _hamk = SrpClient(self.app, self.user, os.urandom(32), self.source).honest(start)
        return start, self.finish(start.json()["handle"], a_pub, os.urandom(32))


class SourceTransport(HttpsTransport):
    """The client's HTTPS transport, bound to one local source address."""

    def __init__(self, server: str, source: str, **options: Any) -> None:
        super().__init__(server, **options)
        self.source = source

    def _connect(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            self.host, self.port, timeout=self._timeout, context=self._context, source_address=(self.source, 0)
        )


@dataclass
class World:
    """The running appliance, its users' VerificationKeys, and figures gathered on the way."""

    app: Appliance
    vkeys: dict[str, bytes] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)

    def srp(self, user: str, source: str = "127.0.0.1") -> SrpClient:
        return SrpClient(self.app, user, self.vkeys.get(user, b"\0" * 32), source)

    def client(self, user: str, source: str = "127.0.0.1") -> Client:
        transport = SourceTransport(
            f"https://127.0.0.1:{self.app.web_port}", source, ca_file=str(self_signed_cert(self.app))
        )
        return Client(transport, user)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A real appliance with open sign-up; alice, bob, carol and victim signed up by the real client."""
    app = Appliance(tmp_path_factory.mktemp("webattacks") / "app", extra_args=["--open-signup"])
    app.start()
    try:
        found = World(app)
        for name, password in PASSWORDS.items():
            client = found.client(name)
            try:
                assert client.signup(password) == [f"{name}@{DOMAIN}"]
                assert client.kdf is not None and client.kdf.is_argon2id
                # The independent SRP client needs the VerificationKey of the account's own KDF description.
                found.vkeys[name] = derive_keys(password, client.kdf)[1]
            finally:
                client.close()
        yield found
        assert app.process is not None and app.process.poll() is None, app.log()[-3000:]
        print("figures:", json.dumps(found.figures, sort_keys=True))
    finally:
        app.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def cookie(token: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={token}"}


def whoami(app: Appliance, headers: dict[str, str]) -> Reply:
    return raw(app, "GET", "/api/session", None, headers)


def assert_generic_failure(reply: Reply) -> None:
    """The one answer for every failed proof: 401, the fixed body, no HAMK, no token, no cookie."""
    assert reply.status == 401, (reply.status, reply.body)
    assert reply.json() == AUTH_FAILED
    assert reply.all("Set-Cookie") == []
    assert reply.header("WWW-Authenticate") == 'Bearer realm="mailiverse"'


# -- SRP -------------------------------------------------------------------------------------


def test_independent_srp_client_logs_in(world: World) -> None:
    """The SRP client written here from docs/auth.md logs in, so the proofs it forges below are the real formula."""
    login = world.srp("carol", "127.0.0.2").login()
    assert whoami(world.app, bearer(login.token)).json()["user"] == "carol"


@pytest.mark.parametrize("multiple", [0, 1, 2])
def test_a_congruent_to_zero_over_the_wire(world: World, multiple: int) -> None:
    """A = 0, N and 2N with the proof for S = 0 (what a server without the A mod N check would accept) all fail."""
    srp = world.srp("carol", "127.0.0.2")
    start = srp.start()
    assert start.status == 200
    challenge = start.json()
    salt, b_pub = base64.b64decode(challenge["salt"]), int.from_bytes(base64.b64decode(challenge["B"]), "big")
    a_value = multiple * N
    a_wire = a_value.to_bytes(max(1, (a_value.bit_length() + 7) // 8), "big")
    forged = srp_proof("carol", salt, a_value, b_pub, _h(b""))  # K = H(S) with S = 0
    reply = srp.finish(challenge["handle"], a_wire, forged)
    assert_generic_failure(reply)
    assert b"HAMK" not in reply.body and b"token" not in reply.body


def test_wrong_proof_reveals_nothing(world: World) -> None:
    """Wrong password, unknown user, replayed and made-up handles: byte-identical 401s, and starts of the same shape."""
    source = "127.0.0.2"
    known = world.srp("carol", source)
    unknown = SrpClient(world.app, "nobody-here", os.urandom(32), source)
    starts = [known.start(), unknown.start(), unknown.start()]
    assert all(s.status == 200 for s in starts)

    def shape(value: dict[str, Any]) -> dict[str, Any]:
        """Byte fields by their length (the KDF description's salt too); the handle left out."""
        return {
            k: len(base64.b64decode(v)) if k in ("salt", "B") else shape(v) if isinstance(v, dict) else v
            for k, v in value.items()
            if k != "handle"
        }

    shapes = [shape(s.json()) for s in starts]
    assert shapes[0] == shapes[1] == shapes[2]
    assert starts[1].json()["salt"] == starts[2].json()["salt"]  # the decoy salt is stable, as a real one is
    assert starts[1].json()["kdf"] == starts[2].json()["kdf"]  # and so is the decoy KDF description
    wrong_start, wrong = known.wrong()
    _s, unknown_reply = unknown.wrong()
    replayed = known.finish(wrong_start.json()["handle"], *known.honest(wrong_start)[:2])
    made_up = known.finish("x" * 43, b"\x02", os.urandom(32))
    bodies = set()
    for reply in (wrong, unknown_reply, replayed, made_up):
        assert_generic_failure(reply)
        bodies.add(reply.body)
    assert len(bodies) == 1


def _exhaust_address(world: World, source: str) -> int:
    """Spend the failure budget of ``source`` with wrong proofs for made-up names; the number of 401s before the 429."""
    failures = 0
    for attempt in range(PER_ADDRESS + 5):
        start, finish = SrpClient(world.app, f"guess{attempt:03d}", os.urandom(32), source).wrong()
        if start.status == 429:
            return failures
        assert_generic_failure(finish)
        failures += 1
    raise AssertionError(f"no 429 after {failures} failures from {source}")


def test_brute_force_is_throttled_per_account(world: World) -> None:
    """10 wrong proofs for one account, then 429 + Retry-After for that account from any address,
    the right password too."""
    attacker = world.srp("victim", "127.0.0.3")
    for _ in range(PER_ACCOUNT):
        start, finish = attacker.wrong()
        assert start.status == 200
        assert_generic_failure(finish)
    blocked, _ = attacker.wrong()
    assert blocked.status == 429 and blocked.json()["error"] == "rate_limited"
    retry = int(blocked.header("Retry-After") or 0)
    assert 0 < retry <= 900
    elsewhere = world.srp("victim", "127.0.0.4").start()
    assert elsewhere.status == 429 and int(elsewhere.header("Retry-After") or 0) > 0
    assert world.srp("victim").start().status == 429  # the owner too: the lock is on the account
    world.srp("bob", "127.0.0.3").login()  # the address still has budget for other accounts
    world.figures["per_account"] = {"failures_before_429": PER_ACCOUNT, "retry_after_s": retry}


def _lock(world: World, user: str, source: str) -> None:
    """Spend ``user``'s per-account failure budget from ``source`` (a stranger's address)."""
    attacker = world.srp(user, source)
    for _ in range(PER_ACCOUNT):
        _start, finish = attacker.wrong()
        assert_generic_failure(finish)
    assert attacker.start().status == 429


def test_a_known_device_is_not_locked_out_by_strangers(world: World) -> None:
    """After strangers lock dave's account, dave's browser (device cookie) and app (device field) still log in.

    Without a token, with a forged one, or with a token of another account, the lock holds. The
    device's own budget still stops guessing with a stolen token: 10 failures, then 429.
    """
    app = world.app
    owner = world.srp("dave", "127.0.0.30")
    browser = owner.login()  # the device logged in once before the attack
    native = owner.login()
    bob_device = world.srp("bob", "127.0.0.30").login().device
    _lock(world, "dave", "127.0.0.31")
    assert owner.start().status == 429  # no device token: locked, as before

    again = owner.login({"Cookie": f"{DEVICE_COOKIE}={browser.device}"})
    assert whoami(app, bearer(again.token)).json()["user"] == "dave"
    assert again.device[:22] == browser.device[:22]  # renewed: the same version byte and device id, a new time

    start = post_json(app, "/api/login/start", {"user": "dave", "device": native.device}, source="127.0.0.32")
    assert start.status == 200, start.body
    a_pub, proof, hamk = owner.honest(start)
    body = {"handle": start.json()["handle"], "A": b64(a_pub), "M": b64(proof), "device": native.device}
    done = post_json(app, "/api/login/finish", body, source="127.0.0.32")
    assert done.status == 200 and base64.b64decode(done.json()["HAMK"]) == hamk

    forged = base64.urlsafe_b64encode(b"\x01" + os.urandom(40)).rstrip(b"=").decode()
    # The last tag characters changed (to "AA", or "BA" where they were "AA" already: then it would be the same token).
    tampered = browser.device[:-2] + ("AA" if browser.device[-2:] != "AA" else "BA")
    for token in (forged, bob_device, "not a token", tampered):
        assert owner.start({"Cookie": f"{DEVICE_COOKIE}={token}"}).status == 429, token
        reply = post_json(app, "/api/login/start", {"user": "dave", "device": token}, source="127.0.0.30")
        assert reply.status == 429, token
    assert post_json(app, "/api/login/start", {"user": "dave", "device": 7}).json()["error"] == "invalid_request"

    thief = SrpClient(app, "dave", os.urandom(32), "127.0.0.33")
    failures = 0
    for _ in range(PER_ACCOUNT + 2):
        start = post_json(app, "/api/login/start", {"user": "dave", "device": native.device}, source=thief.source)
        if start.status == 429:
            break
        a_pub, _proof, _hamk = thief.honest(start)
        body = {"handle": start.json()["handle"], "A": b64(a_pub), "M": b64(os.urandom(32)), "device": native.device}
        assert_generic_failure(post_json(app, "/api/login/finish", body, source=thief.source))
        failures += 1
    assert failures == PER_ACCOUNT
    assert owner.login({"Cookie": f"{DEVICE_COOKIE}={browser.device}"}).token  # another device of dave's: unaffected
    world.figures["device_tokens"] = {
        "stranger_lock": 429,
        "known_device_login": 200,
        "device_failures_before_429": failures,
    }


def test_brute_force_is_throttled_per_address(world: World) -> None:
    """30 wrong proofs from one address over 30 names, then 429 + Retry-After for any name from it;
    others unaffected."""
    failures = _exhaust_address(world, "127.0.0.5")
    assert failures == PER_ADDRESS
    blocked = world.srp("bob", "127.0.0.5").start()
    assert blocked.status == 429 and blocked.json()["error"] == "rate_limited"
    retry = int(blocked.header("Retry-After") or 0)
    assert 0 < retry <= 900
    world.srp("bob", "127.0.0.6").login()
    world.figures["per_address"] = {"failures_before_429": failures, "retry_after_s": retry}


@pytest.mark.slow
def test_throttle_lifts_after_retry_after(world: World) -> None:
    """After waiting Retry-After seconds, a throttled address gets exactly one more attempt."""
    source = "127.0.0.7"
    _exhaust_address(world, source)
    blocked = world.srp("bob", source).start()
    assert blocked.status == 429
    time.sleep(int(blocked.header("Retry-After") or 0) + 1)
    login = world.srp("bob", source).login()
    assert whoami(world.app, bearer(login.token)).status == 200
    _start, finish = SrpClient(world.app, "guess-after", os.urandom(32), source).wrong()
    assert_generic_failure(finish)
    assert world.srp("bob", source).start().status == 429


# -- sessions and cookies --------------------------------------------------------------------


def _cookie_parts(header: str) -> tuple[str, str, dict[str, str]]:
    first, *rest = [p.strip() for p in header.split(";")]
    name, _, value = first.partition("=")
    attributes = {}
    for part in rest:
        key, _, val = part.partition("=")
        attributes[key.lower()] = val
    return name, value, attributes


def test_cookie_flags(world: World) -> None:
    """Login sets __Host-mv-session=<token> HttpOnly, Secure, SameSite=Strict, Path=/, no Domain;
    logout clears it alike."""
    login = world.srp("alice").login()
    name, value, attributes = _cookie_parts(login.cookie)
    assert name == COOKIE and value == login.token
    assert {"httponly", "secure", "samesite", "path", "max-age"} <= attributes.keys()
    assert attributes["samesite"] == "Strict" and attributes["path"] == "/"
    assert "domain" not in attributes and int(attributes["max-age"]) == 43200
    out = post_json(world.app, "/api/logout", {}, bearer(login.token))
    assert out.status == 200
    cleared = out.all("Set-Cookie")
    assert len(cleared) == 1
    name, value, attributes = _cookie_parts(cleared[0])
    assert name == COOKIE and value == "" and attributes.get("max-age") == "0"
    # A browser drops a __Host- cookie update that lacks Secure or Path=/ (so logout would not clear it).
    assert "secure" in attributes and attributes.get("path") == "/" and "domain" not in attributes
    name, value, attributes = _cookie_parts(login.device_cookie)
    assert name == DEVICE_COOKIE and value == login.device
    assert {"httponly", "secure", "samesite", "path", "max-age"} <= attributes.keys()
    assert attributes["samesite"] == "Strict" and attributes["path"] == "/" and "domain" not in attributes
    assert int(attributes["max-age"]) == 180 * 24 * 3600
    world.figures["cookie"] = login.cookie.replace(login.token, "<token>")


def test_planted_cookie_is_never_adopted(world: World) -> None:
    """A token the attacker chose, or the attacker's own live session, sent as the cookie at login is not reused."""
    planted = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    login = world.srp("alice").login(cookie(planted))
    assert login.token != planted and planted not in login.cookie
    for headers in (cookie(planted), bearer(planted)):
        assert whoami(world.app, headers).status == 401
    attacker = world.srp("bob").login()
    victim = world.srp("alice").login(cookie(attacker.token))
    assert victim.token != attacker.token and victim.csrf != attacker.csrf
    assert whoami(world.app, cookie(attacker.token)).json()["user"] == "bob"
    assert whoami(world.app, cookie(victim.token)).json()["user"] == "alice"


def test_token_changes_at_every_login(world: World) -> None:
    """Two logins of one user give two different tokens and CSRF tokens, both 43 URL-safe characters."""
    first, second = world.srp("alice").login(), world.srp("alice").login()
    assert first.token != second.token and first.csrf != second.csrf
    for token in (first.token, second.token):
        assert len(token) == 43 and set(token) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )


def test_logout_revokes_on_the_server(world: World) -> None:
    """After logout the old token fails as bearer and as cookie; the user's other sessions live on."""
    kept, gone = world.srp("alice").login(), world.srp("alice").login()
    assert whoami(world.app, cookie(gone.token)).status == 200
    refused = post_json(world.app, "/api/logout", {}, cookie(gone.token))  # cookie logout without CSRF token
    assert refused.status == 403 and whoami(world.app, cookie(gone.token)).status == 200
    out = post_json(world.app, "/api/logout", {}, {**cookie(gone.token), "X-CSRF-Token": gone.csrf})
    assert out.status == 200
    for headers in (cookie(gone.token), bearer(gone.token)):
        reply = whoami(world.app, headers)
        assert reply.status == 401 and reply.json()["error"] == "unauthenticated"
    assert raw(world.app, "GET", "/api/store", None, bearer(gone.token)).status == 401
    assert whoami(world.app, bearer(kept.token)).json()["user"] == "alice"


# -- CSRF ------------------------------------------------------------------------------------


def test_csrf_on_cookie_sessions(world: World) -> None:
    """Cookie writes without the token, with a wrong or another session's token, or cross-site are 403; bearer works."""
    app = world.app
    alice, bob = world.srp("alice").login(), world.srp("bob").login()
    here = f"https://127.0.0.1:{app.web_port}"
    good = {**cookie(alice.token), "X-CSRF-Token": alice.csrf}
    attempts = {
        "no token": cookie(alice.token),
        "empty token": {**cookie(alice.token), "X-CSRF-Token": ""},
        "wrong token": {
            **cookie(alice.token),
            "X-CSRF-Token": alice.csrf[:-2] + ("AA" if alice.csrf[-2:] != "AA" else "BB"),
        },
        "other session's token": {**cookie(alice.token), "X-CSRF-Token": bob.csrf},
        "session token as CSRF": {**cookie(alice.token), "X-CSRF-Token": alice.token},
        "cross-site Origin": {**good, "Origin": "https://evil.example"},
        "Origin null": {**good, "Origin": "null"},
        "look-alike Origin": {**good, "Origin": here + ".evil.example"},
        "Sec-Fetch-Site cross-site": {**good, "Sec-Fetch-Site": "cross-site"},
        "Sec-Fetch-Site same-site": {**good, "Sec-Fetch-Site": "same-site"},
    }
    results = {}
    for number, (what, headers) in enumerate(attempts.items()):
        reply = raw(app, "PUT", f"/api/store/Cache/csrf{number}", b"planted", headers)
        results[what] = reply.status
        assert reply.status == 403 and reply.json()["error"] == "csrf_failed", what
        assert raw(app, "GET", f"/api/store/Cache/csrf{number}", None, bearer(alice.token)).status == 404
    assert raw(app, "PUT", "/api/store/Cache/keep", b"kept", bearer(alice.token)).status == 201
    routes = [
        ("POST", "/api/send", json.dumps({"to": [f"bob@{DOMAIN}"], "subject": "csrf", "text": "x"}).encode()),
        ("DELETE", "/api/store/Cache/keep", None),
        ("POST", "/api/account/password", b"{}"),
        ("DELETE", "/api/account", b"{}"),
        ("POST", "/api/logout", b"{}"),
    ]
    for method, path, body in routes:
        headers = {**cookie(alice.token), "Content-Type": "application/json", "Origin": "https://evil.example"}
        reply = raw(app, method, path, body, headers)
        assert reply.status == 403 and reply.json()["error"] == "csrf_failed", (method, path)
        plain = raw(app, method, path, body, {**cookie(alice.token), "Content-Type": "application/json"})
        assert plain.status == 403, (method, path)
    assert raw(app, "GET", "/api/store/Cache/keep", None, cookie(alice.token)).body == b"kept"  # reads need no token
    assert whoami(app, cookie(alice.token)).status == 200
    ok = raw(app, "PUT", "/api/store/Cache/csrf-ok", b"fine", {**good, "Origin": here, "Sec-Fetch-Site": "same-origin"})
    assert ok.status == 201
    assert raw(app, "PUT", "/api/store/Cache/bearer-ok", b"fine", bearer(alice.token)).status == 201
    # No page elsewhere can log a browser in: a login the browser marks cross-site, or from a plain-http origin, or
    # one that carries a cookie, is refused; one from another https origin without cookies (a move's new side,
    # mailiverse/web/cors.py) is answered like a native client's, never with a cookie or Allow-Credentials.
    for headers in (
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://evil.example"},
        {"Origin": "https://evil.example", **cookie(alice.token)},
    ):
        login_csrf = post_json(app, "/api/login/start", {"user": "alice"}, headers)
        assert login_csrf.status == 403 and login_csrf.json()["error"] == "csrf_failed", headers
    cookieless = post_json(app, "/api/login/start", {"user": "alice"}, {"Origin": "https://evil.example"})
    assert cookieless.status == 200 and cookieless.header("Set-Cookie") is None
    assert cookieless.header("Access-Control-Allow-Credentials") is None
    world.figures["csrf_refused"] = len(attempts) + 2 * len(routes) + 3


# -- the store API ---------------------------------------------------------------------------

ATTACK_PATHS = [
    "../alice/Cache/secret",
    "%2e%2e/alice/Cache/secret",
    "%2E%2E%2Falice%2FCache%2Fsecret",
    "..%2F..%2Fmailiverse.sqlite3",
    "Cache/..%2F..%2F..%2Fsecret",
    ".%2e/Cache/secret",
    "%252e%252e/alice/Cache/secret",
    "Cache%2Fsecret",
    "Cache%2fsecret",
    "/Cache/secret",
    "%2FCache%2Fsecret",
    "%2Fetc%2Fpasswd",
    "/etc/passwd",
    "Cache/secret%00",
    "Cache%00/secret",
    "Cache/secret%00.txt",
    "..%5Calice%5CCache%5Csecret",
    "Cache%5Csecret",
    "%C0%AE%C0%AE/alice/Cache/secret",
    "%EF%BC%8E%EF%BC%8E/alice/Cache/secret",
    "%E2%80%A5/alice/Cache/secret",
    "Cache%EF%BC%8Fsecret",
    "Cache/%E2%80%AEterces",
    "Cache/secre%CC%81t",
    "%ED%A0%80/x",
    "Cache/secret/",
    "Cache//secret",
    "alice/Cache/secret",
    "1/Cache/secret",
    "2/Cache/secret",
    ".",
    "..",
    "Cache/./secret",
    "a" * 1100,
]


def _listing(app: Appliance, token: str, query: str = "") -> list[str]:
    reply = raw(app, "GET", "/api/store?" + query, None, bearer(token))
    assert reply.status == 200, reply.body
    return [entry["path"] for entry in reply.json()["objects"]]


def test_store_paths_never_reach_another_user(world: World) -> None:
    """Traversal, encoded slashes, absolute paths, NUL, overlong UTF-8 and look-alike Unicode
    stay in bob's own namespace."""
    app = world.app
    alice, bob = world.srp("alice").login(), world.srp("bob").login()
    assert raw(app, "PUT", "/api/store/Cache/secret", ALICE_CANARY, bearer(alice.token)).status in (200, 201)
    version = raw(app, "GET", "/api/store/Cache/secret", None, bearer(alice.token)).header("ETag")
    before = _listing(app, alice.token)
    statuses: dict[str, int] = {}
    created: list[str] = []
    for path in ATTACK_PATHS:
        for method, body in (("GET", None), ("PUT", b"bob was here"), ("DELETE", None)):
            reply = raw(app, method, "/api/store/" + path, body, bearer(bob.token))
            statuses[f"{reply.status}"] = statuses.get(f"{reply.status}", 0) + 1
            assert reply.status in (200, 201, 400, 404), (method, path, reply.status, reply.body)
            assert ALICE_CANARY not in reply.body
            if method == "PUT" and reply.status in (200, 201):
                stored = reply.json()["path"]
                # Created only under the literal decoded name: nothing normalised into '..' or an absolute path.
                assert stored == urllib.parse.unquote(path), (path, stored)
                assert ".." not in stored.split("/") and not stored.startswith("/")
                created.append(stored)
    # Every object bob created was deleted again by the same URL: his namespace is empty, whatever the prefix.
    for query in ("prefix=..%2Falice", "prefix=alice", "prefix=Cache", "prefix=%2e%2e", "prefix=", "order=newest"):
        assert _listing(app, bob.token, query) == [], query
    for query in ("prefix=%2F", "prefix=%2Falice", "prefix=Cache%00"):
        assert raw(app, "GET", "/api/store?" + query, None, bearer(bob.token)).status == 400, query
    mine = raw(app, "GET", "/api/store/Cache/secret", None, bearer(alice.token))
    assert mine.body == ALICE_CANARY and mine.header("ETag") == version
    assert _listing(app, alice.token) == before
    world.figures["store_paths"] = {
        "paths": len(ATTACK_PATHS),
        "requests": 3 * len(ATTACK_PATHS),
        "statuses": statuses,
        "created_literally": len(created),
    }


# -- bodies ----------------------------------------------------------------------------------


class PeakRss:
    """Samples the VmRSS of a process every 10 ms in a thread; ``peak`` is the largest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = rss_kib(pid)
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_kib(self.pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _stream(app: Appliance, path: str, total: int, headers: dict[str, str], *, chunked: bool) -> Reply:
    """Send ``total`` bytes of body in 1 MiB pieces, declared or chunked; read the answer."""
    conn = http.client.HTTPSConnection("127.0.0.1", app.web_port, context=_tls(app), timeout=300)
    try:
        conn.putrequest("PUT" if path.startswith("/api/store/") else "POST", path, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.putheader("Transfer-Encoding" if chunked else "Content-Length", "chunked" if chunked else str(total))
        conn.endheaders()
        piece = b"Z" * MIB
        sent = 0
        try:
            while sent < total:
                data = piece[: min(MIB, total - sent)]
                conn.send(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
                sent += len(data)
            if chunked:
                conn.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before the last byte; the answer is still read below
        answer = conn.getresponse()
        return Reply(answer.status, answer.getheaders(), answer.read())
    finally:
        conn.close()


OVERSIZED = 96 * MIB if not os.environ.get("LONG") else 1024 * MIB


@pytest.mark.parametrize(
    ("route", "chunked"),
    [
        ("/api/store/Cache/huge", False),
        ("/api/store/Cache/huge", True),
        ("/api/login/finish", False),
        ("/api/send", True),
    ],
)
def test_oversized_body_is_413_without_buffering(world: World, route: str, chunked: bool) -> None:
    """A body over the route's cap (64 MiB store, 128 KiB login, send cap) is 413 and is not held in memory."""
    app = world.app
    assert app.process is not None
    login = world.srp("alice").login()
    headers = {
        **bearer(login.token),
        "Content-Type": "application/json" if not route.startswith("/api/store") else "application/octet-stream",
    }
    total = OVERSIZED if route.startswith("/api/store") or route == "/api/send" else 8 * MIB
    if route == "/api/send":
        total = max(total, 80 * MIB)  # over 4/3 x the 50 MiB message cap + 128 KiB
    began = time.monotonic()
    with PeakRss(app.process.pid) as rss:
        reply = _stream(app, route, total, headers, chunked=chunked)
    took = time.monotonic() - began
    assert reply.status == 413, reply.body[:300]
    assert reply.json()["error"] in ("body_too_large", "message_too_large")
    growth = rss.peak - rss.start
    assert growth < BODY_RSS_LIMIT_KIB, f"RSS grew {growth} KiB while dropping {total} bytes"
    assert raw(app, "GET", "/api/store/Cache/huge", None, bearer(login.token)).status == 404
    key = f"oversized {route} {'chunked' if chunked else 'declared'}"
    world.figures[key] = {
        "bytes": total,
        "rss_start_kib": rss.start,
        "rss_peak_kib": rss.peak,
        "seconds": round(took, 2),
    }


MALFORMED = [
    b"",
    b"{",
    b"[]",
    b'"alice"',
    b"null",
    b"1e999999",
    b'{"user":"a","user":"b"}',
    b'{"user":NaN}',
    b'{"user":Infinity}',
    b"\xff\xfe{\x00}\x00",
    b'{"user":"alice"} trailing',
    b'{"user":"\xc0\xae"}',
    '\ufeff{"user":"alice"}'.encode(),
    b"{'user':'alice'}",
]


@pytest.mark.parametrize("body", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_json_is_400(world: World, body: bytes) -> None:
    """Not one strict JSON object (truncated, array, duplicate key, NaN, bad UTF-8, BOM, trailing data)
    is 400 malformed_json."""
    reply = raw(world.app, "POST", "/api/login/start", body, {"Content-Type": "application/json"}, source="127.0.0.8")
    assert reply.status == 400, reply.body
    assert reply.json()["error"] == "malformed_json"


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "application/json-patch+json",
        "text/json",
        "application/javascript",
    ],
)
def test_wrong_content_type_is_415(world: World, content_type: str | None) -> None:
    """JSON routes refuse any other media type (what a cross-site form could send) with 415, before parsing."""
    headers = {} if content_type is None else {"Content-Type": content_type}
    body = b'{"user":"alice"}'
    if content_type and content_type.startswith("multipart/"):
        body = b'--x\r\nContent-Disposition: form-data; name="user"\r\n\r\nalice\r\n--x--\r\n'
    reply = raw(world.app, "POST", "/api/login/start", body, headers, source="127.0.0.8")
    assert reply.status == 415 and reply.json()["error"] == "unsupported_media_type"
    _check_security_headers(reply, str(content_type))


@pytest.mark.parametrize(
    "body",
    [b'{"user":"alice"}', b"--x\r\n", b"--x\r\nContent-Disposition: form-data\r\n\r\n", b"\xff" * 64],
    ids=["json-body", "open-boundary", "nameless-part", "binary"],
)
def test_malformed_multipart_is_a_json_415(world: World, body: bytes) -> None:
    """A multipart body Twisted's form parser would choke on reaches the app,
    which answers 415 in JSON with every header.

    The site does no form parsing: no route takes form data, and a stock ``Site`` answers a
    malformed multipart POST itself with a bare 400 before the app sees it.
    """
    headers = {"Content-Type": "multipart/form-data; boundary=x"}
    reply = raw(world.app, "POST", "/api/login/start", body, headers, source="127.0.0.8")
    assert reply.status == 415 and reply.json()["error"] == "unsupported_media_type", reply.body
    _check_security_headers(reply, "malformed multipart")


def _raw_exchange(app: Appliance, data: bytes) -> bytes:
    """Write bytes on a TLS connection and read until the server closes it (at most 64 KiB, 10 s)."""
    with socket.create_connection(("127.0.0.1", app.web_port), timeout=10) as plain:
        with _tls(app).wrap_socket(plain, server_hostname="127.0.0.1") as sock:
            sock.sendall(data)
            received = b""
            try:
                while len(received) < 65536:
                    piece = sock.recv(65536)
                    if not piece:
                        break
                    received += piece
            except (TimeoutError, ConnectionResetError, ssl.SSLError):
                pass
            return received


PROTOCOL_ERRORS = {
    "bad chunk size": (
        b"POST /api/login/start HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
    ),
    "two Content-Lengths": (
        b"POST /api/login/start HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\nContent-Length: 40\r\n\r\n{}"
    ),
    "CL and TE (smuggling)": (
        b"POST /api/login/start HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /api/health HTTP/1.1\r\n"
        b"Host: x\r\n\r\n"
    ),
    "garbage request line": b"\x16\x03\x01 nonsense\r\n\r\n",
    "100 KiB header line": b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 102400 + b"\r\n\r\n",
}


@pytest.mark.parametrize("what", list(PROTOCOL_ERRORS))
def test_protocol_level_garbage_is_refused(world: World, what: str) -> None:
    """HTTP framing attacks Twisted itself rejects (bad multipart, chunking, CL+TE, huge headers)
    get 400/413 or a close."""
    answer = _raw_exchange(world.app, PROTOCOL_ERRORS[what])
    status_line = answer.split(b"\r\n", 1)[0]
    world.figures.setdefault("protocol_errors", {})[what] = status_line.decode("latin-1") or "(closed, no answer)"
    assert answer == b"" or status_line.split(b" ")[1][:1] == b"4", (what, answer[:300])
    assert b'"handle"' not in answer and b'"status"' not in answer  # no login started, smuggled request unanswered
    assert raw(world.app, "GET", "/api/health").status == 200


def test_deep_json_nesting(world: World) -> None:
    """Deeply nested JSON (8,000 in a login body and at sign-up, 2,000,000 at send) is 400, quickly,
    and the server lives; a deeper sign-up is over the 16 KiB cap of a request without a session (413)."""
    app = world.app
    assert app.process is not None
    login = world.srp("alice").login()
    cases = [
        ("/api/login/start", 8_000, {}),
        ("/api/signup", 8_000, {}),
        ("/api/send", 2_000_000, bearer(login.token)),
    ]
    timings = {}
    for route, depth, auth in cases:
        body = b'{"user":' + b"[" * depth + b"]" * depth + b"}"
        began = time.monotonic()
        reply = raw(app, "POST", route, body, {"Content-Type": "application/json", **auth}, source="127.0.0.9")
        timings[route] = round(time.monotonic() - began, 3)
        assert reply.status == 400 and reply.json()["error"] == "malformed_json", (route, reply.body)
    deeper = b'{"user":' + b"[" * 60_000 + b"]" * 60_000 + b"}"
    reply = raw(app, "POST", "/api/signup", deeper, {"Content-Type": "application/json"}, source="127.0.0.9")
    assert reply.status == 413 and reply.json()["error"] == "body_too_large"
    assert raw(app, "GET", "/api/health").status == 200
    world.figures["deep_json_seconds"] = timings


# -- security headers ------------------------------------------------------------------------


def _check_security_headers(reply: Reply, what: str, *, no_store: bool = True) -> None:
    assert reply.header("Server") == "mailiverse", what  # no framework version
    csp = reply.header("Content-Security-Policy") or ""
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "object-src 'none'" in csp, what
    script = next((d for d in csp.split(";") if d.strip().startswith("script-src")), "")
    assert "'unsafe-inline'" not in script and "'unsafe-eval'" not in script, what
    hsts = reply.header("Strict-Transport-Security") or ""
    assert hsts.startswith("max-age=") and int(hsts.split("=")[1].split(";")[0]) >= 31536000, what
    expected = {
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
    }
    for name, value in expected.items():
        assert reply.header(name) == value, (what, name, reply.header(name))
    assert reply.header("Permissions-Policy"), what
    if no_store and (reply.header("Content-Type") or "").startswith("application/json"):
        assert reply.header("Cache-Control") == "no-store", what


def _rename_table(app: Appliance, old: str, new: str) -> None:
    db = sqlite3.connect(app.data_dir / "mailiverse.sqlite3", timeout=30)
    try:
        db.execute(f"ALTER TABLE {old} RENAME TO {new}")
        db.commit()
    finally:
        db.close()


@pytest.mark.parametrize("path", ["/api/store/%ff", "/api/store/Cache/%c0%ae", "/%ff%fe.html", "/api/%ed%a0%80"])
def test_non_utf8_url_is_a_json_400(world: World, path: str) -> None:
    """A URL whose unquoted path is not UTF-8 gets the JSON error, with the headers, and the server carries on."""
    login = world.srp("bob").login()
    reply = raw(world.app, "GET", path, None, bearer(login.token))
    assert reply.status == 400
    assert reply.header("Content-Type") == "application/json"
    assert reply.json() == {"error": "invalid_request", "message": "the URL is not valid UTF-8"}
    _check_security_headers(reply, path)
    assert raw(world.app, "GET", "/api/health").status == 200


def test_security_headers_on_every_response_type(world: World) -> None:
    """200/201/304 JSON, files and objects, 400, 401, 403, 404, 405, 412, 413, 415, 429 and 500
    all carry the headers."""
    app = world.app
    login = world.srp("bob").login()
    auth = bearer(login.token)
    assert raw(app, "PUT", "/api/store/Cache/h", b"x", auth).status in (200, 201)
    etag = raw(app, "GET", "/api/store/Cache/h", None, auth).header("ETag") or ""
    _exhaust_address(world, "127.0.0.10")
    requests: list[tuple[int, str, Any]] = [
        (200, "health JSON", lambda: raw(app, "GET", "/api/health")),
        (200, "index.html", lambda: raw(app, "GET", "/")),
        (200, "static JS", lambda: raw(app, "GET", "/js/main.js")),
        (200, "static CSS", lambda: raw(app, "GET", "/style.css")),
        (200, "stored object", lambda: raw(app, "GET", "/api/store/Cache/h", None, auth)),
        (201, "created object", lambda: raw(app, "PUT", f"/api/store/Cache/n{secrets.token_hex(4)}", b"x", auth)),
        (304, "not modified", lambda: raw(app, "GET", "/api/store/Cache/h", None, {**auth, "If-None-Match": etag})),
        (400, "invalid path", lambda: raw(app, "GET", "/api/store/%2e%2e/x", None, auth)),
        (400, "non-UTF-8 URL", lambda: raw(app, "GET", "/api/store/%ff", None, auth)),
        (
            400,
            "malformed JSON",
            lambda: raw(app, "POST", "/api/login/start", b"{", {"Content-Type": "application/json"}),
        ),
        (401, "no session", lambda: raw(app, "GET", "/api/account")),
        (403, "CSRF", lambda: raw(app, "PUT", "/api/store/Cache/h", b"y", cookie(login.token))),
        (404, "API route", lambda: raw(app, "GET", "/api/nothing")),
        (404, "static file", lambda: raw(app, "GET", "/nothing.html")),
        (404, "static traversal", lambda: raw(app, "GET", "/%2e%2e/%2e%2e/setup.cfg")),
        (404, "object", lambda: raw(app, "GET", "/api/store/Cache/none", None, auth)),
        (405, "API method", lambda: raw(app, "POST", "/api/health", b"{}", {"Content-Type": "application/json"})),
        (405, "static method", lambda: raw(app, "DELETE", "/index.html")),
        (412, "precondition", lambda: raw(app, "PUT", "/api/store/Cache/h", b"z", {**auth, "If-Match": '"999"'})),
        (
            413,
            "oversized",
            lambda: raw(app, "POST", "/api/login/start", b"{" * (200 * 1024), {"Content-Type": "application/json"}),
        ),
        (415, "media type", lambda: raw(app, "POST", "/api/login/start", b"{}", {"Content-Type": "text/plain"})),
        (429, "throttled", lambda: post_json(app, "/api/login/start", {"user": "bob"}, source="127.0.0.10")),
    ]
    seen = {}
    for status, what, call in requests:
        reply = call()
        assert reply.status == status, (what, reply.status, reply.body[:200])
        _check_security_headers(reply, what)
        if status == 405:
            assert "GET" in (reply.header("Allow") or ""), what
        if status >= 400 and what not in ("static file", "static traversal", "static method"):
            assert reply.json()["error"], what  # API and routing errors are JSON with a stable code
        seen[what] = status
    # A 500: the objects table disappears under the running server, then comes back.
    _rename_table(app, "objects", "objects_hidden")
    try:
        broken = raw(app, "GET", "/api/store?prefix=Cache", None, auth)
    finally:
        _rename_table(app, "objects_hidden", "objects")
    assert broken.status == 500 and broken.json() == {"error": "internal", "message": "internal error"}
    _check_security_headers(broken, "500")
    assert raw(app, "GET", "/api/store/Cache/h", None, auth).status == 200
    seen["database failure"] = 500
    world.figures["header_checks"] = seen


def test_early_413_is_no_store(world: World) -> None:
    """The JSON 413 for an oversized body carries Cache-Control: no-store like every other JSON answer (docs/api.md)."""
    reply = raw(world.app, "POST", "/api/login/start", b"{" * (200 * 1024), {"Content-Type": "application/json"})
    assert reply.status == 413
    assert reply.header("Cache-Control") == "no-store"


def test_static_directories_are_not_listed(world: World) -> None:
    """GET of a static folder (/js/, /js/crypto/) is 404 or 403, never a generated directory listing."""
    for folder in ("/js/", "/js/crypto/"):
        reply = raw(world.app, "GET", folder)
        assert reply.status in (403, 404) and b"Directory listing" not in reply.body, folder


# -- tamper evidence to the client ----------------------------------------------------------


def _flip_stored_bit(app: Appliance, user: str, path: str) -> int:
    """Flip one bit in the middle of the first chunk of ``user``'s object at ``path``, in the SQLite file."""
    db = sqlite3.connect(app.data_dir / "mailiverse.sqlite3", timeout=30)
    try:
        (object_id,) = db.execute(
            "select o.id from objects o join users u on u.id = o.user_id where u.name = ? and o.path = ?",
            (user, path),
        ).fetchone()
        (data,) = db.execute("select data from object_chunks where object_id = ? and seq = 0", (object_id,)).fetchone()
        changed = bytearray(data)
        changed[len(changed) // 2] ^= 0x04
        db.execute("update object_chunks set data = ? where object_id = ? and seq = 0", (bytes(changed), object_id))
        db.commit()
        return len(changed) // 2
    finally:
        db.close()


def _cli(world: World, user: str, *command: str) -> subprocess.CompletedProcess[str]:
    argv = [
        str(BIN / "mailiverse-client"),
        "--server",
        f"https://127.0.0.1:{world.app.web_port}",
        "--user",
        user,
        "--ca",
        str(self_signed_cert(world.app)),
        *command,
    ]
    env = dict(os.environ, MAILIVERSE_PASSWORD=PASSWORDS[user])
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)


def test_cli_reports_a_tampered_message_and_shows_nothing(world: World) -> None:
    """A bit flipped in a stored v2 message: `mailiverse-client read` says it was tampered with,
    prints no plaintext, exits 1."""
    secret = "The vault code is 4417-tamper-canary."
    message = make_message("Tamper me", secret + "\n", to=f"carol@{DOMAIN}")
    assert send_starttls(world.app, [f"carol@{DOMAIN}"], message) == {}
    listing = _cli(world, "carol", "ls")
    assert listing.returncode == 0, listing.stderr
    line = next(row for row in listing.stdout.splitlines() if "Tamper me" in row)
    message_id = line.split("\t")[0]
    before = _cli(world, "carol", "read", message_id)
    assert before.returncode == 0 and secret in before.stdout
    client = world.client("carol")
    try:
        client.login(PASSWORDS["carol"])
        blob = client.get_object(f"Mail/In/{message_id}")
    finally:
        client.logout()
        client.close()
    assert blob[0] == 2  # the authenticated format
    offset = _flip_stored_bit(world.app, "carol", f"Mail/In/{message_id}")
    for extra in ((), ("--raw",)):
        after = _cli(world, "carol", "read", message_id, *extra)
        assert after.returncode == 1
        assert after.stdout == ""
        assert "4417" not in after.stderr and "vault" not in after.stderr
        assert after.stderr.strip() == (
            f"mailiverse-client: message {message_id} failed integrity check: it was modified or corrupted; not shown"
        )
    _flip_stored_bit(world.app, "carol", f"Mail/In_Json/{message_id}")
    listed = _cli(world, "carol", "ls")
    assert listed.returncode == 0
    row = next(r for r in listed.stdout.splitlines() if r.startswith(message_id))
    assert "failed integrity check" in row and "Tamper me" not in row and "4417" not in listed.stdout
    world.figures["tamper_cli"] = {"object_bytes": len(blob), "flipped_offset_in_chunk": offset, "exit": 1}
