"""The key directory's log in a real database (store/keylog.py), on SQLite and PostgreSQL.

Every root and proof the log gives is checked against the tests' RFC 9162 code (tests/support/rfc9162.py),
written from the RFC's text (§2.1.1 MTH, §2.1.3.1 PATH, §2.1.3.2 inclusion check, §2.1.4.1 PROOF/SUBPROOF,
§2.1.4.2 consistency check) and not from mailiverse.keylog.merkle: a proof must both equal the RFC's
definition and pass its check.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, delete, insert, select, update

from mailiverse.keylog import sth
from mailiverse.keylog.records import address_hash, key_record_fields, sign_key_record, verify_key_record
from mailiverse.store import Database, User
from mailiverse.store.keylog import (
    MAX_ENTRIES,
    Holder,
    KeyLog,
    KeyLogError,
    SignedHead,
    keys_of_address_txn,
    log_size_txn,
    record_keys_txn,
)
from mailiverse.store.schema import key_log, key_log_heads
from mailiverse.store.users import set_disabled_txn
from tests.support import rfc9162

T = TypeVar("T")
NOW_MS = 1_790_000_000_000

# -- RFC 9162 §2.1: tests/support/rfc9162.py (written from the RFC), over the leaves' bytes ---------------

h_leaf = rfc9162.leaf
h_node = rfc9162.node
mth = rfc9162.mth_of


def rfc_path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """§2.1.3.1: PATH(m, D[n])."""
    return rfc9162.path(m, [h_leaf(d) for d in leaves])


def rfc_proof(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """§2.1.4.1: PROOF(m, D[n]) = SUBPROOF(m, D[n], true)."""
    return rfc9162.subproof(m, [h_leaf(d) for d in leaves], True)


def rfc_verify_inclusion(index: int, size: int, hashed: bytes, path: Sequence[bytes], root: bytes) -> bool:
    return rfc9162.verify_inclusion(hashed, index, size, list(path), root)


def rfc_verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    return rfc9162.verify_consistency(first, second, first_root, second_root, list(proof))


def test_the_rfc_code_here_is_right() -> None:
    """The checks above accept the RFC's proofs and refuse altered ones (so the tests below prove something)."""
    leaves = [b"%d" % i for i in range(11)]
    root = mth(leaves)
    assert root == h_node(mth(leaves[:8]), h_node(mth(leaves[8:10]), h_leaf(leaves[10])))
    for i in range(11):
        path = rfc_path(i, leaves)
        assert rfc_verify_inclusion(i, 11, h_leaf(leaves[i]), path, root)
        assert not rfc_verify_inclusion(i, 11, h_leaf(b"other"), path, root)
        assert not rfc_verify_inclusion((i + 1) % 11, 11, h_leaf(leaves[i]), path, root)
    for m in range(1, 11):
        proof = rfc_proof(m, leaves)
        assert rfc_verify_consistency(m, 11, mth(leaves[:m]), root, proof)
        assert not rfc_verify_consistency(m, 11, mth(leaves[: m - 1]), root, proof)
        assert not rfc_verify_consistency(m, 11, mth(leaves[:m]), mth(leaves[:10]), proof)


# -- helpers ----------------------------------------------------------------------------------------


def write(database: Database, fn: Callable[..., T], *args: Any) -> T:
    with database.blocking_allowed():
        return database.transact_sync(fn, *args)


def read(database: Database, fn: Callable[..., T], *args: Any) -> T:
    with database.blocking_allowed():
        return database.run_sync(fn, *args)


def append(database: Database, log: KeyLog, leaves: Sequence[bytes], now_ms: int = NOW_MS) -> tuple[int, SignedHead]:
    return write(database, log.append_txn, list(leaves), now_ms)


def check_head(head: SignedHead, leaves: Sequence[bytes], key: Ed25519PrivateKey) -> None:
    """The head covers exactly ``leaves``, by the RFC's MTH, and carries the log key's signature over it."""
    assert head.head.tree_size == len(leaves)
    assert head.head.root_hash == mth(leaves)
    assert sth.verify(head.head, head.signature, key.public_key())


def leaves_of(count: int, tag: str = "leaf") -> list[bytes]:
    return [f'{{"{tag}":{i}}}'.encode() for i in range(count)]


class Aborted(Exception):
    pass


