"""Tests for the token-bucket login limits in mailiverse.auth.ratelimit, driven by a fake clock."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from mailiverse.auth.ratelimit import (
    Budget,
    Decision,
    LoginThrottle,
    TokenBucketLimiter,
    address_key,
)


def test_budget_allows_burst_then_refuses(clock: Clock) -> None:
    """Exactly `attempts` consumes succeed at once; the next is refused with a retry-after."""
    limiter = TokenBucketLimiter(Budget(attempts=3, period=30), clock)
    assert [limiter.consume("k").allowed for _ in range(3)] == [True, True, True]
    decision = limiter.consume("k")
    assert not decision.allowed
    assert decision.retry_after == pytest.approx(10.0)
    assert decision.retry_after_seconds == 10


def test_tokens_come_back_with_time(clock: Clock) -> None:
    """After the retry-after has passed, one more attempt is allowed, and only one."""
    limiter = TokenBucketLimiter(Budget(attempts=2, period=20), clock)
    limiter.consume("k")
    limiter.consume("k")
    retry = limiter.check("k").retry_after
    clock.advance(retry - 0.5)
    assert not limiter.check("k").allowed
    clock.advance(0.5)
    assert limiter.consume("k").allowed
    assert not limiter.consume("k").allowed


def test_bucket_never_exceeds_capacity(clock: Clock) -> None:
    """A long idle time refills to the budget and no further."""
    limiter = TokenBucketLimiter(Budget(attempts=2, period=10), clock)
    limiter.consume("k")
    clock.advance(10_000)
    assert [limiter.consume("k").allowed for _ in range(3)] == [True, True, False]


def test_check_does_not_spend(clock: Clock) -> None:
    """check only looks; it never uses up the budget."""
    limiter = TokenBucketLimiter(Budget(attempts=1, period=10), clock)
    for _ in range(5):
        assert limiter.check("k").allowed
    assert limiter.consume("k").allowed


def test_keys_are_independent(clock: Clock) -> None:
    """Exhausting one key leaves another untouched."""
    limiter = TokenBucketLimiter(Budget(attempts=1, period=10), clock)
    limiter.consume("a")
    assert not limiter.check("a").allowed
    assert limiter.check("b").allowed


def test_reset_restores_budget(clock: Clock) -> None:
    """reset gives a key its full budget back."""
    limiter = TokenBucketLimiter(Budget(attempts=1, period=10), clock)
    limiter.consume("a")
    limiter.reset("a")
    assert limiter.check("a").allowed


def test_clock_going_backwards_does_not_mint_tokens(clock: Clock) -> None:
    """A clock that steps back gives no extra attempts."""
    now = [1000.0]
    limiter = TokenBucketLimiter(Budget(attempts=1, period=10), lambda: now[0])
    limiter.consume("a")
    now[0] = 500.0
    assert not limiter.consume("a").allowed


def test_memory_is_bounded(clock: Clock) -> None:
    """However many keys are seen, at most max_keys are tracked."""
    limiter = TokenBucketLimiter(Budget(attempts=5, period=100), clock, max_keys=50)
    for index in range(1000):
        limiter.consume(f"key{index}")
    assert len(limiter) == 50


def test_refilled_keys_are_evicted_before_live_ones(clock: Clock) -> None:
    """When full, a key whose bucket has refilled is dropped before one that is still throttled."""
    limiter = TokenBucketLimiter(Budget(attempts=1, period=10), clock, max_keys=2)
    limiter.consume("old")
    clock.advance(20)
    limiter.consume("victim")
    limiter.consume("new")
    assert not limiter.check("victim").allowed
    assert len(limiter) == 2


def test_bad_budget_is_refused() -> None:
    """Budgets need a positive attempt count and period."""
    with pytest.raises(ValueError):
        Budget(attempts=0, period=10)
    with pytest.raises(ValueError):
        Budget(attempts=1, period=0)


@pytest.mark.parametrize(
    "address, key",
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.9", "192.0.2.9"),
        ("fe80::1%eth0", "fe80::/64"),
    ],
)
def test_address_keys(address: str, key: str) -> None:
    """IPv4 is keyed per address, IPv6 per /64, IPv4-mapped IPv6 as IPv4."""
    assert address_key(address) == key


def test_address_key_rejects_garbage() -> None:
    """Text that is not an IP address is a ValueError."""
    with pytest.raises(ValueError):
        address_key("example.org")


def test_login_throttle_per_account(clock: Clock) -> None:
    """Failures against one account from many addresses exhaust the account's budget only."""
    throttle = LoginThrottle(clock, per_account=Budget(3, 300), per_address=Budget(100, 300))
    for index in range(3):
        throttle.record_failure("alice", f"198.51.100.{index}")
    decision = throttle.check("alice", "203.0.113.1")
    assert not decision.allowed and decision.retry_after == pytest.approx(100.0)
    assert throttle.check("bob", "203.0.113.1").allowed


def test_login_throttle_per_address(clock: Clock) -> None:
    """Failures from one IPv6 /64 across many accounts exhaust that network's budget only."""
    throttle = LoginThrottle(clock, per_account=Budget(100, 300), per_address=Budget(4, 400))
    for index in range(4):
        throttle.record_failure(f"user{index}", f"2001:db8::{index + 1}")
    assert not throttle.check("fresh", "2001:db8::ffff").allowed
    assert throttle.check("fresh", "2001:db8:0:1::1").allowed


def test_login_throttle_retry_after_is_the_later_limit(clock: Clock) -> None:
    """With both budgets exhausted, retry-after is the longer of the two waits."""
    throttle = LoginThrottle(clock, per_account=Budget(1, 60), per_address=Budget(1, 600))
    throttle.record_failure("carol", "192.0.2.1")
    decision = throttle.check("carol", "192.0.2.1")
    assert decision == Decision(False, pytest.approx(600.0))
    clock.advance(600)
    assert throttle.check("carol", "192.0.2.1").allowed


def test_an_attempt_may_cost_several_tokens_and_be_refunded(clock: Clock) -> None:
    """consume(cost) spends all of the cost or nothing; refund gives tokens back, never past the budget."""
    limiter = TokenBucketLimiter(Budget(attempts=5, period=50), clock)
    assert limiter.consume("k", 3).allowed
    refused = limiter.consume("k", 3)
    assert not refused.allowed and refused.retry_after == pytest.approx(10.0)
    assert limiter.check("k", 2).allowed
    limiter.refund("k", 3)
    assert limiter.consume("k", 5).allowed
    limiter.refund("k", 50)
    assert limiter.consume("k", 5).allowed and not limiter.check("k").allowed
