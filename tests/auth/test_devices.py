"""Device tokens: what a device that once logged in shows, so strangers' failures cannot lock it out."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailiverse.auth import Budget, LoginThrottle
from mailiverse.auth.devices import DEVICE_COOKIE, DEVICE_TOKEN_LIFETIME, DeviceTokens, device_cookie

SECRET = b"s" * 32


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_token_names_its_device_for_its_account_only() -> None:
    clock = Clock()
    tokens = DeviceTokens(SECRET, clock)
    token = tokens.issue("alice")
    device = tokens.verify("alice", token)
    assert device is not None and len(device) == 32
    assert tokens.verify("bob", token) is None
    assert DeviceTokens(b"t" * 32, clock).verify("alice", token) is None  # another appliance's secret
    assert tokens.verify("alice", tokens.issue("alice")) != device  # each login without a token: a new device


def test_renewal_keeps_the_device_and_moves_the_expiry() -> None:
    clock = Clock()
    tokens = DeviceTokens(SECRET, clock)
    token = tokens.issue("alice")
    device = tokens.verify("alice", token)
    clock.now += DEVICE_TOKEN_LIFETIME - 10
    renewed = tokens.renew("alice", token)
    assert tokens.verify("alice", renewed) == device
    clock.now += 20
    assert tokens.verify("alice", token) is None  # the old one has expired
    assert tokens.verify("alice", renewed) == device
    assert tokens.verify("alice", tokens.renew("alice", token)) != device  # an expired token starts a new device


def test_tokens_from_the_future_are_refused() -> None:
    clock = Clock()
    token = DeviceTokens(SECRET, Clock(clock.now + 3600)).issue("alice")
    assert DeviceTokens(SECRET, clock).verify("alice", token) is None


@pytest.mark.parametrize("bad", [None, "", "x", "!" * 55, "A" * 55, "A" * 400, 17, b"bytes"])
def test_malformed_tokens_are_unknown(bad: object) -> None:
    assert DeviceTokens(SECRET, Clock()).verify("alice", bad) is None


def test_every_flipped_bit_is_refused() -> None:
    tokens = DeviceTokens(SECRET, Clock())
    token = tokens.issue("alice")
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    for index in range(len(raw) * 8):
        flipped = bytearray(raw)
        flipped[index // 8] ^= 1 << (index % 8)
        text = base64.urlsafe_b64encode(bytes(flipped)).rstrip(b"=").decode("ascii")
        assert tokens.verify("alice", text) is None, index


@given(st.text(max_size=80))
def test_random_text_is_never_a_device(text: str) -> None:
    assert DeviceTokens(SECRET, Clock()).verify("alice", text) is None


def test_the_cookie_is_host_only_http_only_and_strict() -> None:
    token = DeviceTokens(SECRET, Clock()).issue("alice")
    value = device_cookie(token)
    assert value.startswith(f"{DEVICE_COOKIE}={token}; ")
    for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/", f"Max-Age={DEVICE_TOKEN_LIFETIME}"):
        assert attribute in value.split("; ")
    assert DEVICE_COOKIE.startswith("__Host-")
    with pytest.raises(ValueError):
        device_cookie("a; Domain=evil.example")


def test_a_known_device_is_not_locked_out_by_strangers() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock, per_account=Budget(3, 90), per_address=Budget(5, 90), per_device=Budget(3, 90))
    device = "d" * 32
    for n in range(3):
        throttle.record_failure("alice", f"198.51.100.{n}")
    assert not throttle.check("alice", "203.0.113.9").allowed  # the account is locked for strangers
    assert throttle.check("alice", "203.0.113.9", device).allowed  # the owner's device is not
    for _ in range(5):
        throttle.record_failure("bob", "203.0.113.9")
    assert not throttle.check("carol", "203.0.113.9").allowed  # nor by a neighbour behind the same address
    assert throttle.check("alice", "203.0.113.9", device).allowed


def test_a_known_device_has_its_own_budget() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock, per_account=Budget(3, 90), per_address=Budget(5, 90), per_device=Budget(3, 90))
    for _ in range(3):
        assert throttle.check("alice", "192.0.2.1", "d1").allowed
        throttle.record_failure("alice", "192.0.2.1", "d1")
    refused = throttle.check("alice", "192.0.2.1", "d1")
    assert not refused.allowed and refused.retry_after == pytest.approx(30.0)
    assert throttle.check("alice", "192.0.2.1", "d2").allowed  # another device of the account
    assert throttle.check("alice", "192.0.2.1").allowed  # the device's failures spent neither account nor address
    assert throttle.check("alice", "192.0.2.1", None).allowed
    clock.now += 30
    assert throttle.check("alice", "192.0.2.1", "d1").allowed
