"""An end-to-end carrier arriving from outside (docs/e2e.md §3), on a real database, sealed on a thread or in a
real worker process: each recipient's envelope is stored byte for byte under the carrier's key base when it
names a key the account holds; a carrier with none for a recipient's key is refused (550 5.7.1) and nothing
is stored; a carrier that is not well formed is kept as the ordinary message it also is."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import pytest_twisted
from sqlalchemy import insert
from twisted.internet import reactor

from mailiverse.contracts import Envelope, MessageRejected
from mailiverse.crypto.formats import open_mail_object, seal_mail_object
from mailiverse.crypto.keys import generate_private_key, public_key_der
from mailiverse.delivery.pool import WorkerPool
from mailiverse.mime.carrier import CarriedEnvelope, build_carrier
from mailiverse.store.db import Database
from mailiverse.store.objects import read_object_txn
from mailiverse.store.schema import key_records
from mailiverse.store.users import add_user_txn, get_user_txn
from mailiverse.testing_db import sqlite_url
from tests.delivery import test_judged_delivery as judged
from tests.delivery.test_judged_delivery import _deliver, _delivery, _paths

#: Sealing on a thread, and in a real worker process (the fixture of the judged-delivery tests).
sealing = judged.sealing

ALICE_KEY = generate_private_key()
CAROL_KEY = generate_private_key()
ALICE_KEY_ID = "aaaaaaaa-0000-4000-8000-000000000001"
CAROL_KEY_ID = "cccccccc-0000-4000-8000-000000000003"
SECRET = b"the canary 51c0ffee never reaches this appliance in the clear"


def _envelope() -> Envelope:
    return Envelope("192.0.2.10", "mx.remote.test", "dave@remote.test", "mail.example.org", ("example.org",))


@pytest.fixture
def database(tmp_path: Path):  # type: ignore[no-untyped-def]
    """alice and carol with current keys in the directory, bob (v1, original clients) with none."""
    db = Database.open(sqlite_url(tmp_path), reactor=reactor)
    with db.blocking_allowed():
        for name, key, key_id in (("alice", ALICE_KEY, ALICE_KEY_ID), ("carol", CAROL_KEY, CAROL_KEY_ID)):
            db.transact_sync(add_user_txn, name, public_key_der(key), "v2")
            user = db.run_sync(get_user_txn, name)
            db.transact_sync(
                lambda conn, uid=user.id, kid=key_id: conn.execute(
                    insert(key_records).values(
                        key_id=kid, user_id=uid, kind="personal", status="current", leaf_index=0, created_ms=1
                    )
                )
            )
        db.transact_sync(add_user_txn, "bob", public_key_der(ALICE_KEY), "v1")
    try:
        yield db
    finally:
        db.close()


def _sealed(key_id: str, key: object) -> CarriedEnvelope:
    public = key.public_key()  # type: ignore[attr-defined]
    raw = b"From: dave@remote.test\r\nTo: alice@example.org\r\nSubject: " + SECRET + b"\r\n\r\n" + SECRET + b"\r\n"
    return CarriedEnvelope(key_id, seal_mail_object("v2", public, raw), seal_mail_object("v2", public, b"{}"))


def _carrier(*envelopes: CarriedEnvelope, to: str = "alice@example.org") -> bytes:
    return build_carrier(
        mail_from="dave@remote.test",
        to=to,
        key_base="1765000000000_77",
        envelopes=envelopes,
        hostname="mx.remote.test",
        now_ms=1765000000000,
    )


async def _object(database: Database, name: str, path: str) -> bytes:
    user = await database.run(get_user_txn, name)
    assert user is not None
    return bytes(await database.run(read_object_txn, user.id, path))


@pytest_twisted.ensureDeferred
async def test_each_recipient_gets_its_envelope_as_it_came(
    database: Database, tmp_path: Path, sealing: WorkerPool | None
) -> None:
    alice, carol = _sealed(ALICE_KEY_ID, ALICE_KEY), _sealed(CAROL_KEY_ID, CAROL_KEY)
    raw = _carrier(alice, carol)
    assert SECRET not in raw
    inbox = _delivery(database, tmp_path, sealing, None)
    try:
        await _deliver(inbox, raw, _envelope(), "alice", "carol")
        await _deliver(inbox, raw, _envelope(), "alice", "carol")  # a sender's retry: kept once, no error
    finally:
        inbox.stop()
    for name, envelope, key in (("alice", alice, ALICE_KEY), ("carol", carol, CAROL_KEY)):
        original, twin = "Mail/In/1765000000000_77", "Mail/In_Json/1765000000000_77"  # the sender's key base
        assert sorted(await _paths(database, name)) == [original, twin]
        assert await _object(database, name, original) == envelope.original
        assert await _object(database, name, twin) == envelope.twin
        assert SECRET in open_mail_object(key, await _object(database, name, original))


@pytest_twisted.ensureDeferred
async def test_a_carrier_without_an_envelope_for_a_recipient_is_refused(
    database: Database, tmp_path: Path, sealing: WorkerPool | None
) -> None:
    """Envelopes for other keys (a stale one, or none for bob, who has no published key): 550 5.7.1, nothing
    stored for anyone, so the sender hears of it."""
    inbox = _delivery(database, tmp_path, sealing, None)
    try:
        for raw, users in (
            (_carrier(_sealed("dddddddd-0000-4000-8000-000000000009", ALICE_KEY)), ("alice",)),
            (_carrier(_sealed(ALICE_KEY_ID, ALICE_KEY)), ("alice", "bob")),
        ):
            with pytest.raises(MessageRejected) as refused:
                await _deliver(inbox, raw, _envelope(), *users)
            assert (refused.value.code, refused.value.enhanced) == (550, "5.7.1")
            assert "not sealed to the recipient's current key" in refused.value.text
    finally:
        inbox.stop()
    assert await _paths(database, "alice") == [] and await _paths(database, "bob") == []


@pytest_twisted.ensureDeferred
async def test_a_malformed_carrier_is_kept_as_ordinary_mail(
    database: Database, tmp_path: Path, sealing: WorkerPool | None
) -> None:
    """An attachment of the carrier's type that is not a valid envelope document loses nothing: the message is
    sealed as it came, like any mail, and its reader sees the notice and the attachment."""
    good = _carrier(_sealed(ALICE_KEY_ID, ALICE_KEY))
    head, _, _rest = good.partition(b"Content-Transfer-Encoding: base64\r\n\r\n")
    boundary = good.rsplit(b"--", 2)[-2].rsplit(b"\r\n", 1)[-1]
    broken = head + b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(b'{"v": 2}') + b"\r\n"
    broken += boundary + b"--\r\n"
    inbox = _delivery(database, tmp_path, sealing, None)
    try:
        path = await _deliver(inbox, broken, _envelope(), "alice")
    finally:
        inbox.stop()
    stored = open_mail_object(ALICE_KEY, await _object(database, "alice", path))
    assert stored.endswith(broken) and b"end-to-end encrypted" in stored
