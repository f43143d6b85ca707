"""Regressions for the converter bugs found by differential testing against JavaMail (see
docs/mime-differential.md); each expected value is the JavaMail reference output."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from mailiverse.mime.twin import convert


def _doc(headers: bytes, body: bytes) -> dict[str, Any]:
    raw = b"From: a@example.org\nSubject: s\n" + headers + b"\n" + body
    return json.loads(convert(raw, original_path="Mail/In/1", written_ms=1))


@pytest.mark.parametrize(
    ("date", "sent"),
    [
        ("Thu, 4 Oct 1582 00:00:00 +0000", "-12219379200000"),
        ("Wed, 10 Oct 1582 00:00:00 +0000", "-12218860800000"),
        ("Thu, 15 Oct 1582 00:00:00 +0000", "-12219292800000"),
    ],
)
def test_julian_dates_before_the_gregorian_cutover(date: str, sent: str) -> None:
    """Dates before 15 Oct 1582 use GregorianCalendar's Julian rules (the day count was one day early)."""
    assert _doc(f"Date: {date}\n".encode(), b"x\n")["dates"]["sent"] == sent


def test_base64_byte_ff_is_a_valid_character_in_bodies() -> None:
    """Byte 0xFF counts as 'A' in a base64 body (JavaMail's table leaves index 255 at 0)."""
    doc = _doc(b"Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n", b"QU\xffJ\n")
    assert base64.b64decode(doc["content"]["value"]) == b"A@\t"


def test_base64_byte_ff_makes_a_partial_group() -> None:
    """With 0xFF counted, 'QU<ff>JD' is five characters and decoding fails at the end."""
    doc = _doc(b"Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n", b"QU\xffJD\n")
    assert doc["content"]["value"] == "java.io.IOException: Error in encoded stream, got 1"


def test_base64_byte_ff_in_an_encoded_word() -> None:
    """In a B encoded-word 0xFF also counts, so a 5-character payload is left undecoded."""
    doc = _doc(b"X-B: =?iso-8859-1?B?QU\xffJD?= =?iso-8859-1?B?QU\xffJ?=\n", b"x\n")
    value = dict(doc["content"]["headers"])["X-B"]
    assert base64.b64decode(value).decode("utf-8") == "=?iso-8859-1?B?QU\u00ffJD?= A@\t"


def test_encodings_on_composite_parts_are_ignored() -> None:
    """Non-identity encodings on multipart/* and message/* are ignored (read raw), other parts decode."""
    body = (
        b"--c\nContent-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\n"
        b"UmVwb3J0aW5nLU1UQTogZG5zOyB4\n"
        b"--c\nContent-Type: message/rfc822\nContent-Transfer-Encoding: quoted-printable\n\nSubject: =3D\n\nx=\n"
        b"--c\nContent-Type: message/partial; id=x\nContent-Transfer-Encoding: x-unknown\n\npartial\n"
        b"--c\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\nZGVjb2RlZA==\n--c--\n"
    )
    doc = _doc(b"Content-Type: multipart/mixed; boundary=c\nContent-Transfer-Encoding: quoted-printable\n", body)
    got = [(p["class"], p.get("value")) for p in doc["content"]["value"]]
    assert got == [
        ("bytes", "VW1Wd2IzSjBhVzVuTFUxVVFUb2daRzV6T3lCNA=="),
        ("unknown", None),
        ("bytes", "cGFydGlhbA=="),
        ("string", "decoded"),
    ]


def test_composite_encoding_kept_when_content_type_does_not_parse() -> None:
    """A composite Content-Type that fails to parse keeps its encoding, so an unknown one still fails."""
    doc = _doc(b"Content-Type: message/rfc822; junk\nContent-Transfer-Encoding: x-unknown\n", b"Subject: x\n\ny\n")
    assert doc["content"]["value"] == "java.io.IOException: Unknown encoding: x-unknown"


def test_base64_encoded_multipart_reads_raw_text() -> None:
    """A base64 multipart is not decoded, so its raw text has no start boundary (1.4 exception text)."""
    inner = base64.b64encode(b"--b\n\none\n--b--\n")
    doc = _doc(b"Content-Type: multipart/mixed; boundary=b\nContent-Transfer-Encoding: base64\n", inner + b"\n")
    assert doc["content"]["value"] == "javax.mail.MessagingException: Missing start boundary"


@pytest.mark.parametrize(
    ("charset", "body", "text"),
    [
        ("shift_jis", b"dash \x81\x5c \x82\xa0\n", "dash \u2014 \u3042\n"),
        ("euc-jp", b"dash \xa1\xbd tilde \x8f\xa2\xb7 ~\n", "dash \u2014 tilde \uff5e ~\n"),
        ("big5", b"\xa1\x5a\n", "\uff3f\n"),
        ("gb18030", b"\xa6\xd9\xa8\xbc\xfe\x59\n", "\ufe10\u1e3f\u9fb4\n"),
    ],
)
def test_java_charset_tables(charset: str, body: bytes, text: str) -> None:
    """Characters where Java's decoding tables differ from CPython's come out as Java's."""
    doc = _doc(f"Content-Type: text/plain; charset={charset}\n".encode(), body)
    assert doc["content"]["value"] == text


def test_java_charset_tables_in_encoded_words() -> None:
    """Encoded words use the same Java tables (Shift_JIS and EUC-JP dash, EUC-JP tilde)."""
    doc = _doc(b"X-J: =?shift_jis?B?gVw=?= =?euc-jp?B?ob2Porc=?=\n", b"x\n")
    value = dict(doc["content"]["headers"])["X-J"]
    assert value == "4oCU4oCU772e"
