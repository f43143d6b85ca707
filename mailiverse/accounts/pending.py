"""``IPendingLogins`` in the database, so a login started on one front end can finish on any other.

Each challenge is sealed (``mailiverse.auth.pending.seal_challenge``) under a key bound to its handle
and stored in ``pending_logins`` keyed by the handle's SHA-256; ``take`` is one ``DELETE ... RETURNING``,
so a handle works at most once even when two front ends race for it.
"""

from __future__ import annotations

from zope.interface import implementer

from mailiverse.auth.clock import TimeSource, as_clock
from mailiverse.auth.keys import check_server_secret
from mailiverse.auth.pending import (
    IPendingLogins,
    handle_digest,
    is_well_formed_handle,
    new_handle,
    open_sealed_challenge,
    seal_challenge,
)
from mailiverse.auth.srp6a import AuthFailed, LoginChallenge
from mailiverse.store import pending as repo
from mailiverse.store.db import Database

#: Seconds a challenge waits for round trip 2.
DEFAULT_TTL = 120.0
#: Most pending logins kept in the database (for all front ends together).
DEFAULT_MAX_ENTRIES = 10_000


@implementer(IPendingLogins)
class DatabasePendingLogins:
    """Pending logins in the shared ``pending_logins`` table, sealed with the auth server secret.

    ``clock`` gives wall-clock seconds; front ends sharing a database must agree on the time to
    within a small part of ``ttl``.
    """

    def __init__(
        self,
        database: Database,
        server_secret: bytes,
        *,
        clock: TimeSource = None,
        ttl: float = DEFAULT_TTL,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        if ttl <= 0 or max_entries < 1:
            raise ValueError("DatabasePendingLogins needs ttl > 0 and max_entries >= 1")
        self._db = database
        self._secret = check_server_secret(server_secret)
        self._now = as_clock(clock)
        self._ttl_ms = int(ttl * 1000)
        self._max = max_entries

    def _now_ms(self) -> int:
        return int(self._now() * 1000)

    async def put(self, challenge: LoginChallenge) -> str:
        handle = new_handle()
        now = self._now_ms()
        expires = now + self._ttl_ms
        sealed = seal_challenge(self._secret, handle, expires, challenge)
        await self._db.transact(
            repo.add_pending_login_txn,
            handle_digest(handle),
            expires,
            sealed,
            now_ms=now,
            max_entries=self._max,
        )
        return handle

    async def take(self, handle: str) -> LoginChallenge:
        if not is_well_formed_handle(handle):
            raise AuthFailed()
        row = await self._db.transact(repo.take_pending_login_txn, handle_digest(handle))
        if row is None:
            raise AuthFailed()
        expires, sealed = row
        if self._now_ms() >= expires:
            raise AuthFailed()
        return open_sealed_challenge(self._secret, handle, expires, sealed)

    async def purge_expired(self) -> int:
        return await self._db.transact(repo.purge_expired_pending_logins_txn, self._now_ms())

    async def count(self) -> int:
        """How many pending logins the database holds (for tests and monitoring)."""
        return await self._db.run(repo.count_pending_logins_txn)


__all__ = ["DEFAULT_MAX_ENTRIES", "DEFAULT_TTL", "DatabasePendingLogins"]
