"""The outbound queue's repository: synchronous functions on a Connection, returning plain dataclasses.

A queued message is one ``outbound_messages`` row (the encrypted body) and one
``outbound_recipients`` row per recipient carrying that recipient's state:

``pending`` (to be delivered) -> ``sent``, or -> ``failed`` (a bounce is owed) -> ``bounced``
or ``dropped`` (no local account to bounce to).

Workers claim due rows with a lease (``lease_until_ms``) so several processes sharing one
PostgreSQL database never deliver the same recipient at once; on PostgreSQL the claim also
uses ``FOR UPDATE SKIP LOCKED`` so concurrent claimers pass each other by.  A message row,
and with it the body, is deleted as soon as no recipient is ``pending`` or ``failed``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, delete, exists, func, insert, select, update
from sqlalchemy.engine import Connection

from mailiverse.store.schema import outbound_messages, outbound_recipients

PENDING = "pending"
SENT = "sent"
FAILED = "failed"
BOUNCED = "bounced"
DROPPED = "dropped"
#: States in which a recipient still needs work.
OPEN_STATES = (PENDING, FAILED)
#: Longest stored error text; remote servers' replies are cut to this.
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class ClaimedRecipient:
    """One recipient row this worker now holds a lease on."""

    id: int
    message_id: int
    queue_id: str
    user_name: str
    mail_from: str
    created_ms: int
    address: str
    domain: str
    status: str
    attempts: int
    last_error: str | None
    status_code: str | None
    remote_host: str | None


@dataclass(frozen=True)
class RecipientState:
    """A recipient's status as reported to callers and tests."""

    address: str
    status: str
    attempts: int
    next_attempt_ms: int
    last_error: str | None
    status_code: str | None


@dataclass(frozen=True)
class Outcome:
    """What became of one claimed recipient after an attempt; applied by ``record_outcomes``."""

    recipient_id: int
    status: str
    attempts: int
    next_attempt_ms: int
    last_error: str | None = None
    status_code: str | None = None
    remote_host: str | None = None
    #: Keep the lease (a bounce is about to be sent by the same worker).
    keep_lease: bool = False


def enqueue_txn(
    conn: Connection,
    *,
    queue_id: str,
    user_name: str,
    mail_from: str,
    recipients: list[tuple[str, str]],
    body: bytes,
    size: int,
    now_ms: int,
) -> None:
    """Store one message (already encrypted) and a ``pending`` row for each ``(address, domain)``."""
    message_id = conn.execute(
        insert(outbound_messages)
        .values(
            queue_id=queue_id,
            user_name=user_name,
            mail_from=mail_from,
            created_ms=now_ms,
            size=size,
            body=body,
        )
        .returning(outbound_messages.c.id)
    ).scalar_one()
    conn.execute(
        insert(outbound_recipients),
        [
            {
                "message_id": message_id,
                "address": address,
                "domain": domain,
                "status": PENDING,
                "attempts": 0,
                "next_attempt_ms": now_ms,
                "lease_until_ms": 0,
            }
            for address, domain in recipients
        ],
    )


def claim_due_txn(conn: Connection, *, worker: str, now_ms: int, lease_ms: int, limit: int) -> list[ClaimedRecipient]:
    """Lease up to ``limit`` due, unleased recipients needing work (delivery or a bounce)."""
    r, m = outbound_recipients, outbound_messages
    due = and_(
        r.c.status.in_(OPEN_STATES),
        r.c.next_attempt_ms <= now_ms,
        r.c.lease_until_ms < now_ms,
    )
    candidates = (
        select(r.c.id).where(due).order_by(r.c.next_attempt_ms, r.c.id).limit(limit).with_for_update(skip_locked=True)
    )
    ids = list(conn.execute(candidates).scalars())
    if not ids:
        return []
    # The WHERE repeats the lease test, so even without row locks two claimers cannot both win.
    claimed = list(
        conn.execute(
            update(r)
            .where(r.c.id.in_(ids), r.c.lease_until_ms < now_ms)
            .values(lease_owner=worker, lease_until_ms=now_ms + lease_ms)
            .returning(r.c.id)
        ).scalars()
    )
    if not claimed:
        return []
    rows = conn.execute(
        select(
            r.c.id,
            r.c.message_id,
            m.c.queue_id,
            m.c.user_name,
            m.c.mail_from,
            m.c.created_ms,
            r.c.address,
            r.c.domain,
            r.c.status,
            r.c.attempts,
            r.c.last_error,
            r.c.status_code,
            r.c.remote_host,
        )
        .join(m, m.c.id == r.c.message_id)
        .where(r.c.id.in_(claimed))
        .order_by(r.c.message_id, r.c.id)
    ).mappings()
    return [ClaimedRecipient(**row) for row in rows]


