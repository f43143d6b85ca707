"""Account tables on both backends: invites are one-time, secrets are shared, database sessions follow ISessionStore."""

from __future__ import annotations

import pytest_twisted
from zope.interface.verify import verifyObject

from mailiverse.accounts.sessions import DatabaseSessionStore
from mailiverse.auth import ISessionStore, SessionManager
from mailiverse.store import accounts as repo
from mailiverse.store.db import Database


def test_database_session_store_provides_interface(database: Database) -> None:
    """DatabaseSessionStore provides ISessionStore."""
    assert verifyObject(ISessionStore, DatabaseSessionStore(database))


def test_secret_created_once(database: Database) -> None:
    """ensure_secret makes the secret once; every later call (another front end) reads the same bytes."""
    with database.blocking_allowed():
        first = database.transact_sync(repo.ensure_secret_txn, "auth")
        second = database.transact_sync(repo.ensure_secret_txn, "auth")
    assert first == second and len(first) == 32


def test_invite_consumed_once(database: Database) -> None:
    """An invite is consumed by one user only, and an expired one never."""
    with database.blocking_allowed():
        code, invite = database.transact_sync(repo.create_invite_txn, expires_ms=None, now_ms=1000)
        expired, _ = database.transact_sync(repo.create_invite_txn, expires_ms=2000, now_ms=1000)
        assert database.transact_sync(repo.consume_invite_txn, code, "alice", 1500) is True
        assert database.transact_sync(repo.consume_invite_txn, code, "bob", 1600) is False
        assert database.transact_sync(repo.consume_invite_txn, expired, "bob", 2500) is False
        assert database.transact_sync(repo.consume_invite_txn, "x" * 100, "bob", 1600) is False
        listed = database.run_sync(repo.list_invites_txn)
    assert [(i.ref, i.used_by) for i in listed if i.used_by] == [(invite.ref, "alice")]


@pytest_twisted.ensureDeferred
async def test_database_sessions_lifecycle(database: Database) -> None:
    """A session made by one manager is seen by another over the same database, and revocation ends it for both."""
    now = [1_000_000.0]
    secret = b"s" * 32
    first = SessionManager(DatabaseSessionStore(database), secret, clock=lambda: now[0])
    second = SessionManager(DatabaseSessionStore(database), secret, clock=lambda: now[0])
    made = await first.create("alice")
    record = await second.lookup(made.token)
    assert record is not None and record.username == "alice"
    assert second.check_csrf(record, made.csrf_token)
    other = await first.create("alice")
    assert await second.revoke_user("alice") == 2
    assert await first.lookup(made.token) is None
    assert await first.lookup(other.token) is None
    stale = await first.create("bob")
    now[0] += first.idle_timeout + 1
    assert await second.purge_expired() == 1
    assert await first.lookup(stale.token) is None


def test_invite_codes_never_start_with_a_dash() -> None:
    """A code starting with '-' would read as an option in `--invite CODE`; about 1 in 64 did."""
    codes = [repo.new_invite_code() for _ in range(3000)]
    assert not [c for c in codes if c.startswith("-")]
    assert len(set(codes)) == len(codes) and all(len(c) == 22 for c in codes)
