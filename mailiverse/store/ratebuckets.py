"""Token buckets in the metabase, so every front end spends from the same budgets (``rate_buckets``).

``DatabaseRateLimits`` makes ``IRateLimiter``s (``mailiverse.auth.ratelimit``) whose buckets are rows:
one per limiter and key, keyed by HMAC-SHA256 of both under a server secret, so no user name or
client address is stored in clear. Each spend is one short transaction that locks its row
(``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite has one writer), refills it by the time elapsed and
takes the tokens or not, so parallel attempts on many front ends never overspend. A bucket left alone
for longer than every budget's period is full, so ``purge`` deletes it without changing any decision.

Front ends must agree on the wall-clock time to within a small part of the shortest period.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection
from zope.interface import implementer

from mailiverse.auth.clock import TimeSource, as_clock
from mailiverse.auth.ratelimit import Budget, Decision, IRateLimiter, IRateLimits
from mailiverse.store.accounts import ensure_secret_txn
from mailiverse.store.db import Database
from mailiverse.store.errors import InvalidInput
from mailiverse.store.schema import rate_buckets

#: The ``server_secrets`` row behind the bucket keys.
RATE_SECRET_NAME = "rate-limits"  # noqa: S105 - a row name, not a secret
#: Buckets untouched this long (or for the longest period of any limiter, if longer) are purged. A day is past
#: every budget's period, including those of limiters another front end made and this one has not yet.
DEFAULT_PURGE_AFTER = 86400.0
BUCKET_BYTES = 32


def bucket_key(secret: bytes, limiter: str, key: str) -> bytes:
    """The row key of ``key`` in the limiter ``limiter``: a keyed hash, so the table names no one."""
    message = limiter.encode("utf-8") + b"\x00" + key.encode("utf-8", "surrogatepass")
    return hmac.new(secret, message, hashlib.sha256).digest()


def _check(bucket: bytes) -> None:
    if not isinstance(bucket, bytes) or len(bucket) != BUCKET_BYTES:
        raise InvalidInput("a rate bucket key is 32 bytes")


def _refilled(tokens: float, updated: float, now: float, capacity: float, rate: float) -> float:
    # a clock that steps backwards (or a front end slightly behind) must not mint tokens
    return min(capacity, tokens + max(0.0, now - updated) * rate)


def _locked_tokens_txn(conn: Connection, bucket: bytes, now: float, capacity: float, rate: float) -> float | None:
    row = conn.execute(
        select(rate_buckets.c.tokens, rate_buckets.c.updated).where(rate_buckets.c.bucket == bucket).with_for_update()
    ).one_or_none()
    if row is None:
        return None
    return _refilled(float(row.tokens), float(row.updated), now, capacity, rate)


def _write_txn(conn: Connection, bucket: bytes, tokens: float, now: float, existed: bool) -> bool:
    """Store the count; False if the row was absent and another transaction created it meanwhile."""
    if existed:
        conn.execute(update(rate_buckets).where(rate_buckets.c.bucket == bucket).values(tokens=tokens, updated=now))
        return True
    statement = _insert_if_absent(conn.dialect.name).values(bucket=bucket, tokens=tokens, updated=now)
    # RETURNING, not rowcount: psycopg reports -1 for an INSERT ... ON CONFLICT DO NOTHING either way.
    return conn.execute(statement.returning(rate_buckets.c.bucket)).first() is not None


def _insert_if_absent(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(rate_buckets).on_conflict_do_nothing(index_elements=["bucket"])
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(rate_buckets).on_conflict_do_nothing(index_elements=["bucket"])


def take_tokens_txn(
    conn: Connection, bucket: bytes, cost: float, *, capacity: float, rate: float, now: float
) -> tuple[bool, float]:
    """Spend ``cost`` tokens of ``bucket`` if it has them (all or none); return ``(spent, tokens left)``.

    A missing row is a full bucket. The row is locked for the rest of the transaction, so two front
    ends spending from one bucket take turns.
    """
    _check(bucket)
    if cost < 0 or capacity <= 0 or rate <= 0:
        raise InvalidInput("a rate bucket needs cost >= 0, capacity > 0 and rate > 0")
    # Twice at most: a row another front end created between our look and our insert (its insert made
    # ours do nothing, after waiting for its commit) is there, and lockable, the second time.
    for _attempt in range(2):
        current = _locked_tokens_txn(conn, bucket, now, capacity, rate)
        tokens = capacity if current is None else current
        spent = tokens >= cost
        left = tokens - cost if spent else tokens
        if _write_txn(conn, bucket, left, now, existed=current is not None):
            return spent, left
    # only a concurrent forget or purge between the two looks gets here
    raise InvalidInput("a rate bucket kept changing under this transaction")


def give_back_tokens_txn(
    conn: Connection, bucket: bytes, cost: float, *, capacity: float, rate: float, now: float
) -> None:
    """Return ``cost`` tokens to ``bucket``, never past ``capacity`` (a full bucket needs no row)."""
    _check(bucket)
    current = _locked_tokens_txn(conn, bucket, now, capacity, rate)
    if current is None:
        return
    tokens = min(capacity, current + cost)
    if tokens >= capacity:
        conn.execute(delete(rate_buckets).where(rate_buckets.c.bucket == bucket))
    else:
        conn.execute(update(rate_buckets).where(rate_buckets.c.bucket == bucket).values(tokens=tokens, updated=now))


def peek_tokens_txn(conn: Connection, bucket: bytes, *, capacity: float, rate: float, now: float) -> float:
    """The tokens ``bucket`` holds now, changing nothing."""
    _check(bucket)
    row = conn.execute(
        select(rate_buckets.c.tokens, rate_buckets.c.updated).where(rate_buckets.c.bucket == bucket)
    ).one_or_none()
    if row is None:
        return capacity
    return _refilled(float(row.tokens), float(row.updated), now, capacity, rate)


def forget_bucket_txn(conn: Connection, bucket: bytes) -> None:
    """Delete ``bucket``: a full budget again."""
    _check(bucket)
    conn.execute(delete(rate_buckets).where(rate_buckets.c.bucket == bucket))


def purge_stale_buckets_txn(conn: Connection, before: float) -> int:
    """Delete buckets last touched before ``before`` (seconds); return how many."""
    return int(conn.execute(delete(rate_buckets).where(rate_buckets.c.updated < before)).rowcount)


def load_rate_secret(database: Database) -> bytes:
    """The key of the bucket hashes, made on first use and the same for every front end. Blocking: start-up only."""
    with database.blocking_allowed():
        return database.transact_sync(ensure_secret_txn, RATE_SECRET_NAME, 32)


@implementer(IRateLimiter)
class DatabaseTokenBucketLimiter:
    """One limiter's buckets in ``rate_buckets``: every call is one transaction off the reactor thread."""

    def __init__(self, database: Database, secret: bytes, name: str, budget: Budget, clock: TimeSource = None) -> None:
        self.budget = budget
        self.name = name
        self._db = database
        self._secret = secret
        self._now = as_clock(clock)

    def _bucket(self, key: str) -> bytes:
        return bucket_key(self._secret, self.name, key)

    def _decision(self, spent: bool, tokens: float, cost: float) -> Decision:
        if spent:
            return Decision(True)
        return Decision(False, (cost - tokens) / self.budget.rate)

    async def spend(self, key: str, cost: float = 1.0) -> Decision:
        spent, left = await self._db.transact(
            take_tokens_txn,
            self._bucket(key),
            cost,
            capacity=float(self.budget.attempts),
            rate=self.budget.rate,
            now=self._now(),
        )
        return self._decision(spent, left, cost)

    async def peek(self, key: str, cost: float = 1.0) -> Decision:
        tokens = await self._db.run(
            peek_tokens_txn,
            self._bucket(key),
            capacity=float(self.budget.attempts),
            rate=self.budget.rate,
            now=self._now(),
        )
        return self._decision(tokens >= cost, tokens, cost)

    async def give_back(self, key: str, cost: float = 1.0) -> None:
        await self._db.transact(
            give_back_tokens_txn,
            self._bucket(key),
            cost,
            capacity=float(self.budget.attempts),
            rate=self.budget.rate,
            now=self._now(),
        )

    async def forget(self, key: str) -> None:
        await self._db.transact(forget_bucket_txn, self._bucket(key))


