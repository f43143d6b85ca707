"""Tests for mailiverse.keylog.merkle against an independent RFC 9162 verifier, known vectors and tampering.

The reference functions (``ref_*``, tests/support/rfc9162.py) are written from the text of RFC 9162 §2.1 and
share no code with the module under test: MTH, PATH and PROOF by their recursive definitions, and the two
verification algorithms of §2.1.3.2 and §2.1.4.2 step by step.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailiverse.keylog import merkle
from mailiverse.keylog.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)
from tests.support.rfc9162 import (
    leaf as ref_leaf,
)
from tests.support.rfc9162 import (
    mth as ref_mth,
)
from tests.support.rfc9162 import (
    node as ref_node,
)
from tests.support.rfc9162 import (
    path as ref_path,
)
from tests.support.rfc9162 import (
    subproof as ref_subproof,
)
from tests.support.rfc9162 import (
    verify_consistency as ref_verify_consistency,
)
from tests.support.rfc9162 import (
    verify_inclusion as ref_verify_inclusion,
)

# --- the independent reference: tests/support/rfc9162.py, from RFC 9162 §2.1 ---

# --- known vectors ------------------------------------------------------------------------------------------
# The reference tree of the Certificate Transparency test suites (RFC 6962 / RFC 9162 hashing): eight leaves and
# the roots of each prefix, the inclusion and the consistency proofs, from transparency-dev/merkle,
# proof/verify_test.go (variables ``leaves``, ``roots``, ``inclusionProofs``, ``consistencyProofs``; read at
# commit 02194e9afb6c1d95b5381350007963aa70fff472). The same values are in google/certificate-transparency's
# merkletree tests. Their inclusion vectors count leaves from 1; here indices are 0-based.

VECTOR_LEAVES = [
    bytes.fromhex(h)
    for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f")
]
VECTOR_ROOTS = [
    bytes.fromhex(h)
    for h in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
# (0-based leaf index, tree size, proof)
VECTOR_INCLUSION = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (0, 1, []),
]
# (first, second, proof)
VECTOR_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]


def entries(count: int) -> list[bytes]:
    return [b"entry %d" % i for i in range(count)]


def tree_of(leaves: Sequence[bytes]) -> MerkleTree:
    tree = MerkleTree()
    for leaf in leaves:
        tree.append(leaf)
    return tree


def flipped(proof: list[bytes], position: int, bit: int = 3) -> list[bytes]:
    changed = list(proof)
    node = bytearray(changed[position])
    node[0] ^= 1 << bit
    changed[position] = bytes(node)
    return changed


# --- hashes and roots ----------------------------------------------------------------------------------------


def test_hashes_are_rfc_9162_leaf_and_node_hashes() -> None:
    """Leaf and node hashes carry the 0x00 and 0x01 prefixes, and the empty tree is the hash of nothing."""
    assert leaf_hash(b"abc") == ref_leaf(b"abc")
    left, right = ref_leaf(b"l"), ref_leaf(b"r")
    assert node_hash(left, right) == ref_node(left, right)
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root([]) == EMPTY_ROOT == MerkleTree().root_at(0)


def test_known_roots() -> None:
    """The roots of every prefix of the Certificate Transparency reference tree match the published ones."""
    hashes = [leaf_hash(leaf) for leaf in VECTOR_LEAVES]
    tree = tree_of(VECTOR_LEAVES)
    for size in range(1, 9):
        assert root(hashes[:size]) == VECTOR_ROOTS[size - 1]
        assert tree.root_at(size) == VECTOR_ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "expected"), VECTOR_INCLUSION)
def test_known_inclusion_proofs(index: int, size: int, expected: list[str]) -> None:
    """Inclusion proofs of the reference tree are the published ones, and both verifiers accept them."""
    proof = [bytes.fromhex(h) for h in expected]
    hashes = [leaf_hash(leaf) for leaf in VECTOR_LEAVES]
    assert inclusion_proof(hashes[:size], index) == proof
    assert tree_of(VECTOR_LEAVES).inclusion(index, size) == proof
    assert ref_verify_inclusion(hashes[index], index, size, proof, VECTOR_ROOTS[size - 1])
    assert verify_inclusion(hashes[index], index, size, proof, VECTOR_ROOTS[size - 1])


@pytest.mark.parametrize(("first", "second", "expected"), VECTOR_CONSISTENCY)
def test_known_consistency_proofs(first: int, second: int, expected: list[str]) -> None:
    """Consistency proofs of the reference tree are the published ones, and both verifiers accept them."""
    proof = [bytes.fromhex(h) for h in expected]
    hashes = [leaf_hash(leaf) for leaf in VECTOR_LEAVES]
    assert consistency_proof(hashes[:second], first, second) == proof
    assert tree_of(VECTOR_LEAVES).consistency(first, second) == proof
    first_root, second_root = VECTOR_ROOTS[first - 1], VECTOR_ROOTS[second - 1]
    if first < second:
        assert ref_verify_consistency(first, second, first_root, second_root, proof)
    assert verify_consistency(first, second, first_root, second_root, proof)


def test_cached_roots_equal_the_root_of_every_prefix() -> None:
    """The incremental tree's root at every size up to 300 is MTH of that prefix, by both definitions."""
    leaves = entries(300)
    hashes = [leaf_hash(leaf) for leaf in leaves]
    tree = MerkleTree()
    assert tree.root_at(0) == EMPTY_ROOT
    for size, leaf in enumerate(leaves, start=1):
        assert tree.append(leaf) == size - 1
        assert tree.size == size
        assert tree.root_at(size) == root(hashes[:size]) == ref_mth(hashes[:size])
    for size in range(301):
        assert tree.root_at(size) == root(hashes[:size])


