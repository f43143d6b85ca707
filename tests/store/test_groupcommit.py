"""Group commit: queued writes share one transaction, each in its own savepoint, and fire after the commit."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted
from sqlalchemy import event, func, select
from sqlalchemy.engine import Connection
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from mailiverse.store import Database
from mailiverse.store import users as users_repo
from mailiverse.store.errors import UserExists
from mailiverse.store.groupcommit import Bulk, GroupCommitter, Outcome, run_batch_txn
from mailiverse.store.schema import users


class _ManualWriter:
    """A write_batch whose batches run on demand: ``finish`` runs the oldest one with a fake connection."""

    def __init__(self) -> None:
        self.batches: list[tuple[Callable[[Any], list[Outcome]], Deferred[list[Outcome]]]] = []

    def __call__(self, fn: Callable[[Any], list[Outcome]]) -> Deferred[list[Outcome]]:
        done: Deferred[list[Outcome]] = Deferred()
        self.batches.append((fn, done))
        return done

    def finish(self, conn: Any) -> None:
        fn, done = self.batches.pop(0)
        done.callback(fn(conn))


class _FakeConnection:
    """Enough of a Connection for run_batch: a begin_nested() context manager."""

    def begin_nested(self) -> Any:
        return contextlib.nullcontext()


def _results(deferreds: list[Deferred[Any]]) -> list[Any]:
    out: list[Any] = []
    for d in deferreds:
        d.addBoth(out.append)
    return out


def test_writes_queued_while_the_writer_is_busy_share_the_next_batch() -> None:
    """The first write runs alone; those arriving meanwhile go together into one batch after it."""
    writer = _ManualWriter()
    committer = GroupCommitter(writer)
    first = committer.submit(lambda conn: "a")
    rest = [committer.submit(lambda conn, n=n: n) for n in range(5)]
    assert len(writer.batches) == 1
    results = _results([first, *rest])
    writer.finish(_FakeConnection())
    assert results == ["a"]
    assert len(writer.batches) == 1
    writer.finish(_FakeConnection())
    assert results == ["a", 0, 1, 2, 3, 4]


def test_nothing_fires_before_the_batch_commits() -> None:
    """A caller hears of its write only once the whole batch's transaction has committed."""
    writer = _ManualWriter()
    committer = GroupCommitter(writer)
    results = _results([committer.submit(lambda conn: 1)])
    assert results == []
    writer.finish(_FakeConnection())
    assert results == [1]


def test_batches_are_bounded_by_count_and_weight() -> None:
    """A batch takes at most max_entries writes and max_weight bytes, but always at least one write."""
    writer = _ManualWriter()
    committer = GroupCommitter(writer, max_entries=3, max_weight=100)
    committer.submit(lambda conn: None)
    for weight in (10, 10, 10, 10, 90, 500, 1):
        committer.submit(lambda conn, w=weight: w, weight=weight)
    sizes = []
    while writer.batches:
        fn, done = writer.batches.pop(0)
        outcomes = fn(_FakeConnection())
        sizes.append([o.value for o in outcomes])
        done.callback(outcomes)
    assert sizes == [[None], [10, 10, 10], [10, 90], [500], [1]]


def test_one_failing_write_does_not_fail_the_others() -> None:
    """A write that raises fails alone; the rest of its batch succeeds."""
    writer = _ManualWriter()
    committer = GroupCommitter(writer)
    committer.submit(lambda conn: None)

    def boom(conn: Any) -> None:
        raise ValueError("constraint")

    results = _results([committer.submit(lambda conn: 1), committer.submit(boom), committer.submit(lambda conn: 3)])
    writer.finish(_FakeConnection())
    writer.finish(_FakeConnection())
    assert results[0] == 1 and results[2] == 3
    assert results[1].check(ValueError)


def test_a_failed_commit_fails_every_write_of_the_batch() -> None:
    """When the shared transaction fails, no caller is told its write succeeded."""
    writer = _ManualWriter()
    committer = GroupCommitter(writer)
    results = _results([committer.submit(lambda conn: 1)])
    fn, done = writer.batches.pop(0)
    done.errback(OSError("disk full"))
    assert results[0].check(OSError)
    later = _results([committer.submit(lambda conn: 2)])
    writer.finish(_FakeConnection())
    assert later == [2]


def test_a_batch_locks_the_rows_of_all_its_writes_first_in_one_order() -> None:
    """Before the writes of a batch run, lock_txn gets the union of their lock keys, sorted (concurrent
    batches then wait on each other in one order and never deadlock); a batch naming none locks nothing."""
    writer = _ManualWriter()
    calls: list[object] = []
    committer = GroupCommitter(writer, lock_txn=lambda conn, keys: calls.append(("lock", list(keys))))
    committer.submit(lambda conn: calls.append("first"), lock_keys=[5])
    committer.submit(lambda conn: calls.append("a"), lock_keys=[9, 3])
    committer.submit(lambda conn: calls.append("b"), lock_keys=[3, 7])
    committer.submit(lambda conn: calls.append("c"))
    writer.finish(_FakeConnection())
    writer.finish(_FakeConnection())
    committer.submit(lambda conn: calls.append("alone"))
    writer.finish(_FakeConnection())
    assert calls == [("lock", [5]), "first", ("lock", [3, 7, 9]), "a", "b", "c", "alone"]


