"""ACME for front ends sharing a metabase: challenge answers any of them serves, and one renewal at a time.

``DatabaseChallengeStore`` keeps HTTP-01 answers in ``acme_challenges``, so the CA's validation request
may reach any front end, not only the one that placed the order; lookups run on a database thread.
``SharedCertificates`` is what ``CertificateRenewal`` needs of the metabase: the ``acme-renewal`` lease
(``service_leases``), held by one front end while it orders and renewed while it works, taken over by
another once it lapses; and the issued chain and key (``acme_certificates``), which every front end
polls for and loads into its files and TLS contexts.

The certificate's private key therefore lives in the metabase, in the clear, as it does in the
``--tls-key`` file: whoever can read the metabase can impersonate the appliance's host name. That adds
no one: the front ends already trust the metabase with every session, pending login and account, and
its credentials belong on the front ends alone; keep its backups as private as the data directory's ``tls/``.
"""

from __future__ import annotations

import os
import secrets
import socket
from typing import Any

from zope.interface import implementer

from mailiverse.acme.http01 import IChallengeStore, is_token
from mailiverse.store import acme as repo
from mailiverse.store import leases
from mailiverse.store.acme import StoredCertificate
from mailiverse.store.db import Database
from mailiverse.store.errors import InvalidInput

#: The lease of the front end that orders certificates.
RENEWAL_LEASE = "acme-renewal"
#: How long an answer is served at most: an order that takes longer has failed anyway.
CHALLENGE_TTL_MS = 3600 * 1000
#: Most answers pending for all front ends together (as ``http01.MAX_PENDING`` for one).
MAX_PENDING = 100
#: A lease lapses this long after its holder last renewed it; the holder renews it every third of that.
LEASE_TTL = 120.0


def new_owner() -> str:
    """A name for this process that no other front end (on this host or another) has: host:pid:random."""
    return f"{socket.gethostname()[:100]}:{os.getpid()}:{secrets.token_hex(6)}"


def _now_ms(reactor: Any) -> int:
    return int(reactor.seconds() * 1000)


@implementer(IChallengeStore)
class DatabaseChallengeStore:
    """HTTP-01 answers in the metabase: placed by the front end that orders, served by every front end."""

    def __init__(self, database: Database, reactor: Any, *, ttl_ms: int = CHALLENGE_TTL_MS) -> None:
        self._db = database
        self._reactor = reactor
        self._ttl_ms = ttl_ms

    async def place(self, token: str, key_authorization: str) -> None:
        if not is_token(token):
            raise ValueError("an ACME token is base64url text")
        now = _now_ms(self._reactor)
        try:
            await self._db.transact(
                repo.put_challenge_txn,
                token,
                key_authorization,
                expires_ms=now + self._ttl_ms,
                now_ms=now,
                max_pending=MAX_PENDING,
            )
        except InvalidInput as error:
            raise ValueError(str(error)) from None

    async def withdraw(self, token: str) -> None:
        await self._db.transact(repo.delete_challenge_txn, token)

    async def lookup(self, token: str) -> str | None:
        if not is_token(token):
            return None
        answer: str | None = await self._db.run(repo.challenge_txn, token, now_ms=_now_ms(self._reactor))
        return answer


class SharedCertificates:
    """The renewal lease and the published certificate ``name`` (the primary host name) in the metabase."""

    def __init__(
        self,
        database: Database,
        name: str,
        reactor: Any,
        *,
        owner: str | None = None,
        lease_ttl: float = LEASE_TTL,
    ) -> None:
        self._db = database
        self.name = name
        self._reactor = reactor
        self.owner = owner or new_owner()
        self.lease_ttl = lease_ttl

    def _ms(self) -> int:
        return _now_ms(self._reactor)

    async def take_lease(self) -> bool:
        """Whether this front end now holds the renewal lease (it was free, lapsed, or already ours)."""
        now = self._ms()
        taken: bool = await self._db.transact(
            leases.take_lease_txn, RENEWAL_LEASE, self.owner, now_ms=now, until_ms=now + int(self.lease_ttl * 1000)
        )
        return taken

    async def keep_lease(self) -> bool:
        """Push the lease's end forward while working; False if it lapsed and may be another's now."""
        now = self._ms()
        kept: bool = await self._db.transact(
            leases.extend_lease_txn, RENEWAL_LEASE, self.owner, now_ms=now, until_ms=now + int(self.lease_ttl * 1000)
        )
        return kept

    async def release_lease(self, hold_for: float = 0.0) -> None:
        """Let the lease go, at once or after ``hold_for`` seconds (after a failed order: no one retries sooner)."""
        until = self._ms() + int(hold_for * 1000) if hold_for > 0 else 0
        await self._db.transact(leases.release_lease_txn, RENEWAL_LEASE, self.owner, until_ms=until)

    async def lease_holder(self) -> str | None:
        """Which front end holds the lease now, or None."""
        holder: str | None = await self._db.run(leases.lease_holder_txn, RENEWAL_LEASE, now_ms=self._ms())
        return holder

    async def publish(self, chain_pem: bytes, key_pem: bytes) -> None:
        """Make a newly issued chain and its key every front end's."""
        await self._db.transact(repo.save_certificate_txn, self.name, chain_pem, key_pem, now_ms=self._ms())

    async def newest(self, newer_than_ms: int = -1) -> StoredCertificate | None:
        """The published certificate, if it was published after ``newer_than_ms``."""
        stored: StoredCertificate | None = await self._db.run(
            repo.certificate_txn, self.name, newer_than_ms=newer_than_ms
        )
        return stored


__all__ = ["RENEWAL_LEASE", "DatabaseChallengeStore", "SharedCertificates", "new_owner"]
