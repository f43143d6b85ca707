"""Coalesced reads: lookups asked for while one is in flight share the next thread hop and query.

Under load every RCPT TO looks its account up. One read per lookup costs a hand-off to a reader
thread and back, a transaction and a query each; here the lookups that arrive while a read is
running wait for it to finish and then go together: one hop, one transaction and one
``WHERE key IN (...)`` query for all of them. An idle appliance still answers a lone lookup at once.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy.engine import Connection
from twisted.internet.defer import Deferred

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: At most this many keys go into one query.
MAX_KEYS = 256

Fetch = Callable[[Connection, Sequence[K]], dict[K, V]]


class CoalescedLookup(Generic[K, V]):
    """``lookup(key)``: ``fetch_txn(conn, keys)[key]`` (None when absent), with concurrent lookups merged.

    ``read(fn, keys)`` runs ``fn(conn, keys)`` in a read transaction off the reactor thread and returns
    a Deferred (``Database.run`` wrapped). At most ``max_in_flight`` reads run at once.
    """

    def __init__(
        self,
        read: Callable[[Fetch[K, V], list[K]], Deferred[dict[K, V]]],
        fetch_txn: Fetch[K, V],
        *,
        max_in_flight: int = 2,
    ) -> None:
        self._read = read
        self._fetch_txn = fetch_txn
        self._max_in_flight = max_in_flight
        self._waiting: dict[K, list[Deferred[V | None]]] = {}
        self._in_flight = 0

    def lookup(self, key: K) -> Deferred[V | None]:
        """The value for ``key`` as the database has it now (or None)."""
        done: Deferred[V | None] = Deferred()
        self._waiting.setdefault(key, []).append(done)
        self._start()
        return done

    def _start(self) -> None:
        while self._waiting and self._in_flight < self._max_in_flight:
            keys = list(self._waiting)[:MAX_KEYS]
            batch = {key: self._waiting.pop(key) for key in keys}
            self._in_flight += 1
            read = self._read(self._fetch_txn, keys)
            read.addBoth(self._finished, batch)

    def _finished(self, result: dict[K, V] | Any, batch: dict[K, list[Deferred[V | None]]]) -> None:
        self._in_flight -= 1
        self._start()
        for key, waiters in batch.items():
            for done in waiters:
                if isinstance(result, dict):
                    done.callback(result.get(key))
                else:
                    done.errback(result)


__all__ = ["MAX_KEYS", "CoalescedLookup"]
