"""The second factor's tables: passkeys, single-use recovery codes, ceremonies taken once, the operator's reset."""

from __future__ import annotations

import pytest

from mailiverse.store import Database, User
from mailiverse.store import secondfactor as repo
from mailiverse.store.errors import InvalidInput
from mailiverse.store.users import delete_user_txn


def _add(database: Database, user: User, credential_id: bytes = b"cred-1") -> repo.Passkey:
    return database.transact_sync(
        repo.add_passkey_txn,
        user.id,
        credential_id=credential_id,
        public_key=b"cose",
        sign_count=0,
        name="Laptop",
        transports=["internal", "usb"],
        now_ms=1000,
    )


def test_passkeys_are_registered_once_and_listed(database: Database, user: User) -> None:
    """A credential id registers once (for any account); the account lists its passkeys with their transports."""
    with database.blocking_allowed():
        added = _add(database, user)
        assert added.transports == ("internal", "usb") and added.last_used_ms is None
        with pytest.raises(repo.PasskeyExists):
            _add(database, user)
        assert [p.credential_id for p in database.run_sync(repo.list_passkeys_txn, user.id)] == [b"cred-1"]
        assert database.run_sync(repo.find_passkey_txn, user.id, b"cred-1") == added
        assert database.run_sync(repo.find_passkey_txn, user.id + 1, b"cred-1") is None


def test_passkey_limit_and_sizes(database: Database, user: User) -> None:
    """An account has at most MAX_PASSKEYS; ids, keys and names have bounded sizes."""
    with database.blocking_allowed():
        for i in range(repo.MAX_PASSKEYS):
            _add(database, user, f"c{i}".encode())
        with pytest.raises(repo.TooManyPasskeys):
            _add(database, user, b"one-too-many")
        with pytest.raises(InvalidInput):
            _add(database, user, b"x" * (repo.MAX_CREDENTIAL_ID_BYTES + 1))


def test_the_counter_moves_only_from_what_was_read(database: Database, user: User) -> None:
    """Recording a use fails when another login moved the counter since it was read (a racing clone loses)."""
    with database.blocking_allowed():
        passkey = _add(database, user)
        assert database.transact_sync(repo.use_passkey_txn, passkey.id, 0, 5, 2000)
        assert not database.transact_sync(repo.use_passkey_txn, passkey.id, 0, 6, 2001)
        again = database.run_sync(repo.find_passkey_txn, user.id, b"cred-1")
        assert (again.sign_count, again.last_used_ms) == (5, 2000)


def test_recovery_codes_are_spent_once(database: Database, user: User) -> None:
    """A stored code hash is spent once; new codes replace every old one."""
    with database.blocking_allowed():
        hashes = [bytes([i]) * 32 for i in range(10)]
        database.transact_sync(repo.set_recovery_codes_txn, user.id, hashes, 1000)
        assert database.transact_sync(repo.spend_recovery_code_txn, user.id, hashes[2], 2000)
        assert not database.transact_sync(repo.spend_recovery_code_txn, user.id, hashes[2], 2001)
        state = database.run_sync(repo.recovery_code_state_txn, user.id)
        assert (state.remaining, state.total, state.created_ms) == (9, 10, 1000)
        assert hashes[2] not in database.run_sync(repo.unused_recovery_codes_txn, user.id)
        database.transact_sync(repo.set_recovery_codes_txn, user.id, [b"\xff" * 32], 3000)
        assert database.run_sync(repo.unused_recovery_codes_txn, user.id) == [b"\xff" * 32]


def test_ceremonies_are_taken_once_and_capped(database: Database, user: User) -> None:
    """A ceremony is taken once; an account keeps at most MAX_PENDING_PER_USER; expired ones are purged."""
    with database.blocking_allowed():

        def add(digest: bytes, expires: int) -> None:
            database.transact_sync(
                repo.add_pending_txn,
                digest,
                user_id=user.id,
                purpose=repo.LOGIN,
                challenge=b"c" * 32,
                expires_ms=expires,
                now_ms=100,
                state='{"address": "192.0.2.1"}',
            )

        for i in range(repo.MAX_PENDING_PER_USER + 3):
            add(bytes([i]) * 32, 1000 + i)
        assert database.run_sync(repo.count_pending_txn) == repo.MAX_PENDING_PER_USER
        newest = bytes([repo.MAX_PENDING_PER_USER + 2]) * 32
        taken = database.transact_sync(repo.take_pending_txn, newest)
        assert taken is not None and taken.user_id == user.id and taken.purpose == repo.LOGIN
        assert database.transact_sync(repo.take_pending_txn, newest) is None
        assert database.transact_sync(repo.take_pending_txn, b"\x00" * 32) is None  # the oldest was dropped
        assert database.transact_sync(repo.purge_expired_pending_txn, 5000) == repo.MAX_PENDING_PER_USER - 1


def test_reset_and_account_deletion_remove_everything(database: Database, user: User) -> None:
    """The operator's reset removes passkeys, codes and ceremonies; deleting the account cascades likewise."""
    with database.blocking_allowed():
        _add(database, user)
        database.transact_sync(repo.set_recovery_codes_txn, user.id, [b"\x01" * 32, b"\x02" * 32], 1000)
        assert database.transact_sync(repo.reset_second_factor_txn, user.id) == (1, 2)
        assert database.run_sync(repo.count_passkeys_txn, user.id) == 0
        _add(database, user)
        database.transact_sync(delete_user_txn, user.id)
        assert database.run_sync(repo.find_passkey_txn, user.id, b"cred-1") is None
