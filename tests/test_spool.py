"""Tests for mailiverse.spool: bounded memory, encryption at rest, independent readers."""

from __future__ import annotations

import os
import secrets
import stat
import threading
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailiverse.spool import SpoolError, SpoolFile, SpoolWriter


def _canary_message(canary: bytes, total: int) -> bytes:
    filler = (b"x" * 70 + b"\r\n") * (total // 72 + 1)
    return canary + b"\r\n" + filler[:total] + canary + b"\r\n"


def _write_in_chunks(writer: SpoolWriter, data: bytes, chunk: int = 4096) -> None:
    for i in range(0, len(data), chunk):
        writer.write(data[i : i + chunk])


def test_small_message_stays_in_memory(tmp_path: Path) -> None:
    """A message under the memory limit never creates a file and reads back unchanged."""
    writer = SpoolWriter(tmp_path, memory_limit=1024)
    writer.write(b"Subject: hi\r\n\r\nbody\r\n")
    message = writer.finish()
    assert message.in_memory
    assert message.read_all() == b"Subject: hi\r\n\r\nbody\r\n"
    assert message.size == len(b"Subject: hi\r\n\r\nbody\r\n")
    assert list(tmp_path.iterdir()) == []


def test_spilled_file_holds_only_ciphertext(tmp_path: Path) -> None:
    """Past the memory limit the temp file is 0600 and never contains the plaintext canary."""
    canary = b"CANARY-" + secrets.token_hex(16).encode()
    data = _canary_message(canary, 300_000)
    writer = SpoolWriter(tmp_path, memory_limit=64 * 1024, keep_name=True)
    _write_in_chunks(writer, data)
    assert writer.spilled
    message = writer.finish()
    files = list(tmp_path.iterdir())
    assert len(files) == 1
    raw = files[0].read_bytes()
    assert len(raw) == len(data)
    assert canary not in raw
    assert b"x" * 70 not in raw
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert message.read_all() == data
    message.close()
    assert list(tmp_path.iterdir()) == []


def _spool_files_via_proc(directory: Path) -> list[bytes]:
    """The contents of every open descriptor of this process whose file lives in ``directory``."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:  # the descriptor listdir itself used
            continue
        if target.startswith(str(directory)):
            with open(f"/proc/self/fd/{fd}", "rb") as handle:
                found.append(handle.read())
    return found


def test_unnamed_spool_file_is_invisible_and_encrypted(tmp_path: Path) -> None:
    """By default the spill file has no name in the directory, and its bytes (via /proc) are ciphertext.

    While the message arrives, at most one write chunk (64 KiB) waits in memory to be encrypted
    in one go; the rest is already on disk, and all of it once the spool is finished.
    """
    canary = b"CANARY-" + secrets.token_hex(16).encode()
    data = _canary_message(canary, 200_000)
    writer = SpoolWriter(tmp_path, memory_limit=1024)
    _write_in_chunks(writer, data)
    assert list(tmp_path.iterdir()) == []
    [midway] = _spool_files_via_proc(tmp_path)
    assert len(data) - 64 * 1024 < len(midway) <= len(data)
    assert canary not in midway
    message = writer.finish()
    [finished] = _spool_files_via_proc(tmp_path)
    assert len(finished) == len(data)
    assert canary not in finished and b"x" * 70 not in finished
    assert message.read_all() == data
    message.close()


def test_line_by_line_writes_read_back_exactly(tmp_path: Path) -> None:
    """SMTP writes a line at a time; buffered into whole chunks, the message still reads back byte for byte."""
    lines = [secrets.token_bytes(n % 997) + b"\r\n" for n in range(3000)]
    writer = SpoolWriter(tmp_path, memory_limit=10_000)
    for line in lines:
        writer.write(line)
    message = writer.finish()
    assert message.size == sum(map(len, lines))
    assert message.read_all() == b"".join(lines)
    message.close()


def test_readers_are_independent_and_thread_safe(tmp_path: Path) -> None:
    """Every open() is a fresh stream from offset 0, and readers in threads all see the same bytes."""
    data = secrets.token_bytes(500_000)
    writer = SpoolWriter(tmp_path, memory_limit=10_000)
    _write_in_chunks(writer, data, 7777)
    message = writer.finish()
    first = message.open()
    assert first.read(100) == data[:100]
    second = message.open()
    assert second.read(50) == data[:50]
    assert first.read(100) == data[100:200]
    results: list[bytes] = []

    def read() -> None:
        results.append(message.read_all())

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [data] * 4
    message.close()
    with pytest.raises(SpoolError):
        message.open()


@settings(max_examples=30, deadline=None)
@given(offset=st.integers(0, 40_000), length=st.integers(0, 5000))
def test_seek_anywhere_decrypts_correctly(offset: int, length: int) -> None:
    """Seeking to any offset (block-aligned or not) returns the right plaintext."""
    import tempfile

    data = bytes(range(256)) * 160
    with tempfile.TemporaryDirectory() as directory:
        writer = SpoolWriter(Path(directory), memory_limit=100)
        writer.write(data)
        with writer.finish() as message, message.open() as stream:
            stream.seek(offset)
            assert stream.read(length) == data[offset : offset + length]


def test_size_limit_drops_the_message(tmp_path: Path) -> None:
    """Over max_size the writer keeps only a count, frees the file, and refuses to finish."""
    writer = SpoolWriter(tmp_path, memory_limit=1000, max_size=5000, keep_name=True)
    writer.write(b"a" * 3000)
    writer.write(b"b" * 3000)
    assert writer.oversized
    assert writer.size == 6000
    assert list(tmp_path.iterdir()) == []
    writer.write(b"c" * 10)
    assert writer.size == 6010
    with pytest.raises(SpoolError):
        writer.finish()


def test_abort_removes_everything(tmp_path: Path) -> None:
    """abort() discards a spilled message and forbids further writes."""
    writer = SpoolWriter(tmp_path, memory_limit=10, keep_name=True)
    writer.write(b"z" * 100)
    assert len(list(tmp_path.iterdir())) == 1
    writer.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SpoolError):
        writer.write(b"more")


def test_read_all_of_a_spilled_message_needs_it_in_memory_once(tmp_path: Path) -> None:
    """Reading a spilled 8 MB message whole peaks near its size, not twice it, and returns its bytes."""
    data = bytes(range(256)) * (8 * 4096 + 3)
    writer = SpoolWriter(tmp_path, memory_limit=64 * 1024)
    _write_in_chunks(writer, data)
    message = writer.finish()
    tracemalloc.start()
    try:
        got = message.read_all()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message.close()
    assert got == data
    assert peak < 1.5 * len(data)


def test_spool_file_is_written_then_read_like_a_file(tmp_path: Path) -> None:
    """A SpoolFile takes writes, tells its size, then seeks and reads back what was written, as a request body is."""
    canary = b"CANARY-" + secrets.token_hex(16).encode()
    data = _canary_message(canary, 300_000)
    body = SpoolFile(tmp_path, memory_limit=64 * 1024)
    for i in range(0, len(data), 5000):
        body.write(data[i : i + 5000])
    assert body.spilled
    assert body.tell() == len(data)
    assert list(tmp_path.iterdir()) == []
    assert all(canary not in found for found in _spool_files_via_proc(tmp_path))
    assert body.seek(0) == 0
    assert body.read(10) == data[:10]
    assert body.tell() == 10
    assert body.seek(0, os.SEEK_END) == len(data)
    body.seek(len(data) - 100)
    assert body.read() == data[-100:]
    body.seek(0)
    assert body.read() == data
    with pytest.raises(SpoolError):
        body.write(b"more")
    body.close()
    assert body.closed
    assert _spool_files_via_proc(tmp_path) == []
    with pytest.raises(ValueError):
        body.read(1)


def test_spool_file_small_body_stays_in_memory(tmp_path: Path) -> None:
    """A body under the memory limit never creates a file; closing an unread SpoolFile discards it."""
    body = SpoolFile(tmp_path)
    body.write(b'{"user": "alice"}')
    assert not body.spilled
    assert body.seek(0) == 0
    assert body.read() == b'{"user": "alice"}'
    body.close()
    unread = SpoolFile(tmp_path, memory_limit=10)
    unread.write(b"z" * 100)
    assert len(_spool_files_via_proc(tmp_path)) == 1
    unread.close()
    assert _spool_files_via_proc(tmp_path) == []
    assert list(tmp_path.iterdir()) == []
