"""The streamed twin (``convert_document(streamed=True)`` + ``iter_twin``) is byte-identical to ``convert``."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from mailiverse.mime.transfer import base64_decode, base64_error, iter_base64_decode
from mailiverse.mime.twin import convert, convert_document, iter_twin

VECTORS = Path(__file__).parents[1] / "vectors" / "mime_json.json"
_B64_NOISE = st.sampled_from([b"A", b"z", b"0", b"+", b"/", b"=", b"\xff", b"\r\n", b" ", b"!", b"\x00", b"-"])


def _streamed(raw: bytes) -> bytes:
    document = convert_document(raw, original_path="Mail/In/1", written_ms=7, streamed=True)
    return b"".join(iter_twin(document))


def _eager(raw: bytes) -> bytes:
    return convert(raw, original_path="Mail/In/1", written_ms=7)


def test_conformance_vectors_stream_to_the_same_bytes() -> None:
    """Every mime_json conformance vector gives the same bytes streamed as converted whole."""
    for case in json.loads(VECTORS.read_text())["cases"]:
        raw = base64.b64decode(case["mime_b64"])
        inputs = case["inputs"]
        document = convert_document(
            raw, original_path=inputs["original_path"], written_ms=inputs["written_ms"], streamed=True
        )
        expected = convert(raw, original_path=inputs["original_path"], written_ms=inputs["written_ms"])
        assert b"".join(iter_twin(document)) == expected, case.get("name")


@given(st.lists(_B64_NOISE, max_size=200).map(b"".join), st.integers(min_value=0, max_value=5))
def test_streamed_base64_decoding_matches_whole_decoding(body: bytes, offset: int) -> None:
    """Decoding a Base64 body piece by piece yields the same bytes and the same error as decoding it whole."""
    buf = b"#" * offset + body
    whole = base64_decode(body)
    assert b"".join(iter_base64_decode(buf, offset, len(buf))) == whole.data
    error = base64_error(buf, offset, len(buf))
    assert (error is None) == (whole.error is None)
    if error is not None and whole.error is not None:
        assert error.java_text == whole.error.java_text


@given(
    encoding=st.sampled_from(["base64", "BASE64", "7bit", "binary", "quoted-printable", "x-uue", "bogus", None]),
    body=st.one_of(st.binary(max_size=300), st.lists(_B64_NOISE, max_size=300).map(b"".join)),
    nested=st.booleans(),
)
def test_attachments_stream_to_the_same_bytes(encoding: str | None, body: bytes, nested: bool) -> None:
    """Whatever the transfer encoding and body bytes of an attachment, streaming does not change the twin."""
    cte = b"" if encoding is None else b"Content-Transfer-Encoding: " + encoding.encode() + b"\r\n"
    part = b"Content-Type: application/octet-stream\r\n" + cte + b"\r\n" + body
    if nested:
        raw = (
            b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
            b"--XX\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XX\r\n" + part + b"\r\n--XX--\r\n"
        )
    else:
        raw = b"From: a@example.org\r\n" + part
    assert _streamed(raw) == _eager(raw)


def test_a_large_attachment_streams_to_the_same_bytes() -> None:
    """A multi-megabyte Base64 attachment, cut into many pieces on the way, gives the same twin."""
    payload = bytes(range(256)) * 9000 + b"tail"
    encoded = base64.encodebytes(payload)
    raw = (
        b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
        b"--XX\r\nContent-Type: text/plain\r\n\r\n</script> \xe2\x80\xa8 text\r\n--XX\r\n"
        b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--XX--\r\n"
    )
    streamed = _streamed(raw)
    assert streamed == _eager(raw)
    assert base64.b64decode(json.loads(streamed)["content"]["value"][1]["value"]) == payload


def test_the_streamed_document_can_be_serialised_twice() -> None:
    """iter_twin may run once per recipient over the same document."""
    raw = b"From: a@example.org\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJD\r\n"
    document = convert_document(raw, original_path="Mail/In/1", written_ms=7, streamed=True)
    assert b"".join(iter_twin(document)) == b"".join(iter_twin(document)) == _eager(raw)
