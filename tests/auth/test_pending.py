"""Tests for PendingLogins, the store of SRP challenges between the two login round trips."""

from __future__ import annotations

import os

import pytest
from twisted.internet.task import Clock

from mailiverse.auth.pending import PendingLogins
from mailiverse.auth.srp6a import (
    AuthFailed,
    ClientLogin,
    LoginChallenge,
    create_verifier,
    start_login,
)


def _challenge(name: str = "alice") -> LoginChallenge:
    salt, verifier = create_verifier(name, os.urandom(32))
    return start_login(name, salt, verifier)[0]


def test_take_returns_the_stored_challenge(clock: Clock) -> None:
    """A handle from put gives back the very challenge that was stored."""
    pending = PendingLogins(clock)
    challenge = _challenge()
    handle = pending.put(challenge)
    assert len(handle) == 43
    assert pending.take(handle) is challenge
    assert len(pending) == 0


def test_full_login_through_pending_store(clock: Clock) -> None:
    """Both round trips work when the challenge waits in the store in between."""
    key = os.urandom(32)
    salt, verifier = create_verifier("bob", key)
    login = ClientLogin("bob", key)
    pending = PendingLogins(clock)
    challenge, B = start_login("bob", salt, verifier)
    handle = pending.put(challenge)
    clock.advance(5)
    login.verify_session(pending.take(handle).verify(login.A, login.process_challenge(salt, B)))


def test_replayed_handle_fails(clock: Clock) -> None:
    """A handle works once; the second use is an AuthFailed."""
    pending = PendingLogins(clock)
    handle = pending.put(_challenge())
    pending.take(handle)
    with pytest.raises(AuthFailed):
        pending.take(handle)


def test_expired_handle_fails(clock: Clock) -> None:
    """A challenge older than the TTL is refused even if it is still in memory."""
    pending = PendingLogins(clock, ttl=60)
    handle = pending.put(_challenge())
    clock.advance(60)
    with pytest.raises(AuthFailed):
        pending.take(handle)


def test_just_before_expiry_still_works(clock: Clock) -> None:
    """A challenge taken just inside the TTL is returned."""
    pending = PendingLogins(clock, ttl=60)
    challenge = _challenge()
    handle = pending.put(challenge)
    clock.advance(59.9)
    assert pending.take(handle) is challenge


@pytest.mark.parametrize("handle", ["", "x" * 65, "nonexistent", "é" * 10])
def test_unknown_or_malformed_handle_fails(clock: Clock, handle: str) -> None:
    """Unknown, empty, oversized and non-ASCII handles are the same AuthFailed."""
    pending = PendingLogins(clock)
    pending.put(_challenge())
    with pytest.raises(AuthFailed):
        pending.take(handle)


def test_size_is_capped_and_oldest_evicted(clock: Clock) -> None:
    """The store never holds more than max_entries; the oldest challenge goes first."""
    pending = PendingLogins(clock, max_entries=3)
    challenge = _challenge()
    handles = [pending.put(challenge) for _ in range(5)]
    assert len(pending) == 3
    for handle in handles[:2]:
        with pytest.raises(AuthFailed):
            pending.take(handle)
    for handle in handles[2:]:
        assert pending.take(handle) is challenge


def test_expired_entries_are_dropped_on_put(clock: Clock) -> None:
    """Expired challenges free their memory when new ones arrive."""
    pending = PendingLogins(clock, ttl=10)
    challenge = _challenge()
    for _ in range(4):
        pending.put(challenge)
    clock.advance(11)
    pending.put(challenge)
    assert len(pending) == 1


def test_bad_parameters_are_refused() -> None:
    """A zero TTL or an empty cap is a configuration error."""
    with pytest.raises(ValueError):
        PendingLogins(ttl=0)
    with pytest.raises(ValueError):
        PendingLogins(max_entries=0)
