"""How to zlib one incoming message: LZ77 where it pays, Huffman coding alone where it cannot.

Large mail is mostly Base64 of attachments that are already compressed (JPEG, PDF, Office, zip).
Over such text zlib's default strategy searches for repeats that are not there: at level 6 it runs at
about 30 MB/s and, in the end, saves nothing over Huffman coding alone, which runs four times as fast
and codes Base64's 64 symbols in about 6 bits each. Prose, HTML and logs do repeat, and keep the
default strategy.

The choice is made once per message, from samples of its raw bytes, and applies to both objects
(the original and its JSON twin, which carries the same attachment text). Small messages are not
sampled: their compression costs little either way.
"""

from __future__ import annotations

import zlib

from mailiverse.crypto.lenient import Deflater

#: Messages below this size are compressed the default way without sampling.
SAMPLE_FROM = 256 * 1024
#: Bytes in each sample, and the relative positions of the samples in the message.
SAMPLE_BYTES = 32 * 1024
SAMPLE_AT = (0.25, 0.5, 0.75)
#: Huffman coding alone is chosen if its output is at most this much larger than the default's.
HUFFMAN_SLACK = 1.02


def _compressed_size(data: bytes, strategy: int) -> int:
    deflater = Deflater(strategy)
    return len(deflater.update(data)) + len(deflater.finalize())


def choose_strategy(raw: bytes | memoryview) -> int:
    """The zlib strategy for a message whose raw bytes are ``raw``: default, or ``Z_HUFFMAN_ONLY``."""
    size = len(raw)
    if size < SAMPLE_FROM:
        return zlib.Z_DEFAULT_STRATEGY
    view = memoryview(raw)
    default = huffman = 0
    for position in SAMPLE_AT:
        start = min(int(size * position), size - SAMPLE_BYTES)
        sample = bytes(view[start : start + SAMPLE_BYTES])
        default += _compressed_size(sample, zlib.Z_DEFAULT_STRATEGY)
        huffman += _compressed_size(sample, zlib.Z_HUFFMAN_ONLY)
    if huffman <= default * HUFFMAN_SLACK:
        return zlib.Z_HUFFMAN_ONLY
    return zlib.Z_DEFAULT_STRATEGY


__all__ = ["HUFFMAN_SLACK", "SAMPLE_AT", "SAMPLE_BYTES", "SAMPLE_FROM", "choose_strategy"]
