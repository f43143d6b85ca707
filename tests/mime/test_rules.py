"""Targeted tests for each JavaMail 1.4 rule of docs/protocol.md §12, on small hand-written messages."""

from __future__ import annotations

import base64
import calendar
import json
from typing import Any

import pytest

from mailiverse.mime.twin import convert

ORIGINAL = "Mail/In/1382191391532_5108829471538001234"
WRITTEN = 1382191391532


def twin(raw: bytes) -> dict[str, Any]:
    return json.loads(convert(raw, original_path=ORIGINAL, written_ms=WRITTEN).decode("utf-8"))


def b64text(value: str) -> str:
    return base64.b64decode(value, validate=True).decode("utf-8")


def headers_of(part: dict[str, Any]) -> list[tuple[str, str]]:
    return [(name, b64text(value)) for name, value in part["headers"]]


def error_text(doc: dict[str, Any]) -> str | None:
    return None if "addresses" in doc else doc["content"]["value"]


def people(doc: dict[str, Any], bucket: str) -> list[dict[str, str]]:
    return [{k: b64text(v) for k, v in entry.items()} for entry in doc["addresses"][bucket]]


def sent(date_header: str) -> str | None:
    doc = twin(f"Date: {date_header}\n\nx".encode("latin-1"))
    return doc["dates"].get("sent")


def utc_ms(*fields: int) -> str:
    return str(calendar.timegm((*fields, 0, 0, 0)) * 1000)


# --- reading headers ---------------------------------------------------------------------------


def test_fold_is_rejoined_with_crlf_and_kept_blanks() -> None:
    """A folded header read from LF input is rejoined with CRLF plus the continuation's blanks."""
    doc = twin(b"Subject: one\n\ttwo\n   three\n\nbody")
    assert headers_of(doc["content"]) == [("Subject", "one\r\n\ttwo\r\n   three")]


def test_value_skips_leading_blanks_and_fold_but_keeps_trailing() -> None:
    """Blanks and a fold right after the colon are skipped; trailing blanks stay."""
    doc = twin(b"X-A:   \n\tvalue  \n\nbody")
    assert headers_of(doc["content"]) == [("X-A", "value  ")]


def test_colonless_line_is_a_header_named_and_valued_by_the_line() -> None:
    """A header-area line without a colon becomes a header whose name and value are the line."""
    doc = twin(b"X-A: 1\nnot a header\n\nbody")
    assert headers_of(doc["content"])[1] == ("not a header", "not a header")


def test_mbox_from_line_is_named_up_to_first_colon() -> None:
    """A leading mbox 'From ' line is named up to the first ':' inside its time stamp."""
    doc = twin(b"From bob@x.org Mon Oct 21 10:11:12 2013\nFrom: bob@x.org\n\nbody")
    first = headers_of(doc["content"])[0]
    assert first == ("From bob@x.org Mon Oct 21 10", "11:12 2013")
    assert people(doc, "from") == [{"email": "bob@x.org"}]


def test_header_bytes_are_latin1_mojibake() -> None:
    """Raw UTF-8 in a header is read one byte per character, giving mojibake."""
    doc = twin("Subject: Jörg\n\nx".encode())
    assert headers_of(doc["content"]) == [("Subject", "Jörg".encode().decode("latin-1"))]


def test_duplicate_headers_are_all_listed_in_order() -> None:
    """Every header is listed, duplicates included, in input order."""
    doc = twin(b"A: 1\nB: 2\nA: 3\n\nx")
    assert headers_of(doc["content"]) == [("A", "1"), ("B", "2"), ("A", "3")]


# --- RFC 2047 -----------------------------------------------------------------------------------


def test_adjacent_encoded_words_join_without_their_whitespace() -> None:
    """Whitespace (folds included) between two decoded words is removed, other whitespace kept."""
    doc = twin(b"Subject: a =?utf-8?Q?b?=\n =?utf-8?B?Yw==?= d\n\nx")
    assert headers_of(doc["content"]) == [("Subject", "a bc d")]


def test_glued_or_quoted_words_stay_encoded() -> None:
    """A word glued to preceding text, or wrapped in quotes, is not decoded."""
    doc = twin(b'Subject: x=?utf-8?Q?b?= "=?utf-8?Q?c?="\n\nx')
    assert headers_of(doc["content"]) == [("Subject", 'x=?utf-8?Q?b?= "=?utf-8?Q?c?="')]