# -- appends and heads ------------------------------------------------------------------------------


def test_each_append_issues_one_signed_head_over_the_rfc_root(database: Database) -> None:
    key = Ed25519PrivateKey.generate()
    log = KeyLog(key)
    assert read(database, log.latest_head_txn) is None
    leaves = leaves_of(24)
    batches = [1, 2, 3, 1, 5, 4, 1, 7]
    written: list[SignedHead] = []
    done = 0
    for n, size in enumerate(batches):
        start, head = append(database, log, leaves[done : done + size], NOW_MS + n)
        assert start == done
        done += size
        check_head(head, leaves[:done], key)
        assert head.head.timestamp == NOW_MS + n
        written.append(head)
    # A clock that goes back does not take the heads back in time.
    start, late = append(database, log, [b"late"], NOW_MS - 10_000)
    assert start == done
    check_head(late, [*leaves, b"late"], key)
    assert late.head.timestamp == written[-1].head.timestamp
    written.append(late)

    stored = read(database, log.heads_txn, 0, 100)
    assert stored == written
    assert [h.head.tree_size for h in stored] == [1, 3, 6, 7, 12, 16, 17, 24, 25]
    assert read(database, log.heads_txn, 7, 2) == written[4:6]
    assert read(database, log.latest_head_txn) == late
    assert read(database, log_size_txn) == 25
    rows = read(database, lambda conn: list(conn.execute(select(key_log).order_by(key_log.c.leaf_index))))
    assert [(r.leaf_index, bytes(r.leaf), bytes(r.leaf_hash)) for r in rows] == [
        (i, leaf, h_leaf(leaf)) for i, leaf in enumerate([*leaves, b"late"])
    ]


# -- proofs -----------------------------------------------------------------------------------------


def test_inclusion_proofs_are_the_rfc_paths_and_verify(database: Database) -> None:
    key = Ed25519PrivateKey.generate()
    log = KeyLog(key)
    leaves = leaves_of(37)
    for first in range(0, 37, 8):
        append(database, log, leaves[first : first + 8])
    head = read(database, log.latest_head_txn)
    assert head is not None
    check_head(head, leaves, key)

    everything = read(database, log.prove_txn, list(range(37)))
    assert [p.leaf_index for p in everything] == list(range(37))
    for proven in everything:
        i = proven.leaf_index
        assert proven.leaf == leaves[i]
        assert proven.sth == head
        assert proven.audit_path == rfc_path(i, leaves)
        assert rfc_verify_inclusion(i, 37, h_leaf(proven.leaf), proven.audit_path, head.head.root_hash)
        assert not rfc_verify_inclusion(i, 37, h_leaf(leaves[(i + 1) % 37]), proven.audit_path, head.head.root_hash)

    # Each in its own read too, in the order asked, and an index the log does not have is left out.
    some = read(database, log.prove_txn, [36, 0, 99, 17])
    assert [p.leaf_index for p in some] == [36, 0, 17]
    assert [p.audit_path for p in some] == [rfc_path(i, leaves) for i in (36, 0, 17)]
    assert read(database, KeyLog(key).prove_txn, [5])[0].audit_path == rfc_path(5, leaves)
    assert read(database, KeyLog(key).prove_txn, []) == []


def test_an_empty_log_proves_nothing(database: Database) -> None:
    log = KeyLog(Ed25519PrivateKey.generate())
    assert read(database, log.prove_txn, [0]) == []
    with pytest.raises(KeyLogError):
        read(database, log.consistency_txn, 0, 0)
    with pytest.raises(KeyLogError):
        read(database, log.entries_txn, 0, 0)


def test_consistency_proofs_between_sizes_are_the_rfc_proofs_and_verify(database: Database) -> None:
    key = Ed25519PrivateKey.generate()
    log = KeyLog(key)
    leaves = leaves_of(37)
    append(database, log, leaves[:5])
    append(database, log, leaves[5:16])
    append(database, log, leaves[16:])
    sizes = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 36, 37]
    checked = 0
    for first in sizes:
        for second in sizes:
            if not first < second:
                continue
            proof, head = read(database, log.consistency_txn, first, second)
            check_head(head, leaves, key)
            assert proof == rfc_proof(first, leaves[:second]), (first, second)
            assert rfc_verify_consistency(first, second, mth(leaves[:first]), mth(leaves[:second]), proof)
            assert not rfc_verify_consistency(first, second, mth(leaves[: first - 1]), mth(leaves[:second]), proof)
            checked += 1
    assert checked == len(sizes) * (len(sizes) - 1) // 2
    # The trivial sizes answer with empty proofs; sizes the log has not had are refused.
    assert read(database, log.consistency_txn, 0, 37)[0] == []
    assert read(database, log.consistency_txn, 12, 12)[0] == []
    for first, second in [(5, 4), (1, 38), (-1, 3)]:
        with pytest.raises(KeyLogError):
            read(database, log.consistency_txn, first, second)