# --- every proof of small trees ------------------------------------------------------------------------------


def test_every_inclusion_proof_of_trees_up_to_64_leaves() -> None:
    """Every inclusion proof of every tree of 1..64 leaves is RFC 9162's PATH and passes the independent verifier."""
    leaves = entries(64)
    hashes = [leaf_hash(leaf) for leaf in leaves]
    tree = tree_of(leaves)
    for size in range(1, 65):
        expected_root = ref_mth(hashes[:size])
        for index in range(size):
            proof = inclusion_proof(hashes[:size], index)
            assert proof == tree.inclusion(index, size) == ref_path(index, hashes[:size])
            assert ref_verify_inclusion(hashes[index], index, size, proof, expected_root)
            assert verify_inclusion(hashes[index], index, size, proof, expected_root)


def test_every_consistency_proof_of_trees_up_to_32_leaves() -> None:
    """Every consistency proof between two sizes up to 32 is RFC 9162's PROOF and passes the independent verifier."""
    leaves = entries(32)
    hashes = [leaf_hash(leaf) for leaf in leaves]
    tree = tree_of(leaves)
    roots = [ref_mth(hashes[:size]) for size in range(33)]
    for second in range(1, 33):
        for first in range(1, second + 1):
            proof = consistency_proof(hashes[:second], first, second)
            assert proof == tree.consistency(first, second)
            assert proof == ref_subproof(first, hashes[:second], True)
            if first < second:
                assert ref_verify_consistency(first, second, roots[first], roots[second], proof)
            assert verify_consistency(first, second, roots[first], roots[second], proof)


def test_trivial_consistency_cases() -> None:
    """From the empty tree or to the same size the proof is empty, and only matching roots verify."""
    tree = tree_of(entries(5))
    five = tree.root_at(5)
    assert tree.consistency(0, 5) == [] == tree.consistency(5, 5) == tree.consistency(0, 0)
    assert verify_consistency(0, 5, EMPTY_ROOT, five, [])
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(5, 5, five, five, [])
    assert not verify_consistency(5, 5, five, tree.root_at(4), [])
    assert not verify_consistency(5, 5, five, five, [five])
    assert not verify_consistency(0, 5, five, five, [])
    assert not verify_consistency(0, 5, EMPTY_ROOT, five, [five])
    assert not verify_consistency(5, 4, five, tree.root_at(4), [])


# --- a 10,000-entry log --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_log() -> tuple[MerkleTree, list[bytes]]:
    leaves = entries(10_000)
    return tree_of(leaves), [leaf_hash(leaf) for leaf in leaves]


