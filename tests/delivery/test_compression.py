"""The zlib strategy of a delivery: Huffman coding alone for Base64 of compressed data, LZ77 for text.

Both objects of a large attachment-heavy message go out as Huffman-only zlib streams, which the
lenient reader (the original's rule: skip the header, ignore the trailer) and plain zlib both inflate
to the exact bytes; prose keeps the default strategy; small messages are not sampled.
"""

from __future__ import annotations

import base64
import random
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st

from mailiverse.crypto.formats import decrypt_any
from mailiverse.crypto.keys import generate_private_key, public_key_der
from mailiverse.crypto.lenient import Deflater, inflate
from mailiverse.delivery.compression import SAMPLE_FROM, choose_strategy
from mailiverse.delivery.pipeline import Delivery
from mailiverse.mime.twin import convert
from mailiverse.spool import SpooledMessage
from mailiverse.store.db import Database
from mailiverse.store.objects import list_objects_txn, read_object_txn
from mailiverse.store.users import add_user_txn, get_user_txn
from mailiverse.testing_db import sqlite_url

KEY = generate_private_key()
WORDS = "the quarterly report for the meeting is attached please read it before friday".split()


def _prose(size: int, seed: int = 3) -> bytes:
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        out += (" ".join(rng.choice(WORDS) for _ in range(12)) + "\r\n").encode("ascii")
    return bytes(out[:size])


def _attachment_mail(size: int) -> bytes:
    """A message of about ``size`` bytes that is mostly the Base64 of random (already compressed) data."""
    body = base64.encodebytes(random.Random(5).randbytes(size * 3 // 4)).replace(b"\n", b"\r\n")
    return (
        b"From: s@example.org\r\nTo: alice@example.org\r\nSubject: photos\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n'
        b"--b\r\nContent-Type: image/jpeg; name=a.jpg\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + body
        + b"--b--\r\n"
    )


def _text_mail(size: int) -> bytes:
    return b"From: s@example.org\r\nTo: alice@example.org\r\nSubject: minutes\r\n\r\n" + _prose(size)


def test_the_choice() -> None:
    assert choose_strategy(_attachment_mail(SAMPLE_FROM * 4)) == zlib.Z_HUFFMAN_ONLY
    assert choose_strategy(memoryview(_attachment_mail(SAMPLE_FROM * 4))) == zlib.Z_HUFFMAN_ONLY
    assert choose_strategy(_text_mail(SAMPLE_FROM * 4)) == zlib.Z_DEFAULT_STRATEGY
    assert choose_strategy(_attachment_mail(SAMPLE_FROM // 2)) == zlib.Z_DEFAULT_STRATEGY  # not sampled
    assert choose_strategy(bytes(SAMPLE_FROM * 2)) == zlib.Z_DEFAULT_STRATEGY  # zeros: LZ77 wins hugely


def test_huffman_only_is_smaller_and_faster_where_it_is_chosen() -> None:
    """The reason for the choice, checked on the message itself: no larger than the default's output."""
    raw = _attachment_mail(1024 * 1024)
    huffman, default = Deflater(strategy=zlib.Z_HUFFMAN_ONLY), Deflater()
    small = huffman.update(raw) + huffman.finalize()
    large = default.update(raw) + default.finalize()
    assert len(small) <= len(large) * 1.02
    assert small[:2] == b"\x78\x01" and large[:2] == b"\x78\x9c"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=20_000), st.integers(min_value=1, max_value=5000))
def test_huffman_only_streams_inflate_exactly(data: bytes, piece: int) -> None:
    deflater = Deflater(strategy=zlib.Z_HUFFMAN_ONLY)
    packed = b"".join(deflater.update(data[i : i + piece]) for i in range(0, len(data), piece)) + deflater.finalize()
    assert inflate(packed) == data == zlib.decompress(packed)


@pytest.fixture
def delivery(tmp_path: Path) -> Iterator[tuple[Database, Delivery]]:
    from twisted.internet import reactor

    database = Database.open(sqlite_url(tmp_path), reactor=reactor)
    with database.blocking_allowed():
        database.transact_sync(add_user_txn, "alice", public_key_der(KEY), "v2")
        database.transact_sync(add_user_txn, "bob", public_key_der(KEY), "v1")
    inbox = Delivery(database, lambda domain: domain == "example.org", tmp_dir=tmp_path, reactor=reactor)
    try:
        yield database, inbox
    finally:
        inbox.stop()
        database.close()


@pytest.mark.parametrize(
    ("make", "header"),
    [(_attachment_mail, b"\x78\x01"), (_text_mail, b"\x78\x9c")],
    ids=["attachment-huffman", "prose-default"],
)
@pytest_twisted.ensureDeferred
async def test_delivered_objects_use_the_chosen_strategy(
    delivery: tuple[Database, Delivery], make: object, header: bytes
) -> None:
    database, inbox = delivery
    raw = make(600 * 1024)  # type: ignore[operator]
    recipients = [await inbox.resolve("alice@example.org"), await inbox.resolve("bob@example.org")]
    await inbox.deliver(SpooledMessage(size=len(raw), memory=raw), "s@example.org", recipients)  # type: ignore[arg-type]
    for name in ("alice", "bob"):  # v2 and v1 envelopes
        user = await database.run(get_user_txn, name)
        assert user is not None
        infos = await database.run(list_objects_txn, user.id, "Mail/In")
        bodies = {info.path: await database.run(read_object_txn, user.id, info.path) for info in infos}
        original_path = next(path for path in bodies if not path.startswith("Mail/In_Json/"))
        twin_path = next(path for path in bodies if path.startswith("Mail/In_Json/"))
        written_ms = int(original_path.rsplit("/", 1)[1].split("_")[0])
        twin = convert(raw, original_path=original_path, written_ms=written_ms)[:-1]
        twin += f',"delivered_to":"{name}@example.org"}}'.encode()  # the twin's one addition: where it went
        expected = {original_path: raw, twin_path: twin}
        for path, blob in bodies.items():
            compressed = decrypt_any(KEY, blob)
            assert compressed[:2] == header, (name, path)
            assert inflate(compressed) == expected[path] == zlib.decompress(compressed)
