"""The web app under test (built by ``build_web_app``, as the appliance builds it), StubTreq,
and a client that does the client crypto.

``ApiClient`` plays the part of a real client: it derives the CryptoKey and VerificationKey with
PBKDF2, makes the SRP verifier, encrypts the key block, runs both SRP round trips and checks HAMK.
It records every request body it sends, so tests can prove secrets never reach the server.
"""

from __future__ import annotations

import base64
import functools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from mailiverse.accounts.service import AccountService, SignupPolicy
from mailiverse.auth import Budget, ClientLogin, SessionManager, create_verifier
from mailiverse.compat.blocks import encrypt_key_block
from mailiverse.config import DEFAULT_QUOTA_BYTES, DEFAULT_SEND_LIMIT_PER_HOUR
from mailiverse.crypto.keys import generate_private_key, private_key_der, public_key_der
from mailiverse.crypto.pbkdf import crypto_key, verification_key
from mailiverse.delivery.pipeline import Delivery
from mailiverse.delivery.rspamd import RspamdClient
from mailiverse.store.aliases import AddressHasher
from mailiverse.store.db import Database
from mailiverse.store.homes import Homes
from mailiverse.submission import Submission
from mailiverse.testing import MemoryOutbound
from mailiverse.web.app import WebApp
from mailiverse.web.routes.aliases import AliasSettings
from mailiverse.web.wiring import build_web_app

DOMAINS = ("example.org", "mail.example.net")
HOST = "mail.example.org"
BASE = f"https://{HOST}"
_RSA_KEYS: list[rsa.RSAPrivateKey] = []


def rsa_key(index: int) -> rsa.RSAPrivateKey:
    """The ``index``-th 2048-bit key of a per-run pool (key generation is slow)."""
    while len(_RSA_KEYS) <= index:
        _RSA_KEYS.append(generate_private_key(2048))
    return _RSA_KEYS[index]


@functools.cache
def password_keys(password: str) -> tuple[bytes, bytes]:
    """(CryptoKey, VerificationKey) of a password, as the client derives them (docs/formats.md §5)."""
    return crypto_key(password), verification_key(password)


def b64(data: bytes) -> str:
    """Standard base64 text."""
    return base64.b64encode(data).decode("ascii")


class FakeTime:
    """A settable wall clock in seconds for sessions, throttles and pending logins."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Reply:
    """One HTTP response as the tests see it."""

    status: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    def headers_named(self, name: str) -> list[str]:
        return list(self.headers.getRawHeaders(name) or [])


@dataclass
class Api:
    """The app under test and its collaborators."""

    app: WebApp
    stub: StubTreq
    database: Database
    accounts: AccountService
    sessions: SessionManager
    time: FakeTime
    outbound: MemoryOutbound
    submission: Submission
    clients: list[ApiClient] = field(default_factory=list)

    async def wait(self, deferred: Deferred[Any]) -> Any:
        """Pump the in-memory connection until ``deferred`` fires (routes await database threads)."""
        done: list[object] = []
        deferred.addBoth(lambda result: done.append(result) or result)
        while not done:
            self.stub.flush()
            await deferLater(reactor, 0.001, lambda: None)
        self.stub.flush()
        return await deferred

    def client(self) -> ApiClient:
        """A new client with no session."""
        client = ApiClient(self)
        self.clients.append(client)
        return client

    @property
    def sent_bodies(self) -> list[bytes]:
        """Every request body any client of this Api sent."""
        return [body for client in self.clients for body in client.bodies]


class ApiClient:
    """A client that does the client-side crypto and talks to the app through StubTreq."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.bodies: list[bytes] = []
        self.token: str | None = None
        self.csrf: str | None = None
        self.cookie: str | None = None
        self.user: str | None = None

    async def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: str | None = "bearer",
        csrf: bool = True,
    ) -> Reply:
        """Send one request; ``auth`` is "bearer", "cookie" or None."""
        sent_headers: dict[str, list[str]] = {k: [v] for k, v in (headers or {}).items()}
        body = data
        if json_body is not None:
            body = json.dumps(json_body).encode("utf-8")
            sent_headers.setdefault("Content-Type", ["application/json"])
        if auth == "bearer" and self.token:
            sent_headers.setdefault("Authorization", [f"Bearer {self.token}"])
        if auth == "cookie" and self.cookie:
            sent_headers.setdefault("Cookie", [self.cookie])
            if csrf and self.csrf:
                sent_headers.setdefault("X-CSRF-Token", [self.csrf])
        if body is not None:
            self.bodies.append(body)
        stub = self.api.stub
        # StubTreq keeps one cookie jar for every request; a client here sends only what it chose.
        stub.request.__wrapped__.__self__._cookiejar.clear()
        response = await self.api.wait(stub.request(method, BASE + path, headers=sent_headers, data=body))
        content = await self.api.wait(stub.content(response))
        return Reply(response.code, response.headers, content)

    # -- the crypto a real client does ---------------------------------------------------------

    def signup_body(self, name: str, password: str, key_index: int = 0, invite: str | None = None) -> dict[str, Any]:
        """The sign-up request a client builds: SRP salt and verifier, public key, encrypted key block."""
        key_crypto, key_verification = password_keys(password)
        private = rsa_key(key_index)
        salt, verifier = create_verifier(name, key_verification)
        environment = {
            "RSA-PublicKey": b64(public_key_der(private)),
            "RSA-PrivateKey": b64(private_key_der(private)),
        }
        body: dict[str, Any] = {
            "user": name,
            "salt": b64(salt),
            "verifier": b64(verifier),
            "group": "rfc5054-2048-sha256",
            "public_key": b64(public_key_der(private)),
            "key_block": b64(encrypt_key_block(key_crypto, environment)),
            "format": "v2",
        }
        if invite is not None:
            body["invite"] = invite
        return body

    async def signup(self, name: str, password: str, key_index: int = 0, invite: str | None = None) -> Reply:
        """Sign up ``name`` with ``password``."""
        return await self.call(
            "POST", "/api/signup", json_body=self.signup_body(name, password, key_index, invite), auth=None
        )

    async def proof(self, name: str, password: str) -> tuple[dict[str, str], ClientLogin]:
        """Run round trip 1 and return the ``{handle, A, M}`` of a fresh proof (and the client state)."""
        start = await self.call("POST", "/api/login/start", json_body={"user": name}, auth=None)
        assert start.status == 200, start.body
        answer = start.json()
        login = ClientLogin(name, password_keys(password)[1])
        proof = login.process_challenge(base64.b64decode(answer["salt"]), base64.b64decode(answer["B"]))
        return {"handle": answer["handle"], "A": b64(login.A), "M": b64(proof)}, login

    async def login(self, name: str, password: str) -> Reply:
        """Both SRP round trips; on success keeps the token, cookie and CSRF token, and checks HAMK."""
        proof, login = await self.proof(name, password)
        reply = await self.call("POST", "/api/login/finish", json_body=proof, auth=None)
        if reply.status == 200:
            answer = reply.json()
            login.verify_session(base64.b64decode(answer["HAMK"]))
            self.adopt(reply)
            self.user = answer["user"]
        return reply

    def adopt(self, reply: Reply) -> None:
        """Take the token, CSRF token and cookie of a reply that opened a session."""
        answer = reply.json()
        self.token = answer["token"]
        self.csrf = answer["csrf"]
        set_cookie = reply.header("Set-Cookie")
        assert set_cookie is not None
        self.cookie = set_cookie.split(";", 1)[0]