def test_inclusion_proofs_in_a_10000_entry_log(big_log: tuple[MerkleTree, list[bytes]]) -> None:
    """Inclusion proofs for a sample of leaves, at the full size and at earlier sizes, pass the independent verifier."""
    tree, hashes = big_log
    rng = random.Random(9162)
    full_root = ref_mth(hashes)
    assert tree.root_at(10_000) == full_root
    indices = [0, 1, 4095, 4096, 8191, 8192, 9998, 9999] + rng.sample(range(10_000), 150)
    for index in indices:
        proof = tree.inclusion(index)
        assert ref_verify_inclusion(hashes[index], index, 10_000, proof, full_root)
    for _ in range(100):
        size = rng.randrange(1, 10_001)
        index = rng.randrange(size)
        proof = tree.inclusion(index, size)
        assert ref_verify_inclusion(hashes[index], index, size, proof, tree.root_at(size))
    for index in indices[:6]:
        assert tree.inclusion(index) == inclusion_proof(hashes, index)


def test_consistency_proofs_in_a_10000_entry_log(big_log: tuple[MerkleTree, list[bytes]]) -> None:
    """Consistency proofs for a sample of size pairs pass the independent verifier."""
    tree, hashes = big_log
    rng = random.Random(6962)
    pairs = [(1, 10_000), (4096, 10_000), (8192, 8193), (9999, 10_000), (4095, 4097)]
    for _ in range(200):
        low, high = sorted(rng.sample(range(1, 10_001), 2))
        pairs.append((low, high))
    for first, second in pairs:
        proof = tree.consistency(first, second)
        assert ref_verify_consistency(first, second, tree.root_at(first), tree.root_at(second), proof)
    for first, second in pairs[:4]:
        assert tree.consistency(first, second) == consistency_proof(hashes[:second], first, second)
    assert ref_mth(hashes[:8193]) == tree.root_at(8193)


# --- tampering -----------------------------------------------------------------------------------------------


def test_tampered_inclusion_proofs_fail() -> None:
    """A flipped bit in a proof node, a wrong index or size, a dropped or an extra node: both verifiers say no."""
    leaves = entries(40)
    hashes = [leaf_hash(leaf) for leaf in leaves]
    tree = tree_of(leaves)
    verifiers = (ref_verify_inclusion, verify_inclusion)
    for size in range(1, 41):
        good_root = tree.root_at(size)
        for index in range(size):
            proof = tree.inclusion(index, size)
            leaf = hashes[index]
            forgeries = [(leaf, index, size, flipped(proof, i), good_root) for i in range(len(proof))]
            forgeries += [(leaf, wrong, size, proof, good_root) for wrong in (index - 1, index + 1) if wrong >= 0]
            forgeries += [
                (leaf, index, wrong, proof, tree.root_at(wrong))
                for wrong in (size - 1, size + 1)
                if index < wrong <= 40
            ]
            forgeries.append((leaf, index, 2 * size, proof, good_root))
            forgeries.append((leaf, index, size, proof + [good_root], good_root))
            forgeries.append((hashes[(index + 1) % 40], index, size, proof, good_root))
            if proof:
                forgeries.append((leaf, index, size, proof[:-1], good_root))
            for forged in forgeries:
                for check in verifiers:
                    assert not check(*forged), (check.__name__, size, index, forged[1:3])


def test_tampered_consistency_proofs_fail() -> None:
    """A flipped bit in any proof node, a wrong size, swapped or wrong roots, a dropped node: both verifiers say no."""
    tree = tree_of(entries(24))
    roots = [tree.root_at(size) for size in range(25)]
    verifiers = (ref_verify_consistency, verify_consistency)
    for second in range(2, 25):
        for first in range(1, second):
            proof = tree.consistency(first, second)
            forgeries = [(first, second, roots[first], roots[second], flipped(proof, i, 4)) for i in range(len(proof))]
            forgeries += [
                (wrong, second, roots[wrong], roots[second], proof)
                for wrong in (first - 1, first + 1)
                if 0 < wrong < second
            ]
            forgeries += [
                (first, wrong, roots[first], roots[wrong], proof)
                for wrong in (second - 1, second + 1)
                if first < wrong <= 24
            ]
            forgeries.append((first, second, roots[second], roots[first], proof))
            forgeries.append((first, second, roots[first], roots[first], proof))
            forgeries.append((first, second, roots[first], roots[second], proof[:-1]))
            forgeries.append((first, second, roots[first], roots[second], proof + [roots[second]]))
            for forged in forgeries:
                for check in verifiers:
                    assert not check(*forged), (check.__name__, first, second, forged[:2])