def test_malformed_word_is_left_and_b_junk_ignored() -> None:
    """A malformed word stays as written; junk inside a B word is skipped."""
    doc = twin(b"Subject: =?utf-8?Q?a=ZZ?= =?utf-8?B?Y*m*F*y?=\n\nx")
    assert headers_of(doc["content"]) == [("Subject", "=?utf-8?Q?a=ZZ?= bar")]


def test_unknown_charset_in_header_word_aborts_conversion() -> None:
    """An encoded word in a charset Java does not know yields the error document."""
    doc = twin(b"Subject: =?unknown-8bit?Q?caf=E9?=\n\nx")
    assert error_text(doc) == "java.io.UnsupportedEncodingException: unknown-8bit"
    assert doc["headers"] == [["subject", "The mail server failed to handle this message."]]


# --- addresses ------------------------------------------------------------------------------------


def test_groups_are_one_entry_without_name() -> None:
    """A group is one entry whose email is the whole group text."""
    doc = twin(b"To: undisclosed-recipients:;\nCc: T: a@x, b@y;, c@z\n\nx")
    assert people(doc, "to") == [{"email": "undisclosed-recipients:;"}]
    assert people(doc, "cc") == [{"email": "T: a@x, b@y;"}, {"email": "c@z"}]


def test_empty_angle_address_and_empty_header() -> None:
    """'<>' gives an empty email; an empty header gives an empty bucket."""
    doc = twin(b"From: MAILER DAEMON <>\nBcc:\n\nx")
    assert people(doc, "from") == [{"name": "MAILER DAEMON", "email": ""}]
    assert doc["addresses"]["bcc"] == []


def test_unparseable_bucket_is_omitted_without_fallback() -> None:
    """A Reply-To that does not parse leaves the bucket out instead of falling back to From."""
    doc = twin(b"From: a@x\nReply-To: <<b@@y>>\n\nx")
    assert "reply-to" not in doc["addresses"]
    assert people(doc, "from") == [{"email": "a@x"}]


def test_reply_to_falls_back_to_from_and_from_to_sender() -> None:
    """Without Reply-To the bucket is From's list; without From, From comes from Sender."""
    doc = twin(b"Sender: S <s@x>\n\nx")
    assert people(doc, "from") == [{"name": "S", "email": "s@x"}]
    assert people(doc, "reply-to") == people(doc, "from")
    assert "to" not in doc["addresses"]


def test_display_names_from_quotes_comments_and_rfc2047() -> None:
    """Names come unquoted, from a trailing comment, and RFC 2047-decoded."""
    doc = twin(b'To: "Doe, J" <j@x>, k@y (Kay), =?iso-8859-1?Q?Andr=E9?= <a@z>\n\nx')
    assert people(doc, "to") == [
        {"name": "Doe, J", "email": "j@x"},
        {"name": "Kay", "email": "k@y"},
        {"name": "André", "email": "a@z"},
    ]


# --- dates ----------------------------------------------------------------------------------------


def test_date_with_offset_and_optional_day_name() -> None:
    """The day name is ignored and a numeric offset is applied."""
    assert sent("Fri, 4 May 2001 14:05:44 -0400") == utc_ms(2001, 5, 4, 18, 5, 44)
    assert sent("4 May 2001 14:05:44 +0000") == utc_ms(2001, 5, 4, 14, 5, 44)


def test_two_digit_years() -> None:
    """Two-digit years below 50 are 20xx, the others 19xx."""
    assert sent("1 Jan 13 00:00:00 GMT") == utc_ms(2013, 1, 1, 0, 0, 0)
    assert sent("1 Jan 99 00:00:00 GMT") == utc_ms(1999, 1, 1, 0, 0, 0)


def test_named_and_missing_zones() -> None:
    """EST/PDT are honoured; a missing or unknown zone is UTC; seconds are optional."""
    assert sent("1 Jan 2013 10:00:00 EST") == utc_ms(2013, 1, 1, 15, 0, 0)
    assert sent("1 Jul 2013 10:00:00 PDT") == utc_ms(2013, 7, 1, 17, 0, 0)
    assert sent("1 Jan 2013 10:00:00") == utc_ms(2013, 1, 1, 10, 0, 0)
    assert sent("1 Jan 2013 10:00:00 JST") == utc_ms(2013, 1, 1, 10, 0, 0)
    assert sent("1 Jan 2013 10:00 +0100") == utc_ms(2013, 1, 1, 9, 0, 0)