@implementer(IRateLimits)
class DatabaseRateLimits:
    """Limiters shared by every front end of ``database`` (the metabase); ``purge`` drops full buckets.

    ``clock`` must be the wall clock (a reactor, or None): the buckets' times are compared between hosts.
    """

    def __init__(
        self, database: Database, secret: bytes, clock: TimeSource = None, purge_after: float = DEFAULT_PURGE_AFTER
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the rate-limit secret must be at least 16 bytes")
        self._db = database
        self._secret = secret
        self._clock = clock
        self._now = as_clock(clock)
        self._purge_after = purge_after

    @classmethod
    def open(cls, database: Database, clock: TimeSource = None) -> DatabaseRateLimits:
        """The shared limits of ``database``, reading (or making) their secret now. Blocking: start-up only."""
        return cls(database, load_rate_secret(database), clock)

    def limiter(self, name: str, budget: Budget) -> DatabaseTokenBucketLimiter:
        """Limiters of one name share their buckets (as every front end's do): give each budget its own name."""
        if not name:
            raise ValueError("a shared rate limiter needs a name")
        # A bucket idle for a whole period is full again: purging later than the longest period is exact.
        self._purge_after = max(self._purge_after, budget.period)
        return DatabaseTokenBucketLimiter(self._db, self._secret, name, budget, self._clock)

    async def purge(self) -> int:
        """Delete the buckets no limiter needs any more (full by now); return how many."""
        return await self._db.transact(purge_stale_buckets_txn, self._now() - self._purge_after)


__all__ = [
    "RATE_SECRET_NAME",
    "DatabaseRateLimits",
    "DatabaseTokenBucketLimiter",
    "bucket_key",
    "forget_bucket_txn",
    "give_back_tokens_txn",
    "load_rate_secret",
    "peek_tokens_txn",
    "purge_stale_buckets_txn",
    "take_tokens_txn",
]
