"""Mail from outside already stored, by account and keyed digest (``received_digests``), so a retry is kept once.

A sender whose 250 was lost (the front end killed between the durable commit and the reply) sends the same bytes
again; the digest of the message as sent (the appliance's own trace header left out, keyed: the table cannot be
used to test whether a known message was received) finds the first copy, and that recipient is answered as stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import and_, delete, insert, or_, select
from sqlalchemy.engine import Connection

from mailiverse.store.schema import received_digests

#: A week: longer than any sender retries (RFC 5321 §4.5.4.1 suggests 4-5 days).
RETAIN_MS = 7 * 24 * 3600 * 1000


def seen_txn(conn: Connection, pairs: Iterable[tuple[int, bytes]]) -> set[tuple[int, bytes]]:
    """Which of the (account, digest) ``pairs`` are stored already."""
    wanted = list(dict.fromkeys(pairs))
    if not wanted:
        return set()
    found: set[tuple[int, bytes]] = set()
    for start in range(0, len(wanted), 500):
        part = wanted[start : start + 500]
        condition = or_(*(and_(received_digests.c.user_id == u, received_digests.c.digest == d) for u, d in part))
        rows = conn.execute(select(received_digests.c.user_id, received_digests.c.digest).where(condition))
        found.update((int(u), bytes(d)) for u, d in rows)
    return found


def record_txn(conn: Connection, rows: Sequence[tuple[int, bytes, str]], now_ms: int) -> None:
    """Remember that (account, digest) was stored under key base ``rows[i][2]``."""
    if rows:
        conn.execute(
            insert(received_digests),
            [{"user_id": u, "digest": d, "key_base": k, "received_ms": now_ms} for u, d, k in dict.fromkeys(rows)],
        )


def purge_txn(conn: Connection, now_ms: int) -> int:
    """Forget receipts older than RETAIN_MS; how many."""
    return int(
        conn.execute(delete(received_digests).where(received_digests.c.received_ms < now_ms - RETAIN_MS)).rowcount
    )


__all__ = ["RETAIN_MS", "purge_txn", "record_txn", "seen_txn"]
