"""Fixtures for the legacy protocol: a real database, real listeners on 127.0.0.1 (TLS and plain) and a web Site."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.web.resource import Resource
from twisted.web.server import Site

from mailiverse.config import DataDir
from mailiverse.delivery.pipeline import Delivery
from mailiverse.submission import Submission
from mailiverse.legacy.options import LegacyOptions
from mailiverse.legacy.service import LegacyParts, build_legacy
from mailiverse.legacy.serverkeys import SERVER_KEY_PURPOSES, load_server_key
from mailiverse.store.db import Database
from mailiverse.testing_db import create_postgres_database, drop_postgres_database, require_postgres, sqlite_url
from mailiverse.tls import TLSContexts, ensure_self_signed

DOMAIN = "example.org"


class RecordingOutbound:
    """An outbound submitter that keeps what it is given (the real queue belongs to another package)."""

    def __init__(self) -> None:
        self.submitted: list[dict[str, Any]] = []

    async def submit(self, *, user: str, mail_from: str, recipients: list[str], message: bytes) -> str:
        self.submitted.append({"user": user, "mail_from": mail_from, "recipients": recipients, "message": message})
        return f"queued-{len(self.submitted)}"


@dataclass
class Appliance:
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


def _seed_server_keys(data_dir: DataDir) -> None:
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


def _build(tmp_path: Path, url: str, options: LegacyOptions, outbound: Any = None) -> Iterator[Appliance]:
    from twisted.internet import reactor

    data_dir = DataDir(tmp_path / "data")
    data_dir.create()
    _seed_server_keys(data_dir)
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
        yield Appliance(
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


@pytest.fixture
def outbound() -> RecordingOutbound:
    """Records remote submissions from Send."""
    return RecordingOutbound()


@pytest.fixture
def appliance(tmp_path: Path, outbound: RecordingOutbound) -> Iterator[Appliance]:
    """The legacy protocol on SQLite, captcha off, with a recording outbound queue."""
    options = LegacyOptions(enabled=True, domains=(DOMAIN,), hostname="mail." + DOMAIN)
    yield from _build(tmp_path, sqlite_url(tmp_path), options, outbound)


@pytest.fixture
def token_appliance(tmp_path: Path) -> Iterator[Appliance]:
    """The legacy protocol with the ``token`` captcha policy and no outbound queue."""
    options = LegacyOptions(enabled=True, domains=(DOMAIN,), hostname="mail." + DOMAIN, captcha="token")
    yield from _build(tmp_path, sqlite_url(tmp_path), options)


@pytest.fixture
def pg_appliance(tmp_path: Path, outbound: RecordingOutbound) -> Iterator[Appliance]:
    """The legacy protocol on a throw-away PostgreSQL database."""
    require_postgres()
    url = create_postgres_database("mv_legacy")
    try:
        options = LegacyOptions(enabled=True, domains=(DOMAIN,), hostname="mail." + DOMAIN)
        yield from _build(tmp_path, url, options, outbound)
    finally:
        drop_postgres_database(url)
