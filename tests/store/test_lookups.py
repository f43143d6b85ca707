"""Coalesced lookups: concurrent RCPT lookups share one read; the batched user query on both databases."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet.defer import Deferred

from mailiverse.store import Database
from mailiverse.store import users as users_repo
from mailiverse.store.lookups import MAX_KEYS, CoalescedLookup


class _ManualReads:
    """A read function whose reads finish on demand, answering from a dict."""

    def __init__(self, table: dict[str, int]) -> None:
        self.table = table
        self.reads: list[tuple[list[str], Deferred[dict[str, int]]]] = []

    def __call__(self, fetch: Any, keys: list[str]) -> Deferred[dict[str, int]]:
        done: Deferred[dict[str, int]] = Deferred()
        self.reads.append((keys, done))
        return done

    def finish(self) -> list[str]:
        keys, done = self.reads.pop(0)
        done.callback({key: self.table[key] for key in keys if key in self.table})
        return keys


def _results(deferreds: list[Deferred[Any]]) -> list[Any]:
    out: list[Any] = []
    for d in deferreds:
        d.addBoth(out.append)
    return out


def test_a_lone_lookup_is_read_at_once() -> None:
    reads = _ManualReads({"alice": 1})
    lookup: CoalescedLookup[str, int] = CoalescedLookup(reads, lambda conn, keys: {}, max_in_flight=1)
    results = _results([lookup.lookup("alice")])
    assert [keys for keys, _ in reads.reads] == [["alice"]]
    reads.finish()
    assert results == [1]


def test_lookups_arriving_during_a_read_share_the_next_one() -> None:
    """While one read runs, later lookups (repeats included) queue and go together in one read."""
    reads = _ManualReads({"alice": 1, "bob": 2})
    lookup: CoalescedLookup[str, int] = CoalescedLookup(reads, lambda conn, keys: {}, max_in_flight=1)
    first = _results([lookup.lookup("alice")])
    rest = _results([lookup.lookup(name) for name in ("bob", "nobody", "alice", "bob")])
    assert len(reads.reads) == 1
    reads.finish()
    assert first == [1]
    assert reads.finish() == ["bob", "nobody", "alice"]
    assert rest == [2, 2, None, 1]
    assert not reads.reads


def test_a_failed_read_fails_each_of_its_lookups_and_not_the_next() -> None:
    reads = _ManualReads({"alice": 1})
    lookup: CoalescedLookup[str, int] = CoalescedLookup(reads, lambda conn, keys: {}, max_in_flight=1)
    failed = _results([lookup.lookup("alice")])
    later = _results([lookup.lookup("alice")])
    reads.reads.pop(0)[1].errback(OSError("database gone"))
    assert failed[0].check(OSError)
    reads.finish()
    assert later == [1]


def test_one_read_takes_at_most_max_keys() -> None:
    reads = _ManualReads({})
    lookup: CoalescedLookup[str, int] = CoalescedLookup(reads, lambda conn, keys: {}, max_in_flight=1)
    lookup.lookup("first")
    results = _results([lookup.lookup(f"user{n}") for n in range(MAX_KEYS + 5)])
    reads.finish()
    assert len(reads.finish()) == MAX_KEYS
    assert len(reads.finish()) == 5
    assert results == [None] * (MAX_KEYS + 5)


def test_get_users_finds_each_name_as_asked(database: Database) -> None:
    """Names are matched case-insensitively, answered under the name asked; unusable names find nothing."""
    with database.blocking_allowed():
        alice = database.transact_sync(users_repo.add_user_txn, "alice", b"key-a", "v1")
        found = database.run_sync(users_repo.get_users_txn, ["alice", "ALICE", "bob", "", "no spaces", "x" * 500])
    assert found == {"alice": alice, "ALICE": alice}


@pytest_twisted.ensureDeferred
async def test_a_real_database_answers_coalesced_lookups(database: Database) -> None:
    with database.blocking_allowed():
        database.transact_sync(users_repo.add_user_txn, "alice", b"key-a", "v1")
    lookup: CoalescedLookup[str, users_repo.User] = CoalescedLookup(
        lambda fetch, keys: Deferred.fromCoroutine(database.run(fetch, keys)), users_repo.get_users_txn
    )
    answers = [await d for d in [lookup.lookup("Alice"), lookup.lookup("carol"), lookup.lookup("alice")]]
    assert [None if user is None else user.name for user in answers] == ["alice", None, "alice"]
