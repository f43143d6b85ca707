"""Rate limits shared through the metabase (store/ratebuckets.py): two front ends spend from one bucket."""

from __future__ import annotations

import os

import pytest
import pytest_twisted
from sqlalchemy import select
from twisted.internet import defer
from twisted.internet.defer import Deferred
from zope.interface.verify import verifyObject

from mailiverse.auth.ratelimit import (
    Budget,
    Decision,
    IRateLimiter,
    IRateLimits,
    LoginLimits,
    MemoryRateLimits,
    TokenBucketLimiter,
)
from mailiverse.store.db import Database
from mailiverse.store.ratebuckets import DatabaseRateLimits, bucket_key, load_rate_secret
from mailiverse.store.schema import rate_buckets
from mailiverse.submission.errors import SubmissionError
from mailiverse.submission.limits import SendLimit
from tests.support.database import shared_url, two_fronts  # noqa: F401 - fixtures

START = 1_700_000_000.0
Fronts = tuple[Database, Database]


class WallClock:
    """A settable wall clock both front ends read, as two hosts agreeing on the time would."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def _limits(fronts: Fronts, clock: WallClock) -> tuple[DatabaseRateLimits, DatabaseRateLimits]:
    """Each front end's shared limits, built as the appliance builds them (the secret read from the database)."""
    first, second = fronts
    return DatabaseRateLimits.open(first, clock), DatabaseRateLimits.open(second, clock)


def _rows(database: Database) -> list[tuple[bytes, float, float]]:
    with database.blocking_allowed():
        return database.run_sync(
            lambda conn: [
                (bytes(r.bucket), float(r.tokens), float(r.updated)) for r in conn.execute(select(rate_buckets))
            ]
        )


def test_both_kinds_provide_the_interfaces(two_fronts: Fronts) -> None:  # noqa: F811
    """The memory and the database limiters and their factories provide IRateLimiter and IRateLimits."""
    shared = DatabaseRateLimits(two_fronts[0], os.urandom(32))
    memory = MemoryRateLimits()
    assert verifyObject(IRateLimits, shared) and verifyObject(IRateLimits, memory)
    assert verifyObject(IRateLimiter, shared.limiter("x", Budget(1, 1)))
    assert verifyObject(IRateLimiter, TokenBucketLimiter(Budget(1, 1)))


@pytest_twisted.ensureDeferred
async def test_two_front_ends_spend_from_one_bucket(two_fronts: Fronts) -> None:  # noqa: F811
    """Tokens one front end spends are gone on the other; the refusal's retry time is the refill time."""
    clock = WallClock()
    first_limits, second_limits = _limits(two_fronts, clock)
    budget = Budget(attempts=5, period=50.0)
    first, second = first_limits.limiter("login-account", budget), second_limits.limiter("login-account", budget)
    assert (await first.spend("alice", 3)).allowed
    assert (await second.spend("alice", 2)).allowed
    refused = await second.spend("alice")
    assert refused == Decision(False, pytest.approx(10.0))
    assert await first.peek("alice") == refused
    assert (await first.spend("bob", 5)).allowed  # another key has its own bucket
    other = second_limits.limiter("login-address", budget)
    assert (await other.spend("alice", 5)).allowed  # and another limiter's key of the same text too


@pytest_twisted.ensureDeferred
async def test_buckets_refill_with_time_and_take_back_refunds(two_fronts: Fronts) -> None:  # noqa: F811
    """A bucket regains attempts/period tokens a second, up to the budget; give_back and forget refill it."""
    clock = WallClock()
    first_limits, second_limits = _limits(two_fronts, clock)
    budget = Budget(attempts=4, period=40.0)
    first, second = first_limits.limiter("send-per-hour", budget), second_limits.limiter("send-per-hour", budget)
    assert (await first.spend("carol", 4)).allowed
    assert not (await second.peek("carol")).allowed
    clock.now += 10.0  # one token back
    assert (await second.spend("carol")).allowed
    assert not (await first.spend("carol")).allowed
    clock.now += 1000.0  # never past the budget
    assert (await first.spend("carol", 4)).allowed and not (await first.peek("carol")).allowed
    await second.give_back("carol", 3)
    assert (await first.peek("carol", 3)).allowed and not (await first.peek("carol", 4)).allowed
    await second.give_back("carol", 50)
    assert (await first.spend("carol", 4)).allowed
    await first.forget("carol")
    assert (await second.peek("carol", 4)).allowed
    clock.now -= 500.0  # a clock stepping backwards mints no tokens
    assert (await second.spend("carol", 4)).allowed and not (await first.peek("carol")).allowed


@pytest_twisted.ensureDeferred
async def test_purge_drops_only_buckets_that_are_full_again(two_fronts: Fronts) -> None:  # noqa: F811
    """Buckets idle for a day (or the longest period, if longer) are deleted; a live one stays and still refuses."""
    clock = WallClock()
    first_limits, second_limits = _limits(two_fronts, clock)
    short = first_limits.limiter("short", Budget(attempts=1, period=60.0))
    long = second_limits.limiter("long", Budget(attempts=1, period=2 * 86400.0))
    assert (await short.spend("old")).allowed
    clock.now += 86400.0 - 1
    assert await first_limits.purge() == 0  # not a whole day yet
    assert (await long.spend("recent")).allowed
    clock.now += 2
    assert await first_limits.purge() == 1 and len(_rows(two_fronts[1])) == 1  # "old" was full: gone
    assert (await short.peek("old")).allowed
    clock.now += 86400.0
    assert await second_limits.purge() == 0  # this front end knows a two-day budget: "recent" is still short
    assert not (await long.peek("recent")).allowed
    clock.now += 86400.0
    assert await second_limits.purge() == 1 and _rows(two_fronts[0]) == []


