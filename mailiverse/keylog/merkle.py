"""The append-only Merkle tree of RFC 9162 (Certificate Transparency 2.0) §2.1: hashes, proofs and their checks.

Hashes (§2.1.1), with SHA-256: a leaf is ``SHA-256(0x00 || leaf)``, an inner node ``SHA-256(0x01 || left ||
right)``, the empty tree ``SHA-256()``. The tree over ``n`` leaves splits at ``k``, the largest power of two
below ``n``: ``MTH(D[n]) = node(MTH(D[0:k]), MTH(D[k:n]))``. Inclusion proofs are §2.1.3's ``PATH`` and are
checked with §2.1.3.2's algorithm as written; consistency proofs are §2.1.4's ``PROOF`` and are checked with
§2.1.4.2's algorithm as written. RFC 9162 defines consistency only for ``0 < first < second``; the two trivial
cases are answered here the way other verifiers do (transparency-dev/merkle): ``first == second`` has an empty
proof and equal roots, ``first == 0`` has an empty proof and the empty tree's root.

The module-level functions take the whole list of leaf hashes and are O(n): they are the plain statement of the
RFC. ``MerkleTree`` is what the log keeps: it stores every perfect subtree (2**k leaves starting at a multiple of
2**k) as it completes, which in an append-only log never changes again, so any root or proof for any earlier size
is a handful of those cached hashes joined by O(log n) new node hashes.

Bad arguments to the builders raise ``ValueError`` naming what is wrong. The ``verify_*`` functions take what
strangers send and never raise: anything malformed is simply not a valid proof (``False``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence

HASH_SIZE = 32
"""Every hash here is a SHA-256 digest."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The root of the tree with no leaves (RFC 9162 §2.1.1: the hash of the empty string)."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

# MTH of the leaves in [start, end), for the ranges PATH and SUBPROOF visit.
_SubtreeHash = Callable[[int, int], bytes]


def leaf_hash(leaf: bytes) -> bytes:
    """``SHA-256(0x00 || leaf)``: the prefix keeps a leaf from ever passing for an inner node."""
    if not isinstance(leaf, bytes):
        raise ValueError("a leaf must be bytes")
    return hashlib.sha256(_LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)`` of two child hashes."""
    _check_hash(left, "left child hash")
    _check_hash(right, "right child hash")
    return _node(left, right)


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of the leaves (§2.1.1), computed level by level.

    Pairing neighbours left to right and lifting a lone last node unchanged to the next level builds exactly the
    tree of the RFC's largest-power-of-two split, without recursion.
    """
    return _mth(_checked_leaf_hashes(leaf_hashes))


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """``PATH(index, D[n])`` (§2.1.3.1): the sibling hashes from the leaf up to the root, nearest first."""
    hashes = _checked_leaf_hashes(leaf_hashes)
    _check_index(index, len(hashes))
    return _path(index, len(hashes), _list_subtree(hashes))


def consistency_proof(leaf_hashes: Sequence[bytes], first: int, second: int) -> list[bytes]:
    """``PROOF(first, D[second])`` (§2.1.4.1) over the first ``second`` leaves; empty if first is 0 or second."""
    hashes = _checked_leaf_hashes(leaf_hashes)
    _check_sizes(first, second, len(hashes))
    return _consistency(first, second, _list_subtree(hashes))