# -- entries ----------------------------------------------------------------------------------------


def test_entries_ranges_are_inclusive_and_capped(database: Database) -> None:
    log = KeyLog(Ed25519PrivateKey.generate())
    leaves = leaves_of(MAX_ENTRIES + 5)
    append(database, log, leaves)

    def entries(start: int, end: int) -> list[tuple[int, bytes]]:
        return read(database, log.entries_txn, start, end)

    assert entries(3, 3) == [(3, leaves[3])]
    assert entries(10, 14) == [(i, leaves[i]) for i in range(10, 15)]
    capped = entries(0, 5_000)
    assert capped == [(i, leaves[i]) for i in range(MAX_ENTRIES)]
    assert entries(MAX_ENTRIES, 10**9) == [(i, leaves[i]) for i in range(MAX_ENTRIES, MAX_ENTRIES + 5)]
    assert entries(4, MAX_ENTRIES + 3) == [(i, leaves[i]) for i in range(4, MAX_ENTRIES + 4)]
    for start, end in [(MAX_ENTRIES + 5, MAX_ENTRIES + 6), (7, 6), (-1, 2)]:
        with pytest.raises(KeyLogError):
            entries(start, end)

    def beyond_the_head(conn: Connection) -> None:
        # A leaf stored without a head (as if mid-append) is not served: entries stop at the newest head.
        conn.execute(insert(key_log).values(leaf_index=len(leaves), leaf=b"x", leaf_hash=h_leaf(b"x"), created_ms=1))
        assert log.entries_txn(conn, len(leaves) - 1, len(leaves)) == [(len(leaves) - 1, leaves[-1])]
        with pytest.raises(KeyLogError):
            log.entries_txn(conn, len(leaves), len(leaves))
        raise Aborted

    with pytest.raises(Aborted):
        write(database, beyond_the_head)


# -- resync -----------------------------------------------------------------------------------------


def test_an_append_rolled_back_is_forgotten_by_the_next_append(database: Database) -> None:
    key = Ed25519PrivateKey.generate()
    log = KeyLog(key)
    kept = leaves_of(3, "kept")
    append(database, log, kept)

    def append_then_fail(conn: Connection) -> None:
        start, head = log.append_txn(conn, [b"lost-1", b"lost-2"], NOW_MS)
        assert (start, head.head.tree_size) == (3, 5)
        raise Aborted

    with pytest.raises(Aborted):
        write(database, append_then_fail)
    assert [h.head.tree_size for h in read(database, log.heads_txn, 0, 10)] == [3]

    start, head = append(database, log, [b"next"])
    assert start == 3
    check_head(head, [*kept, b"next"], key)
    proven = read(database, log.prove_txn, [3])[0]
    assert proven.leaf == b"next"
    assert rfc_verify_inclusion(3, 4, h_leaf(b"next"), proven.audit_path, head.head.root_hash)
    assert read(database, log.entries_txn, 0, 10) == list(enumerate([*kept, b"next"]))