async def signed_in(api: Api, name: str, password: str, index: int = 0) -> ApiClient:
    """A client of a new account ``name`` (with an invite where sign-up needs one), logged in."""
    from mailiverse.store import accounts as repo

    client = api.client()
    code = None
    if not await api.accounts.signup_open():
        code, _ = await api.database.transact(repo.create_invite_txn)
    assert (await client.signup(name, password, index, invite=code)).status == 201
    assert (await client.login(name, password)).status == 200
    return client


def make_api(
    database: Database,
    tmp_path: Path,
    *,
    open_signup: bool = False,
    with_outbound: bool = True,
    default_quota: int = DEFAULT_QUOTA_BYTES,
    send_limit_per_hour: int = DEFAULT_SEND_LIMIT_PER_HOUR,
    spam_filter: RspamdClient | None = None,
    alias_settings: AliasSettings | None = None,
    homes: Homes | None = None,
) -> tuple[Api, Delivery]:
    """Build the app with ``build_web_app``, as the appliance does, on a settable clock
    (sessions, throttles and the send limit) and an in-memory outbound queue."""
    clock = FakeTime()
    tmp = tmp_path / "spool"
    tmp.mkdir(exist_ok=True)
    if alias_settings is None:
        alias_settings = AliasSettings(AddressHasher(b"k" * 32))
    delivery = Delivery(
        database,
        lambda domain: domain.lower() in DOMAINS,
        tmp_dir=tmp,
        reactor=reactor,
        default_quota=default_quota,
        aliases=alias_settings.hasher,
        homes=homes,
    )
    outbound = MemoryOutbound()
    submission = Submission(
        delivery,
        DOMAINS,
        outbound=outbound if with_outbound else None,
        max_message_size=1024 * 1024,
        send_limit_per_hour=send_limit_per_hour,
        clock=clock,
        on_sent=delivery.approve_correspondents,
    )
    app, _purger = build_web_app(
        database,
        hostname=HOST,
        domains=DOMAINS,
        submission=submission,
        reactor=reactor,
        clock=clock,
        # Many tests sign up several users from one address.
        signup_policy=SignupPolicy(open_signup=open_signup, per_address=Budget(20, 3600.0)),
        max_message_size=1024 * 1024,
        static_dir=tmp_path,
        default_quota=default_quota,
        spool_dir=tmp,
        spam_filter=spam_filter,
        alias_settings=alias_settings,
        homes=homes,
    )
    api = Api(app, StubTreq(app.resource()), database, app.accounts, app.accounts.sessions, clock, outbound, submission)
    return api, delivery
