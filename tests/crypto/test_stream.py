"""The chunked AES-256-GCM stream under the v2 envelope and the backup: chunking, order, finality, header."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailiverse.crypto.errors import CryptoError, DecryptionError
from mailiverse.crypto.stream import TAG_SIZE, ChunkOpener, ChunkSealer

KEY = bytes(range(32))
PREFIX = b"\x07" * 7
HEADER = b"a header"


def _seal(data: bytes, chunk_size: int, pieces: int = 1) -> list[bytes]:
    sealer = ChunkSealer(KEY, PREFIX, HEADER, chunk_size)
    step = max(1, -(-len(data) // pieces))
    chunks = [c for i in range(0, len(data), step) for c in sealer.update(data[i : i + step])]
    return [*chunks, sealer.finalize()]


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=1000), chunk_size=st.integers(1, 200), pieces=st.integers(1, 7))
def test_chunks_are_full_but_the_last_and_open_in_order(data: bytes, chunk_size: int, pieces: int) -> None:
    """Every chunk but the last holds chunk_size bytes, the last 1..chunk_size (0 only for nothing), however fed."""
    chunks = _seal(data, chunk_size, pieces)
    assert [len(c) - TAG_SIZE for c in chunks[:-1]] == [chunk_size] * (len(chunks) - 1)
    assert (0 if not data else 1) <= len(chunks[-1]) - TAG_SIZE <= chunk_size
    opener = ChunkOpener(KEY, PREFIX, HEADER)
    opened = b"".join(opener.open(c, final=i == len(chunks) - 1) for i, c in enumerate(chunks))
    assert opened == data and opener.finished


def test_open_either_finds_the_last_chunk_by_its_flag() -> None:
    """Without framing that marks the last chunk, open_either tells it apart and a failed try moves nothing."""
    chunks = _seal(b"x" * 25, 10)
    opener = ChunkOpener(KEY, PREFIX, HEADER)
    assert opener.open_either(chunks[0]) == b"x" * 10 and not opener.finished
    with pytest.raises(DecryptionError):
        opener.open_either(chunks[2])  # out of order
    assert opener.open_either(chunks[1]) == b"x" * 10 and not opener.finished
    assert opener.open_either(chunks[2]) == b"x" * 5 and opener.finished
    with pytest.raises(DecryptionError):
        opener.open_either(chunks[2])  # nothing comes after the last chunk


@pytest.mark.parametrize("change", ["header", "prefix", "key", "dropped last", "not last", "flipped"])
def test_any_change_fails_with_the_generic_error(change: str) -> None:
    """A different header, nonce prefix or key, a dropped or re-flagged last chunk, or a flipped bit all fail."""
    chunks = _seal(b"y" * 30, 10)
    key, prefix, header = KEY, PREFIX, HEADER
    if change == "header":
        header = b"another header"
    elif change == "prefix":
        prefix = b"\x08" * 7
    elif change == "key":
        key = bytes(32)
    elif change == "flipped":
        chunks[1] = bytes([chunks[1][0] ^ 1]) + chunks[1][1:]
    opener = ChunkOpener(key, prefix, header)
    with pytest.raises(DecryptionError):
        opener.open(chunks[0], final=False)
        if change == "dropped last":
            opener.open(chunks[1], final=True)
        opener.open(chunks[1], final=False)
        opener.open(chunks[2], final=change != "not last")


def test_finished_sealer_and_bad_parameters_are_refused() -> None:
    """A sealer takes nothing after finalize; keys are 32 bytes, prefixes 7, chunk sizes at least 1."""
    sealer = ChunkSealer(KEY, PREFIX, HEADER, 4)
    sealer.finalize()
    with pytest.raises(CryptoError, match="finalized"):
        sealer.update(b"more")
    with pytest.raises(CryptoError, match="finalized"):
        sealer.finalize()
    for key, prefix, size in ((bytes(16), PREFIX, 4), (KEY, bytes(8), 4), (KEY, PREFIX, 0)):
        with pytest.raises(CryptoError):
            ChunkSealer(key, prefix, HEADER, size)