def test_impossible_day_rolls_over_and_junk_is_ignored() -> None:
    """31 Feb rolls over into March and trailing text is ignored."""
    assert sent("31 Feb 2013 00:00:00 +0000 (junk)") == utc_ms(2013, 3, 3, 0, 0, 0)


def test_negative_dates_and_unparseable_values() -> None:
    """Dates before 1970 are negative; ISO 8601 gives no sent."""
    assert sent("1 Jan 1950 00:00:00 GMT") == utc_ms(1950, 1, 1, 0, 0, 0)
    assert int(sent("1 Jan 1950 00:00:00 GMT") or 0) < 0
    assert sent("2013-10-22T10:30:41Z") is None


def test_uidl_is_first_message_id_as_written() -> None:
    """uidl is the first Message-ID value with its leading fold removed."""
    doc = twin(b"Message-ID:\n <a@b>\nMessage-ID: <c@d>\n\nx")
    assert doc["uidl"] == "<a@b>"


# --- class mapping --------------------------------------------------------------------------------


def _leaf(content_type: str, body: bytes = b"hello\n") -> dict[str, Any]:
    return twin(b"Content-Type: " + content_type.encode() + b"\n\n" + body)["content"]


@pytest.mark.parametrize("ctype", ["text/plain", "TEXT/HTML; charset=us-ascii", "text/xml"])
def test_string_types(ctype: str) -> None:
    """Only text/plain, text/html and text/xml (any case) give string."""
    part = _leaf(ctype)
    assert (part["class"], part["value"]) == ("string", "hello\n")


@pytest.mark.parametrize(
    "ctype",
    [
        "text/csv",
        "text/calendar",
        "text/x-foo",
        "image/png",
        "text",
        "message/delivery-status",
        "application/pdf",
        "text/plain; format",
    ],
)
def test_bytes_types(ctype: str) -> None:
    """Every type without a JavaMail 1.4 handler gives bytes of the decoded body."""
    part = _leaf(ctype)
    assert part["class"] == "bytes"
    assert base64.b64decode(part["value"]) == b"hello\n"


def test_message_rfc822_is_unknown_without_value() -> None:
    """message/rfc822 gives class unknown with no value key."""
    part = _leaf("message/rfc822", b"Subject: inner\n\nbody\n")
    assert part["class"] == "unknown" and "value" not in part


def test_missing_content_type_in_digest_is_text() -> None:
    """A part without Content-Type, even in multipart/digest, is text/plain."""
    raw = b"Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: x\n\nhi\n--d--\n"
    part = twin(raw)["content"]["value"][0]
    assert part == {"headers": [], "class": "string", "value": "Subject: x\n\nhi"}


def test_malformed_multipart_parameters_give_error_document() -> None:
    """A multipart whose parameter list is malformed produces the error document."""
    doc = twin(b"Content-Type: multipart/mixed; boundary\n\n--x\n\nhi\n")
    assert error_text(doc) == "javax.mail.internet.ParseException: Expected '=', got \"null\""


# --- transfer encodings ---------------------------------------------------------------------------


def _encoded(cte: str, body: bytes, ctype: str = "text/plain") -> dict[str, Any]:
    return twin(f"Content-Type: {ctype}\nContent-Transfer-Encoding: {cte}\n\n".encode() + body)


def test_base64_is_lenient() -> None:
    """Junk characters are skipped and decoding goes on after '=' padding."""
    part = _encoded("base64", b"aGk=!!\nIHRo*ZXJl\n")["content"]
    assert part["value"] == "hi there"


def test_truncated_base64_is_an_error_document() -> None:
    """A base64 body ending in a partial group fails like Java's decoder."""
    doc = _encoded("base64", b"aGkh\naG")
    assert error_text(doc) == "java.io.IOException: Error in encoded stream, got 2"


def test_quoted_printable_leniency() -> None:
    """Soft breaks go, bad escapes stay, blanks before EOL go, a final '=' is dropped."""
    part = _encoded("quoted-printable", b"a=3Db=\nc =ZZ   \nd=20\ne=")["content"]
    assert part["value"] == "a=bc =ZZ\nd \ne"


