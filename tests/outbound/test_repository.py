"""The queue repository on SQLite and PostgreSQL: leases, outcomes and clean-up."""

from __future__ import annotations

import threading

from mailiverse.store import Database
from mailiverse.store import outbound as repo

NOW = 1_700_000_000_000


def _enqueue(db: Database, queue_id: str, *addresses: str) -> None:
    with db.blocking_allowed():
        db.transact_sync(
            repo.enqueue_txn,
            queue_id=queue_id,
            user_name="alice",
            mail_from="alice@example.com",
            recipients=[(a, a.rpartition("@")[2]) for a in addresses],
            body=b"MVQ1sealed",
            size=10,
            now_ms=NOW,
        )


def _claim(db: Database, worker: str, now: int = NOW, limit: int = 100) -> list[repo.ClaimedRecipient]:
    with db.blocking_allowed():
        return db.transact_sync(repo.claim_due_txn, worker=worker, now_ms=now, lease_ms=60_000, limit=limit)


def test_a_lease_excludes_other_workers_until_it_expires(database: Database) -> None:
    """What one worker claimed another cannot claim until the lease runs out."""
    _enqueue(database, "q1", "a@remote.test", "b@other.test")
    first = _claim(database, "w1")
    assert sorted(c.address for c in first) == ["a@remote.test", "b@other.test"]
    assert {c.queue_id for c in first} == {"q1"}
    assert _claim(database, "w2") == []
    assert _claim(database, "w2", now=NOW + 59_999) == []
    assert len(_claim(database, "w2", now=NOW + 60_001)) == 2


def test_concurrent_claims_split_the_work(database: Database, database_url: str) -> None:
    """Eight threads with their own connections claiming at once never get the same row twice."""
    for n in range(40):
        _enqueue(database, f"q{n}", f"r{n}@remote.test")
    others = [Database.open(database_url) for _ in range(3)]
    databases = [database, *others]
    results: list[list[int]] = [[] for _ in range(8)]

    def worker(index: int) -> None:
        db = databases[index % len(databases)]
        while True:
            claimed = _claim(db, f"w{index}", limit=3)
            if not claimed:
                return
            results[index] += [c.id for c in claimed]

    try:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for db in others:
            db.close()
    every = [i for r in results for i in r]
    assert len(every) == 40 and len(set(every)) == 40


def test_outcomes_apply_only_to_the_lease_holder_and_finished_messages_go(database: Database) -> None:
    """A stale worker's outcome is ignored; a message is deleted once nobody is pending or owed a bounce."""
    _enqueue(database, "q1", "a@remote.test", "b@remote.test")
    a, b = _claim(database, "w1")
    with database.blocking_allowed():
        assert (
            database.transact_sync(
                repo.record_outcomes_txn, worker="w2", outcomes=[repo.Outcome(a.id, repo.SENT, 1, NOW)]
            )
            == 0
        )
        assert (
            database.transact_sync(
                repo.record_outcomes_txn,
                worker="w1",
                outcomes=[
                    repo.Outcome(a.id, repo.SENT, 1, NOW),
                    repo.Outcome(b.id, repo.FAILED, 1, NOW, "550 no", "5.0.0", keep_lease=True),
                ],
            )
            == 2
        )
        assert database.transact_sync(repo.delete_finished_txn, [a.message_id]) == 0
        states = database.run_sync(repo.recipient_states_txn, "q1")
        assert [(s.address, s.status) for s in states or []] == [("a@remote.test", "sent"), ("b@remote.test", "failed")]
        assert (
            database.transact_sync(repo.finish_failed_txn, worker="w1", ids=[b.id], status=repo.BOUNCED, now_ms=NOW)
            == 1
        )
        assert database.transact_sync(repo.delete_finished_txn, [a.message_id]) == 1
        assert database.run_sync(repo.recipient_states_txn, "q1") is None
        assert database.run_sync(repo.load_body_txn, a.message_id) is None
        assert database.run_sync(repo.queue_size_txn) == 0
