"""Hostile and random input: never raises, always valid JSON, hard limits end the work quickly."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailiverse.mime.limits import DEFAULT_LIMITS, Limits
from mailiverse.mime.twin import convert

SMALL = Limits(
    max_size=1 << 20,
    max_depth=8,
    max_parts=200,
    max_headers=100,
    max_header_bytes=1 << 16,
    max_header_line=1 << 14,
    max_seconds=5.0,
)


def run(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    out = convert(raw, original_path="Mail/In/1_2", written_ms=7, limits=limits)
    elapsed = time.monotonic() - started
    doc = json.loads(out.decode("utf-8"))
    assert doc["original"] == "Mail/In/1_2" and doc["dates"]["written"] == "7"
    return doc, elapsed


def limit_text(doc: dict[str, Any]) -> str:
    assert "addresses" not in doc, "expected the error document"
    return doc["content"]["value"]


def _nested(depth: int) -> bytes:
    out = [f"Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n".encode() for i in range(depth)]
    return b"".join(out) + b"Content-Type: text/plain\n\nleaf\n"


def test_deep_nesting_hits_depth_limit() -> None:
    """10,000 nested multiparts stop at the depth limit, quickly."""
    doc, elapsed = run(_nested(10_000))
    assert limit_text(doc) == f"message exceeds the nesting depth limit ({DEFAULT_LIMITS.max_depth})"
    assert elapsed < 5


def test_moderate_nesting_converts() -> None:
    """Nesting within the limit converts normally down to the leaf."""
    doc, _ = run(_nested(10))
    part = doc["content"]
    for _ in range(10):
        part = part["value"][0]
    assert part["value"] == "leaf\n"


def test_many_parts_hit_part_limit() -> None:
    """100,000 parts stop at the part count limit."""
    raw = b"Content-Type: multipart/mixed; boundary=x\n\n" + b"--x\n\na\n" * 100_000 + b"--x--\n"
    doc, elapsed = run(raw)
    assert limit_text(doc) == f"message exceeds the part count limit ({DEFAULT_LIMITS.max_parts})"
    assert elapsed < 5


def test_many_headers_hit_header_limit() -> None:
    """10,000 headers on one entity stop at the header count limit."""
    raw = b"".join(b"X-H%d: v\n" % i for i in range(10_000)) + b"\nbody"
    doc, elapsed = run(raw)
    assert "header count limit" in limit_text(doc)
    assert elapsed < 5


def test_huge_header_line_hits_line_limit() -> None:
    """A 5 MB header line stops at the header line length limit."""
    doc, elapsed = run(b"Subject: " + b"a" * 5_000_000 + b"\n\nbody")
    assert "header line length limit" in limit_text(doc)
    assert elapsed < 5


def test_size_limit() -> None:
    """Input over max_size is refused with the size limit document."""
    doc, _ = run(b"x" * (SMALL.max_size + 1), SMALL)
    assert limit_text(doc) == f"message exceeds the size limit ({SMALL.max_size} bytes)"


def test_time_limit_is_enforced() -> None:
    """A zero time budget ends a slow decode with the time limit document."""
    raw = b"Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n" + b"=41 " * 200_000
    doc, elapsed = run(raw, Limits(max_seconds=0.0))
    assert "time limit" in limit_text(doc)
    assert elapsed < 5


@pytest.mark.parametrize(
    "raw",
    [
        b"Sub\x00ject: a\rb\r\x00\nFrom: \xff\xfe <a@b>\n\n\xff\x00body",
        b"\r\r\r\n\n",
        b"Content-Type: text/plain; charset=utf-8\n\n\xed\xa0\x80\xf0\x9f\x98\xc3",
        b'From: (((((((\nTo: "\nDate: 99999999999 Jan 99999999999 99:99\n\n',
        b'Content-Type: multipart/mixed; boundary=""\n\n--\n\n--\n',
    ],
)
def test_odd_bytes_convert(raw: bytes) -> None:
    """NUL, CR, LF, invalid UTF-8 and 8-bit bytes anywhere still give a JSON document."""
    run(raw)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(raw: bytes) -> None:
    """Arbitrary bytes always give valid JSON."""
    run(raw, SMALL)


_header_name = st.sampled_from(
    ["Content-Type", "Content-Transfer-Encoding", "From", "To", "Subject", "Date", "Message-ID", "X-Junk"]
)
_header_value = st.one_of(
    st.sampled_from(
        [
            "multipart/mixed; boundary=b",
            "text/plain; charset=utf-8",
            "base64",
            "quoted-printable",
            "x-uuencode",
            "message/rfc822",
            "=?utf-8?B?w6k=?=",
            "a <b@c>, (x) d@e",
            "1 Jan 70 00:00 GMT",
            'text/html; charset="bogus"',
        ]
    ),
    st.text(max_size=30),
)
_entity = st.recursive(
    st.tuples(st.lists(st.tuples(_header_name, _header_value), max_size=4), st.binary(max_size=60)),
    lambda inner: st.tuples(st.lists(st.tuples(_header_name, _header_value), max_size=3), st.lists(inner, max_size=4)),
    max_leaves=12,
)


def _render(entity: Any) -> bytes:
    headers, body = entity
    head = b"".join(f"{n}: {v}\n".encode("utf-8", "replace") for n, v in headers)
    if isinstance(body, bytes):
        return head + b"\n" + body
    parts = b"".join(b"--b\n" + _render(child) + b"\n" for child in body)
    return b"Content-Type: multipart/mixed; boundary=b\n" + head + b"\n" + parts + b"--b--\n"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_entity)
def test_random_structured_mime_never_raises(entity: Any) -> None:
    """Random structured MIME always gives valid JSON within the limits."""
    doc, elapsed = run(_render(entity), SMALL)
    assert elapsed < SMALL.max_seconds + 1
    assert doc["content"]["class"] in ("string", "part", "bytes", "unknown")
