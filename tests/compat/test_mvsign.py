"""MV store request signing: vectors, dates, verification and credentials."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailiverse.compat import mvsign

VECTORS = json.loads((Path(__file__).resolve().parent.parent / "vectors" / "misc.json").read_text("utf-8"))


@pytest.mark.parametrize("case", VECTORS["mv_signature"], ids=lambda c: c["method"])
def test_vector_headers(case: dict) -> None:
    """The original's headers, string-to-sign and signature are reproduced and verify."""
    date = mvsign.format_mv_date(case["date_ms"])
    args = (case["method"], case["content_type"], date, case["resource"])
    assert mvsign.string_to_sign(*args) == case["string_to_sign"]
    headers = mvsign.request_headers(
        case["key_id"],
        case["secret_b64"],
        case["method"],
        case["content_type"],
        case["content_length"],
        case["date_ms"],
        case["resource"],
    )
    assert [list(h) for h in headers] == case["headers"]
    auth = dict(headers)["Authorization"]
    assert auth == mvsign.authorization_header(case["key_id"], case["secret_b64"], *args)
    assert mvsign.verify(auth, case["key_id"], case["secret_b64"], *args)


def test_verify_rejects_changes() -> None:
    """Any change of method, type, date, resource, key id or signature fails verification."""
    key_id, secret = mvsign.new_credentials()
    args = ["PUT", "application/octet-stream", mvsign.format_mv_date(0), "Cache/I"]
    auth = mvsign.authorization_header(key_id, secret, *args)
    assert mvsign.verify(auth, key_id, secret, *args)
    for i in range(4):
        changed = list(args)
        changed[i] += "x"
        assert not mvsign.verify(auth, key_id, secret, *changed)
    signature = auth.rsplit(":", 1)[1]
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
    assert not mvsign.verify(auth.rsplit(":", 1)[0] + ":" + flipped, key_id, secret, *args)
    assert not mvsign.verify(auth, key_id + "x", secret, *args)


@given(st.integers(min_value=0, max_value=253402300799999))
def test_date_round_trip(ms: int) -> None:
    """format_mv_date and parse_mv_date agree to the second for any date up to year 9999."""
    text = mvsign.format_mv_date(ms)
    assert text.endswith(" GMT") and len(text) == 29
    assert mvsign.parse_mv_date(text) == ms // 1000 * 1000


def test_date_format_is_english_rfc1123() -> None:
    """The date is English, zero-padded and in GMT whatever the locale."""
    assert mvsign.format_mv_date(1364774461000) == "Mon, 01 Apr 2013 00:01:01 GMT"
    with pytest.raises(ValueError):
        mvsign.parse_mv_date("Mon, 1 Apr 2013 00:01:01 GMT")


def test_credentials_and_parsing() -> None:
    """Credentials are base64 of 32 random bytes; malformed Authorization values raise."""
    key_id, secret = mvsign.new_credentials()
    assert len(base64.b64decode(key_id)) == 32 and len(base64.b64decode(secret)) == 32
    assert mvsign.new_credentials() != (key_id, secret)
    assert mvsign.parse_authorization("MV a:b") == ("a", "b")
    for bad in ("AWS a:b", "MV ab", "MV :b", "MV " + "a" * 600 + ":b"):
        with pytest.raises(mvsign.SignatureError):
            mvsign.parse_authorization(bad)
    with pytest.raises(mvsign.SignatureError):
        mvsign.sign("not base64!", "GET", "", "d", "r")