def test_a_forked_log_is_not_consistent() -> None:
    """Two logs that share a prefix and then differ by one entry: no proof from either joins the prefix to the other."""
    honest = tree_of(entries(20))
    forked = tree_of(entries(12) + [b"swapped key record"] + entries(20)[13:])
    for first in range(1, 13):
        proof = forked.consistency(first, 20)
        assert verify_consistency(first, 20, forked.root_at(first), forked.root_at(20), proof)
        assert not verify_consistency(first, 20, honest.root_at(first), honest.root_at(20), proof)
        assert not ref_verify_consistency(first, 20, honest.root_at(first), honest.root_at(20), proof)
    for first in range(13, 20):
        proof = forked.consistency(first, 20)
        assert not verify_consistency(first, 20, honest.root_at(first), forked.root_at(20), proof)
        assert not ref_verify_consistency(first, 20, honest.root_at(first), forked.root_at(20), proof)


# --- malformed input ------------------------------------------------------------------------------------------

GOOD = leaf_hash(b"x")
MALFORMED_HASHES: list[object] = [None, b"", GOOD[:31], GOOD + b"\x00", bytearray(GOOD), GOOD.hex(), 7]
MALFORMED_COUNTS: list[object] = [None, -1, 1.0, "1", True, b"\x01"]
MALFORMED_PROOFS: list[object] = [None, GOOD, GOOD.hex(), [GOOD[:31]], [None], [GOOD, 3], {GOOD: 1}, 5]


def test_verify_inclusion_refuses_malformed_input_without_raising() -> None:
    """Wrong types, lengths or signs anywhere make verify_inclusion answer False, never raise."""
    tree = tree_of(entries(2))
    args: list[object] = [leaf_hash(b"entry 0"), 0, 2, tree.inclusion(0), tree.root_at(2)]
    assert verify_inclusion(*args)  # type: ignore[arg-type]
    for position, bad_values in ((0, MALFORMED_HASHES), (1, MALFORMED_COUNTS), (2, MALFORMED_COUNTS)):
        for bad in bad_values:
            changed = list(args)
            changed[position] = bad
            assert verify_inclusion(*changed) is False  # type: ignore[arg-type]
    for position, bad_values in ((3, MALFORMED_PROOFS), (4, MALFORMED_HASHES)):
        for bad in bad_values:
            changed = list(args)
            changed[position] = bad
            assert verify_inclusion(*changed) is False  # type: ignore[arg-type]
    assert verify_inclusion(GOOD, 0, 2**200, [GOOD] * 300, GOOD) is False


def test_verify_consistency_refuses_malformed_input_without_raising() -> None:
    """Wrong types, lengths or signs anywhere make verify_consistency answer False, never raise."""
    tree = tree_of(entries(3))
    args: list[object] = [2, 3, tree.root_at(2), tree.root_at(3), tree.consistency(2, 3)]
    assert verify_consistency(*args)  # type: ignore[arg-type]
    for position, bad_values in (
        (0, MALFORMED_COUNTS),
        (1, MALFORMED_COUNTS),
        (2, MALFORMED_HASHES),
        (3, MALFORMED_HASHES),
        (4, MALFORMED_PROOFS),
    ):
        for bad in bad_values:
            changed = list(args)
            changed[position] = bad
            assert verify_consistency(*changed) is False  # type: ignore[arg-type]
    assert verify_consistency(3, 2**200, GOOD, GOOD, [GOOD] * 300) is False


@given(
    st.integers(min_value=-3, max_value=2**70),
    st.integers(min_value=-3, max_value=2**70),
    st.lists(st.binary(min_size=30, max_size=33), max_size=70),
    st.binary(min_size=31, max_size=33),
    st.binary(min_size=31, max_size=33),
)
def test_verifiers_answer_a_bool_for_any_proof(a: int, b: int, proof: list[bytes], h1: bytes, h2: bytes) -> None:
    """Arbitrary sizes, proofs and hashes never make a verifier raise, and random data never verifies."""
    hashes_ok = len(h1) == len(h2) == 32 and all(len(node) == 32 for node in proof)
    # Only the trivial cases can hold: a one-leaf tree is its leaf, and a tree is consistent with itself.
    assert verify_inclusion(h1, a, b, proof, h2) is (hashes_ok and a == 0 and b == 1 and not proof and h1 == h2)
    trivial = a == b >= 0 and h1 == h2 and not proof and (a > 0 or h1 == EMPTY_ROOT)
    assert verify_consistency(a, b, h1, h2, proof) is (hashes_ok and trivial)