def test_two_front_ends_appending_in_turn_keep_one_log(database: Database) -> None:
    key = Ed25519PrivateKey.generate()
    fronts = [KeyLog(key), KeyLog(key)]
    leaves: list[bytes] = []
    heads: list[SignedHead] = []
    for turn, count in enumerate([2, 3, 1, 1, 4, 2, 5]):
        front = fronts[turn % 2]
        batch = [f"front{turn % 2}-turn{turn}-{i}".encode() for i in range(count)]
        start, head = append(database, front, batch, NOW_MS + turn)
        assert start == len(leaves)
        leaves += batch
        check_head(head, leaves, key)
        heads.append(head)
        # The other front end sees the same head and proves the new leaves in it.
        other = fronts[(turn + 1) % 2]
        assert read(database, other.latest_head_txn) == head
        for proven in read(database, other.prove_txn, list(range(start, len(leaves)))):
            assert proven.audit_path == rfc_path(proven.leaf_index, leaves)

    # An append rolled back on one front end, then as many other leaves appended by the other: same size,
    # another root. The first front end must notice and reload.
    def lost(conn: Connection) -> None:
        fronts[0].append_txn(conn, [b"lost-a", b"lost-b"], NOW_MS)
        raise Aborted

    with pytest.raises(Aborted):
        write(database, lost)
    append(database, fronts[1], [b"real-a", b"real-b"], NOW_MS + 100)
    leaves += [b"real-a", b"real-b"]
    proven = read(database, fronts[0].prove_txn, [len(leaves) - 1])[0]
    assert proven.leaf == b"real-b"
    assert proven.audit_path == rfc_path(len(leaves) - 1, leaves)
    assert read(database, fronts[0].latest_head_txn).head.root_hash == mth(leaves)  # type: ignore[union-attr]

    # Consistency proofs from either front end link every head to the last one.
    last = len(leaves)
    for head in heads:
        size = head.head.tree_size
        for front in fronts:
            proof, _ = read(database, front.consistency_txn, size, last)
            assert rfc_verify_consistency(size, last, head.head.root_hash, mth(leaves), proof)


# -- tampering --------------------------------------------------------------------------------------


@pytest.mark.parametrize("tamper", ["changed", "removed"])
def test_a_leaf_altered_behind_the_logs_back_is_refused(database: Database, tamper: str) -> None:
    key = Ed25519PrivateKey.generate()
    append(database, KeyLog(key), leaves_of(6))
    append(database, KeyLog(key), leaves_of(3, "more"))

    def alter(conn: Connection) -> None:
        if tamper == "changed":
            evil = b'{"leaf":"evil"}'
            conn.execute(update(key_log).where(key_log.c.leaf_index == 4).values(leaf=evil, leaf_hash=h_leaf(evil)))
        else:
            conn.execute(delete(key_log).where(key_log.c.leaf_index == 8))

    write(database, alter)
    fresh = KeyLog(key)
    with pytest.raises(KeyLogError):
        read(database, fresh.latest_head_txn)
    with pytest.raises(KeyLogError):
        read(database, fresh.prove_txn, [0])
    # The heads themselves are untouched: still the log key's signatures over the true roots.
    heads = read(database, lambda conn: list(conn.execute(select(key_log_heads).order_by(key_log_heads.c.tree_size))))
    assert [bytes(h.root_hash) for h in heads] == [mth(leaves_of(6)), mth(leaves_of(6) + leaves_of(3, "more"))]


# -- the directory's index --------------------------------------------------------------------------


def test_records_are_indexed_by_address_and_follow_a_rotation(database: Database, user: User) -> None:
    old_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    address = "alice@example.org"
    log = KeyLog(Ed25519PrivateKey.generate())
    fields = key_record_fields(old_key.public_key(), [address], created_ms=NOW_MS)
    first = verify_key_record(sign_key_record(fields, old_key))
    write(database, record_keys_txn, log, [first], Holder(user_id=user.id), NOW_MS)
    (entry,) = read(database, keys_of_address_txn, address_hash(address))
    assert (entry.key_id, entry.status, entry.leaf_index) == (first.key_id, "current", 0)

    retired = dict(fields, status="superseded", retired_ms=NOW_MS + 5)
    old = verify_key_record(sign_key_record(retired, old_key))
    new_fields = key_record_fields(new_key.public_key(), [address], created_ms=NOW_MS + 5, supersedes=first.key_id)
    new = verify_key_record(sign_key_record(new_fields, new_key))
    head = write(database, record_keys_txn, log, [old, new], Holder(user_id=user.id), NOW_MS + 5)
    assert head.head.root_hash == mth([first.leaf, old.leaf, new.leaf])
    found = read(database, keys_of_address_txn, address_hash(address))
    assert [(e.key_id, e.status, e.leaf_index) for e in found] == [
        (first.key_id, "superseded", 1),
        (new.key_id, "current", 2),
    ]
    assert read(database, keys_of_address_txn, address_hash("bob@example.org")) == []

    write(database, set_disabled_txn, user.id, True)
    assert read(database, keys_of_address_txn, address_hash(address)) == []