@pytest.mark.parametrize("cte", ["uuencode", "x-uuencode"])
def test_uuencode_is_decoded(cte: str) -> None:
    """uuencode and x-uuencode bodies are decoded."""
    body = b"begin 644 f.txt\n" + b"#86)C\n" + b"`\nend\n"
    part = _encoded(cte, body, "application/octet-stream")["content"]
    assert base64.b64decode(part["value"]) == b"abc"


def test_unknown_transfer_encoding_is_an_error_document() -> None:
    """An unknown Content-Transfer-Encoding produces the error document."""
    assert error_text(_encoded("8-bit", b"x")) == "java.io.IOException: Unknown encoding: 8-bit"


# --- charsets -------------------------------------------------------------------------------------


def test_no_charset_reads_as_latin1() -> None:
    """Without a charset the body is us-ascii, which JavaMail 1.4 reads as ISO-8859-1."""
    assert twin(b"Subject: x\n\ncaf\xe9\n")["content"]["value"] == "caf\xe9\n"


@pytest.mark.parametrize("charset,text", [('"x-nope"', "x-nope"), ('""', "")])
def test_unknown_or_empty_charset_is_an_error_document(charset: str, text: str) -> None:
    """An unknown or empty charset produces UnsupportedEncodingException."""
    doc = twin(f"Content-Type: text/plain; charset={charset}\n\nx".encode())
    assert error_text(doc) == f"java.io.UnsupportedEncodingException: {text}"


def test_iso2022jp_uses_java_mapping() -> None:
    """JIS 0x213D decodes to U+2014 as in Java, not CPython's U+2015."""
    body = b"\x1b$B!=\x1b(B\n"
    assert _leaf("text/plain; charset=ISO-2022-JP", body)["value"] == "\u2014\n"


def test_windows_1252_and_rfc2231_charset_ignored() -> None:
    """windows-1252 maps 0x80 to the euro sign; charset*= is ignored."""
    assert _leaf("text/plain; charset=windows-1252", b"\x80")["value"] == "\u20ac"
    assert _leaf("text/plain; charset*=utf-8''x", b"\xc3\xa9")["value"] == "\xc3\xa9"


# --- multipart ------------------------------------------------------------------------------------


def _children(raw: bytes) -> list[Any]:
    return twin(raw)["content"]["value"]


def test_preamble_epilogue_dropped_and_eol_belongs_to_delimiter() -> None:
    """The line break before a delimiter is not content; preamble and epilogue are dropped."""
    raw = b"Content-Type: multipart/mixed; boundary=b\n\npre\n--b\n\none\n\n--b\n\ntwo\n--b--\nepi\n"
    assert [c["value"] for c in _children(raw)] == ["one\n", "two"]


def test_missing_closing_delimiter_runs_to_end() -> None:
    """Without a closing delimiter the last part runs to the end of the input."""
    raw = b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\n\ntwo\n"
    assert [c["value"] for c in _children(raw)] == ["one", "two\n"]


def test_no_boundary_parameter_uses_first_dash_line() -> None:
    """Without a boundary parameter the first body line starting with -- is the boundary."""
    raw = b"Content-Type: multipart/mixed\n\n--zz\n\none\n--zz--\n"
    assert [c["value"] for c in _children(raw)] == ["one"]


@pytest.mark.parametrize(
    "raw",
    [
        b"Content-Type: multipart/mixed; boundary=b\n\nno delimiter here\n",
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: multipart/alternative; "
        b"boundary=b\n\n--b\n\ninner\n--b--\n",
    ],
)
def test_missing_start_boundary(raw: bytes) -> None:
    """A boundary that never appears, or is reused inside, gives Missing start boundary."""
    assert error_text(twin(raw)) == "javax.mail.MessagingException: Missing start boundary"


def test_base64_encoding_on_a_multipart_is_ignored() -> None:
    """JavaMail ignores a base64 encoding on a multipart, so the raw text has no start boundary."""
    inner = base64.b64encode(b"--b\n\none\n--b--\n")
    raw = b"Content-Type: multipart/mixed; boundary=b\nContent-Transfer-Encoding: base64\n\n" + inner
    doc = json.loads(convert(raw, original_path="Mail/In/x", written_ms=1))
    assert doc["content"]["value"] == "javax.mail.MessagingException: Missing start boundary"
    assert "addresses" not in doc
