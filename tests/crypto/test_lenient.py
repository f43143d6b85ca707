"""Lenient zlib and web-text handling: zero Adler-32, size caps, CESU-8."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailiverse.crypto import lenient


def _web_style(data: bytes) -> bytes:
    """What the web client writes: 78 9c, raw deflate, four zero bytes."""
    raw = zlib.compressobj(6, zlib.DEFLATED, -15)
    return b"\x78\x9c" + raw.compress(data) + raw.flush() + bytes(4)


@given(st.binary(max_size=5000))
def test_deflate_round_trip_and_real_zlib(data: bytes) -> None:
    """Our deflate is standard zlib (valid Adler-32) and inflates back leniently."""
    packed = lenient.deflate(data)
    assert zlib.decompress(packed) == data
    assert lenient.inflate(packed) == data


@given(st.binary(max_size=5000))
def test_zero_adler_accepted(data: bytes) -> None:
    """Streams with a zero Adler-32 trailer (web client) are read without complaint."""
    assert lenient.inflate(_web_style(data)) == data


@given(st.binary(max_size=3000), st.integers(min_value=1, max_value=50))
def test_streaming_matches_one_shot(data: bytes, step: int) -> None:
    """Deflater and Inflater fed in pieces agree with the one-shot functions."""
    d = lenient.Deflater()
    packed = b"".join(d.update(data[i : i + step]) for i in range(0, len(data), step)) + d.finalize()
    assert packed == lenient.deflate(data)
    inf = lenient.Inflater()
    out = b"".join(inf.update(packed[i : i + step]) for i in range(0, len(packed), step)) + inf.finalize()
    assert out == data


def test_zip_bomb_capped() -> None:
    """Output beyond max_size raises instead of filling memory."""
    bomb = lenient.deflate(bytes(10 * 1024 * 1024))
    with pytest.raises(ValueError):
        lenient.inflate(bomb, max_size=1024 * 1024)
    assert len(lenient.inflate(bomb, max_size=10 * 1024 * 1024)) == 10 * 1024 * 1024


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x78",
        b"\x78\x9c",
        b"\x78\x9c\xff\xff\xff",
        lenient.deflate(b"abc" * 100)[:-8],
    ],
)
def test_corrupt_or_truncated_rejected(data: bytes) -> None:
    """Truncated or corrupt deflate data raises ValueError."""
    with pytest.raises(ValueError):
        lenient.inflate(data)


@given(st.text(max_size=200))
def test_web_text_round_trip(text: str) -> None:
    """decode_text reads back what the web client's Utf.js writes, and proper UTF-8."""
    assert lenient.decode_text(lenient.encode_web_text(text)) == text
    assert lenient.decode_text(text.encode("utf-8")) == text


def test_emoji_is_cesu8() -> None:
    """U+1F600 becomes two 3-byte surrogate sequences, as the web writes it."""
    assert lenient.encode_web_text("\U0001f600") == bytes.fromhex("eda0bdedb880")


@pytest.mark.parametrize("data", [b"\xed\xa0\xbd", b"\xed\xb8\x80abc", b"\xff", b"\xc3"])
def test_lone_surrogates_and_garbage_rejected(data: bytes) -> None:
    """Unpaired surrogates and invalid UTF-8 raise ValueError."""
    with pytest.raises(ValueError):
        lenient.decode_text(data)
