"""The key directory's rules: what an account may publish, rotation, lookups with proofs (docs/keys.md).

Every record is verified (shape and its own key's signature, ``keylog.records``) before anything is stored,
and bound to exactly the addresses of the account that publishes it. An account publishes its first record
(at sign-up, or at the first login of a client that knows the directory); a rotation publishes the new key's
record and the old key's record marked superseded (signed by the old key, so only its holder can retire it)
and swaps the account's public key and key block in the same transaction. Nothing is ever deleted from the
log: a lookup answers the current record with its inclusion proof and the history of the keys before it.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, update

from mailiverse.contracts.errors import Refusal
from mailiverse.keylog.records import KeyRecord, RecordError, address_hash, b64, parse_leaf, verify_key_record
from mailiverse.store.db import Database
from mailiverse.store.groups import DomainPolicy, current_policy_txn
from mailiverse.store.keylog import (
    Holder,
    KeyLog,
    Proven,
    SignedHead,
    current_key_of_user_txn,
    key_of_txn,
    keys_of_address_txn,
    leaf_txn,
    record_keys_txn,
)
from mailiverse.store.schema import users
from mailiverse.store.users import User, get_user_by_id_txn, set_key_block_txn

#: Records in one publication: a rotation is two (the new key, the old one superseded).
MAX_RECORDS = 2


class DirectoryError(Refusal):
    """A publication the directory refuses; ``code`` is the API's stable error code."""


@dataclass(frozen=True)
class Lookup:
    """A key with its proof and the keys the address had before (each with its own proof), and the policy
    of the address's domain with its proof (None: none was ever set, which is ``personal``)."""

    current: Proven
    history: list[Proven]
    policy: tuple[Proven, DomainPolicy] | None = None
    #: The moved record of the key's account with its proof, when it moved to another appliance (docs/moving.md).
    moved: Proven | None = None


def parse_records(documents: object) -> list[KeyRecord]:
    """Verified key records from a JSON list (each must carry its own key's valid signature)."""
    if not isinstance(documents, list) or not 1 <= len(documents) <= MAX_RECORDS:
        raise DirectoryError("invalid_record", f"records must be a list of 1 to {MAX_RECORDS} key records")
    try:
        return [verify_key_record(document) for document in documents]
    except RecordError as error:
        raise DirectoryError("invalid_record", f"the key record is refused: {error}") from None