def verify_inclusion(leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Whether ``proof`` shows the leaf with ``leaf_hash`` at ``index`` in the tree of ``tree_size`` with ``root``.

    RFC 9162 §2.1.3.2, step by step; malformed input of any kind is ``False``.
    """
    if not (_is_hash(leaf_hash) and _is_hash(root) and _is_count(index) and _is_count(tree_size)):
        return False
    if not _is_hash_list(proof):
        return False
    # 1. leaf_index >= tree_size fails.
    if index >= tree_size:
        return False
    # 2, 3.
    fn, sn = index, tree_size - 1
    r = leaf_hash
    # 4.
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    # 5.
    return sn == 0 and hmac.compare_digest(r, root)


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]) -> bool:
    """Whether ``proof`` shows the tree of ``second`` leaves with ``second_root`` extends that of ``first``.

    RFC 9162 §2.1.4.2, step by step, for ``0 < first < second``; the trivial sizes as the module says. Malformed
    input of any kind is ``False``.
    """
    if not (_is_count(first) and _is_count(second) and _is_hash(first_root) and _is_hash(second_root)):
        return False
    if not _is_hash_list(proof) or first > second:
        return False
    if first == 0 and not hmac.compare_digest(first_root, EMPTY_ROOT):
        return False
    if first == second:
        return len(proof) == 0 and hmac.compare_digest(first_root, second_root)
    if first == 0:
        return len(proof) == 0
    # 1. An empty path fails.
    if len(proof) == 0:
        return False
    path = list(proof)
    # 2. A first tree of 2**k leaves is a node of the second one; its hash starts the path.
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    # 3, 4.
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5.
    fr = sr = path[0]
    # 6.
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = _node(c, fr)
            sr = _node(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _node(sr, c)
        fn >>= 1
        sn >>= 1
    # 7.
    first_ok = hmac.compare_digest(fr, first_root)
    second_ok = hmac.compare_digest(sr, second_root)
    return first_ok and second_ok and sn == 0


class MerkleTree:
    """The log's tree, kept as it grows: leaf hashes plus every completed perfect subtree.

    ``_levels[k]`` holds, 32 bytes each in one ``bytearray``, the hashes of the subtrees of ``2**k`` leaves that
    start at a multiple of ``2**k`` (level 0 is the leaf hashes): about two hashes per leaf in all. Every range
    that MTH, PATH and SUBPROOF visit starts at a multiple of a power of two at least its length, so it is one
    cached subtree or splits into one on the left and such a range on the right: a root or a proof at any size
    costs O(log n) node hashes on top of cached ones, never a rehash of the leaves.
    """

    def __init__(self) -> None:
        self._levels: list[bytearray] = []
        self._size = 0

    @property
    def size(self) -> int:
        """The number of leaves appended so far."""
        return self._size

    def append(self, leaf: bytes) -> int:
        """Add the leaf with these exact bytes; its index."""
        return self.append_leaf_hash(leaf_hash(leaf))

    def append_leaf_hash(self, hashed: bytes) -> int:
        """Add a leaf by its hash (``leaf_hash`` of its bytes), as when reloading a log; its index."""
        _check_hash(hashed, "leaf hash")
        index = self._size
        self._size += 1
        node, level = hashed, 0
        while True:
            if level == len(self._levels):
                self._levels.append(bytearray())
            row = self._levels[level]
            row += node
            if (len(row) // HASH_SIZE) % 2:
                return index
            # The new node completed a pair: their parent is a new perfect subtree one level up.
            node = _node(bytes(row[-2 * HASH_SIZE : -HASH_SIZE]), node)
            level += 1

    def root_at(self, size: int) -> bytes:
        """The root of the tree of the first ``size`` leaves."""
        _check_count(size, "tree size")
        if size > self._size:
            raise ValueError(f"tree size {size} is beyond the log's {self._size} leaves")
        return self._subtree(0, size) if size else EMPTY_ROOT

    def inclusion(self, index: int, size: int | None = None) -> list[bytes]:
        """The inclusion proof of leaf ``index`` in the tree of the first ``size`` leaves (default: all)."""
        size = self._size if size is None else size
        _check_count(size, "tree size")
        if size > self._size:
            raise ValueError(f"tree size {size} is beyond the log's {self._size} leaves")
        _check_index(index, size)
        return _path(index, size, self._subtree)

    def consistency(self, first: int, second: int | None = None) -> list[bytes]:
        """The consistency proof from the tree of ``first`` leaves to that of ``second`` (default: all)."""
        second = self._size if second is None else second
        _check_sizes(first, second, self._size)
        return _consistency(first, second, self._subtree)

    def _subtree(self, start: int, end: int) -> bytes:
        size = end - start
        if size & (size - 1) == 0:
            level = size.bit_length() - 1
            offset = (start >> level) * HASH_SIZE
            return bytes(self._levels[level][offset : offset + HASH_SIZE])
        k = _split(size)
        return _node(self._subtree(start, start + k), self._subtree(start + k, end))


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (> 1): where RFC 9162 splits a tree of ``n`` leaves."""
    return 1 << ((n - 1).bit_length() - 1)


def _mth(hashes: Sequence[bytes]) -> bytes:
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    while len(level) > 1:
        lifted = [level[-1]] if len(level) % 2 else []
        level = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)] + lifted
    return level[0]


def _list_subtree(hashes: Sequence[bytes]) -> _SubtreeHash:
    return lambda start, end: _mth(hashes[start:end])


def _path(index: int, size: int, subtree: _SubtreeHash) -> list[bytes]:
    """PATH(index, D[size]), walked from the root down; the RFC lists the deepest sibling first."""
    proof: list[bytes] = []
    start, end, m = 0, size, index
    while end - start > 1:
        k = _split(end - start)
        if m < k:
            proof.append(subtree(start + k, end))
            end = start + k
        else:
            proof.append(subtree(start, start + k))
            start += k
            m -= k
    proof.reverse()
    return proof


def _consistency(first: int, second: int, subtree: _SubtreeHash) -> list[bytes]:
    """PROOF(first, D[second]) = SUBPROOF(first, D[second], true), walked from the root down."""
    if first in (0, second):
        return []
    proof: list[bytes] = []
    start, end, m, whole = 0, second, first, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            proof.append(subtree(start + k, end))
            end = start + k
        else:
            proof.append(subtree(start, start + k))
            start += k
            m -= k
            whole = False
    # SUBPROOF(m, D[m], false) = {MTH(D[m])}: the old tree is not a node of the path already known to the verifier.
    if not whole:
        proof.append(subtree(start, end))
    proof.reverse()
    return proof


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_hash_list(value: object) -> bool:
    if isinstance(value, bytes | bytearray | str) or not isinstance(value, Sequence):
        return False
    return all(_is_hash(item) for item in value)


def _check_hash(value: object, what: str) -> None:
    if not isinstance(value, bytes):
        raise ValueError(f"{what} must be bytes")
    if len(value) != HASH_SIZE:
        raise ValueError(f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def _check_count(value: object, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{what} must be an integer")
    if value < 0:
        raise ValueError(f"{what} {value} is negative")


def _check_index(index: int, size: int) -> None:
    _check_count(index, "leaf index")
    if index >= size:
        raise ValueError(f"leaf index {index} is out of range for a tree of {size} leaves")


def _check_sizes(first: int, second: int, available: int) -> None:
    _check_count(first, "first tree size")
    _check_count(second, "second tree size")
    if first > second:
        raise ValueError(f"first tree size {first} is larger than second tree size {second}")
    if second > available:
        raise ValueError(f"second tree size {second} is beyond the log's {available} leaves")


def _checked_leaf_hashes(leaf_hashes: Sequence[bytes]) -> Sequence[bytes]:
    for position, hashed in enumerate(leaf_hashes):
        _check_hash(hashed, f"leaf hash {position}")
    return leaf_hashes
