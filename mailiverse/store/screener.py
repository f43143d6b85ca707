"""The screener for first-time senders: per account (``users.screener``), which senders are approved or blocked
(as keyed hashes), and which Hashcash stamps were spent.

An account that turns its screener on gets mail from a sender it has never written to nor approved in
its ``Mail/Screener`` folder instead of the inbox; an approved sender's mail goes to the inbox, a blocked
one's is refused (``550 5.7.1``). Senders are remembered only as keyed hashes of their address
(``AddressHasher.sender``, the alias directory's key), like aliases. A message with a valid Hashcash stamp
for the recipient skips the screener once: the stamp's hash is kept (``spent_stamps``) so a replay does not.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from mailiverse.store.errors import InvalidInput
from mailiverse.store.schema import screened_senders, spent_stamps, users

VERDICTS = frozenset({"approved", "blocked"})
#: Senders remembered per account; beyond it, approving by writing to someone stops adding.
MAX_SCREENED_SENDERS = 100_000
#: How long a spent stamp is remembered: longer than a stamp stays fresh (hashcash.check's max_age).
STAMP_MEMORY_MS = 3 * 24 * 3600 * 1000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def screener_enabled_txn(conn: Connection, user_id: int) -> bool:
    return bool(conn.execute(select(users.c.screener).where(users.c.id == user_id)).scalar())


def set_screener_txn(conn: Connection, user_id: int, enabled: bool) -> None:
    """Turn the account's screener on or off (a flag on the account, read with it at RCPT: no extra query
    for the mail of accounts that leave it off)."""
    conn.execute(update(users).where(users.c.id == user_id).values(screener=enabled))


def screening_txn(conn: Connection, user_ids: Sequence[int], sender_hash: bytes) -> dict[int, str]:
    """For each of ``user_ids`` (accounts whose screener is on): ``approved``, ``blocked`` or ``unknown``."""
    rows = conn.execute(
        select(screened_senders.c.user_id, screened_senders.c.verdict).where(
            screened_senders.c.user_id.in_(list(user_ids)), screened_senders.c.sender_hash == sender_hash
        )
    )
    known = {int(row.user_id): str(row.verdict) for row in rows}
    return {user_id: known.get(user_id, "unknown") for user_id in user_ids}


def set_sender_txn(conn: Connection, user_id: int, sender_hash: bytes, verdict: str | None) -> None:
    """Approve or block a sender for ``user_id``, or forget it (``None``)."""
    if verdict is not None and verdict not in VERDICTS:
        raise InvalidInput("a sender is approved or blocked")
    where = (screened_senders.c.user_id == user_id, screened_senders.c.sender_hash == sender_hash)
    if verdict is None:
        conn.execute(delete(screened_senders).where(*where))
        return
    changed = conn.execute(update(screened_senders).where(*where).values(verdict=verdict)).rowcount
    if not changed:
        conn.execute(insert(screened_senders).values(user_id=user_id, sender_hash=sender_hash, verdict=verdict))


def approve_correspondents_txn(conn: Connection, user_id: int, sender_hashes: Sequence[bytes]) -> None:
    """The people ``user_id`` wrote to are approved (a block the user set stays a block)."""
    existing = set(
        conn.execute(
            select(screened_senders.c.sender_hash).where(
                screened_senders.c.user_id == user_id, screened_senders.c.sender_hash.in_(list(sender_hashes))
            )
        ).scalars()
    )
    new = [h for h in dict.fromkeys(sender_hashes) if h not in existing]
    if new:
        conn.execute(
            insert(screened_senders), [{"user_id": user_id, "sender_hash": h, "verdict": "approved"} for h in new]
        )


def counts_txn(conn: Connection, user_id: int) -> dict[str, int]:
    rows = conn.execute(select(screened_senders.c.verdict).where(screened_senders.c.user_id == user_id)).scalars()
    counts = {"approved": 0, "blocked": 0}
    for verdict in rows:
        counts[verdict] = counts.get(verdict, 0) + 1
    return counts


def spend_stamp_txn(conn: Connection, stamp_hash: bytes, now_ms: int | None = None) -> bool:
    """Remember a stamp as spent; False when it was spent before (a replay). Old ones are forgotten."""
    now = _now_ms() if now_ms is None else now_ms
    conn.execute(delete(spent_stamps).where(spent_stamps.c.spent_ms < now - STAMP_MEMORY_MS))
    try:
        with conn.begin_nested():
            conn.execute(insert(spent_stamps).values(stamp_hash=stamp_hash, spent_ms=now))
    except IntegrityError:
        return False
    return True
