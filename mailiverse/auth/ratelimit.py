"""Token-bucket rate limits in bounded memory: login failures per account and per client address, and
any other budget that spends one or more tokens an attempt (the submission service's send limit)."""

from __future__ import annotations

import ipaddress
import itertools
import math
from collections import OrderedDict
from dataclasses import dataclass

from mailiverse.auth.clock import TimeSource, as_clock

#: Prefix length that identifies one IPv6 client: a /64 is what one site or one host usually gets.
IPV6_CLIENT_PREFIX = 64


@dataclass(frozen=True)
class Budget:
    """``attempts`` may be spent at once; the bucket refills completely over ``period`` seconds."""

    attempts: int
    period: float

    def __post_init__(self) -> None:
        if self.attempts < 1 or not self.period > 0:
            raise ValueError("a Budget needs attempts >= 1 and period > 0 seconds")

    @property
    def rate(self) -> float:
        """Tokens regained per second."""
        return self.attempts / self.period


@dataclass(frozen=True)
class Decision:
    """Whether an attempt may go ahead and, if not, how many seconds until it may."""

    allowed: bool
    retry_after: float = 0.0

    @property
    def retry_after_seconds(self) -> int:
        """``retry_after`` rounded up to whole seconds, for an HTTP ``Retry-After`` header."""
        return math.ceil(self.retry_after)


def address_key(address: str) -> str:
    """Return the rate-limit key of a client address: the IPv4 address, or the IPv6 /64.

    IPv4-mapped IPv6 addresses count as their IPv4 address. Raises ``ValueError`` for text
    that is not an IP address.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_CLIENT_PREFIX), strict=False))
    return str(ip)


class TokenBucketLimiter:
    """One token bucket per key, all with the same ``Budget``.

    At most ``max_keys`` keys are tracked. A key whose bucket has refilled is
    indistinguishable from an unknown key and is dropped first; past that the key
    touched least recently is forgotten (which only ever gives it back its full budget).
    """

    def __init__(self, budget: Budget, clock: TimeSource = None, max_keys: int = 100_000) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.budget = budget
        self._now = as_clock(clock)
        self._max_keys = max_keys
        # key -> (tokens, time of that count); ordered from least to most recently touched
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, key: str, now: float) -> float:
        entry = self._buckets.get(key)
        if entry is None:
            return float(self.budget.attempts)
        tokens, stamp = entry
        elapsed = max(0.0, now - stamp)  # a clock stepping backwards must not mint tokens
        return min(float(self.budget.attempts), tokens + elapsed * self.budget.rate)

    def _decision(self, tokens: float, cost: float = 1.0) -> Decision:
        if tokens >= cost:
            return Decision(True)
        return Decision(False, (cost - tokens) / self.budget.rate)

    def check(self, key: str, cost: float = 1.0) -> Decision:
        """Tell whether ``key`` has ``cost`` tokens left, without spending them."""
        return self._decision(self._tokens(key, self._now()), cost)

    def consume(self, key: str, cost: float = 1.0) -> Decision:
        """Spend ``cost`` tokens of ``key`` if it has them (all or none); the decision says whether it did.

        A cost above the budget's ``attempts`` can never be met: callers refuse it before asking.
        """
        now = self._now()
        tokens = self._tokens(key, now)
        decision = self._decision(tokens, cost)
        if decision.allowed:
            tokens -= cost
        self._store(key, tokens, now)
        return decision

    def refund(self, key: str, cost: float = 1.0) -> None:
        """Give back ``cost`` tokens that ``consume`` spent for an attempt that did not happen after all."""
        now = self._now()
        self._store(key, min(float(self.budget.attempts), self._tokens(key, now) + cost), now)

    def reset(self, key: str) -> None:
        """Give ``key`` its full budget back."""
        self._buckets.pop(key, None)

    def _store(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        self._evict(now)

    def _evict(self, now: float) -> None:
        full = float(self.budget.attempts)
        while len(self._buckets) > self._max_keys:
            oldest = next(iter(self._buckets))
            if self._tokens(oldest, now) >= full:
                del self._buckets[oldest]
                continue
            # Look for a refilled bucket among the oldest few before forgetting a live one.
            for key in list(itertools.islice(self._buckets, 16)):
                if self._tokens(key, now) >= full:
                    del self._buckets[key]
                    break
            else:
                del self._buckets[oldest]


class LoginThrottle:
    """Separate budgets for failed logins per account, per client address and per known device.

    Call ``check`` before doing any SRP work, and ``record_failure`` after every failed
    attempt (bad proof, expired handle, unknown user alike, so the answers look the same).
    An attempt that presents a valid device token (``mailiverse.auth.devices``) passes its
    device id: it is then judged by that device's own budget alone, so strangers who spend the
    account's or the address's budget cannot lock the owner's known devices out.
    """

    def __init__(
        self,
        clock: TimeSource = None,
        per_account: Budget = Budget(attempts=10, period=900.0),
        per_address: Budget = Budget(attempts=30, period=900.0),
        max_keys: int = 100_000,
        per_device: Budget = Budget(attempts=10, period=900.0),
    ) -> None:
        self.accounts = TokenBucketLimiter(per_account, clock, max_keys)
        self.addresses = TokenBucketLimiter(per_address, clock, max_keys)
        self.devices = TokenBucketLimiter(per_device, clock, max_keys)

    @staticmethod
    def _device_key(account: str, device: str) -> str:
        return f"{account}\x00{device}"

    def check(self, account: str, address: str, device: str | None = None) -> Decision:
        """Allowed only if the budgets that apply have a token; retry after the latest of them."""
        if device is not None:
            return self.devices.check(self._device_key(account, device))
        by_account = self.accounts.check(account)
        by_address = self.addresses.check(address_key(address))
        if by_account.allowed and by_address.allowed:
            return Decision(True)
        return Decision(False, max(by_account.retry_after, by_address.retry_after))

    def record_failure(self, account: str, address: str, device: str | None = None) -> None:
        """Spend one failure from the device's budget, or else from the account's and the address's."""
        if device is not None:
            self.devices.consume(self._device_key(account, device))
            return
        self.accounts.consume(account)
        self.addresses.consume(address_key(address))
