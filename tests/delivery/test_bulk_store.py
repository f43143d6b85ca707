"""Small deliveries queued together are written in one bulk step, with every check of the single path.

On SQLite and PostgreSQL: a batch's deliveries share a handful of statements (not a savepoint and
six statements each), quotas are checked delivery by delivery in queue order, and the accounts'
usage is exactly the bytes stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from sqlalchemy import event, func, select
from twisted.internet.defer import Deferred, DeferredList

from mailiverse.contracts import MailboxFull, Recipient
from mailiverse.crypto.keys import generate_private_key, public_key_der
from mailiverse.delivery.pipeline import Delivery
from mailiverse.spool import SpooledMessage
from mailiverse.store.db import Database
from mailiverse.store.quota import get_usage_txn, set_quota_txn
from mailiverse.store.schema import objects
from mailiverse.store.users import add_user_txn
from tests.support.database import database, database_url, postgres_session_url  # noqa: F401 - fixtures

MESSAGE = b"From: s@example.net\r\nTo: alice@example.org\r\nSubject: hello\r\n\r\n" + b"a short body line\r\n" * 40


@pytest.fixture
def inbox(database: Database, tmp_path: Any) -> Iterator[Delivery]:  # noqa: F811 - the fixture
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


@pytest_twisted.ensureDeferred
async def test_concurrent_deliveries_share_their_statements(database: Database, inbox: Delivery) -> None:  # noqa: F811
    """Twenty deliveries at once: every object stored, in far fewer object inserts than deliveries."""
    alice = await _recipient(inbox, "alice@example.org")
    bob = await _recipient(inbox, "bob@example.org")
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        results = await DeferredList(_deliver_all(inbox, [[alice, bob]] * 20), consumeErrors=True)
    finally:
        event.remove(database.engine, "before_cursor_execute", record)
    assert all(ok for ok, _ in results)
    object_inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT INTO OBJECTS ")]
    savepoints = [s for s in statements if s.lstrip().upper().startswith("SAVEPOINT")]
    # One per batch: the first delivery finds the writer idle and goes alone, the other 19 queue for
    # the next batches (on PostgreSQL several batches run at once). Delivered one by one, the 40
    # objects would take 40 inserts and 20 savepoints.
    assert len(object_inserts) <= 8, object_inserts
    assert len(savepoints) <= 8
    for account in (alice, bob):
        usage = await database.run(get_usage_txn, account.account.id)
        assert usage.used_bytes == await database.run(_stored_bytes, account.account.id)
        assert await database.run(lambda conn, uid=account.account.id: _count(conn, uid)) == 40


def _count(conn: Any, user_id: int) -> int:
    return int(conn.execute(select(func.count()).where(objects.c.user_id == user_id)).scalar())


@pytest_twisted.ensureDeferred
async def test_the_quota_is_checked_delivery_by_delivery_in_one_batch(database: Database, inbox: Delivery) -> None:  # noqa: F811
    """With room for one more message, of three deliveries in one batch the first is stored and the
    other two get MailboxFull; nothing of theirs is written and the usage matches what is stored."""
    alice = await _recipient(inbox, "alice@example.org")
    user_id = alice.account.id
    await _deliver_all(inbox, [[alice]])[0]
    one = (await database.run(get_usage_txn, user_id)).used_bytes
    await database.transact(set_quota_txn, user_id, 3 * one + one // 2)
    blocker = _deliver_all(inbox, [[alice]])  # holds the writer, so the next three queue together
    queued = _deliver_all(inbox, [[alice]] * 3)
    await blocker[0]
    outcomes = []
    for delivery in queued:
        try:
            await delivery
            outcomes.append("stored")
        except MailboxFull:
            outcomes.append("full")
    assert outcomes == ["stored", "full", "full"]
    usage = await database.run(get_usage_txn, user_id)
    assert usage.used_bytes == await database.run(_stored_bytes, user_id)
    assert await database.run(_count, user_id) == 6