def _count_users(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(users)).scalar_one())


def test_savepoints_roll_back_only_the_failing_write(database: Database) -> None:
    """In one real transaction, a write that fails after writing leaves no trace; the others are committed."""

    def add(name: str) -> Callable[[Connection], Any]:
        return lambda conn: users_repo.add_user_txn(conn, name, b"k", "v1").name

    def add_then_duplicate(conn: Connection) -> None:
        users_repo.add_user_txn(conn, "carol", b"k", "v1")
        users_repo.add_user_txn(conn, "alice", b"k", "v1")

    with database.blocking_allowed():
        outcomes = database.transact_sync(run_batch_txn, [add("alice"), add_then_duplicate, add("bob")])
        assert [o.value for o in outcomes] == ["alice", None, "bob"]
        assert outcomes[1].failure is not None and outcomes[1].failure.check(UserExists)
        names = database.run_sync(lambda conn: sorted(u.name for u in users_repo.list_users_txn(conn)))
    assert names == ["alice", "bob"]


@pytest_twisted.ensureDeferred
async def test_concurrent_grouped_writes_share_commits(database: Database) -> None:
    """Many concurrent transact_grouped calls all succeed with fewer commits than calls; one failure stays alone."""
    commits: list[int] = []
    event.listen(database.engine, "commit", lambda conn: commits.append(1))
    names = [f"user{n}" for n in range(40)]

    def add(name: str) -> Callable[[Connection], str]:
        return lambda conn: users_repo.add_user_txn(conn, name, b"k", "v1").name

    calls = [Deferred.fromCoroutine(database.transact_grouped(add(name))) for name in names]
    duplicate = Deferred.fromCoroutine(database.transact_grouped(add("user0")))
    results = [await call for call in calls]
    with pytest.raises(UserExists):
        await duplicate
    assert results == names
    assert await database.run(_count_users) == 40
    assert len(commits) < len(names)


def test_writes_with_a_bulk_form_go_to_their_handler_together() -> None:
    """The payloads of a batch's entries sharing a handler reach it in one call, in queue order; each
    caller gets its own outcome; entries without a bulk form run their own functions."""
    writer = _ManualWriter()
    committer = GroupCommitter(writer)
    committer.submit(lambda conn: None)
    calls: list[list[str]] = []

    def handler(conn: Any, payloads: list[str]) -> list[Outcome]:
        calls.append(payloads)
        return [
            Outcome(failure=Failure(ValueError(p))) if p == "refused" else Outcome(value=p.upper()) for p in payloads
        ]

    def never(conn: Any) -> None:
        raise AssertionError("the bulk form was given and works: the single function must not run")

    deferreds = [
        committer.submit(never, bulk=Bulk(handler, "a")),
        committer.submit(lambda conn: "alone"),
        committer.submit(never, bulk=Bulk(handler, "refused")),
        committer.submit(never, bulk=Bulk(handler, "b")),
    ]
    results = _results(deferreds)
    writer.finish(_FakeConnection())
    writer.finish(_FakeConnection())
    assert calls == [["a", "refused", "b"]]
    assert results[0] == "A" and results[1] == "alone" and results[3] == "B"
    assert results[2].check(ValueError)


@pytest.mark.parametrize("fault", ["raises", "wrong count"])
def test_a_failed_bulk_handler_falls_back_to_each_entrys_own_function(fault: str) -> None:
    """A handler that raises (or answers for the wrong number of payloads) is rolled back as a whole, and
    every one of its entries runs its own function in its own savepoint: nothing is lost, nothing doubled."""
    writer = _ManualWriter()
    committer = GroupCommitter(writer)
    committer.submit(lambda conn: None)
    savepoints: list[str] = []

    class _Recording(_FakeConnection):
        def begin_nested(self) -> Any:
            savepoints.append("savepoint")
            return contextlib.nullcontext()

    def handler(conn: Any, payloads: list[int]) -> list[Outcome]:
        if fault == "raises":
            raise RuntimeError("integrity")
        return [Outcome(value=0)]

    results = _results([committer.submit(lambda conn, n=n: n * 10, bulk=Bulk(handler, n)) for n in (1, 2, 3)])
    writer.finish(_FakeConnection())
    writer.finish(_Recording())
    assert results == [10, 20, 30]
    assert len(savepoints) == 4  # the handler's, then one per entry
