"""Tests for session tokens, expiry, revocation, CSRF tokens and cookies in mailiverse.auth.sessions."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from mailiverse.auth.sessions import (
    SESSION_COOKIE,
    ISessionStore,
    MemorySessionStore,
    SessionManager,
    clear_session_cookie,
    new_token,
    session_cookie,
    token_hash,
)

Run = Callable[[Coroutine[Any, Any, Any]], Any]


@pytest.fixture
def store() -> MemorySessionStore:
    """An empty in-memory session store."""
    return MemorySessionStore()


@pytest.fixture
def manager(store: MemorySessionStore, server_secret: bytes, clock: Clock) -> SessionManager:
    """A session manager with a 10-minute idle and 1-hour absolute timeout on the fake clock."""
    return SessionManager(
        store,
        server_secret,
        clock,
        idle_timeout=600,
        absolute_timeout=3600,
        touch_interval=60,
    )


def test_memory_store_provides_interface(store: MemorySessionStore) -> None:
    """MemorySessionStore fully implements ISessionStore."""
    assert verifyObject(ISessionStore, store)


def test_token_shape() -> None:
    """A token is 32 random bytes in unpadded URL-safe base64, different every time."""
    token = new_token()
    assert len(token) == 43
    assert len(base64.urlsafe_b64decode(token + "=")) == 32
    assert new_token() != token


def test_create_and_lookup(manager: SessionManager, run: Run) -> None:
    """A new session's token finds the session again with the right user."""
    created = run(manager.create("alice"))
    found = run(manager.lookup(created.token))
    assert found is not None and found.username == "alice"
    assert found.session_id == created.record.session_id


def test_store_keeps_only_the_hash(manager: SessionManager, store: MemorySessionStore, run: Run) -> None:
    """The stored record holds SHA-256 of the token and nothing that contains the token."""
    created = run(manager.create("alice"))
    assert created.record.token_hash == hashlib.sha256(created.token.encode()).digest()
    assert created.record.token_hash == token_hash(created.token)
    record = run(store.get(token_hash(created.token)))
    assert created.token not in repr(record)
    assert created.token.encode() not in record.token_hash


@pytest.mark.parametrize("token", [None, "", "short", "!" * 43, "a" * 44, "é" * 43])
def test_malformed_tokens_find_nothing(manager: SessionManager, run: Run, token: str | None) -> None:
    """Missing or malformed tokens are rejected before any store lookup."""
    run(manager.create("alice"))
    assert run(manager.lookup(token)) is None
    assert run(manager.revoke(token)) is False


def test_unknown_token_finds_nothing(manager: SessionManager, run: Run) -> None:
    """A well-formed token that was never issued finds nothing."""
    run(manager.create("alice"))
    assert run(manager.lookup(new_token())) is None


def test_idle_expiry(manager: SessionManager, store: MemorySessionStore, clock: Clock, run: Run) -> None:
    """A session unused for the idle timeout is gone and deleted from the store."""
    created = run(manager.create("alice"))
    clock.advance(599)
    assert run(manager.lookup(created.token)) is not None
    clock.advance(600)
    assert run(manager.lookup(created.token)) is None
    assert len(store) == 0


def test_use_extends_idle_but_not_absolute(manager: SessionManager, clock: Clock, run: Run) -> None:
    """Regular use keeps a session alive until the absolute timeout, then it ends anyway."""
    created = run(manager.create("alice"))
    for _ in range(5):
        clock.advance(500)
        assert run(manager.lookup(created.token)) is not None
    clock.advance(500)
    assert run(manager.lookup(created.token)) is not None
    clock.advance(500)  # 3500 s after login
    assert run(manager.lookup(created.token)) is not None
    clock.advance(100)  # 3600 s: absolute limit
    assert run(manager.lookup(created.token)) is None


def test_touch_is_throttled(manager: SessionManager, store: MemorySessionStore, clock: Clock, run: Run) -> None:
    """last_seen is written only when at least touch_interval has passed."""
    created = run(manager.create("alice"))
    digest = token_hash(created.token)
    clock.advance(30)
    run(manager.lookup(created.token))
    assert run(store.get(digest)).last_seen == created.record.last_seen
    clock.advance(30)
    looked_up = run(manager.lookup(created.token))
    assert run(store.get(digest)).last_seen == created.record.last_seen + 60 == looked_up.last_seen


