"""Small deliveries queued together are written in one bulk step, with every check of the single path.

On SQLite and PostgreSQL: a batch's deliveries share a handful of statements (not a savepoint and
six statements each), quotas are checked delivery by delivery in queue order, and the accounts'
usage is exactly the bytes stored.
"""

from __future__ import annotations

import functools
import io
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from sqlalchemy import event, func, select
from twisted.internet.defer import Deferred, DeferredList

from mailiverse.config import DEFAULT_QUOTA_BYTES
from mailiverse.contracts import INBOX_FOLDER, Recipient
from mailiverse.crypto.keys import generate_private_key, public_key_der
from mailiverse.delivery.naming import mail_paths, new_key_base
from mailiverse.delivery.pipeline import Delivery, _Sealed, _store_all, _store_many, _StoreRequest
from mailiverse.spool import SpooledMessage
from mailiverse.store.db import Database
from mailiverse.store.errors import OverQuota
from mailiverse.store.groupcommit import Bulk
from mailiverse.store.quota import get_usage_txn, set_quota_txn
from mailiverse.store.schema import objects
from mailiverse.store.users import User, add_user_txn, get_user_txn

START_MS = 1_700_000_000_000
MESSAGE = b"From: s@example.net\r\nTo: alice@example.org\r\nSubject: hello\r\n\r\n" + b"a short body line\r\n" * 40


@pytest.fixture
def inbox(database: Database, tmp_path: Any) -> Iterator[Delivery]:
    """The real IInbox over the database, with users alice and bob."""
    from twisted.internet import reactor

    key = public_key_der(generate_private_key())
    with database.blocking_allowed():
        for name in ("alice", "bob"):
            database.transact_sync(add_user_txn, name, key, "v2")
    delivery = Delivery(database, lambda domain: domain == "example.org", tmp_dir=tmp_path, reactor=reactor)
    try:
        yield delivery
    finally:
        delivery.stop()


async def _recipient(inbox: Delivery, address: str) -> Recipient:
    found = await inbox.resolve(address)
    assert found is not None
    return found


def _deliver_all(inbox: Delivery, recipients: list[list[Recipient]]) -> list[Deferred[str]]:
    return [
        Deferred.fromCoroutine(inbox.deliver(SpooledMessage(size=len(MESSAGE), memory=MESSAGE), "s@x.net", group))
        for group in recipients
    ]


def _stored_bytes(conn: Any, user_id: int) -> int:
    return int(
        conn.execute(select(func.coalesce(func.sum(objects.c.size), 0)).where(objects.c.user_id == user_id)).scalar()
    )


def _submit(db: Database, requests: list[_StoreRequest]) -> list[Deferred[None]]:
    """Queue each request's write in one reactor turn, as Delivery.deliver does after sealing: the first
    finds the writer idle and goes alone, the rest wait together for the next batch."""
    return [
        Deferred.fromCoroutine(
            db.transact_grouped(
                functools.partial(_store_all, request=request),
                weight=sum(request.sizes),
                user_ids=[user.id for user in request.users],
                bulk=Bulk(_store_many, request),
            )
        )
        for request in requests
    ]


def _request(users: list[User], size: int = 900) -> _StoreRequest:
    key_base = new_key_base(START_MS)
    sealed = [
        _Sealed(user.id, path, io.BytesIO(secrets.token_bytes(size)))
        for user in users
        for path in mail_paths(key_base, INBOX_FOLDER)
    ]
    return _StoreRequest(users, sealed, START_MS, DEFAULT_QUOTA_BYTES, [size] * len(sealed))


async def _users(db: Database, *names: str) -> list[User]:
    found = [await db.run(get_user_txn, name) for name in names]
    assert all(user is not None for user in found)
    return [user for user in found if user is not None]


@pytest_twisted.ensureDeferred
async def test_a_batch_of_deliveries_shares_its_statements(database: Database, inbox: Delivery) -> None:
    """Twenty deliveries queued together: the nineteen that wait for the busy writer go in one batch, one
    insert of all their objects (the single path takes a savepoint and an insert per object)."""
    users = await _users(database, "alice", "bob")
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        await DeferredList(_submit(database, [_request(users) for _ in range(20)]), fireOnOneErrback=True)
    finally:
        event.remove(database.engine, "before_cursor_execute", record)
    object_inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT INTO OBJECTS ")]
    savepoints = [s for s in statements if s.lstrip().upper().startswith("SAVEPOINT")]
    # One insert (and one savepoint) per batch. SQLite has one writer: the first delivery alone, then
    # the other nineteen together. PostgreSQL runs a few batches at once, each taking what has queued.
    assert len(object_inserts) == len(savepoints)
    if database.dialect_name == "sqlite":
        assert len(object_inserts) == 2, object_inserts
    else:
        assert len(object_inserts) <= 8, object_inserts
    for user in users:
        assert await database.run(_count, user.id) == 40
        usage = await database.run(get_usage_txn, user.id)
        assert usage.used_bytes == 40 * 900 == await database.run(_stored_bytes, user.id)


@pytest_twisted.ensureDeferred
async def test_concurrent_deliveries_are_all_stored_and_counted(database: Database, inbox: Delivery) -> None:
    """Through the real Delivery (sealing on threads): twenty deliveries to two accounts at once."""
    alice = await _recipient(inbox, "alice@example.org")
    bob = await _recipient(inbox, "bob@example.org")
    results = await DeferredList(_deliver_all(inbox, [[alice, bob]] * 20), consumeErrors=True)
    assert all(ok for ok, _ in results)
    for account in (alice, bob):
        usage = await database.run(get_usage_txn, account.account.id)
        assert usage.used_bytes == await database.run(_stored_bytes, account.account.id)
        assert await database.run(_count, account.account.id) == 40


def _count(conn: Any, user_id: int) -> int:
    return int(conn.execute(select(func.count()).where(objects.c.user_id == user_id)).scalar())


@pytest_twisted.ensureDeferred
async def test_the_quota_is_checked_delivery_by_delivery_in_one_batch(database: Database, inbox: Delivery) -> None:
    """With room for one more message after the one the writer is busy with, of three deliveries queued
    behind it the first is stored and the other two fail with OverQuota; nothing of theirs is written and
    the usage matches what is stored."""
    (alice,) = await _users(database, "alice")
    await database.transact(set_quota_txn, alice.id, 2 * 1800 + 900)
    outcomes = []
    for delivery in _submit(database, [_request([alice]) for _ in range(4)]):
        try:
            await delivery
            outcomes.append("stored")
        except OverQuota:
            outcomes.append("full")
    if database.dialect_name == "sqlite":  # one writer: the batches run in queue order
        assert outcomes == ["stored", "stored", "full", "full"]
    else:  # several batches at once, each under its locks: which two fit is a race
        assert sorted(outcomes) == ["full", "full", "stored", "stored"]
    usage = await database.run(get_usage_txn, alice.id)
    assert usage.used_bytes == 2 * 1800 == await database.run(_stored_bytes, alice.id)
    assert await database.run(_count, alice.id) == 4
