"""Group commit: write transactions queued while the writer is busy share one commit (and one fsync).

Each queued function runs in its own SAVEPOINT inside the shared transaction, so one that fails is
rolled back alone and reported to its own caller; the others are committed. Every caller's Deferred
fires only after the shared commit, so a result still means "durably committed".

A caller may also give a bulk form of its write: a handler and a payload. The batch hands the
payloads of every entry with the same handler to one call of it, in one savepoint: a few
``executemany`` statements for many callers instead of a savepoint and a handful of statements each.
The handler reports an outcome per payload (it refuses one without writing it); should the handler
itself fail, its savepoint is rolled back and each of those entries runs its own function instead,
as if no bulk form had been given.

A function may name lock keys (the accounts whose usage rows it changes): the batch locks all of
them in one sorted order before any function runs. Two batches in flight at once (PostgreSQL) then
wait for each other rather than each holding a row the other needs (a deadlock, which would fail
both batches).
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.python.failure import Failure

from mailiverse.logs import Logger

#: At most this many queued functions share one transaction.
MAX_BATCH_ENTRIES = 64
#: And at most about this many bytes of data (as the callers weigh it), so one commit stays short.
MAX_BATCH_WEIGHT = 16 * 1024 * 1024

WriteBatch = Callable[[Callable[[Connection], list["Outcome"]]], "Deferred[list[Outcome]]"]
#: ``handler(conn, payloads)``: write what it can of the payloads; one Outcome per payload, in order.
BulkHandler = Callable[[Connection, list[Any]], list["Outcome"]]


@dataclass
class Outcome:
    """What one function of a batch returned, or how it failed."""

    value: Any = None
    failure: Failure | None = None


@dataclass(frozen=True)
class Bulk:
    """The bulk form of one queued write: ``handler`` is called once with the payloads of a batch."""

    handler: BulkHandler
    payload: Any


@dataclass
class _Entry:
    fn: Callable[[Connection], Any]
    weight: int
    lock_keys: tuple[int, ...] = ()
    bulk: Bulk | None = None
    done: Deferred[Any] = field(default_factory=Deferred)


log = Logger()

LockRows = Callable[[Connection, Sequence[int]], None]


def run_batch_txn(
    conn: Connection,
    fns: Sequence[Callable[[Connection], Any]],
    lock_txn: LockRows | None = None,
    lock_keys: Sequence[int] = (),
    bulks: Sequence[Bulk | None] = (),
) -> list[Outcome]:
    """Run the batch in ``conn``'s open transaction; an Outcome per function, never raising for one of them.

    First, ``lock_txn(conn, lock_keys)`` when there are keys to lock (a failure there fails the whole
    batch). Entries with a bulk form (``bulks[i]``) go to their handler together; the others, and
    those whose handler failed, each run in a savepoint of their own. A failed function's savepoint
    is rolled back, leaving the others' writes in the transaction.
    """
    if lock_txn is not None and lock_keys:
        lock_txn(conn, lock_keys)
    outcomes: list[Outcome | None] = [None] * len(fns)
    groups: dict[BulkHandler, list[tuple[int, Any]]] = {}
    for index, bulk in enumerate(bulks):
        if bulk is not None:
            groups.setdefault(bulk.handler, []).append((index, bulk.payload))
    for handler, members in groups.items():
        results = _run_bulk_txn(conn, handler, [payload for _, payload in members])
        if results is None:
            continue  # each of them runs its own function below
        for (index, _), outcome in zip(members, results, strict=True):
            outcomes[index] = outcome
    for index, fn in enumerate(fns):
        if outcomes[index] is None:
            outcomes[index] = _run_one_txn(conn, fn)
    return [outcome for outcome in outcomes if outcome is not None]


def _run_bulk_txn(conn: Connection, handler: BulkHandler, payloads: list[Any]) -> list[Outcome] | None:
    """The handler's outcomes; None (its savepoint rolled back) if it failed as a whole."""
    try:
        with conn.begin_nested():
            results = handler(conn, payloads)
            if len(results) != len(payloads):
                raise RuntimeError("a bulk handler must give one outcome per payload")
            return results
    except Exception as error:  # noqa: BLE001 - each entry then runs its own function
        # Not an error by itself (say, a path taken meanwhile): the entries' own functions say what
        # failed. Only the type is logged: a database error's text carries the statement's parameters.
        log.warn(
            "a bulk write failed ({error}); its {count} entries are written one by one",
            error=type(error).__name__,
            count=len(payloads),
        )
        return None