@pytest_twisted.ensureDeferred
async def test_the_table_holds_keyed_hashes_never_names_or_addresses(two_fronts: Fronts) -> None:  # noqa: F811
    """Rows are keyed by HMAC-SHA256 under the shared secret: no user name or address in clear."""
    clock = WallClock()
    first_limits, _ = _limits(two_fronts, clock)
    logins = LoginLimits.shared(first_limits)
    await logins.failed("alice.wonderland", "2001:db8:1:2::7")
    await logins.failed("alice.wonderland", "192.0.2.44", device="device-1234")
    secret = load_rate_secret(two_fronts[1])
    assert len(secret) == 32
    rows = _rows(two_fronts[0])
    keys = {bucket for bucket, _tokens, _updated in rows}
    assert keys == {
        bucket_key(secret, "login-account", "alice.wonderland"),
        bucket_key(secret, "login-address", "2001:db8:1:2::/64"),
        bucket_key(secret, "login-device", "alice.wonderland\x00device-1234"),
    }
    for bucket, _tokens, _updated in rows:
        assert len(bucket) == 32
        for clear in (b"alice", b"wonderland", b"2001:db8", b"device-1234"):
            assert clear not in bucket
    assert bucket_key(os.urandom(32), "login-account", "alice.wonderland") not in keys


@pytest_twisted.ensureDeferred
async def test_parallel_spends_on_two_front_ends_never_overspend(two_fronts: Fronts) -> None:  # noqa: F811
    """Sixty spends at once from two front ends' thread pools on a budget of 10: exactly 10 succeed."""
    clock = WallClock()
    first_limits, second_limits = _limits(two_fronts, clock)
    budget = Budget(attempts=10, period=3600.0)
    limiters = [first_limits.limiter("burst", budget), second_limits.limiter("burst", budget)]
    spends = [Deferred.fromCoroutine(limiters[n % 2].spend("mallory")) for n in range(60)]
    decisions = await defer.gatherResults(spends, consumeErrors=True)
    assert sum(d.allowed for d in decisions) == 10
    (row,) = _rows(two_fronts[0])
    assert row[1] == pytest.approx(0.0)


@pytest_twisted.ensureDeferred
async def test_parallel_spends_of_many_tokens_never_overspend(two_fronts: Fronts) -> None:  # noqa: F811
    """Concurrent multi-token spends (a message's recipients) take all or nothing, never more than the budget."""
    clock = WallClock()
    first_limits, second_limits = _limits(two_fronts, clock)
    budget = Budget(attempts=20, period=3600.0)
    limiters = [first_limits.limiter("send", budget), second_limits.limiter("send", budget)]
    costs = [3, 7, 5, 4, 6, 2, 8, 1, 9, 3, 5, 4]
    spends = [Deferred.fromCoroutine(limiters[n % 2].spend("dave", cost)) for n, cost in enumerate(costs)]
    decisions = await defer.gatherResults(spends, consumeErrors=True)
    spent = sum(cost for cost, decision in zip(costs, decisions, strict=True) if decision.allowed)
    refused = [cost for cost, decision in zip(costs, decisions, strict=True) if not decision.allowed]
    assert spent <= 20
    # A spend was refused only for want of tokens, and the count only fell after it.
    assert refused and all(cost > 20 - spent for cost in refused)
    (row,) = _rows(two_fronts[1])
    assert row[1] == pytest.approx(20 - spent)


@pytest_twisted.ensureDeferred
async def test_failed_logins_on_one_front_end_throttle_the_other(two_fronts: Fronts) -> None:  # noqa: F811
    """An account's failures spread over two front ends lock it on both; a known device stays admitted."""
    clock = WallClock()
    first_limits, second_limits = _limits(two_fronts, clock)
    per = Budget(attempts=4, period=400.0)
    first = LoginLimits.shared(first_limits, per, Budget(100, 400.0), per)
    second = LoginLimits.shared(second_limits, per, Budget(100, 400.0), per)
    for n in range(4):
        await (first if n % 2 else second).failed("erin", f"198.51.100.{n}")
    refused = await second.admit("erin", "203.0.113.5")
    assert not refused.allowed and refused.retry_after == pytest.approx(100.0)
    assert not (await first.admit("erin", "203.0.113.6")).allowed
    assert (await first.admit("erin", "203.0.113.6", "known-device")).allowed
    assert (await second.admit("frank", "203.0.113.5")).allowed


@pytest_twisted.ensureDeferred
async def test_the_hourly_send_limit_is_one_budget_over_front_ends(two_fronts: Fronts) -> None:  # noqa: F811
    """Recipients reserved on one front end count on the other; a release gives them back to both."""
    clock = WallClock()
    first_limits, second_limits = _limits(two_fronts, clock)
    first, second = SendLimit(10, rate_limits=first_limits), SendLimit(10, rate_limits=second_limits)
    await first.reserve("grace", 6)
    with pytest.raises(SubmissionError) as refused:
        await second.reserve("grace", 5)
    assert refused.value.code == "rate_limited"
    await first.release("grace", 6)
    await second.reserve("grace", 10)
