"""Delivery end to end on a real database: one lookup per recipient, group commit, accounts that vanish."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from twisted.internet.defer import Deferred

from mailiverse.contracts import Recipient
from mailiverse.crypto.formats import open_mail_object
from mailiverse.crypto.keys import generate_private_key, public_key_der
from mailiverse.delivery.pipeline import Delivery, DeliveryError
from mailiverse.mime.twin import convert
from mailiverse.spool import SpooledMessage
from mailiverse.store.db import Database
from mailiverse.store.objects import count_objects_txn, list_objects_txn, read_object_txn
from mailiverse.store.users import User, add_user_txn, delete_user_txn, get_user_txn, set_disabled_txn
from mailiverse.testing_db import sqlite_url

MESSAGE = b"From: s@example.org\r\nTo: alice@example.org\r\nSubject: hi\r\n\r\nhello\r\n"
_KEY: list[RSAPrivateKey] = []


def _private_key() -> RSAPrivateKey:
    """One RSA key for the module: generating keys dominates otherwise."""
    if not _KEY:
        _KEY.append(generate_private_key())
    return _KEY[0]


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    """A fresh SQLite database served by the running reactor."""
    from twisted.internet import reactor

    db = Database.open(sqlite_url(tmp_path), reactor=reactor)
    try:
        yield db
    finally:
        db.close()


@pytest.fixture
def inbox(database: Database, tmp_path: Path) -> Iterator[Delivery]:
    """The real IInbox for example.org, with users alice, bob and carol."""
    from twisted.internet import reactor

    with database.blocking_allowed():
        for name in ("alice", "bob", "carol"):
            database.transact_sync(add_user_txn, name, public_key_der(_private_key()), "v2")
    delivery = Delivery(database, lambda domain: domain == "example.org", tmp_dir=tmp_path, reactor=reactor)
    try:
        yield delivery
    finally:
        delivery.stop()


def _message() -> SpooledMessage:
    return SpooledMessage(size=len(MESSAGE), memory=MESSAGE)


async def _stored(database: Database, name: str) -> int:
    user = await _account(database, name)
    return await database.run(count_objects_txn, user.id, "Mail/In")


async def _account(database: Database, name: str) -> User:
    user = await database.run(get_user_txn, name)
    assert user is not None
    return user


@pytest_twisted.ensureDeferred
async def test_delivery_stores_both_objects_sealed_to_the_recipient(database: Database, inbox: Delivery) -> None:
    """A resolved recipient gets the original and its twin, each decrypting to the expected bytes."""
    recipient = await inbox.resolve("Alice@example.org")
    assert recipient is not None and isinstance(recipient.account, User)
    await inbox.deliver(_message(), "s@example.org", [recipient])
    user = await _account(database, "alice")
    infos = await database.run(list_objects_txn, user.id, "Mail/In")
    assert len(infos) == 2
    bodies = {info.path: await database.run(read_object_txn, user.id, info.path) for info in infos}
    original_path = next(path for path in bodies if not path.startswith("Mail/In_Json/"))
    twin_path = next(path for path in bodies if path.startswith("Mail/In_Json/"))
    assert open_mail_object(_private_key(), bodies[original_path]) == MESSAGE
    written_ms = int(original_path.rsplit("/", 1)[1].split("_")[0])
    # The twin of the message, and last the address it was delivered to (the twin's one addition here).
    expected_twin = convert(MESSAGE, original_path=original_path, written_ms=written_ms)[:-1]
    expected_twin += b',"delivered_to":"alice@example.org"}'
    assert open_mail_object(_private_key(), bodies[twin_path]) == expected_twin


@pytest_twisted.ensureDeferred
async def test_recipients_made_without_an_account_are_looked_up(database: Database, inbox: Delivery) -> None:
    """A Recipient built by hand (no account carried from resolve) is still delivered."""
    await inbox.deliver(_message(), "s@example.org", [Recipient("bob@example.org", "bob")])
    assert await _stored(database, "bob") == 2


@pytest_twisted.ensureDeferred
async def test_an_account_disabled_after_rcpt_gets_nothing(database: Database, inbox: Delivery) -> None:
    """Disabling the account between RCPT and the end of DATA fails the delivery and stores nothing."""
    recipient = await inbox.resolve("alice@example.org")
    assert recipient is not None
    user = await _account(database, "alice")
    await database.transact(set_disabled_txn, user.id, True)
    with pytest.raises(DeliveryError):
        await inbox.deliver(_message(), "s@example.org", [recipient])
    assert await database.run(count_objects_txn, user.id, "Mail/In") == 0


@pytest_twisted.ensureDeferred
async def test_an_account_deleted_after_rcpt_fails_only_its_own_delivery(database: Database, inbox: Delivery) -> None:
    """Deleting an account mid-delivery fails that message; concurrent ones in the same commit are stored."""
    alice = await inbox.resolve("alice@example.org")
    bob = await inbox.resolve("bob@example.org")
    carol = await inbox.resolve("carol@example.org")
    assert alice is not None and bob is not None and carol is not None
    gone = await _account(database, "bob")
    await database.transact(delete_user_txn, gone.id)
    deliveries = [
        Deferred.fromCoroutine(inbox.deliver(_message(), "s@example.org", [recipient]))
        for recipient in (alice, bob, carol, alice)
    ]
    outcomes = []
    for delivery in deliveries:
        try:
            await delivery
            outcomes.append("ok")
        except DeliveryError:
            outcomes.append("failed")
    assert outcomes == ["ok", "failed", "ok", "ok"]
    assert await _stored(database, "alice") == 4
    assert await _stored(database, "carol") == 2


@pytest_twisted.ensureDeferred
async def test_a_replaced_account_gets_nothing_sealed_to_the_old_key(database: Database, inbox: Delivery) -> None:
    """An account deleted and re-created between RCPT and delivery (maybe with the same id) is not delivered to."""
    recipient = await inbox.resolve("carol@example.org")
    assert recipient is not None
    old = await _account(database, "carol")
    await database.transact(delete_user_txn, old.id)
    await database.transact(add_user_txn, "carol", public_key_der(generate_private_key()), "v2")
    with pytest.raises(DeliveryError):
        await inbox.deliver(_message(), "s@example.org", [recipient])
    assert await _stored(database, "carol") == 0


@pytest_twisted.ensureDeferred
async def test_quota_full_recipients_and_deliveries_past_the_quota(database: Database, inbox: Delivery) -> None:
    """resolve marks a full mailbox; a delivery that would take any recipient past the quota raises
    MailboxFull and stores nothing for anyone; the Sent copy is counted but never refused."""
    from mailiverse.contracts import SENT_FOLDER, MailboxFull
    from mailiverse.store.quota import get_usage_txn, set_quota_txn

    alice = await _account(database, "alice")
    await database.transact(set_quota_txn, alice.id, 0)
    full = await inbox.resolve("alice@example.org")
    assert full is not None and full.over_quota
    bob = await inbox.resolve("bob@example.org")
    assert bob is not None and not bob.over_quota
    await database.transact(set_quota_txn, alice.id, 10)
    roomy = await inbox.resolve("alice@example.org")
    assert roomy is not None and not roomy.over_quota
    with pytest.raises(MailboxFull):
        await inbox.deliver(_message(), "s@example.org", [bob, roomy])
    assert (await _stored(database, "alice"), await _stored(database, "bob")) == (0, 0)
    await inbox.deliver(_message(), "alice@example.org", [roomy], SENT_FOLDER)
    usage = await database.run(get_usage_txn, alice.id)
    assert usage.used_bytes > 10 and usage.is_full(0)
    await database.transact(set_quota_txn, alice.id, None)
    await inbox.deliver(_message(), "s@example.org", [bob, roomy])
    assert (await _stored(database, "alice"), await _stored(database, "bob")) == (2, 2)
