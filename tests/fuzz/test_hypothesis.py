"""Property fuzzing with hypothesis: random and MIME-shaped inputs never break a parser's contract."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailiverse.crypto import envelope
from mailiverse.crypto.formats import seal_mail_object
from tests.support.fuzz_targets import TARGETS, corpus_files, fuzz_key

EXAMPLES = 2000 if os.environ.get("LONG") else 150
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)

_token = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x2FF), max_size=30)
_header_names = st.sampled_from(
    [
        "Subject",
        "From",
        "To",
        "Cc",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Content-Disposition",
        "Date",
        "Message-ID",
        "X-Other",
    ]
)
_types = st.sampled_from(
    [
        "text/plain",
        "text/html",
        "multipart/mixed",
        "multipart/alternative",
        "message/rfc822",
        "application/octet-stream",
        "text/plain; charset=iso-2022-jp",
        'text/plain; charset="utf-16"',
        "multipart/mixed; boundary=",
        "text/x-unknown",
    ]
)
_encodings = st.sampled_from(["7bit", "8bit", "base64", "quoted-printable", "x-uuencode", "binary", "bogus"])


@st.composite
def mime_messages(draw: st.DrawFn, depth: int = 0) -> bytes:
    """A MIME-shaped message: headers from a realistic vocabulary, nested multiparts, odd encodings."""
    headers = draw(st.lists(st.tuples(_header_names, _token), max_size=8))
    ctype = draw(_types)
    boundary = draw(st.sampled_from(["b", "=_x", "", "--", "b" * 80]))
    lines = [f"{name}: {value}" for name, value in headers]
    lines.append(f'Content-Type: {ctype}; boundary="{boundary}"')
    lines.append(f"Content-Transfer-Encoding: {draw(_encodings)}")
    head = "\r\n".join(lines).encode("utf-8", "surrogatepass")
    if ctype.startswith("multipart") and depth < 4:
        parts = draw(st.lists(mime_messages(depth + 1), max_size=4))
        body = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts)
        body += draw(st.sampled_from([b"--" + boundary.encode() + b"--\r\n", b"", b"--" + boundary.encode()]))
    elif ctype.startswith("message/") and depth < 4:
        body = draw(mime_messages(depth + 1))
    else:
        body = draw(st.binary(max_size=300))
    return head + draw(st.sampled_from([b"\r\n\r\n", b"\n\n", b"\r\n", b""])) + body


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_corpus_seeds_hold_the_contract(name: str) -> None:
    """Every committed seed of every target runs without breaking the target's contract."""
    files = corpus_files(name)
    assert files, f"no corpus for {name}"
    for path in files:
        TARGETS[name](path.read_bytes())


def _random_bytes_test(name: str):  # noqa: ANN202 - a test factory
    # One plain test per target: pytest-twisted's wrapper breaks when hypothesis is combined with parametrize.
    @FUZZ
    @given(data=st.binary(max_size=4096))
    def test(data: bytes) -> None:
        TARGETS[name](data)

    test.__doc__ = f"Arbitrary bytes given to {name} either parse or raise its one documented error."
    test.__name__ = f"test_random_bytes_{name}"
    return test


for _name in TARGETS:
    globals()[f"test_random_bytes_{_name}"] = _random_bytes_test(_name)


@FUZZ
@given(message=mime_messages())
def test_mime_shaped_messages_convert(message: bytes) -> None:
    """MIME-shaped messages with nesting, odd charsets and encodings always convert to a valid twin."""
    TARGETS["mime_twin"](message)


@FUZZ
@given(fmt=st.sampled_from(["v1", "v2"]), plain=st.binary(max_size=2000), data=st.data())
def test_mutated_sealed_objects(fmt: str, plain: bytes, data: st.DataObject) -> None:
    """A sealed object with random flips, cuts and insertions opens to the same bytes or fails generically."""
    blob = bytearray(seal_mail_object(fmt, fuzz_key().public_key(), plain))
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        where = data.draw(st.integers(0, max(0, len(blob) - 1)))
        if action == "flip" and blob:
            blob[where] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "cut":
            del blob[where:]
        else:
            blob[where:where] = data.draw(st.binary(min_size=1, max_size=8))
    TARGETS["mail_object"](bytes(blob))
    if fmt == "v2":
        TARGETS["v2_envelope"](bytes(blob))


@FUZZ
@given(plain=st.binary(max_size=3000), chunk=st.integers(1, 512))
def test_v2_round_trip_any_chunk_size(plain: bytes, chunk: int) -> None:
    """Sealing then opening with any chunk size returns the plaintext exactly."""
    key = fuzz_key()
    assert envelope.open_sealed(key, envelope.seal(key.public_key(), plain, chunk_size=chunk)) == plain
