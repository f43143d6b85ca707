"""Token-bucket rate limits: login failures per account and per client address, and any other budget
that spends one or more tokens an attempt (the submission service's send limit).

``TokenBucketLimiter`` keeps its buckets in bounded memory, for one process. Front ends that share a
metabase share their buckets instead (``mailiverse.store.ratebuckets``); both provide ``IRateLimiter``,
whose methods are awaitable, and an ``IRateLimits`` makes the limiters, so a caller never knows which.
"""

from __future__ import annotations

import ipaddress
import itertools
import math
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass

from zope.interface import Attribute, Interface, implementer

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


class IRateLimiter(Interface):
    """Token buckets of one ``budget``, one per key. Every method returns an awaitable.

    ``spend`` takes ``cost`` tokens if the key has them (all or none) and says whether it did;
    ``peek`` tells the same without spending; ``give_back`` returns tokens ``spend`` took for an
    attempt that did not happen (never past the budget); ``forget`` gives the key its full budget.
    """

    budget = Attribute("The Budget every key of this limiter gets.")

    def spend(key: str, cost: float = 1.0) -> Awaitable[Decision]:
        """Spend ``cost`` tokens of ``key`` if it has them."""

    def peek(key: str, cost: float = 1.0) -> Awaitable[Decision]:
        """Whether ``key`` has ``cost`` tokens, spending none."""

    def give_back(key: str, cost: float = 1.0) -> Awaitable[None]:
        """Return ``cost`` tokens to ``key``."""

    def forget(key: str) -> Awaitable[None]:
        """Give ``key`` its full budget back."""


class IRateLimits(Interface):
    """Makes the limiters of one appliance: in memory, or shared by every front end of a metabase."""

    def limiter(name: str, budget: Budget) -> IRateLimiter:
        """The limiter called ``name`` (its keys are apart from every other limiter's) with ``budget``."""


@implementer(IRateLimiter)
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

    # IRateLimiter: the same buckets, awaitable; nothing here waits, so a caller's coroutine runs straight through.

    async def spend(self, key: str, cost: float = 1.0) -> Decision:
        return self.consume(key, cost)

    async def peek(self, key: str, cost: float = 1.0) -> Decision:
        return self.check(key, cost)

    async def give_back(self, key: str, cost: float = 1.0) -> None:
        self.refund(key, cost)

    async def forget(self, key: str) -> None:
        self.reset(key)

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


@implementer(IRateLimits)
class MemoryRateLimits:
    """Limiters in this process's memory (one database, one front end): each a ``TokenBucketLimiter``."""

    def __init__(self, clock: TimeSource = None, max_keys: int = 100_000) -> None:
        self._clock = clock
        self._max_keys = max_keys

    def limiter(self, name: str, budget: Budget) -> TokenBucketLimiter:
        return TokenBucketLimiter(budget, self._clock, self._max_keys)


#: The budgets of failed logins, the same in memory and shared.
LOGIN_PER_ACCOUNT = Budget(attempts=10, period=900.0)
LOGIN_PER_ADDRESS = Budget(attempts=30, period=900.0)
LOGIN_PER_DEVICE = Budget(attempts=10, period=900.0)


def _device_key(account: str, device: str) -> str:
    return f"{account}\x00{device}"


class LoginLimits:
    """The failed-login budgets of ``LoginThrottle`` over any ``IRateLimiter``s, awaited: ``admit`` before any
    SRP work, ``failed`` after every failed attempt, ``failed_address`` for a failure with no account."""

    def __init__(self, accounts: IRateLimiter, addresses: IRateLimiter, devices: IRateLimiter) -> None:
        self.accounts = accounts
        self.addresses = addresses
        self.devices = devices

    @classmethod
    def shared(
        cls,
        limits: IRateLimits,
        per_account: Budget = LOGIN_PER_ACCOUNT,
        per_address: Budget = LOGIN_PER_ADDRESS,
        per_device: Budget = LOGIN_PER_DEVICE,
        *,
        prefix: str = "login",
    ) -> LoginLimits:
        """The budgets as limiters of ``limits``, named ``<prefix>-account``, ``-address`` and ``-device``."""
        return cls(
            limits.limiter(f"{prefix}-account", per_account),
            limits.limiter(f"{prefix}-address", per_address),
            limits.limiter(f"{prefix}-device", per_device),
        )

    async def admit(self, account: str, address: str, device: str | None = None) -> Decision:
        """Allowed only if the budgets that apply have a token; retry after the latest of them."""
        if device is not None:
            decision: Decision = await self.devices.peek(_device_key(account, device))
            return decision
        by_account: Decision = await self.accounts.peek(account)
        by_address: Decision = await self.addresses.peek(address_key(address))
        if by_account.allowed and by_address.allowed:
            return Decision(True)
        return Decision(False, max(by_account.retry_after, by_address.retry_after))

    async def failed(self, account: str, address: str, device: str | None = None) -> None:
        """Spend one failure from the device's budget, or else from the account's and the address's."""
        if device is not None:
            await self.devices.spend(_device_key(account, device))
            return
        await self.accounts.spend(account)
        await self.addresses.spend(address_key(address))

    async def forgive(self, account: str, address: str, device: str | None = None) -> None:
        """Give back the failure ``failed`` charged (a login whose second step then succeeded)."""
        if device is not None:
            await self.devices.give_back(_device_key(account, device))
            return
        await self.accounts.give_back(account)
        await self.addresses.give_back(address_key(address))

    async def failed_address(self, address: str) -> None:
        """Spend one failure from the address's budget alone (an expired or unknown login handle)."""
        await self.addresses.spend(address_key(address))


class LoginThrottle(LoginLimits):
    """Separate budgets for failed logins per account, per client address and per known device.

    Call ``check`` before doing any SRP work, and ``record_failure`` after every failed
    attempt (bad proof, expired handle, unknown user alike, so the answers look the same).
    An attempt that presents a valid device token (``mailiverse.auth.devices``) passes its
    device id: it is then judged by that device's own budget alone, so strangers who spend the
    account's or the address's budget cannot lock the owner's known devices out.
    The same budgets are awaitable through ``LoginLimits`` (``admit``, ``failed``), as shared ones are.
    """

    accounts: TokenBucketLimiter
    addresses: TokenBucketLimiter
    devices: TokenBucketLimiter

    def __init__(
        self,
        clock: TimeSource = None,
        per_account: Budget = LOGIN_PER_ACCOUNT,
        per_address: Budget = LOGIN_PER_ADDRESS,
        max_keys: int = 100_000,
        per_device: Budget = LOGIN_PER_DEVICE,
    ) -> None:
        super().__init__(
            TokenBucketLimiter(per_account, clock, max_keys),
            TokenBucketLimiter(per_address, clock, max_keys),
            TokenBucketLimiter(per_device, clock, max_keys),
        )

    @staticmethod
    def _device_key(account: str, device: str) -> str:
        return _device_key(account, device)

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
