"""The key directory and its transparency log in the database (docs/keys.md).

Every record the directory publishes (a key new, superseded or revoked; a domain policy) is appended as one
leaf of an RFC 9162 Merkle log (``key_log``), and each append issues a signed tree head (``key_log_heads``,
Ed25519 with the appliance's log key). ``key_records`` and ``key_bindings`` index the latest record of each
key by the address hashes it serves, so a lookup is two indexed reads plus a proof.

``KeyLog`` keeps the tree's hashes in memory (``MerkleTree``, about 64 bytes a leaf) and brings them up to
the newest head before every answer: another front end may have appended, and an append whose transaction
rolled back leaves hashes the database never kept, which the check of the head's root finds (the tree is
then reloaded). Appends take a PostgreSQL advisory lock, so front ends sharing a database append in turn.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Connection, false, func, insert, select, text, update

from mailiverse.keylog.merkle import EMPTY_ROOT, MerkleTree, leaf_hash
from mailiverse.keylog.records import KeyRecord, PolicyRecord
from mailiverse.keylog.sth import TreeHead, sign, to_json
from mailiverse.privatefile import create_private_once
from mailiverse.store.schema import brought_keys, key_bindings, key_log, key_log_heads, key_records, users

#: At most this many entries in one ``/api/log/entries`` answer (RFC 9162 lets a log cap it).
MAX_ENTRIES = 1000
# A constant of our own for pg_advisory_xact_lock: "mvkeylog" in ASCII.
_APPEND_LOCK = 0x6D766B65796C6F67


def load_log_key(path: Path) -> Ed25519PrivateKey:
    """The appliance's log key from ``path`` (``keys/log.key.pem``), made there (owner-only) on first use."""

    def make() -> bytes:
        return Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    key = serialization.load_pem_private_key(create_private_once(path, make), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return key


class KeyLogError(Exception):
    """A request the log refuses: a size or range it does not have."""


@dataclass(frozen=True)
class SignedHead:
    head: TreeHead
    signature: bytes

    def to_json(self) -> dict[str, object]:
        return to_json(self.head, self.signature)


@dataclass(frozen=True)
class Proven:
    """One leaf with its inclusion proof in the tree of ``sth``."""

    leaf_index: int
    leaf: bytes
    audit_path: list[bytes]
    sth: SignedHead


class KeyLog:
    """The log's tree in memory, its signing key, and the transactions that read and extend it."""

    def __init__(self, log_key: Ed25519PrivateKey) -> None:
        self._key = log_key
        self._tree = MerkleTree()
        self._lock = threading.Lock()

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    @property
    def private_key(self) -> Ed25519PrivateKey:
        return self._key

    # -- reading ------------------------------------------------------------------------------------

    def _sync(self, conn: Connection, head: SignedHead | None) -> None:
        """Bring the in-memory tree to ``head`` (the newest head in the database); the lock is held."""
        size = 0 if head is None else head.head.tree_size
        expected = EMPTY_ROOT if head is None else head.head.root_hash
        if self._tree.size > size or (self._tree.size == size and self._tree.root_at(size) != expected):
            self._tree = MerkleTree()
        if self._tree.size < size:
            rows = conn.execute(
                select(key_log.c.leaf_hash)
                .where(key_log.c.leaf_index >= self._tree.size, key_log.c.leaf_index < size)
                .order_by(key_log.c.leaf_index)
            )
            for (hashed,) in rows:
                self._tree.append_leaf_hash(bytes(hashed))
            if self._tree.size != size or self._tree.root_at(size) != expected:
                # Not the tree the head signed: reload everything once before giving up.
                self._tree = MerkleTree()
                for (hashed,) in conn.execute(
                    select(key_log.c.leaf_hash).where(key_log.c.leaf_index < size).order_by(key_log.c.leaf_index)
                ):
                    self._tree.append_leaf_hash(bytes(hashed))
                if self._tree.root_at(self._tree.size) != expected:
                    raise KeyLogError("the stored log does not match its newest signed head")

    def latest_head_txn(self, conn: Connection) -> SignedHead | None:
        """The newest signed tree head (None while the log is empty), with the tree synced to it."""
        head = _latest_head_txn(conn)
        with self._lock:
            self._sync(conn, head)
        return head

    def prove_txn(self, conn: Connection, leaf_indexes: Sequence[int]) -> list[Proven]:
        """Each leaf with its inclusion proof in the newest head's tree."""
        head = _latest_head_txn(conn)
        if head is None:
            return []
        rows = conn.execute(select(key_log.c.leaf_index, key_log.c.leaf).where(key_log.c.leaf_index.in_(leaf_indexes)))
        leaves = {int(index): bytes(leaf) for index, leaf in rows}
        with self._lock:
            self._sync(conn, head)
            size = head.head.tree_size
            return [
                Proven(index, leaves[index], self._tree.inclusion(index, size), head)
                for index in leaf_indexes
                if index < size and index in leaves
            ]

    def consistency_txn(self, conn: Connection, first: int, second: int) -> tuple[list[bytes], SignedHead]:
        """The consistency proof between two sizes the log has had, and the newest head."""
        head = _latest_head_txn(conn)
        size = 0 if head is None else head.head.tree_size
        if not 0 <= first <= second <= size or head is None:
            raise KeyLogError(f"the log has {size} entries: need 0 <= first <= second <= {size}")
        with self._lock:
            self._sync(conn, head)
            proof = self._tree.consistency(first, second) if 0 < first < second else []
        return proof, head

    def entries_txn(self, conn: Connection, start: int, end: int) -> list[tuple[int, bytes]]:
        """Leaves ``start`` to ``end`` inclusive (at most ``MAX_ENTRIES``, and only as far as the newest head)."""
        head = _latest_head_txn(conn)
        size = 0 if head is None else head.head.tree_size
        if not 0 <= start <= end or start >= size:
            raise KeyLogError(f"the log has {size} entries: need 0 <= start <= end and start < {size}")
        end = min(end, size - 1, start + MAX_ENTRIES - 1)
        rows = conn.execute(
            select(key_log.c.leaf_index, key_log.c.leaf)
            .where(key_log.c.leaf_index >= start, key_log.c.leaf_index <= end)
            .order_by(key_log.c.leaf_index)
        )
        return [(int(index), bytes(leaf)) for index, leaf in rows]

    def heads_txn(self, conn: Connection, after: int, limit: int) -> list[SignedHead]:
        """The signed heads of sizes above ``after``, oldest first."""
        rows = conn.execute(
            select(key_log_heads)
            .where(key_log_heads.c.tree_size > after)
            .order_by(key_log_heads.c.tree_size)
            .limit(max(1, min(limit, MAX_ENTRIES)))
        )
        return [_head_of(row) for row in rows]

    # -- writing ------------------------------------------------------------------------------------

    def append_txn(self, conn: Connection, leaves: Sequence[bytes], now_ms: int) -> tuple[int, SignedHead]:
        """Append ``leaves`` in order and sign the new head; the first new leaf's index, and the head."""
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _APPEND_LOCK})
        head = _latest_head_txn(conn)
        with self._lock:
            self._sync(conn, head)
            start = self._tree.size
            rows = []
            for offset, leaf in enumerate(leaves):
                hashed = leaf_hash(leaf)
                rows.append({"leaf_index": start + offset, "leaf": leaf, "leaf_hash": hashed, "created_ms": now_ms})
                self._tree.append_leaf_hash(hashed)
            size = self._tree.size
            timestamp = max(now_ms, 0 if head is None else head.head.timestamp)
            new_head = TreeHead(size, self._tree.root_at(size), timestamp)
        signature = sign(new_head, self._key)
        if rows:
            conn.execute(insert(key_log), rows)
        conn.execute(
            insert(key_log_heads).values(
                tree_size=size, root_hash=new_head.root_hash, timestamp_ms=timestamp, signature=signature
            )
        )
        return start, SignedHead(new_head, signature)


