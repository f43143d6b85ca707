"""The legacy protocol served for tests, and one legacy user driving it with the independent client.

``serve_legacy`` builds the protocol over a real database, with real listeners on 127.0.0.1 (TLS and
plain) and a web Site; ``Client`` signs a user up and talks to it over TCP, TLS or WebSocket with
tests/support/legacy_client.py. The fixtures are in tests/legacy/conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import treq
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.web.resource import Resource
from twisted.web.server import Site

from mailiverse.config import DataDir, LegacyOptions
from mailiverse.delivery.pipeline import Delivery
from mailiverse.legacy.serverkeys import SERVER_KEY_PURPOSES, load_server_key
from mailiverse.legacy.service import LegacyParts, build_legacy
from mailiverse.store.db import Database
from mailiverse.submission import Submission
from mailiverse.tls import TLSContexts, ensure_self_signed
from tests.support.legacy_client import (
    TcpLines,
    WsLines,
    availability_line,
    b64,
    environment_text,
    login,
    mv_headers,
    operation,
    password_keys,
    signup_line,
    text_of,
    unpacket,
)

DOMAIN = "example.org"


class RecordingOutbound:
    """An outbound submitter that keeps what it is given (the real queue belongs to another package)."""

    def __init__(self) -> None:
        self.submitted: list[dict[str, Any]] = []

    async def submit(self, *, user: str, mail_from: str, recipients: list[str], message: bytes) -> str:
        self.submitted.append({"user": user, "mail_from": mail_from, "recipients": recipients, "message": message})
        return f"queued-{len(self.submitted)}"


@dataclass
class LegacyAppliance:
    """The served legacy protocol: its parts, database and delivery, and the ports it listens on."""

    parts: LegacyParts
    database: Database
    delivery: Delivery
    data_dir: DataDir
    key_tls: int
    mail_tls: int
    key_plain: int
    mail_plain: int
    web: int
    mail_auth_public: rsa.RSAPublicKey
    send_public: rsa.RSAPublicKey

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.web}/Mailiverse/"


_KEY_CACHE: dict[str, bytes] = {}


def seed_server_keys(data_dir: DataDir) -> None:
    """Reuse one pair of server keys across tests: RSA generation dominates set-up time otherwise."""
    if not _KEY_CACHE:
        for purpose in SERVER_KEY_PURPOSES:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            _KEY_CACHE[purpose] = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
    for purpose, pem in _KEY_CACHE.items():
        path = data_dir.server_key_path(purpose)
        path.write_bytes(pem)
        path.chmod(0o600)


def serve_legacy(
    tmp_path: Path, url: str, options: LegacyOptions, outbound: Any = None, *, open_signup: bool = False
) -> Iterator[LegacyAppliance]:
    """Serve the legacy protocol over the database at ``url`` until the generator is closed.

    ``open_signup`` is the appliance's ``--open-signup`` (off: sign-up needs an invitation).
    """
    from twisted.internet import reactor

    data_dir = DataDir(tmp_path / "data")
    data_dir.create()
    seed_server_keys(data_dir)
    tls = TLSContexts(self_signed=ensure_self_signed(data_dir.tls_dir, "mail." + DOMAIN), ca=None)
    database = Database.open(url, reactor=reactor)
    delivery = Delivery(database, lambda d: d == DOMAIN, tmp_dir=data_dir.tmp_dir, reactor=reactor)
    parts = build_legacy(
        options,
        database=database,
        tls_contexts=tls,
        data_dir=data_dir,
        reactor=reactor,
        submission=Submission(delivery, options.domains, outbound=outbound),
        open_signup=open_signup,
    )
    key_service, mail_service = parts.services[1], parts.services[2]
    root = Resource()
    root.putChild(b"Mailiverse", parts.web_resource)
    ports = [
        reactor.listenTCP(0, key_service.factory, interface="127.0.0.1"),  # type: ignore[attr-defined]
        reactor.listenTCP(0, mail_service.factory, interface="127.0.0.1"),  # type: ignore[attr-defined]
        reactor.listenTCP(0, key_service.factory.wrappedFactory, interface="127.0.0.1"),  # type: ignore[attr-defined]
        reactor.listenTCP(0, mail_service.factory.wrappedFactory, interface="127.0.0.1"),  # type: ignore[attr-defined]
        reactor.listenTCP(0, Site(root), interface="127.0.0.1"),
    ]
    numbers = [p.getHost().port for p in ports]
    try:
        yield LegacyAppliance(
            parts,
            database,
            delivery,
            data_dir,
            *numbers,
            mail_auth_public=load_server_key(data_dir, "mail-auth").public_key(),
            send_public=load_server_key(data_dir, "send").public_key(),
        )
    finally:
        for port in ports:
            port.stopListening()
        database.close()


PASSWORD = "correct horse battery staple"
KEYS = password_keys(PASSWORD)
USER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SPKI = USER_KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
PKCS8 = USER_KEY.private_bytes(
    serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)
SMTP_PASSWORD = "4711471147114711"


class Client:
    """One legacy user talking to one appliance over TCP (TLS or plain) or WebSocket."""

    def __init__(self, app: LegacyAppliance, transport: str, user: str = "alice") -> None:
        self.app = app
        self.transport = transport
        self.address = f"{user}@{DOMAIN}"
        self.key_id = ""
        self.secret = ""

    async def connect(self, role: str) -> Any:
        from twisted.internet import reactor

        if self.transport == "ws":
            return await WsLines.connect(
                reactor, self.app.web, "/Mailiverse/" + ("KeyServer" if role == "key" else "MailServer")
            )
        tls = self.transport == "tls"
        port = {
            ("key", True): self.app.key_tls,
            ("mail", True): self.app.mail_tls,
            ("key", False): self.app.key_plain,
            ("mail", False): self.app.mail_plain,
        }[(role, tls)]
        return await TcpLines.connect(reactor, port, tls)

    async def init(self, line: bytes) -> dict[str, Any]:
        lines = await self.connect("mail")
        await lines.send(line)
        answer = await lines.recv()
        assert answer is not None
        name, value = unpacket(text_of(answer))
        assert name == "core.srp.SRPPackets$PacketInit_ServerResponse"
        assert await lines.recv() is None, "the server closes after its response"
        return dict(value)

    async def op(self, role: str, name: str, value: dict[str, Any], vk: bytes = KEYS[0]) -> dict[str, Any] | None:
        lines = await self.connect(role)
        key = await login(lines, self.address, vk)
        answer = await operation(lines, key, name, value)
        if answer is not None:
            assert await lines.recv() is None, "one operation per connection"
        return answer

    async def store_enable(self, captcha: str = "null") -> None:
        response = await treq.get(self.app.base + f"StoreEnable?email={self.address}&captcha={captcha}")
        assert response.code == 200
        body = (await response.content()).decode()
        first, second = body.split("&")
        assert first.startswith("AccessKeyId!") and second.startswith("SecretKey!")
        self.key_id, self.secret = first[len("AccessKeyId!") :], second[len("SecretKey!") :]

    def server_environment(self) -> dict[str, str]:
        return {
            "version": "2.0",
            "handler": "MV",
            "smtpPassword": SMTP_PASSWORD,
            "RSA-PublicKey": b64(SPKI),
            "MV/AccessKeyId": self.key_id,
            "MV/SecretKey": self.secret,
        }

    async def sign_up(self) -> None:
        assert (await self.init(availability_line(self.app.mail_auth_public, self.address)))["succeeded"] is True
        await self.store_enable()
        assert (await self.init(signup_line(self.app.mail_auth_public, self.address, KEYS[0])))["succeeded"] is True
        block = environment_text(self.server_environment()).encode()
        answer = await self.op("mail", "Put", {"block": b64(block)})
        assert answer == {"block": b64(block)}

    async def store(self, method: str, resource: str, body: bytes | None = None, **kw: Any) -> Any:
        op = {"GET": "StoreGet", "PUT": "StorePut", "DELETE": "StoreDelete"}[method]
        if kw.pop("list", False):
            op = "StoreList"
        headers = mv_headers(self.key_id, self.secret, method, resource, body=body, **kw)
        return await treq.request(
            method, self.app.base + f"{op}?Resource={resource}&random=42", headers=headers, data=body
        )
