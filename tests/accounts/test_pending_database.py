"""DatabasePendingLogins on SQLite and PostgreSQL: shared between front ends,
one-shot under races, expiring, capped, sealed."""

from __future__ import annotations

import hashlib
import os

import pytest
import pytest_twisted
from sqlalchemy import select, update
from twisted.internet import defer
from zope.interface.verify import verifyObject

from mailiverse.accounts.pending import DatabasePendingLogins
from mailiverse.auth.pending import IPendingLogins
from mailiverse.auth.srp6a import (
    AuthFailed,
    ClientLogin,
    LoginChallenge,
    begin_login,
    create_verifier,
)
from mailiverse.store import pending as repo
from mailiverse.store.db import Database
from mailiverse.store.schema import pending_logins

SECRET = os.urandom(32)
START = 1_700_000_000.0


class Wall:
    """A settable wall clock in seconds shared by both front ends."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def _keepers(
    fronts: tuple[Database, Database], clock: Wall, **options: int
) -> tuple[DatabasePendingLogins, DatabasePendingLogins]:
    return (
        DatabasePendingLogins(fronts[0], SECRET, clock=clock, **options),
        DatabasePendingLogins(fronts[1], SECRET, clock=clock, **options),
    )


def _challenge(name: str = "alice") -> tuple[LoginChallenge, ClientLogin]:
    key = os.urandom(32)
    salt, verifier = create_verifier(name, key)
    return begin_login(SECRET, name, (salt, verifier)), ClientLogin(name, key)


def _rows(database: Database) -> list[tuple[bytes, int, bytes]]:
    with database.blocking_allowed():
        return [
            (bytes(row[0]), int(row[1]), bytes(row[2]))
            for row in database.run_sync(lambda conn: conn.execute(select(pending_logins)).all())
        ]


def test_provides_interface(two_fronts: tuple[Database, Database]) -> None:
    """DatabasePendingLogins provides IPendingLogins."""
    assert verifyObject(IPendingLogins, DatabasePendingLogins(two_fronts[0], SECRET))


@pytest_twisted.ensureDeferred
async def test_started_on_one_front_finished_on_the_other(two_fronts: tuple[Database, Database]) -> None:
    """A challenge put by front end A is taken by front end B and completes the SRP login there."""
    clock = Wall()
    first, second = _keepers(two_fronts, clock)
    challenge, login = _challenge()
    handle = await first.put(challenge)
    clock.now += 5
    restored = await second.take(handle)
    assert restored is not challenge and restored.B == challenge.B
    login.verify_session(restored.verify(login.A, login.process_challenge(restored.salt, restored.B)))
    for keeper in (first, second):
        with pytest.raises(AuthFailed):
            await keeper.take(handle)


@pytest_twisted.ensureDeferred
async def test_concurrent_takes_succeed_once(two_fronts: tuple[Database, Database]) -> None:
    """For each of many handles, two front ends taking it at the same moment: exactly one gets the challenge."""
    clock = Wall()
    first, second = _keepers(two_fronts, clock)
    handles = [await first.put(_challenge(f"user{i}")[0]) for i in range(12)]

    async def attempt(keeper: DatabasePendingLogins, handle: str) -> bool:
        try:
            await keeper.take(handle)
        except AuthFailed:
            return False
        return True

    racers = []
    for handle in handles:
        for keeper in (first, second, first, second):
            racers.append(defer.Deferred.fromCoroutine(attempt(keeper, handle)))
    outcomes = await defer.gatherResults(racers)
    per_handle = [sum(outcomes[i * 4 : i * 4 + 4]) for i in range(len(handles))]
    assert per_handle == [1] * len(handles)
    assert await first.count() == 0


@pytest_twisted.ensureDeferred
async def test_expiry_follows_the_clock(two_fronts: tuple[Database, Database]) -> None:
    """A handle works just inside the TTL and not at it; purge removes expired rows only."""
    clock = Wall()
    first, second = _keepers(two_fronts, clock)
    early = await first.put(_challenge()[0])
    late = await first.put(_challenge()[0])
    clock.now += 119.9
    assert (await second.take(early)).username == "alice"
    clock.now += 0.1
    with pytest.raises(AuthFailed):
        await second.take(late)
    assert _rows(two_fronts[0]) == []
    kept = await first.put(_challenge()[0])
    stale = await first.put(_challenge()[0])
    assert await second.count() == 2
    clock.now += 60
    fresh = await second.put(_challenge()[0])
    clock.now += 61
    assert await second.purge_expired() == 2
    assert await first.count() == 1
    for handle in (kept, stale):
        with pytest.raises(AuthFailed):
            await first.take(handle)
    assert (await first.take(fresh)).username == "alice"


@pytest_twisted.ensureDeferred
async def test_cap_evicts_the_oldest(two_fronts: tuple[Database, Database]) -> None:
    """The table never holds more than max_entries; the oldest challenges go first, whoever put them."""
    clock = Wall()
    first, second = _keepers(two_fronts, clock, max_entries=3)
    handles = []
    for index in range(5):
        clock.now += 1
        handles.append(await (first if index % 2 else second).put(_challenge()[0]))
    assert await first.count() == 3
    for handle in handles[:2]:
        with pytest.raises(AuthFailed):
            await second.take(handle)
    for handle in handles[2:]:
        assert (await first.take(handle)).username == "alice"


@pytest.mark.parametrize("handle", ["", "x" * 65, "nonexistent", "é" * 10, "A" * 43])
@pytest_twisted.ensureDeferred
async def test_unknown_or_malformed_handles_fail(two_fronts: tuple[Database, Database], handle: str) -> None:
    """Unknown, empty, oversized and non-ASCII handles are all the same AuthFailed, and touch no row."""
    clock = Wall()
    first, second = _keepers(two_fronts, clock)
    await first.put(_challenge()[0])
    with pytest.raises(AuthFailed):
        await second.take(handle)
    assert await first.count() == 1


@pytest_twisted.ensureDeferred
async def test_database_holds_no_usable_secret(two_fronts: tuple[Database, Database]) -> None:
    """A row holds SHA-256 of the handle and a sealed state that reveals neither b, the name nor the handle."""
    clock = Wall()
    first, _ = _keepers(two_fronts, clock)
    challenge, _login = _challenge("mallory")
    b = challenge._b
    assert b is not None
    handle = await first.put(challenge)
    [(digest, expires_ms, sealed)] = _rows(two_fronts[0])
    assert digest == hashlib.sha256(handle.encode("ascii")).digest()
    assert expires_ms == int(START * 1000) + 120_000
    for secret_part in (b.to_bytes(32, "big")[:8], b"mallory", handle.encode("ascii")[:16]):
        assert secret_part not in sealed


@pytest_twisted.ensureDeferred
async def test_tampered_rows_are_auth_failed(two_fronts: tuple[Database, Database]) -> None:
    """Changed sealed bytes, a moved deadline or a state swapped from another row all give AuthFailed."""
    clock = Wall()
    first, second = _keepers(two_fronts, clock)
    flipped, extended, swapped, donor = [await first.put(_challenge()[0]) for _ in range(4)]
    rows = {digest: sealed for digest, _, sealed in _rows(two_fronts[0])}

    def digest(handle: str) -> bytes:
        return hashlib.sha256(handle.encode("ascii")).digest()

    bad = bytearray(rows[digest(flipped)])
    bad[100] ^= 0x80
    changes = [
        (flipped, {"sealed_state": bytes(bad)}),
        (extended, {"expires_ms": int(START * 1000) + 3_600_000}),
        (swapped, {"sealed_state": rows[digest(donor)]}),
    ]
    with two_fronts[0].blocking_allowed():
        for handle, values in changes:
            two_fronts[0].transact_sync(
                lambda conn, h=handle, v=values: conn.execute(
                    update(pending_logins).where(pending_logins.c.handle_hash == digest(h)).values(**v)
                )
            )
    for handle in (flipped, extended, swapped):
        with pytest.raises(AuthFailed):
            await second.take(handle)
    assert (await second.take(donor)).username == "alice"


@pytest_twisted.ensureDeferred
async def test_front_end_with_another_secret_cannot_open(two_fronts: tuple[Database, Database]) -> None:
    """A front end holding a different server secret gets AuthFailed, and the handle is used up."""
    clock = Wall()
    first = DatabasePendingLogins(two_fronts[0], SECRET, clock=clock)
    stranger = DatabasePendingLogins(two_fronts[1], os.urandom(32), clock=clock)
    handle = await first.put(_challenge()[0])
    with pytest.raises(AuthFailed):
        await stranger.take(handle)
    with pytest.raises(AuthFailed):
        await first.take(handle)


def test_repository_refuses_bad_input(two_fronts: tuple[Database, Database]) -> None:
    """The repository refuses a digest of the wrong size, an empty or huge state and a zero cap."""
    from mailiverse.store.errors import InvalidInput

    database = two_fronts[0]
    good = hashlib.sha256(b"h").digest()
    with database.blocking_allowed():
        for args, options in [
            ((b"short", 1, b"s"), {"now_ms": 0, "max_entries": 5}),
            ((good, 1, b""), {"now_ms": 0, "max_entries": 5}),
            ((good, 1, b"s" * (repo.MAX_SEALED_BYTES + 1)), {"now_ms": 0, "max_entries": 5}),
            ((good, 1, b"s"), {"now_ms": 0, "max_entries": 0}),
        ]:
            with pytest.raises(InvalidInput):
                database.transact_sync(repo.add_pending_login_txn, *args, **options)
        with pytest.raises(InvalidInput):
            database.transact_sync(repo.take_pending_login_txn, b"short")
        assert database.run_sync(repo.count_pending_logins_txn) == 0


def test_bad_parameters_are_refused(two_fronts: tuple[Database, Database]) -> None:
    """A zero TTL, an empty cap or a short server secret is a configuration error."""
    for kwargs in ({"ttl": 0}, {"max_entries": 0}):
        with pytest.raises(ValueError):
            DatabasePendingLogins(two_fronts[0], SECRET, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        DatabasePendingLogins(two_fronts[0], b"short")