def _latest_head_txn(conn: Connection) -> SignedHead | None:
    row = conn.execute(select(key_log_heads).order_by(key_log_heads.c.tree_size.desc()).limit(1)).first()
    return None if row is None else _head_of(row)


def _head_of(row: Any) -> SignedHead:
    return SignedHead(TreeHead(int(row.tree_size), bytes(row.root_hash), int(row.timestamp_ms)), bytes(row.signature))


# -- the directory's index ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Holder:
    """Who a key belongs to: an account or a group (exactly one)."""

    user_id: int | None = None
    group_id: int | None = None


@dataclass(frozen=True)
class DirectoryEntry:
    key_id: str
    status: str
    leaf_index: int
    created_ms: int


def record_keys_txn(
    conn: Connection, log: KeyLog, records: Sequence[KeyRecord], holder: Holder, now_ms: int
) -> SignedHead:
    """Append ``records`` to the log and index them: a new key is inserted, a known one takes its new status."""
    start, head = log.append_txn(conn, [record.leaf for record in records], now_ms)
    for offset, record in enumerate(records):
        index = start + offset
        known = conn.execute(select(key_records.c.key_id).where(key_records.c.key_id == record.key_id)).first()
        if known is None:
            conn.execute(
                insert(key_records).values(
                    key_id=record.key_id,
                    user_id=holder.user_id,
                    group_id=holder.group_id,
                    kind=record.kind,
                    status=record.status,
                    leaf_index=index,
                    created_ms=record.created_ms,
                )
            )
            conn.execute(
                insert(key_bindings),
                [{"address_hash": _raw(h), "key_id": record.key_id} for h in record.addresses],
            )
        else:
            conn.execute(
                update(key_records)
                .where(key_records.c.key_id == record.key_id)
                .values(status=record.status, leaf_index=index)
            )
    return head


