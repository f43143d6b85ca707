"""Sealing a large message holds it in memory about once, not once per stage of the pipeline."""

from __future__ import annotations

import base64
import random
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock

from mailiverse.crypto.formats import open_mail_object
from mailiverse.crypto.keys import generate_private_key, public_key_der
from mailiverse.delivery.pipeline import Delivery
from mailiverse.delivery.sealing import SealJob
from mailiverse.mime.limits import Limits
from mailiverse.mime.twin import convert
from mailiverse.spool import SpoolWriter
from mailiverse.store.db import Database
from mailiverse.store.users import User
from mailiverse.testing_db import sqlite_url

MESSAGE_BYTES = 20_000_000
#: The goal is under 2x for the whole process; sealing alone gets a little slack for allocator noise.
PEAK_RATIO = 2.5


def _large_message(size: int) -> bytes:
    """A text part and an incompressible Base64 attachment, ``size`` bytes or a little more."""
    head = (
        b"From: Sender <s@example.org>\r\nTo: alice@example.org\r\nSubject: big\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=BB\r\n\r\n"
        b"--BB\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b"--BB\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    attachment = random.Random(3).randbytes(size * 3 // 4 * 76 // 78)
    return head + base64.encodebytes(attachment).replace(b"\n", b"\r\n") + b"--BB--\r\n"


@pytest.fixture
def delivery(tmp_path: Path) -> Iterator[Delivery]:
    """A Delivery whose database is never reached: sealing does not touch it."""
    reactor = MemoryReactorClock()
    database = Database.open(sqlite_url(tmp_path), reactor=reactor)
    inbox = Delivery(database, lambda domain: True, tmp_dir=tmp_path, reactor=reactor)
    try:
        yield inbox
    finally:
        inbox.stop()
        database.close()


def test_sealing_a_large_message_peaks_near_its_size(delivery: Delivery, tmp_path: Path) -> None:
    """One recipient, ~20 MB spilled to the spool: sealing both objects allocates under 2.5x its size at peak."""
    private_key = generate_private_key()
    user = User(1, "alice", 0, "v2", public_key_der(private_key), False, None, None, None, None, 0, False)
    data = _large_message(MESSAGE_BYTES)
    writer = SpoolWriter(tmp_path, memory_limit=256 * 1024)
    for pos in range(0, len(data), 65536):
        writer.write(data[pos : pos + 65536])
    message = writer.finish()
    expected_twin = convert(data, original_path="Mail/In/1_2", written_ms=1)
    del data

    tracemalloc.start()
    try:
        job = SealJob("Mail/In/1_2", "Mail/In_Json/1_2", 1, (("v2", user.public_key),), Limits())
        sealed, _meta = delivery._seal_here(message, job)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert peak < PEAK_RATIO * message.size, f"peak {peak / message.size:.2f}x the message size"
    original, twin = (open_mail_object(private_key, item.read()) for item in sealed)
    assert original == message.read_all()
    assert twin == expected_twin
    for item in sealed:
        item.close()
    message.close()
