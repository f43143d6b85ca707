"""Tests for mailiverse.keylog.sth: the signed bytes, sign/verify round trips, tampering, and the JSON form."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st

from mailiverse.keylog import sth
from mailiverse.keylog.sth import TreeHead, canonical, from_json, sign, to_json, verify

ROOT = hashlib.sha256(b"some root").digest()
HEAD = TreeHead(tree_size=7, root_hash=ROOT, timestamp=1_700_000_000_123)


@pytest.fixture(scope="module")
def log_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def test_canonical_bytes_are_the_documented_layout() -> None:
    """The signed bytes are the ASCII tag, the size and the time as 8-byte big-endian, then the 32-byte root."""
    expected = b"mailiverse-sth-v1\n" + (7).to_bytes(8, "big") + (1_700_000_000_123).to_bytes(8, "big") + ROOT
    assert canonical(HEAD) == expected
    assert len(canonical(HEAD)) == 66
    prefix, size, timestamp, root = struct.unpack(">18sQQ32s", canonical(HEAD))
    assert (prefix, size, timestamp, root) == (sth.STH_PREFIX, 7, 1_700_000_000_123, ROOT)


def test_sign_and_verify_round_trip(log_key: Ed25519PrivateKey) -> None:
    """A head signed with the log key verifies with its public key, through JSON and back."""
    signature = sign(HEAD, log_key)
    assert len(signature) == 64
    assert verify(HEAD, signature, log_key.public_key())
    head, decoded = from_json(to_json(HEAD, signature))
    assert (head, decoded) == (HEAD, signature)
    assert verify(head, decoded, log_key.public_key())
    # An outside verifier needs nothing of ours: plain Ed25519 over the documented bytes.
    raw = log_key.public_key().public_bytes_raw()
    Ed25519PublicKey.from_public_bytes(raw).verify(decoded, canonical(head))


def test_a_changed_field_or_another_key_fails(log_key: Ed25519PrivateKey) -> None:
    """Changing the size, the root or the time, a flipped signature bit or another key: the signature fails."""
    signature = sign(HEAD, log_key)
    public = log_key.public_key()
    changed_root = bytes([ROOT[0] ^ 1]) + ROOT[1:]
    for changed in (
        dataclasses.replace(HEAD, tree_size=8),
        dataclasses.replace(HEAD, root_hash=changed_root),
        dataclasses.replace(HEAD, timestamp=HEAD.timestamp + 1),
    ):
        assert not verify(changed, signature, public)
    assert not verify(HEAD, bytes([signature[0] ^ 1]) + signature[1:], public)
    assert not verify(HEAD, signature, Ed25519PrivateKey.generate().public_key())
    assert not verify(HEAD, signature[:63], public)
    assert not verify(HEAD, "not bytes", public)  # type: ignore[arg-type]


def test_to_json_has_the_fields_the_issue_names(log_key: Ed25519PrivateKey) -> None:
    """The JSON form carries tree_size, root_hash (base64), timestamp (ms) and signature (base64), nothing else."""
    signature = sign(HEAD, log_key)
    assert to_json(HEAD, signature) == {
        "tree_size": 7,
        "root_hash": base64.b64encode(ROOT).decode(),
        "timestamp": 1_700_000_000_123,
        "signature": base64.b64encode(signature).decode(),
    }


GOOD_JSON = {
    "tree_size": 7,
    "root_hash": base64.b64encode(ROOT).decode(),
    "timestamp": 1_700_000_000_123,
    "signature": base64.b64encode(b"\x07" * 64).decode(),
}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("tree_size", None, "tree_size is missing"),
        ("tree_size", "7", "tree_size must be an integer"),
        ("tree_size", 7.0, "tree_size must be an integer"),
        ("tree_size", True, "tree_size must be an integer"),
        ("tree_size", -1, "tree_size must be between 0 and 2**64 - 1"),
        ("tree_size", 2**64, "tree_size must be between 0 and 2**64 - 1"),
        ("timestamp", None, "timestamp is missing"),
        ("timestamp", "1700000000123", "timestamp must be an integer"),
        ("timestamp", -5, "timestamp must be between 0 and 2**64 - 1"),
        ("root_hash", None, "root_hash is missing"),
        ("root_hash", 12, "root_hash must be a base64 string"),
        ("root_hash", base64.b64encode(ROOT[:31]).decode(), "root_hash is not the base64 of 32 bytes"),
        ("root_hash", base64.b64encode(ROOT + b"!").decode(), "root_hash is not the base64 of 32 bytes"),
        ("root_hash", base64.urlsafe_b64encode(b"\xff" * 32).decode(), "root_hash is not valid base64"),
        ("root_hash", base64.b64encode(ROOT).decode().rstrip("="), "root_hash is not valid base64"),
        ("root_hash", " " + base64.b64encode(ROOT).decode(), "root_hash is not valid base64"),
        ("root_hash", base64.b64encode(ROOT).decode()[:-2] + "F=", "root_hash is not the base64 of 32 bytes"),
        ("root_hash", "é" * 44, "root_hash is not the base64 of 32 bytes"),
        ("root_hash", "A" * 10_000, "root_hash is not the base64 of 32 bytes"),
        ("signature", None, "signature is missing"),
        ("signature", base64.b64encode(b"\x07" * 63).decode(), "signature is not the base64 of 64 bytes"),
        ("signature", ["AAAA"], "signature must be a base64 string"),
    ],
)
def test_from_json_refuses_malformed_values(field: str, value: object, message: str) -> None:
    """Each missing, mistyped, out-of-range, non-canonical or wrong-length field is a ValueError naming it."""
    document: dict[str, object] = dict(GOOD_JSON)
    if value is None:
        del document[field]
    else:
        document[field] = value
    with pytest.raises(ValueError) as raised:
        from_json(document)
    assert str(raised.value) == message


def test_from_json_refuses_non_objects_and_accepts_extra_fields() -> None:
    """Only a JSON object is a head; fields it does not know are ignored, so later versions may add some."""
    for value in (None, [], "head", 7, [("tree_size", 7)]):
        with pytest.raises(ValueError, match="must be a JSON object"):
            from_json(value)
    head, signature = from_json({**GOOD_JSON, "log_id": "later"})
    assert head == HEAD and signature == b"\x07" * 64


def test_tree_head_refuses_impossible_values() -> None:
    """A head with a root of the wrong length or a size or time outside 64 bits cannot be made."""
    with pytest.raises(ValueError, match="root_hash must be 32 bytes"):
        TreeHead(tree_size=1, root_hash=ROOT[:16], timestamp=0)
    with pytest.raises(ValueError, match="tree_size must be between"):
        TreeHead(tree_size=2**64, root_hash=ROOT, timestamp=0)
    with pytest.raises(ValueError, match="timestamp must be an integer"):
        TreeHead(tree_size=1, root_hash=ROOT, timestamp=1.5)  # type: ignore[arg-type]


@given(st.dictionaries(st.sampled_from(sorted(GOOD_JSON)), st.one_of(st.integers(), st.text(), st.binary(), st.none())))
def test_from_json_never_fails_otherwise_than_with_value_error(document: dict[str, object]) -> None:
    """Whatever a stranger sends, from_json returns a well-formed head or raises ValueError."""
    try:
        head, signature = from_json({**GOOD_JSON, **document})
    except ValueError:
        return
    assert len(head.root_hash) == 32 and len(signature) == 64