def record_policy_txn(conn: Connection, log: KeyLog, record: PolicyRecord, now_ms: int) -> tuple[int, SignedHead]:
    """Append a policy record; its leaf index and the new head (the caller files it in ``domain_policies``)."""
    return log.append_txn(conn, [record.leaf], now_ms)


def key_of_txn(conn: Connection, key_id: str) -> DirectoryEntry | None:
    row = conn.execute(select(key_records).where(key_records.c.key_id == key_id)).first()
    return None if row is None else DirectoryEntry(row.key_id, row.status, int(row.leaf_index), int(row.created_ms))


def current_key_of_user_txn(conn: Connection, user_id: int) -> DirectoryEntry | None:
    """The account's current key in the directory (None: it has published none yet)."""
    row = conn.execute(
        select(key_records)
        .where(key_records.c.user_id == user_id, key_records.c.status == "current")
        .order_by(key_records.c.created_ms.desc())
        .limit(1)
    ).first()
    return None if row is None else DirectoryEntry(row.key_id, row.status, int(row.leaf_index), int(row.created_ms))


def sealable_key_ids_txn(conn: Connection, user_ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
    """Per account, the ids of the keys an envelope sealed elsewhere may be sealed to: its current key, and the
    keys it brought from an appliance it moved from (``brought_keys``, docs/moving.md).

    What a client sealed (``/api/send/sealed``, a carrier from another appliance) is stored only for an account
    that holds the key it names; an account without a published or brought key is absent (nothing sealed
    elsewhere is stored for it)."""
    if not user_ids:
        return {}
    rows = conn.execute(
        select(key_records.c.user_id, key_records.c.key_id).where(
            key_records.c.user_id.in_(list(user_ids)), key_records.c.status == "current"
        )
    )
    brought = conn.execute(
        select(brought_keys.c.user_id, brought_keys.c.key_id)
        .where(brought_keys.c.user_id.in_(list(user_ids)))
        .order_by(brought_keys.c.created_ms)
    )
    found: dict[int, tuple[str, ...]] = {}
    for row in [*rows, *brought]:
        found[int(row.user_id)] = (*found.get(int(row.user_id), ()), str(row.key_id))
    return found


def keys_of_address_txn(conn: Connection, hashed: str) -> list[DirectoryEntry]:
    """Every key an address hash has had whose holder still exists (an enabled account, or a group), oldest first.

    A key of a deleted or disabled account is not served: the address then answers as unknown.
    """
    rows = conn.execute(
        select(key_records.c.key_id, key_records.c.status, key_records.c.leaf_index, key_records.c.created_ms)
        .select_from(
            key_bindings.join(key_records, key_bindings.c.key_id == key_records.c.key_id).outerjoin(
                users, users.c.id == key_records.c.user_id
            )
        )
        .where(
            key_bindings.c.address_hash == _raw(hashed),
            key_records.c.group_id.is_not(None) | (key_records.c.user_id.is_not(None) & (users.c.disabled == false())),
        )
        .order_by(key_records.c.created_ms, key_records.c.leaf_index)
    )
    return [DirectoryEntry(r.key_id, r.status, int(r.leaf_index), int(r.created_ms)) for r in rows]


def leaf_txn(conn: Connection, leaf_index: int) -> bytes | None:
    """The bytes of one leaf as stored (no proof: for the appliance's own checks)."""
    leaf = conn.execute(select(key_log.c.leaf).where(key_log.c.leaf_index == leaf_index)).scalar()
    return None if leaf is None else bytes(leaf)


def log_size_txn(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(key_log)).scalar_one())


def _raw(hashed: str) -> bytes:
    return base64.b64decode(hashed)


__all__ = [
    "MAX_ENTRIES",
    "load_log_key",
    "DirectoryEntry",
    "Holder",
    "KeyLog",
    "KeyLogError",
    "Proven",
    "SignedHead",
    "current_key_of_user_txn",
    "key_of_txn",
    "keys_of_address_txn",
    "leaf_txn",
    "log_size_txn",
    "record_keys_txn",
    "record_policy_txn",
]