class KeyDirectory:
    """Publishes and serves the account keys of this appliance through the transparency log."""

    def __init__(self, database: Database, log: KeyLog, clock: Callable[[], float] = time.time) -> None:
        self.database = database
        self.log = log
        self._clock = clock

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- publishing ---------------------------------------------------------------------------------

    @staticmethod
    def check_first(records: list[KeyRecord], public_key: bytes, addresses: Sequence[str]) -> KeyRecord:
        """The one record of an account's first publication, if it is its key's, current, for its addresses."""
        if len(records) != 1:
            raise DirectoryError("invalid_record", "publish one record: the account's current key")
        (record,) = records
        check_binding(record, addresses)
        if record.status != "current" or record.supersedes is not None or record.kind != "personal":
            raise DirectoryError("invalid_record", "a first record is a current personal key superseding none")
        if not hmac.compare_digest(record.public_key, public_key):
            raise DirectoryError("key_mismatch", "the record is not for the account's key", 409)
        return record

    async def publish_first(self, user: User, addresses: Sequence[str], records: list[KeyRecord]) -> SignedHead:
        """The account's first record: its current key (the one it holds), serving its addresses."""
        record = self.check_first(records, user.public_key, addresses)
        return await self.database.transact(self._publish_first_txn, user.id, record)

    def _publish_first_txn(self, conn: Connection, user_id: int, record: KeyRecord) -> SignedHead:
        user = get_user_by_id_txn(conn, user_id)
        if user is None:
            raise DirectoryError("not_found", "the account is gone", 404)
        if not hmac.compare_digest(user.public_key, record.public_key):
            raise DirectoryError("key_mismatch", "the record is not for the account's current key", 409)
        current = current_key_of_user_txn(conn, user_id)
        if current is not None:
            if current.key_id == record.key_id:
                raise DirectoryError("already_published", "this key is already in the directory", 409)
            raise DirectoryError("key_mismatch", "the account already has a current key: rotate it instead", 409)
        if key_of_txn(conn, record.key_id) is not None:
            raise DirectoryError("key_id_taken", "that key id is already in the directory", 409)
        if record.envelope_format != user.envelope_format:
            raise DirectoryError("invalid_record", "the record's format is not the account's envelope format")
        return record_keys_txn(conn, self.log, [record], Holder(user_id=user_id), self._now_ms())

    async def rotate(
        self,
        user: User,
        addresses: Sequence[str],
        records: list[KeyRecord],
        key_block: bytes,
        if_key_block_version: int | None,
    ) -> tuple[User, SignedHead]:
        """Replace the account's key: ``records`` are the new key's (current, superseding the old) and the old
        key's marked superseded (signed by the old key); the new key block holds both private keys."""
        new, old = check_supersession(records, kind="personal")
        check_binding(new, addresses)
        return await self.database.transact(self._rotate_txn, user.id, new, old, key_block, if_key_block_version)

    def _rotate_txn(
        self,
        conn: Connection,
        user_id: int,
        new: KeyRecord,
        old: KeyRecord,
        key_block: bytes,
        if_version: int | None,
    ) -> tuple[User, SignedHead]:
        user = get_user_by_id_txn(conn, user_id)
        if user is None:
            raise DirectoryError("not_found", "the account is gone", 404)
        current = current_key_of_user_txn(conn, user_id)
        if current is None or current.key_id != old.key_id or not hmac.compare_digest(user.public_key, old.public_key):
            raise DirectoryError("key_mismatch", "the superseded record is not the account's current key", 409)
        stored = stored_record_txn(conn, current.leaf_index)
        if stored is None or not same_but_status(stored, old):
            raise DirectoryError("key_mismatch", "the superseded record changes more than its status", 409)
        if key_of_txn(conn, new.key_id) is not None:
            raise DirectoryError("key_id_taken", "that key id is already in the directory", 409)
        updated = set_key_block_txn(conn, user_id, key_block, if_version=if_version)
        conn.execute(
            update(users)
            .where(users.c.id == user_id)
            .values(public_key=new.public_key, envelope_format=new.envelope_format)
        )
        head = record_keys_txn(conn, self.log, [old, new], Holder(user_id=user_id), self._now_ms())
        refreshed = get_user_by_id_txn(conn, user_id)
        return (refreshed or updated), head

    # -- reading ------------------------------------------------------------------------------------

    async def lookup(self, address: str) -> Lookup | None:
        """The address's current key with its proof and history, or None (unknown, or its holder is gone)."""
        return await self.database.run(self.lookup_txn, address)

    def lookup_txn(self, conn: Connection, address: str) -> Lookup | None:
        entries = keys_of_address_txn(conn, address_hash(address))
        current = [e for e in entries if e.status == "current"]
        if not current:
            return None
        indexes = [current[-1].leaf_index] + [e.leaf_index for e in entries if e is not current[-1]]
        policy = current_policy_txn(conn, address.rpartition("@")[2])
        if policy is not None:
            indexes.append(policy.leaf_index)
        from mailiverse.store.moving import moved_leaf_of_key_txn  # moves are rare: imported when asked

        moved = moved_leaf_of_key_txn(conn, current[-1].key_id)
        if moved is not None:
            indexes.append(moved)
        proven = self.log.prove_txn(conn, indexes)
        if len(proven) != len(indexes) or proven[0].leaf_index != current[-1].leaf_index:
            return None
        moved_proof = proven.pop() if moved is not None else None
        if policy is not None:
            return Lookup(proven[0], proven[1:-1], (proven[-1], policy), moved_proof)
        return Lookup(proven[0], proven[1:], moved=moved_proof)

    async def current_record_of(self, user: User) -> KeyRecord | None:
        """The account's current published record (None: none yet)."""
        return await self.database.run(self._current_record_txn, user.id)

    def _current_record_txn(self, conn: Connection, user_id: int) -> KeyRecord | None:
        current = current_key_of_user_txn(conn, user_id)
        return None if current is None else stored_record_txn(conn, current.leaf_index)


def stored_record_txn(conn: Connection, leaf_index: int) -> KeyRecord | None:
    """The verified key record the log holds at ``leaf_index``."""
    leaf = leaf_txn(conn, leaf_index)
    return None if leaf is None else verify_key_record(parse_leaf(leaf))


def check_supersession(records: list[KeyRecord], *, kind: str) -> tuple[KeyRecord, KeyRecord]:
    """The (new, old) records of a key change: the new one current and superseding the old one, superseded."""
    new = next((r for r in records if r.status == "current"), None)
    old = next((r for r in records if r.status == "superseded"), None)
    if new is None or old is None or len(records) != 2:
        raise DirectoryError("invalid_record", "a key change is the new key's record and the old one's, superseded")
    if new.kind != kind or old.kind != kind or new.supersedes != old.key_id or new.key_id == old.key_id:
        raise DirectoryError("invalid_record", f"the new {kind} record must supersede the old key")
    return new, old


def check_binding(record: KeyRecord, addresses: Sequence[str]) -> None:
    expected = sorted({address_hash(a) for a in addresses})
    if list(record.addresses) != expected:
        raise DirectoryError("invalid_record", "the record must serve exactly the account's addresses")


def same_but_status(stored: KeyRecord, retiring: KeyRecord) -> bool:
    """Whether ``retiring`` is ``stored`` with only its status (and retired time, and so signature) changed."""
    ignored = {"status", "retired_ms", "signature"}
    return {k: v for k, v in stored.document.items() if k not in ignored} == {
        k: v for k, v in retiring.document.items() if k not in ignored
    }


def proven_json(proven: Proven) -> dict[str, Any]:
    """A leaf with its proof as the API answers it (docs/keys.md)."""
    return {
        "record": parse_leaf(proven.leaf),
        "leaf": b64(proven.leaf),
        "leaf_index": proven.leaf_index,
        "tree_size": proven.sth.head.tree_size,
        "audit_path": [b64(node) for node in proven.audit_path],
    }


__all__ = [
    "MAX_RECORDS",
    "DirectoryError",
    "KeyDirectory",
    "Lookup",
    "check_binding",
    "check_supersession",
    "parse_records",
    "proven_json",
    "same_but_status",
    "stored_record_txn",
]
