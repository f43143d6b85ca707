"""The forwarder of moved accounts (mailiverse/outbound/forwarding.py, docs/moving.md) on a real database (SQLite
and PostgreSQL) and an in-memory outbound queue: what the client did not copy is queued once, in a carrier whose
envelope holds the stored ciphertext byte for byte (sealed to the old key id), from a bounce address no account
has; copied mail, mail after the grace period and other folders are not forwarded; a claim keeps two forwarders
from sending one message twice; a failed queue leaves the message for later; nothing is ever deleted."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pytest_twisted
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection

from mailiverse.crypto.keys import generate_private_key, public_key_der
from mailiverse.keylog.records import DAY_MS, key_record_fields, sign_key_record, verify_key_record
from mailiverse.mime.carrier import parse_carrier
from mailiverse.outbound.forwarding import LEASE_MS, Forwarder
from mailiverse.store import objects
from mailiverse.store.db import Database
from mailiverse.store.keylog import Holder, KeyLog, record_keys_txn
from mailiverse.store.moving import mail_states_txn, mark_copied_txn, switch_to_moved_txn
from mailiverse.store.users import add_user_txn
from mailiverse.testing import MemoryOutbound

KEY = generate_private_key(2048)
NOW = 1_765_000_000_000
NEW = "alice@new.example"


@dataclass
class Clock:
    now: int = NOW

    def __call__(self) -> int:
        return self.now


def _setup_txn(conn: Connection) -> tuple[int, str]:
    user = add_user_txn(conn, "alice", public_key_der(KEY), "v2")
    record = verify_key_record(
        sign_key_record(key_record_fields(KEY.public_key(), ["alice@old.example"], created_ms=NOW - 1000), KEY)
    )
    record_keys_txn(conn, KeyLog(Ed25519PrivateKey.generate()), [record], Holder(user_id=user.id), NOW - 1000)
    for folder, key_base, data in (
        ("Mail/In", "1765000000000_1", b"copied before the switch"),
        ("Mail/In", "1765000000001_2", b"arrived after the copy"),
        ("Mail/Screener", "1765000000002_3", b"from a first-time sender"),
        ("Mail/Sent", "1765000000003_4", b"a sent copy: never forwarded"),
        ("Mail/In", "1765000000004_5", b"an original without its twin"),
    ):
        objects.put_object_txn(conn, user.id, f"{folder}/{key_base}", data, now_ms=NOW)
        if key_base != "1765000000004_5":
            objects.put_object_txn(conn, user.id, f"{folder}_Json/{key_base}", b"twin of " + data, now_ms=NOW)
    mark_copied_txn(conn, user.id, ["1765000000000_1"], NOW)
    switch_to_moved_txn(conn, user.id, to=NEW, moved_ms=NOW, forward_until_ms=NOW + 30 * DAY_MS, leaf_index=1)
    return user.id, record.key_id


def _forwarder(database: Database, outbound: MemoryOutbound, clock: Clock) -> Forwarder:
    return Forwarder(database, outbound, domains=("old.example",), hostname="mail.old.example", now_ms=clock)


def _count_txn(conn: Connection, user_id: int) -> int:
    return objects.count_objects_txn(conn, user_id)


@pytest_twisted.ensureDeferred
async def test_forwards_what_was_not_copied_once_as_stored(database: Database) -> None:
    """The two received messages the client did not copy are queued once each, as carriers holding the stored
    ciphertext; the copied one, the Sent copy and the one without a twin are not; nothing is deleted."""
    user_id, key_id = await database.transact(_setup_txn)
    before = await database.run(_count_txn, user_id)
    outbound, clock = MemoryOutbound(), Clock()
    forwarder = _forwarder(database, outbound, clock)
    assert await forwarder.run_once() == 2
    assert len(outbound.submitted) == 2
    sent = {}
    for item in outbound.submitted:
        assert item.user == "alice" and item.mail_from == "alice+moved@old.example" and item.recipients == (NEW,)
        assert b"From: alice@old.example\r\nTo: alice@new.example\r\n" in item.message
        carrier = parse_carrier(item.message, 1 << 20)
        assert carrier is not None and len(carrier.envelopes) == 1
        envelope = carrier.envelopes[0]
        assert envelope.key_id == key_id
        sent[carrier.key_base] = (envelope.original, envelope.twin)
    assert sent == {
        "1765000000001_2": (b"arrived after the copy", b"twin of arrived after the copy"),
        "1765000000002_3": (b"from a first-time sender", b"twin of from a first-time sender"),
    }
    assert b"copied before the switch" not in b"".join(i.message for i in outbound.submitted)

    assert await forwarder.run_once() == 0 and len(outbound.submitted) == 2
    assert await _forwarder(database, outbound, clock).run_once() == 0  # a new process: nothing twice
    states = await database.run(mail_states_txn, user_id)
    assert states == {"copied": 1, "forwarded": 2, "unforwardable": 1}
    assert await database.run(_count_txn, user_id) == before


@pytest_twisted.ensureDeferred
async def test_new_mail_in_the_grace_period_and_none_after(database: Database) -> None:
    """Mail stored later in the grace period is forwarded at the next pass; after the grace period nothing is."""
    user_id, _key_id = await database.transact(_setup_txn)
    outbound, clock = MemoryOutbound(), Clock()
    forwarder = _forwarder(database, outbound, clock)
    await forwarder.run_once()
    clock.now = NOW + DAY_MS
    for key_base in ("1765086400000_6",):
        for folder in ("Mail/In", "Mail/In_Json"):
            await database.transact(objects.put_object_txn, user_id, f"{folder}/{key_base}", b"later", now_ms=clock.now)
    assert await forwarder.run_once() == 1
    clock.now = NOW + 31 * DAY_MS
    for folder in ("Mail/In", "Mail/In_Json"):
        await database.transact(
            objects.put_object_txn, user_id, f"{folder}/1767000000000_7", b"too late", now_ms=clock.now
        )
    assert await forwarder.run_once() == 0
    assert len(outbound.submitted) == 3


@pytest_twisted.ensureDeferred
async def test_a_failed_queue_leaves_the_message_for_after_the_lease(database: Database) -> None:
    """When the outbound queue fails, the claim stays; no other pass sends it until the lease ends, then one does."""
    user_id, _key_id = await database.transact(_setup_txn)
    clock = Clock()
    failing = MemoryOutbound(fail=True)
    assert await _forwarder(database, failing, clock).run_once() == 0
    outbound = MemoryOutbound()
    assert await _forwarder(database, outbound, clock).run_once() == 0  # claimed by the failed pass
    clock.now = NOW + LEASE_MS + 1
    assert await _forwarder(database, outbound, clock).run_once() == 2
    digests = {hashlib.sha256(item.message).hexdigest() for item in outbound.submitted}
    assert len(digests) == 2
    assert (await database.run(mail_states_txn, user_id))["forwarded"] == 2