def load_body_txn(conn: Connection, message_id: int) -> bytes | None:
    """The encrypted body of a queued message, or None when it is gone."""
    value = conn.execute(
        select(outbound_messages.c.body).where(outbound_messages.c.id == message_id)
    ).scalar_one_or_none()
    return None if value is None else bytes(value)


def record_outcomes_txn(conn: Connection, *, worker: str, outcomes: list[Outcome]) -> int:
    """Apply outcomes to rows this worker still holds; returns how many rows were updated.

    A row whose lease another worker has taken meanwhile is left alone.
    """
    r = outbound_recipients
    updated = 0
    for outcome in outcomes:
        values: dict[str, object] = {
            "status": outcome.status,
            "attempts": outcome.attempts,
            "next_attempt_ms": outcome.next_attempt_ms,
            "last_error": (None if outcome.last_error is None else outcome.last_error[:MAX_ERROR_CHARS]),
            "status_code": outcome.status_code,
            "remote_host": outcome.remote_host,
        }
        if not outcome.keep_lease:
            values.update(lease_owner=None, lease_until_ms=0)
        result = conn.execute(
            update(r).where(r.c.id == outcome.recipient_id, r.c.lease_owner == worker).values(**values)
        )
        updated += result.rowcount
    return updated


def finish_failed_txn(conn: Connection, *, worker: str, ids: list[int], status: str, now_ms: int) -> int:
    """Mark owed bounces as done (``bounced`` or ``dropped``) and release their leases."""
    if status not in (BOUNCED, DROPPED):
        raise ValueError("a failed recipient ends bounced or dropped")
    r = outbound_recipients
    result = conn.execute(
        update(r)
        .where(r.c.id.in_(ids), r.c.status == FAILED, r.c.lease_owner == worker)
        .values(status=status, next_attempt_ms=now_ms, lease_owner=None, lease_until_ms=0)
    )
    return result.rowcount


def release_for_retry_txn(conn: Connection, *, worker: str, ids: list[int], next_attempt_ms: int) -> int:
    """Give up this worker's leases on ``ids`` and make them due again at ``next_attempt_ms``."""
    r = outbound_recipients
    result = conn.execute(
        update(r)
        .where(r.c.id.in_(ids), r.c.lease_owner == worker)
        .values(next_attempt_ms=next_attempt_ms, lease_owner=None, lease_until_ms=0)
    )
    return result.rowcount


def delete_finished_txn(conn: Connection, message_ids: list[int]) -> int:
    """Delete each message (body and rows) none of whose recipients still needs work."""
    if not message_ids:
        return 0
    m, r = outbound_messages, outbound_recipients
    still_open = exists().where(r.c.message_id == m.c.id, r.c.status.in_(OPEN_STATES))
    finished = list(conn.execute(select(m.c.id).where(m.c.id.in_(message_ids), ~still_open)).scalars())
    if not finished:
        return 0
    # Explicit, rather than relying on ON DELETE CASCADE being enabled on the connection.
    conn.execute(delete(r).where(r.c.message_id.in_(finished)))
    conn.execute(delete(m).where(m.c.id.in_(finished)))
    return len(finished)


def recipient_states_txn(conn: Connection, queue_id: str) -> list[RecipientState] | None:
    """Every recipient of a queued message in order, or None when the message is no longer queued."""
    m, r = outbound_messages, outbound_recipients
    message_id = conn.execute(select(m.c.id).where(m.c.queue_id == queue_id)).scalar_one_or_none()
    if message_id is None:
        return None
    rows = conn.execute(
        select(
            r.c.address,
            r.c.status,
            r.c.attempts,
            r.c.next_attempt_ms,
            r.c.last_error,
            r.c.status_code,
        )
        .where(r.c.message_id == message_id)
        .order_by(r.c.id)
    ).mappings()
    return [RecipientState(**row) for row in rows]


def queue_size_txn(conn: Connection) -> int:
    """How many messages are queued."""
    return int(conn.execute(select(func.count()).select_from(outbound_messages)).scalar_one())


def next_due_ms_txn(conn: Connection) -> int | None:
    """When the earliest open recipient is next due, or None for an empty queue."""
    r = outbound_recipients
    value = conn.execute(select(func.min(r.c.next_attempt_ms)).where(r.c.status.in_(OPEN_STATES))).scalar_one_or_none()
    return None if value is None else int(value)


__all__ = [
    "BOUNCED",
    "DROPPED",
    "FAILED",
    "OPEN_STATES",
    "PENDING",
    "SENT",
    "ClaimedRecipient",
    "Outcome",
    "RecipientState",
    "claim_due_txn",
    "delete_finished_txn",
    "enqueue_txn",
    "finish_failed_txn",
    "release_for_retry_txn",
    "load_body_txn",
    "next_due_ms_txn",
    "queue_size_txn",
    "recipient_states_txn",
    "record_outcomes_txn",
]
