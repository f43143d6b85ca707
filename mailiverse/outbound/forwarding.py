"""Forwarding a moved account's mail to its new address during the grace period (docs/moving.md).

Every few seconds the forwarder looks at each moved account whose grace period runs: each message in its
``Mail/In`` or ``Mail/Screener`` the client did not copy before the switch (and that was not forwarded yet) is
claimed, wrapped as stored (the original's and the twin's ciphertext, never opened: this appliance holds no key
that would) in a carrier (``mime/carrier.py``) to the new address, and queued in the outbound queue. The
receiving appliance stores the envelope for the account that brought the old key along.

Nothing is ever deleted here. A claim is a lease (``store/moving.claim_txn``): appliance processes sharing one
database never forward a message twice at once, and a forwarder that dies mid-way leaves a claim another takes
over when it expires (so a message may, rarely, arrive twice; it is never lost). The carrier's envelope sender
is ``<name>+moved@<domain>``, which no account or alias can have: a forward the new appliance refuses bounces
into nothing (logged) instead of into the old mailbox, where it would be forwarded again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall

from mailiverse.contracts import IOutbound
from mailiverse.failures import describe
from mailiverse.logs import Logger
from mailiverse.mime.carrier import CarriedEnvelope, CarrierError, build_carrier, valid_key_base
from mailiverse.outbound.errors import SubmissionRejected
from mailiverse.store.db import Database
from mailiverse.store.homes import Homes
from mailiverse.store.moving import (
    FORWARDED,
    UNFORWARDABLE,
    MovedAccount,
    claim_txn,
    finish_txn,
    forward_candidates_txn,
    moved_accounts_txn,
    read_mail_pair_txn,
)

log = Logger()

#: Seconds between two passes.
FORWARD_INTERVAL_S = 15.0
#: Messages one pass forwards per account at most.
BATCH = 50
#: How long a claim holds before another forwarder may take the message over (ms).
LEASE_MS = 15 * 60 * 1000
#: How far back each pass looks again (ms): a delivery commits after the time it stamped, never this much later.
OVERLAP_MS = 60 * 60 * 1000
#: The tag of the envelope sender of forwards (``name+moved@domain``): no user name or alias contains "+".
BOUNCE_TAG = "+moved"
#: Refusals of the outbound queue that no retry would change.
_PERMANENT = frozenset({"message_too_large", "invalid_message", "invalid_recipient", "invalid_sender"})


class Forwarder:
    """One pass over the moved accounts at a time; ``run_once`` is what the service calls."""

    def __init__(
        self,
        database: Database,
        outbound: IOutbound,
        *,
        domains: tuple[str, ...],
        hostname: str,
        now_ms: Callable[[], int] | None = None,
        homes: Homes | None = None,
    ) -> None:
        self._db = database
        #: The moved accounts are listed in the metabase; their mail is in their homes (store/homes.py).
        self._homes = homes or Homes.single(database)
        self._outbound = outbound
        self._domain = domains[0]
        self._hostname = hostname
        self._now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)
        #: Per account, the modification time from which the next pass looks (0: everything, the first time).
        self._since: dict[int, int] = {}

    def old_address(self, account: MovedAccount) -> str:
        return f"{account.name}@{self._domain}"

    async def run_once(self) -> int:
        """Forward what is due now; how many messages were queued."""
        now = self._now_ms()
        queued = 0
        for account in await self._db.run(moved_accounts_txn, now):
            queued += await self._forward_account(account, now)
        return queued

    async def _forward_account(self, account: MovedAccount, now: int) -> int:
        due = await self._homes.run_for(
            account.user_id,
            forward_candidates_txn,
            account.user_id,
            since_ms=self._since.get(account.user_id, 0),
            now_ms=now,
            lease_ms=LEASE_MS,
            limit=BATCH,
        )
        queued = 0
        for folder, key_base in due:
            if not await self._homes.transact_for(
                account.user_id, claim_txn, account.user_id, key_base, now_ms=now, lease_ms=LEASE_MS
            ):
                continue
            outcome = await self._forward_one(account, folder, key_base)
            if outcome is None:
                continue  # left claimed: taken up again when the lease ends
            await self._homes.transact_for(
                account.user_id, finish_txn, account.user_id, key_base, outcome, self._now_ms()
            )
            queued += outcome == FORWARDED
        if len(due) < BATCH:
            self._since[account.user_id] = now - OVERLAP_MS
        return queued

    async def _forward_one(self, account: MovedAccount, folder: str, key_base: str) -> str | None:
        """Queue one message's carrier: FORWARDED, UNFORWARDABLE (never will be), or None (try again later)."""
        pair = await self._homes.run_for(account.user_id, read_mail_pair_txn, account.user_id, folder, key_base)
        original, twin = pair if pair is not None else (b"", None)
        if twin is None or account.key_id is None or not valid_key_base(key_base):
            log.warn(
                "a message of moved account {user} cannot be forwarded (it is gone, has no twin, or the account "
                "has no published key)",
                user=account.name,
            )
            return UNFORWARDABLE
        try:
            carrier = build_carrier(
                mail_from=self.old_address(account),
                to=account.moved_to,
                key_base=key_base,
                envelopes=[CarriedEnvelope(key_id=account.key_id, original=original, twin=twin)],
                hostname=self._hostname,
                now_ms=self._now_ms(),
            )
        except CarrierError as error:
            log.warn("a message of moved account {user} cannot be forwarded: {why}", user=account.name, why=error)
            return UNFORWARDABLE
        local, _, domain = self.old_address(account).rpartition("@")
        try:
            await self._outbound.submit(
                user=account.name,
                mail_from=f"{local}{BOUNCE_TAG}@{domain}",
                recipients=[account.moved_to],
                message=carrier,
            )
        except SubmissionRejected as error:
            if error.code in _PERMANENT:
                log.warn(
                    "a message of moved account {user} cannot be forwarded ({code})", user=account.name, code=error.code
                )
                return UNFORWARDABLE
            log.warn(
                "forwarding for moved account {user} failed ({code}); trying later", user=account.name, code=error.code
            )
            return None
        except Exception as error:  # noqa: BLE001 - the queue's trouble: the claim expires and it is tried again
            log.warn("forwarding for moved account {user} failed: {why}", user=account.name, why=describe(error))
            return None
        return FORWARDED


class ForwardingService(Service):
    """Runs the forwarder every ``interval`` seconds while the appliance runs (a failed pass is logged)."""

    name = "forwarding"  # type: ignore[assignment]

    def __init__(self, forwarder: Forwarder, clock: Any, interval: float = FORWARD_INTERVAL_S) -> None:
        self.forwarder = forwarder
        self._clock = clock
        self._interval = interval
        self._loop: LoopingCall | None = None
        self._running: Deferred[int] | None = None

    def _tick(self) -> Deferred[None]:
        self._running = Deferred.fromCoroutine(self.forwarder.run_once())
        return self._running.addCallbacks(
            lambda _: None, lambda failure: log.failure("a forwarding pass failed", failure)
        )

    def startService(self) -> None:
        super().startService()
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self._clock
        self._loop.start(self._interval, now=True).addErrback(
            lambda failure: log.failure("the forwarder stopped", failure)
        )

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        running, self._running = self._running, None
        if running is not None and not running.called:
            done: Deferred[None] = Deferred()
            running.addBoth(lambda _: done.callback(None))
            return done
        return None


__all__ = ["BATCH", "BOUNCE_TAG", "FORWARD_INTERVAL_S", "Forwarder", "ForwardingService"]
