"""Moved records and brought-key statements (mailiverse/keylog/records.py, docs/moving.md): the documented
signature, strict shapes, and refusal of anything else, including every member replaced by any JSON (Hypothesis)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from mailiverse.crypto.keys import generate_private_key
from mailiverse.keylog.records import (
    DAY_MS,
    MOVED_RECORD_PREFIX,
    RecordError,
    address_hash,
    canonical_json,
    key_block_change_statement,
    moved_record_fields,
    sign_brought_key,
    sign_moved_record,
    verify_brought_key,
    verify_leaf,
    verify_moved_record,
    verify_rsa_signature,
)

KEY = generate_private_key(2048)
OTHER = generate_private_key(2048)
DER = KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
OTHER_DER = OTHER.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
KEY_ID = "5f0c0d5e-8f44-4c1f-9b43-6d1f1f0e2a11"
CREATED = 1_765_000_000_000
FIELDS = moved_record_fields(
    KEY_ID,
    ["alice@old.example", "Alice@Other.Example"],
    "Alice@New.Example",
    created_ms=CREATED,
    forward_until_ms=CREATED + 30 * DAY_MS,
)
RECORD = sign_moved_record(FIELDS, KEY)


def test_the_signature_is_rsa_pss_over_the_documented_bytes() -> None:
    """Checked with cryptography directly: PSS (MGF1-SHA-256, salt 32) over the prefix and the canonical JSON of
    every member but the signature; the addresses are hashes, sorted; the new address is lower-cased."""
    unsigned = {k: v for k, v in RECORD.items() if k != "signature"}
    text = json.dumps(unsigned, sort_keys=True, separators=(",", ":")).encode()
    KEY.public_key().verify(
        base64.b64decode(RECORD["signature"]),
        b"mailiverse-moved-record-v1\n" + text,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )
    assert MOVED_RECORD_PREFIX == b"mailiverse-moved-record-v1\n"
    assert RECORD["addresses"] == sorted([address_hash("alice@old.example"), address_hash("alice@other.example")])
    moved = verify_moved_record(RECORD, DER)
    assert moved.to == "alice@new.example" and moved.key_id == KEY_ID
    assert moved.serves("ALICE@old.example") and not moved.serves("bob@old.example")
    assert moved.leaf == canonical_json(RECORD)


def test_another_key_or_a_changed_member_does_not_verify() -> None:
    """The record verifies only with the key that signed it, and any change of a member breaks the signature."""
    with pytest.raises(RecordError, match="signature"):
        verify_moved_record(RECORD, OTHER_DER)
    for member, value in (("to", "mallory@evil.example"), ("forward_until_ms", CREATED + 31 * DAY_MS)):
        changed = {**RECORD, member: value}
        with pytest.raises(RecordError, match="signature"):
            verify_moved_record(changed, DER)


@pytest.mark.parametrize(
    ("member", "value", "words"),
    [
        ("v", 2, "version 1"),
        ("type", "key", "version 1"),
        ("key_id", "not-a-uuid", "UUID"),
        ("key_id", KEY_ID.upper(), "lower-case UUID"),
        ("addresses", [], "at least one"),
        ("addresses", ["x"], "base64"),
        ("to", "Alice@new.example", "plain lower-case"),
        ("to", "alice@new.example\r\nRCPT TO:<x@y.z>", "plain lower-case"),
        ("to", "alice <alice@new.example>", "plain lower-case"),
        ("to", "alice@localhost", "plain lower-case"),
        ("to", 7, "plain lower-case"),
        ("created_ms", -1, "milliseconds"),
        ("created_ms", True, "milliseconds"),
        ("forward_until_ms", CREATED - 1, "forward_until_ms"),
        ("forward_until_ms", CREATED + 366 * DAY_MS, "forward_until_ms"),
        ("signature", "***", "base64"),
    ],
)
def test_malformed_members_are_refused(member: str, value: Any, words: str) -> None:
    """Each member is checked for its type and range before the signature; the error names what is wrong."""
    with pytest.raises(RecordError, match=words):
        verify_moved_record({**RECORD, member: value}, DER)


def test_missing_and_unknown_members_are_refused() -> None:
    """A record has exactly the documented members."""
    with pytest.raises(RecordError, match="missing"):
        verify_moved_record({k: v for k, v in RECORD.items() if k != "to"}, DER)
    with pytest.raises(RecordError, match="unknown"):
        verify_moved_record({**RECORD, "note": "x"}, DER)
    with pytest.raises(RecordError):
        verify_moved_record([RECORD], DER)


def test_a_moved_leaf_needs_the_key_the_log_published() -> None:
    """In an audit a moved leaf verifies only with the key its key id names among the keys known so far."""
    log_key = Ed25519PrivateKey.generate().public_key()
    leaf = canonical_json(RECORD)
    assert verify_leaf(leaf, log_key, {KEY_ID: DER}).document == RECORD
    with pytest.raises(RecordError, match="not a key the log published"):
        verify_leaf(leaf, log_key)
    with pytest.raises(RecordError, match="signature"):
        verify_leaf(leaf, log_key, {KEY_ID: OTHER_DER})


def test_brought_key_statement_binds_key_address_and_id() -> None:
    """A brought key signs the new address, its id and itself: another address, id or key does not verify."""
    signature = sign_brought_key(KEY, "Alice@New.example", KEY_ID)
    verify_brought_key(DER, "alice@new.example", KEY_ID, signature)
    other_id = "5f0c0d5e-8f44-4c1f-9b43-6d1f1f0e2a12"
    for der, address, key_id in (
        (DER, "mallory@new.example", KEY_ID),
        (DER, "alice@new.example", other_id),
        (OTHER_DER, "alice@new.example", KEY_ID),
    ):
        with pytest.raises(RecordError):
            verify_brought_key(der, address, key_id, signature)
    with pytest.raises(RecordError, match="UUID"):
        verify_brought_key(DER, "alice@new.example", "../etc", signature)
    with pytest.raises(RecordError, match="DER"):
        verify_brought_key(b"junk", "alice@new.example", KEY_ID, signature)


def test_key_block_change_statement_covers_the_key_block() -> None:
    """The account's signature over a key block change names the key block's SHA-256: another block fails."""
    statement = key_block_change_statement("alice@new.example", [KEY_ID], b"block one")
    signature = KEY.sign(statement, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    verify_rsa_signature(DER, signature, statement, "request")
    with pytest.raises(RecordError):
        verify_rsa_signature(
            DER, signature, key_block_change_statement("alice@new.example", [KEY_ID], b"block two"), "request"
        )


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(member=st.sampled_from(sorted(RECORD)), value=_JSON)
def test_any_member_replaced_by_any_json_is_refused_cleanly(member: str, value: Any) -> None:
    """Whatever JSON replaces a member, verification raises RecordError or (unchanged value) succeeds."""
    document = {**RECORD, member: value}
    try:
        verify_moved_record(document, DER)
    except RecordError:
        return
    assert value == RECORD[member]