def _run_one_txn(conn: Connection, fn: Callable[[Connection], Any]) -> Outcome:
    try:
        with conn.begin_nested():
            return Outcome(value=fn(conn))
    except Exception:  # noqa: BLE001 - reported to that function's caller, the batch goes on
        return Outcome(failure=Failure())


class GroupCommitter:
    """Queues write functions on the reactor thread and hands them to ``write_batch`` in bounded batches.

    ``write_batch(fn)`` must run ``fn(conn)`` in one transaction off the reactor thread and fire after
    the commit. At most ``max_in_flight`` batches run at once; whatever arrives meanwhile waits and
    goes into the next batch, so batches grow exactly when the writer is the bottleneck. ``lock_txn``
    locks the sorted lock keys of a batch's functions before they run.
    """

    def __init__(
        self,
        write_batch: WriteBatch,
        *,
        max_in_flight: int = 1,
        max_entries: int = MAX_BATCH_ENTRIES,
        max_weight: int = MAX_BATCH_WEIGHT,
        lock_txn: LockRows | None = None,
    ) -> None:
        self._write_batch = write_batch
        self._lock_txn = lock_txn
        self._max_in_flight = max_in_flight
        self._max_entries = max_entries
        self._max_weight = max_weight
        self._queue: collections.deque[_Entry] = collections.deque()
        self._in_flight = 0

    def submit(
        self, fn: Callable[[Connection], Any], weight: int = 0, lock_keys: Sequence[int] = (), bulk: Bulk | None = None
    ) -> Deferred[Any]:
        """Queue ``fn(conn)`` (or its ``bulk`` form); fires with its result after the commit, or with its failure."""
        entry = _Entry(fn, weight, tuple(lock_keys), bulk)
        self._queue.append(entry)
        self._start_batches()
        return entry.done

    def _start_batches(self) -> None:
        while self._queue and self._in_flight < self._max_in_flight:
            batch = self._take_batch()
            self._in_flight += 1
            fns = [entry.fn for entry in batch]
            keys = sorted({key for entry in batch for key in entry.lock_keys})
            bulks = [entry.bulk for entry in batch]
            run = functools.partial(run_batch_txn, fns=fns, lock_txn=self._lock_txn, lock_keys=keys, bulks=bulks)
            written = maybeDeferred(self._write_batch, run)
            written.addBoth(self._finished, batch)

    def _take_batch(self) -> list[_Entry]:
        """The oldest queued entries within the bounds; always at least one, however heavy."""
        batch = [self._queue.popleft()]
        weight = batch[0].weight
        while self._queue and len(batch) < self._max_entries and weight + self._queue[0].weight <= self._max_weight:
            entry = self._queue.popleft()
            weight += entry.weight
            batch.append(entry)
        return batch

    def _finished(self, result: list[Outcome] | Failure, batch: list[_Entry]) -> None:
        self._in_flight -= 1
        # Keep the writer busy before running the callers' continuations.
        self._start_batches()
        if isinstance(result, Failure):
            # The shared transaction did not commit: nothing of the batch was written.
            for entry in batch:
                entry.done.errback(result)
            return
        for entry, outcome in zip(batch, result, strict=True):
            if outcome.failure is not None:
                entry.done.errback(outcome.failure)
            else:
                entry.done.callback(outcome.value)


__all__ = ["MAX_BATCH_ENTRIES", "MAX_BATCH_WEIGHT", "Bulk", "BulkHandler", "GroupCommitter", "Outcome", "run_batch_txn"]
