"""Key and policy records (mailiverse/keylog/records.py): the canonical encoding, signatures, and refusal of
everything else, including random and mutated input (Hypothesis)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from mailiverse.crypto.keys import generate_private_key
from mailiverse.keylog.records import (
    KEY_RECORD_PREFIX,
    RecordError,
    address_hash,
    canonical_json,
    key_record_fields,
    parse_leaf,
    sign_key_record,
    sign_policy_record,
    verify_key_record,
    verify_leaf,
    verify_policy_record,
)

KEY = generate_private_key(2048)
OTHER = generate_private_key(2048)
LOG_KEY = Ed25519PrivateKey.generate()
RECORD = sign_key_record(key_record_fields(KEY.public_key(), ["Alice@Example.org"], created_ms=1_700_000_000_000), KEY)


def test_the_signature_is_rsa_pss_over_the_documented_bytes() -> None:
    """Checked here with cryptography directly, from docs/keys.md: PSS, MGF1-SHA-256, salt 32, over the prefix
    and the canonical JSON (sorted keys, no spaces) of every member but the signature."""
    unsigned = {k: v for k, v in RECORD.items() if k != "signature"}
    text = json.dumps(unsigned, sort_keys=True, separators=(",", ":")).encode()
    KEY.public_key().verify(
        base64.b64decode(RECORD["signature"]),
        b"mailiverse-key-record-v1\n" + text,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )
    assert KEY_RECORD_PREFIX == b"mailiverse-key-record-v1\n"
    expected = base64.b64encode(hashlib.sha256(b"mailiverse-address-v1\nalice@example.org").digest()).decode()
    assert RECORD["addresses"] == [expected] == [address_hash(" ALICE@example.ORG ")]
    record = verify_key_record(RECORD)
    assert record.serves("alice@example.org") and not record.serves("bob@example.org")
    assert record.leaf == canonical_json(RECORD) and parse_leaf(record.leaf) == RECORD


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("key_id", "not-a-uuid"),
        ("key_id", "6F9619FF-8B86-D011-B42D-00C04FC964FF"),  # upper case: not the one spelling
        ("kind", "root"),
        ("addresses", []),
        ("addresses", ["x"]),
        ("algorithm", "DSA"),
        ("bits", 4096),
        ("format", "v3"),
        ("public_key", "AAAA"),
        ("created_ms", -1),
        ("created_ms", True),
        ("status", "superseded"),  # without retired_ms
        ("retired_ms", 5),  # while current
        ("supersedes", "x"),
        ("v", 2),
        ("type", "policy"),
    ],
)
def test_each_member_is_checked(member: str, value: Any) -> None:
    changed = dict(RECORD, **{member: value})
    with pytest.raises(RecordError):
        verify_key_record(changed)
    # even re-signed by its own key, a malformed record is refused
    if member not in ("public_key", "bits"):
        with pytest.raises(RecordError):
            unsigned = {k: v for k, v in changed.items() if k != "signature"}
            sign_key_record(unsigned, KEY)


def test_signature_by_another_key_extra_members_and_size() -> None:
    forged = sign_key_record(key_record_fields(OTHER.public_key(), ["alice@example.org"], created_ms=1), OTHER)
    with pytest.raises(RecordError):
        verify_key_record(dict(forged, public_key=RECORD["public_key"], bits=2048))
    with pytest.raises(RecordError):
        verify_key_record(dict(RECORD, extra="x"))
    with pytest.raises(RecordError):
        verify_key_record({k: v for k, v in RECORD.items() if k != "status"})
    with pytest.raises(RecordError):
        verify_key_record(dict(RECORD, addresses=[address_hash(f"u{i}@x") for i in range(200)]))
    for not_a_record in (None, [], "x", 1, {"v": 1}):
        with pytest.raises(RecordError):
            verify_key_record(not_a_record)


def test_leaves_must_be_canonical() -> None:
    leaf = canonical_json(RECORD)
    assert verify_leaf(leaf, LOG_KEY.public_key()).document == RECORD
    for bad in (
        json.dumps(RECORD).encode(),  # spaces
        json.dumps(RECORD, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode() + b" ",
        b"\xff" + leaf,
        leaf[:-1],
        b"[]",
        b"x" * 5000,
    ):
        with pytest.raises(RecordError):
            parse_leaf(bad)


def test_policy_records_are_signed_by_the_log_key_and_chained() -> None:
    first = sign_policy_record(
        "Example.org", "organisation", seq=1, previous=None, key_id=RECORD["key_id"],
        officers=["carol@example.org"], created_ms=5, log_key=LOG_KEY,
    )  # fmt: skip
    checked = verify_policy_record(first, LOG_KEY.public_key())
    assert (checked.domain, checked.policy, checked.seq) == ("example.org", "organisation", 1)
    assert verify_leaf(checked.leaf, LOG_KEY.public_key()) == checked
    with pytest.raises(RecordError):
        verify_policy_record(first, Ed25519PrivateKey.generate().public_key())
    for changed in (
        dict(first, seq=2),  # a second entry must name the first
        dict(first, policy="personal"),
        dict(first, officers=[]),
        dict(first, domain="EXAMPLE.org"),
    ):
        with pytest.raises(RecordError):
            verify_policy_record(changed, LOG_KEY.public_key())
    with pytest.raises(RecordError):  # an organisation policy without officers cannot even be signed
        sign_policy_record("example.org", "organisation", seq=1, previous=None, key_id=RECORD["key_id"],
                           officers=[], created_ms=5, log_key=LOG_KEY)  # fmt: skip
    second = sign_policy_record(
        "example.org", "personal", seq=2, previous=hashlib.sha256(b"\x00" + checked.leaf).digest(), key_id=None,
        officers=[], created_ms=6, log_key=LOG_KEY,
    )  # fmt: skip
    assert verify_policy_record(second, LOG_KEY.public_key()).seq == 2


@given(st.binary(max_size=6000))
def test_random_leaves_are_refused_cleanly(data: bytes) -> None:
    try:
        verify_leaf(data, LOG_KEY.public_key())
    except RecordError:
        pass


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@given(st.sampled_from(sorted(RECORD)), _JSON)
def test_any_member_replaced_by_any_json_is_refused(member: str, value: Any) -> None:
    if value == RECORD[member]:
        return
    with pytest.raises(RecordError):
        verify_key_record(dict(RECORD, **{member: value}))