def test_logout_revokes(manager: SessionManager, run: Run) -> None:
    """After revoke the token no longer works, and a second revoke reports nothing to do."""
    created = run(manager.create("alice"))
    assert run(manager.revoke(created.token)) is True
    assert run(manager.lookup(created.token)) is None
    assert run(manager.revoke(created.token)) is False


def test_revoke_user_ends_all_their_sessions(manager: SessionManager, run: Run) -> None:
    """revoke_user ends every session of one user and leaves others alone."""
    first = run(manager.create("alice"))
    second = run(manager.create("alice"))
    other = run(manager.create("bob"))
    assert run(manager.revoke_user("alice")) == 2
    assert run(manager.lookup(first.token)) is None
    assert run(manager.lookup(second.token)) is None
    assert run(manager.lookup(other.token)) is not None


def test_purge_expired(manager: SessionManager, store: MemorySessionStore, clock: Clock, run: Run) -> None:
    """purge_expired removes idle and too-old sessions and keeps live ones."""
    idle = run(manager.create("alice"))
    clock.advance(300)
    live = run(manager.create("bob"))
    clock.advance(400)  # alice idle for 700 s, bob for 400 s
    assert run(manager.purge_expired()) == 1
    assert run(store.get(token_hash(idle.token))) is None
    assert run(store.get(token_hash(live.token))) is not None


def test_csrf_token_round_trip(manager: SessionManager, run: Run) -> None:
    """The CSRF token issued with a session checks out for that session only."""
    first = run(manager.create("alice"))
    second = run(manager.create("alice"))
    assert manager.check_csrf(first.record, first.csrf_token)
    assert manager.csrf_token(first.record) == first.csrf_token
    assert first.csrf_token != second.csrf_token
    assert not manager.check_csrf(second.record, first.csrf_token)


@pytest.mark.parametrize("supplied", [None, "", "x", "é" * 43, "a" * 1000])
def test_csrf_rejects_bad_values(manager: SessionManager, run: Run, supplied: str | None) -> None:
    """Missing, wrong, non-ASCII and huge CSRF values are refused."""
    created = run(manager.create("alice"))
    assert not manager.check_csrf(created.record, supplied)


def test_csrf_depends_on_server_secret(store: MemorySessionStore, clock: Clock, run: Run) -> None:
    """Another server secret gives another CSRF token for the same session id."""
    one = SessionManager(store, b"1" * 32, clock)
    two = SessionManager(store, b"2" * 32, clock)
    created = run(one.create("alice"))
    assert not two.check_csrf(created.record, created.csrf_token)


def test_cookie_attributes(manager: SessionManager) -> None:
    """The Set-Cookie value carries the token with HttpOnly, Secure, SameSite=Strict and Path=/."""
    token = new_token()
    value = session_cookie(token)
    assert value == f"{SESSION_COOKIE}={token}; HttpOnly; Secure; SameSite=Strict; Path=/"
    assert SESSION_COOKIE.startswith("__Host-")
    assert manager.cookie(token) == f"{SESSION_COOKIE}={token}; Max-Age=3600; HttpOnly; Secure; SameSite=Strict; Path=/"


def test_cookie_refuses_non_tokens() -> None:
    """Only well-formed tokens go into a cookie, so no header injection is possible."""
    with pytest.raises(ValueError):
        session_cookie("abc; Domain=evil.example")


def test_clear_cookie() -> None:
    """The logout cookie empties the value and expires it at once with the same attributes."""
    assert clear_session_cookie() == f"{SESSION_COOKIE}=; Max-Age=0; HttpOnly; Secure; SameSite=Strict; Path=/"


def test_bad_timeouts_are_refused(store: MemorySessionStore, server_secret: bytes) -> None:
    """An idle timeout longer than the absolute one is a configuration error."""
    with pytest.raises(ValueError):
        SessionManager(store, server_secret, idle_timeout=100, absolute_timeout=50)
