"""Delivery of mail from outside on a real database: judged in a worker or on a thread (--workers 0), refused
with the right SMTP reply and nothing stored, quarantined into the spam folder (v1 accounts: Mail/In)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import dkim
import pytest
import pytest_twisted
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from mailiverse.contracts import Envelope, MessageRejected, Recipient
from mailiverse.crypto.formats import open_mail_object
from mailiverse.crypto.keys import generate_private_key, public_key_der
from mailiverse.delivery.pipeline import Delivery
from mailiverse.delivery.pool import WorkerPool
from mailiverse.spool import SpooledMessage
from mailiverse.store.db import Database
from mailiverse.store.objects import list_objects_txn, read_object_txn
from mailiverse.store.users import add_user_txn, get_user_txn
from mailiverse.testing_db import sqlite_url
from tests.support.fakedns import FakeResolver

PRIVATE_KEY = generate_private_key()
_SIGNER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
MESSAGE = b"From: Bob <bob@remote.test>\r\nTo: alice@example.org\r\nSubject: hello\r\n\r\nHi Alice.\r\n"


def _envelope(ip: str = "192.0.2.10", mail_from: str = "bob@remote.test") -> Envelope:
    return Envelope(ip, "mx.remote.test", mail_from, "mail.example.org", ("example.org",))


def _resolver(dmarc: str = "v=DMARC1; p=reject") -> FakeResolver:
    key = _SIGNER.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return FakeResolver(
        {
            ("remote.test", "TXT"): ("v=spf1 ip4:192.0.2.10 -all",),
            ("sel._domainkey.remote.test", "TXT"): ("v=DKIM1; p=" + base64.b64encode(key).decode(),),
            ("_dmarc.remote.test", "TXT"): (dmarc,),
        }
    )


def _signed() -> bytes:
    key = _SIGNER.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    signature: bytes = dkim.sign(MESSAGE, b"sel", b"remote.test", key, include_headers=[b"from", b"subject"])
    return signature + MESSAGE


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    """A SQLite database with alice (a v2 account) and bob (v1, read by original clients)."""
    db = Database.open(sqlite_url(tmp_path), reactor=reactor)
    with db.blocking_allowed():
        db.transact_sync(add_user_txn, "alice", public_key_der(PRIVATE_KEY), "v2")
        db.transact_sync(add_user_txn, "bob", public_key_der(PRIVATE_KEY), "v1")
    try:
        yield db
    finally:
        db.close()


@pytest_twisted.async_yield_fixture(params=["thread", "worker"])
async def sealing(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[WorkerPool | None]:
    """Sealing on a thread of this process (--workers 0), or in a real worker process."""
    if request.param == "thread":
        yield None
        return
    workers = WorkerPool(1, reactor=reactor, tmp_dir=str(tmp_path))
    workers.startService()
    while len(workers._idle) < 1:
        d: Deferred[None] = Deferred()
        reactor.callLater(0.05, d.callback, None)  # type: ignore[attr-defined]
        await d
    try:
        yield workers
    finally:
        workers.stopService()
        while workers._workers:
            d = Deferred()
            reactor.callLater(0.05, d.callback, None)  # type: ignore[attr-defined]
            await d


def _delivery(
    database: Database, tmp_path: Path, workers: WorkerPool | None, resolver: FakeResolver | None
) -> Delivery:
    return Delivery(
        database,
        lambda domain: domain == "example.org",
        tmp_dir=tmp_path,
        reactor=reactor,
        worker_pool=workers,
        resolve=None if resolver is None else resolver.lookup,
    )


async def _deliver(inbox: Delivery, raw: bytes, envelope: Envelope | None, *users: str) -> str:
    recipients: list[Recipient] = []
    for user in users:
        found = await inbox.resolve(f"{user}@example.org")
        assert found is not None
        recipients.append(found)
    return await inbox.deliver(
        SpooledMessage(size=len(raw), memory=raw), envelope.mail_from if envelope else "", recipients, envelope=envelope
    )


async def _paths(database: Database, name: str) -> list[str]:
    user = await database.run(get_user_txn, name)
    assert user is not None
    return [item.path for item in await database.run(list_objects_txn, user.id, "Mail/")]


@pytest_twisted.ensureDeferred
async def test_verified_mail_is_stored_with_its_results(
    database: Database, tmp_path: Path, sealing: WorkerPool | None
) -> None:
    """A signed message from outside: judged (its lookups answered by the resolver), stored in Mail/In with
    our Authentication-Results header first."""
    resolver = _resolver()
    inbox = _delivery(database, tmp_path, sealing, resolver)
    try:
        signed = _signed()  # once: the signature carries the time (t=), so a second one may differ
        path = await _deliver(inbox, signed, _envelope(), "alice")
        assert path.startswith("Mail/In/")
        user = await database.run(get_user_txn, "alice")
        assert user is not None
        original = open_mail_object(PRIVATE_KEY, await database.run(read_object_txn, user.id, path))
        assert original.startswith(b"Authentication-Results: mail.example.org;") and original.endswith(signed)
        assert ("_dmarc.remote.test", "TXT") in resolver.asked
    finally:
        inbox.stop()


@pytest.mark.parametrize(
    ("resolver", "ip", "code"),
    [
        (_resolver(), "198.51.100.7", (550, "5.7.1")),
        (FakeResolver(failing=("_dmarc.remote.test",)), "192.0.2.10", (451, "4.7.0")),
    ],
)
@pytest_twisted.ensureDeferred
async def test_a_refused_message_stores_nothing(
    database: Database,
    tmp_path: Path,
    sealing: WorkerPool | None,
    resolver: FakeResolver,
    ip: str,
    code: tuple[int, str],
) -> None:
    """DMARC p=reject failing: MessageRejected 550 5.7.1; the DMARC policy unknown: 451 4.7.0. Nothing stored."""
    resolver.asked.clear()
    inbox = _delivery(database, tmp_path, sealing, resolver)
    try:
        with pytest.raises(MessageRejected) as refusal:
            await _deliver(inbox, MESSAGE, _envelope(ip), "alice", "bob")
        assert (refusal.value.code, refusal.value.enhanced) == code
        assert await _paths(database, "alice") == await _paths(database, "bob") == []
    finally:
        inbox.stop()


@pytest_twisted.ensureDeferred
async def test_quarantined_mail_goes_to_the_spam_folder_of_v2_accounts(
    database: Database, tmp_path: Path, sealing: WorkerPool | None
) -> None:
    """DMARC p=quarantine failing: alice (v2) gets it in Mail/Spam, bob (v1) in Mail/In with a marked twin."""
    inbox = _delivery(database, tmp_path, sealing, _resolver("v=DMARC1; p=quarantine"))
    try:
        await _deliver(inbox, MESSAGE, _envelope("198.51.100.7"), "alice", "bob")
        alice, bob = await _paths(database, "alice"), await _paths(database, "bob")
        assert [p.rsplit("/", 1)[0] for p in alice] == ["Mail/Spam", "Mail/Spam_Json"]
        assert [p.rsplit("/", 1)[0] for p in bob] == ["Mail/In", "Mail/In_Json"]
        assert alice[0].rsplit("/", 1)[1] == bob[0].rsplit("/", 1)[1]
    finally:
        inbox.stop()


@pytest_twisted.ensureDeferred
async def test_without_a_resolver_a_local_from_is_still_refused(
    database: Database, tmp_path: Path, sealing: WorkerPool | None
) -> None:
    """No resolver: remote mail is stored unjudged, but From: alice@example.org from outside is refused (550)."""
    inbox = _delivery(database, tmp_path, sealing, None)
    try:
        await _deliver(inbox, MESSAGE, _envelope(), "alice")
        spoof = MESSAGE.replace(b"Bob <bob@remote.test>", b"alice@example.org")
        with pytest.raises(MessageRejected) as refusal:
            await _deliver(inbox, spoof, _envelope(mail_from="alice@example.org"), "bob")
        assert (refusal.value.code, refusal.value.enhanced) == (550, "5.7.1")
        assert await _paths(database, "bob") == []
        # The logged-in path (no envelope) is never judged: alice's own copy of what she sent.
        await _deliver(inbox, spoof, None, "alice")
        assert len(await _paths(database, "alice")) == 4
    finally:
        inbox.stop()
