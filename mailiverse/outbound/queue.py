"""The outbound queue: durable, encrypted submission and the worker pass that delivers, retries and bounces.

``Outbound.submit`` returns only after the message, sealed with the queue key, is committed.
``Outbound.run_once`` is one worker pass: lease due recipients, send each message once per
transaction (per domain when delivering direct), record every recipient's outcome, bounce the
ones that failed for good, and delete a message as soon as no recipient needs it.  Temporary
failures back off along ``QueuePolicy.retry_schedule_s`` until ``max_age_s``; then they bounce.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from twisted.internet.defer import Deferred, DeferredLock, DeferredSemaphore, gatherResults
from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer

from mailiverse.contracts import IInbox, IOutbound
from mailiverse.logs import Logger
from mailiverse.outbound.bounce import FailedRecipient, build_dsn, enhanced_status
from mailiverse.outbound.dkim import DkimSigner
from mailiverse.outbound.errors import OutboundError, QueuedBodyUnreadable, SubmissionRejected
from mailiverse.outbound.message import normalize_address, prepare_message
from mailiverse.outbound.queuekey import QueueCipher
from mailiverse.outbound.smtpclient import RecipientResult
from mailiverse.outbound.transport import Transport
from mailiverse.spool import SpooledMessage
from mailiverse.store import outbound as repo
from mailiverse.store.db import Database

log = Logger()

DEFAULT_RETRY_SCHEDULE_S = (60, 300, 900, 3600, 2 * 3600, 4 * 3600, 8 * 3600)
DEFAULT_MAX_AGE_S = 5 * 24 * 3600
BOUNCE_RETRY_S = 300


@dataclass(frozen=True)
class QueuePolicy:
    """Limits and timings of the queue."""

    max_message_size: int = 50 * 1024 * 1024
    max_recipients: int = 100
    retry_schedule_s: tuple[int, ...] = DEFAULT_RETRY_SCHEDULE_S
    max_age_s: int = DEFAULT_MAX_AGE_S
    lease_s: int = 15 * 60
    batch: int = 100
    parallel: int = 8

    def retry_delay_s(self, attempts: int) -> int:
        """Delay after the ``attempts``-th failed attempt (1-based)."""
        schedule = self.retry_schedule_s or (60,)
        return schedule[min(max(attempts, 1), len(schedule)) - 1]


def _new_queue_id() -> str:
    return secrets.token_hex(12)


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@implementer(IOutbound)
class Outbound:
    """The outbound queue of one appliance process; several may share one database."""

    def __init__(
        self,
        database: Database,
        *,
        cipher: QueueCipher,
        transport: Transport | None,
        local_delivery: IInbox,
        hostname: str,
        local_domains: Sequence[str],
        reactor: Any,
        clock: Any = None,
        signer: DkimSigner | None = None,
        policy: QueuePolicy | None = None,
        worker_id: str | None = None,
    ) -> None:
        self._db = database
        self._cipher = cipher
        self._transport = transport
        self._local = local_delivery
        self._hostname = hostname
        self._local_domains = frozenset(d.lower() for d in local_domains)
        self._reactor = reactor
        self._clock = clock if clock is not None else reactor
        self._signer = signer
        self.policy = policy or QueuePolicy()
        self.worker_id = worker_id or secrets.token_hex(8)
        self._lock = DeferredLock()
        self._started = False
        self._again = False
        self._wake_call: Any = None
        #: Called after each pass with the number of recipients handled (tests and metrics).
        self.on_pass: Callable[[int], None] | None = None

    @property
    def enabled(self) -> bool:
        """Whether remote delivery is configured (``--outbound`` is not ``off``)."""
        return self._transport is not None

    def now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    # -- submission ----------------------------------------------------------------------------

    async def submit(self, *, user: str, mail_from: str, recipients: list[str], message: bytes) -> str:
        """Queue ``message`` for the remote ``recipients``; returns the queue id once it is durably stored.

        The caller has already checked that ``mail_from`` belongs to ``user`` and delivers local
        recipients itself.  Raises ``SubmissionRejected`` (with a stable ``code``) for bad input.
        """
        if not self.enabled:
            raise SubmissionRejected(
                "sending to remote addresses is disabled on this appliance", code="outbound_disabled"
            )
        if not isinstance(message, bytes) or not message:
            raise SubmissionRejected("the message is empty", code="invalid_message")
        if len(message) > self.policy.max_message_size:
            raise SubmissionRejected("the message is too large", code="message_too_large")
        sender, sender_domain = normalize_address(mail_from, what="sender")
        if self._local_domains and sender_domain not in self._local_domains:
            raise SubmissionRejected("the sender address is not in a domain of this appliance", code="invalid_sender")
        if not recipients:
            raise SubmissionRejected("no recipients", code="invalid_recipient")
        if len(recipients) > self.policy.max_recipients:
            raise SubmissionRejected("too many recipients", code="too_many_recipients")
        targets: dict[str, str] = {}
        for recipient in recipients:
            address, domain = normalize_address(recipient)
            if domain in self._local_domains:
                raise SubmissionRejected("local recipients are delivered locally, not queued", code="local_recipient")
            targets.setdefault(address, domain)
        queue_id = _new_queue_id()
        sealed, size = await deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), self._seal, queue_id, message, sender_domain
        )
        await self._db.transact(
            repo.enqueue_txn,
            queue_id=queue_id,
            user_name=user,
            mail_from=sender,
            recipients=list(targets.items()),
            body=sealed,
            size=size,
            now_ms=self.now_ms(),
        )
        log.info(
            "queued {queue_id} from {user} for {count} remote recipient(s)",
            queue_id=queue_id,
            user=user,
            count=len(targets),
        )
        self.wake()
        return queue_id

    def _seal(self, queue_id: str, message: bytes, sender_domain: str) -> tuple[bytes, int]:
        prepared = prepare_message(message, sender_domain=sender_domain, now=_utc(self.now_ms()))
        if self._signer is not None:
            prepared = self._signer.sign(prepared, sender_domain)
        if len(prepared) > self.policy.max_message_size + 64 * 1024:
            raise SubmissionRejected("the message is too large", code="message_too_large")
        return self._cipher.seal(queue_id, prepared), len(prepared)

    async def status(self, queue_id: str) -> list[repo.RecipientState] | None:
        """Each recipient's state while the message is queued; None once it has left the queue."""
        return await self._db.run(repo.recipient_states_txn, queue_id)

    # -- the worker ----------------------------------------------------------------------------

    def start(self) -> None:
        """Let submissions trigger a pass at once (the worker service calls this; tests drive passes themselves)."""
        self._started = True

    def stop(self) -> None:
        """Stop triggering passes on submission."""
        self._started = False
        if self._wake_call is not None and self._wake_call.active():
            self._wake_call.cancel()
        self._wake_call = None

    def wake(self) -> None:
        """Run a pass soon (after a submission), unless one is already scheduled."""
        self._again = True
        if not self._started:
            return
        if self._wake_call is not None and self._wake_call.active():
            return
        self._wake_call = self._clock.callLater(0, self._wake_now)

    def _wake_now(self) -> None:
        self._wake_call = None
        Deferred.fromCoroutine(self.run_pending()).addErrback(
            lambda failure: log.failure("outbound queue pass failed", failure)
        )

    async def run_pending(self) -> int:
        """Run passes until nothing is due, after any pass already running here. Returns recipients handled."""
        await self._lock.acquire()
        total = 0
        try:
            while True:
                self._again = False
                handled = await self.run_once()
                total += handled
                if handled == 0 and not self._again:
                    return total
        finally:
            self._lock.release()

    async def wait_idle(self) -> None:
        """Wait for a running pass to finish (for shutdown)."""
        await self._lock.acquire()
        self._lock.release()

    async def run_once(self) -> int:
        """One pass over due recipients; returns how many recipient rows it handled."""
        if self._transport is None:
            return 0
        now = self.now_ms()
        claimed = await self._db.transact(
            repo.claim_due_txn,
            worker=self.worker_id,
            now_ms=now,
            lease_ms=self.policy.lease_s * 1000,
            limit=self.policy.batch,
        )
        if not claimed:
            return 0
        by_message: dict[int, list[repo.ClaimedRecipient]] = defaultdict(list)
        for row in claimed:
            by_message[row.message_id].append(row)
        semaphore = DeferredSemaphore(self.policy.parallel)
        await gatherResults(
            [semaphore.run(self._process_message, rows) for rows in by_message.values()],
            consumeErrors=True,
        )
        if self.on_pass is not None:
            self.on_pass(len(claimed))
        return len(claimed)

    async def _process_message(self, rows: list[repo.ClaimedRecipient]) -> None:
        first = rows[0]
        try:
            await self._deliver_and_bounce(rows)
        except Exception:  # noqa: BLE001 - one message's trouble must not stop the worker
            # Never let one message stop the pass; its leases expire and it is tried again.
            log.failure("outbound processing of {queue_id} failed", queue_id=first.queue_id)
        finally:
            await self._db.transact(repo.delete_finished_txn, [first.message_id])

    async def _open_body(self, row: repo.ClaimedRecipient) -> bytes | None:
        blob = await self._db.run(repo.load_body_txn, row.message_id)
        if blob is None:
            return None
        return await deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), self._cipher.open, row.queue_id, blob
        )

    async def _deliver_and_bounce(self, rows: list[repo.ClaimedRecipient]) -> None:
        assert self._transport is not None
        first = rows[0]
        pending = [r for r in rows if r.status == repo.PENDING]
        owed = [r for r in rows if r.status == repo.FAILED]
        body: bytes | None = None
        unreadable = False
        try:
            body = await self._open_body(first)
        except QueuedBodyUnreadable:
            unreadable = True
            log.error(
                "queued message {queue_id} cannot be decrypted (is queue.key the right one?)", queue_id=first.queue_id
            )
        if body is None and not unreadable:
            return  # finished and deleted by another worker meanwhile
        outcomes: list[repo.Outcome] = []
        if pending:
            groups: dict[str, list[repo.ClaimedRecipient]] = defaultdict(list)
            for row in pending:
                groups[row.domain if self._transport.groups_by_domain else ""].append(row)
            for group in groups.values():
                if body is None:
                    results = [RecipientResult(r.address, 451, "queued message cannot be decrypted") for r in group]
                else:
                    results = await self._transport.deliver(
                        mail_from=first.mail_from,
                        recipients=[r.address for r in group],
                        domain=group[0].domain,
                        message=body,
                    )
                outcomes += self._outcomes(group, results)
        if outcomes:
            await self._db.transact(repo.record_outcomes_txn, worker=self.worker_id, outcomes=outcomes)
        newly_failed = {o.recipient_id: o for o in outcomes if o.status == repo.FAILED}
        failures = [
            FailedRecipient(r.address, r.status_code or "5.0.0", r.last_error or "delivery failed", r.remote_host)
            for r in owed
        ]
        failed_ids = [r.id for r in owed]
        for row in pending:
            outcome = newly_failed.get(row.id)
            if outcome is not None:
                failures.append(
                    FailedRecipient(
                        row.address,
                        outcome.status_code or "5.0.0",
                        outcome.last_error or "delivery failed",
                        outcome.remote_host,
                    )
                )
                failed_ids.append(row.id)
        if failures:
            await self._bounce(first, failures, failed_ids, body)

    def _outcomes(self, rows: list[repo.ClaimedRecipient], results: list[RecipientResult]) -> list[repo.Outcome]:
        now = self.now_ms()
        by_address = {r.address: r for r in results}
        outcomes = []
        for row in rows:
            result = by_address.get(row.address) or RecipientResult(row.address, 451, "no reply for this recipient")
            attempts = row.attempts + 1
            diagnostic = f"{result.code} {result.text}".strip()
            host = getattr(self._transport, "host", None) or row.domain
            if result.delivered:
                log.info("{queue_id}: delivered to a recipient at {domain}", queue_id=row.queue_id, domain=row.domain)
                outcomes.append(repo.Outcome(row.id, repo.SENT, attempts, now, None, None, host))
            elif result.permanent:
                outcomes.append(
                    repo.Outcome(
                        row.id,
                        repo.FAILED,
                        attempts,
                        now,
                        diagnostic,
                        enhanced_status(result.code, result.text),
                        host,
                        keep_lease=True,
                    )
                )
            elif now - row.created_ms >= self.policy.max_age_s * 1000:
                outcomes.append(
                    repo.Outcome(
                        row.id,
                        repo.FAILED,
                        attempts,
                        now,
                        f"gave up after {attempts} attempts; last reply: {diagnostic}",
                        enhanced_status(result.code, result.text, expired=True),
                        host,
                        keep_lease=True,
                    )
                )
            else:
                delay_ms = self.policy.retry_delay_s(attempts) * 1000
                outcomes.append(repo.Outcome(row.id, repo.PENDING, attempts, now + delay_ms, diagnostic, None, host))
        return outcomes

    async def _bounce(
        self, first: repo.ClaimedRecipient, failures: list[FailedRecipient], ids: list[int], body: bytes | None
    ) -> None:
        now = self.now_ms()
        sender_domain = first.mail_from.rpartition("@")[2]
        target = await self._local.resolve(first.mail_from)
        if target is None:
            log.warn("{queue_id}: the sender has no local account; the bounce is dropped", queue_id=first.queue_id)
            status = repo.DROPPED
        else:
            report = build_dsn(
                reporting_mta=self._hostname,
                sender=first.mail_from,
                sender_domain=sender_domain,
                failures=failures,
                arrival=_utc(first.created_ms),
                original=body,
                now=_utc(now),
            )
            spooled = SpooledMessage(size=len(report), memory=report)
            try:
                await self._local.deliver(spooled, "", [target])
            except Exception:  # noqa: BLE001 - one message's trouble must not stop the worker
                log.failure("{queue_id}: storing the bounce failed; retrying later", queue_id=first.queue_id)
                await self._db.transact(
                    repo.release_for_retry_txn,
                    worker=self.worker_id,
                    ids=ids,
                    next_attempt_ms=now + BOUNCE_RETRY_S * 1000,
                )
                return
            finally:
                spooled.close()
            status = repo.BOUNCED
        log.info(
            "{queue_id}: {count} recipient(s) failed; bounce {status}",
            queue_id=first.queue_id,
            count=len(failures),
            status=status,
        )
        await self._db.transact(repo.finish_failed_txn, worker=self.worker_id, ids=ids, status=status, now_ms=now)


__all__ = ["DEFAULT_MAX_AGE_S", "DEFAULT_RETRY_SCHEDULE_S", "Outbound", "OutboundError", "QueuePolicy"]
