"""Receipts of mail received (store/receipts.py), on SQLite and PostgreSQL: what is remembered, per account, and
forgotten after a week."""

from __future__ import annotations

from mailiverse.store import Database, User
from mailiverse.store import users as users_repo
from mailiverse.store.receipts import RETAIN_MS, purge_txn, record_txn, seen_txn

NOW = 1_800_000_000_000


def test_a_receipt_is_per_account_and_forgotten_after_a_week(database: Database, user: User) -> None:
    with database.blocking_allowed():
        bob = database.transact_sync(users_repo.add_user_txn, "bob", b"other-key-der", "v2")
        database.transact_sync(
            record_txn, [(user.id, b"d" * 32, "1_1"), (user.id, b"e" * 32, "1_2")], NOW - RETAIN_MS - 1
        )
        database.transact_sync(record_txn, [(bob.id, b"d" * 32, "2_1")], NOW)
        asked = [(user.id, b"d" * 32), (user.id, b"f" * 32), (bob.id, b"d" * 32), (bob.id, b"e" * 32)]
        assert database.run_sync(seen_txn, asked) == {(user.id, b"d" * 32), (bob.id, b"d" * 32)}
        assert database.run_sync(seen_txn, []) == set()
        assert database.transact_sync(purge_txn, NOW) == 2
        assert database.run_sync(seen_txn, asked) == {(bob.id, b"d" * 32)}
        # an account deleted takes its receipts with it
        database.transact_sync(users_repo.delete_user_txn, bob.id)
        assert database.run_sync(seen_txn, asked) == set()


def test_many_pairs_are_asked_in_one_call(database: Database, user: User) -> None:
    with database.blocking_allowed():
        rows = [(user.id, i.to_bytes(32, "big"), f"1_{i}") for i in range(1200)]
        database.transact_sync(record_txn, rows, NOW)
        asked = [(user.id, i.to_bytes(32, "big")) for i in range(0, 2400, 2)]
        assert len(database.run_sync(seen_txn, asked)) == 600