def test_bad_arguments_raise_value_error_naming_the_problem() -> None:
    """Out-of-range indices and sizes, reversed sizes and wrong hash lengths are ValueErrors with a clear message."""
    tree = tree_of(entries(10))
    hashes = [leaf_hash(leaf) for leaf in entries(10)]
    cases = [
        (lambda: tree.inclusion(10), "leaf index 10 is out of range for a tree of 10 leaves"),
        (lambda: tree.inclusion(3, 3), "leaf index 3 is out of range for a tree of 3 leaves"),
        (lambda: tree.inclusion(-1), "leaf index -1 is negative"),
        (lambda: tree.inclusion(0, 11), "tree size 11 is beyond the log's 10 leaves"),
        (lambda: tree.root_at(11), "tree size 11 is beyond the log's 10 leaves"),
        (lambda: tree.consistency(6, 5), "first tree size 6 is larger than second tree size 5"),
        (lambda: tree.consistency(5, 11), "second tree size 11 is beyond the log's 10 leaves"),
        (lambda: tree.append_leaf_hash(b"\x00" * 31), "leaf hash is 31 bytes, not 32"),
        (lambda: tree.append("text"), "a leaf must be bytes"),  # type: ignore[arg-type]
        (lambda: inclusion_proof(hashes, 10), "leaf index 10 is out of range for a tree of 10 leaves"),
        (lambda: inclusion_proof([], 0), "leaf index 0 is out of range for a tree of 0 leaves"),
        (lambda: inclusion_proof(hashes[:3] + [b"short"], 0), "leaf hash 3 is 5 bytes, not 32"),
        (lambda: root([GOOD, GOOD + b"!"]), "leaf hash 1 is 33 bytes, not 32"),
        (lambda: consistency_proof(hashes, 4, 3), "first tree size 4 is larger than second tree size 3"),
        (lambda: consistency_proof(hashes, 4, 11), "second tree size 11 is beyond the log's 10 leaves"),
        (lambda: node_hash(GOOD, GOOD[:5]), "right child hash is 5 bytes, not 32"),
        (lambda: tree.inclusion(True), "leaf index must be an integer"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError) as raised:
            call()
        assert str(raised.value) == message
    assert tree.size == 10


# --- cost at 100,000 leaves ----------------------------------------------------------------------------------


def test_proofs_at_100000_leaves_use_cached_subtrees(monkeypatch: pytest.MonkeyPatch) -> None:
    """At 100,000 leaves a proof costs at most 2*log2(n) node hashes, not a rehash, and well under 5 ms."""
    leaves = entries(100_000)
    tree = tree_of(leaves)
    full_root = tree.root_at(100_000)
    calls = 0
    real_node = merkle._node

    def counting_node(left: bytes, right: bytes) -> bytes:
        nonlocal calls
        calls += 1
        return real_node(left, right)

    monkeypatch.setattr(merkle, "_node", counting_node)
    rng = random.Random(100_000)
    worst = 0
    timings = []
    for index in [0, 65_535, 65_536, 99_999] + rng.sample(range(100_000), 40):
        calls = 0
        started = time.perf_counter()
        proof = tree.inclusion(index)
        timings.append(time.perf_counter() - started)
        worst = max(worst, calls)
        assert ref_verify_inclusion(leaf_hash(leaves[index]), index, 100_000, proof, full_root)
    for first in [1, 65_536, 99_999] + rng.sample(range(1, 100_000), 20):
        calls = 0
        started = time.perf_counter()
        proof = tree.consistency(first, 100_000)
        timings.append(time.perf_counter() - started)
        worst = max(worst, calls)
        assert ref_verify_consistency(first, 100_000, tree.root_at(first), full_root, proof)
    assert worst <= 2 * 17
    assert statistics.median(timings) < 0.005
