"""Lenient readers and faithful writers for the original's zlib wrapper and web text encoding.

* zlib (docs/formats.md §1.3): the original readers skip the 2-byte header and never check the
  Adler-32 trailer (the web client writes zeros there); we read the same way, with a size cap.
  We write real zlib, which every original reader accepts.
* text (docs/formats.md §1.2): the web client writes each UTF-16 code unit on its own (CESU-8 for
  characters outside the BMP); :func:`decode_text` accepts that as well as proper UTF-8.
"""

from __future__ import annotations

import sys
import zlib
from array import array

#: Default ceiling for inflated output when the caller gives none (64 MiB).
DEFAULT_MAX_INFLATED = 64 * 1024 * 1024
_HEADER_SIZE = 2
_PIECE = 64 * 1024


def deflate(data: bytes) -> bytes:
    """Compress into a standard zlib stream (header ``78 9c``, real Adler-32)."""
    return zlib.compress(bytes(data), 6)


class Deflater:
    """Streaming :func:`deflate`: with the defaults the concatenated outputs equal ``deflate(all input)``.

    ``strategy`` may be ``zlib.Z_HUFFMAN_ONLY`` for data LZ77 cannot shrink (Base64 of compressed
    attachments): the stream is still standard zlib, which every reader, the original's included,
    inflates; only its second header byte differs (``78 01``), and the original skips the header.
    """

    def __init__(self, strategy: int = zlib.Z_DEFAULT_STRATEGY) -> None:
        self._obj = zlib.compressobj(6, zlib.DEFLATED, zlib.MAX_WBITS, 8, strategy)
        self._done = False

    def update(self, data: bytes) -> bytes:
        if self._done:
            raise ValueError("deflater already finalized")
        return self._obj.compress(bytes(data))

    def finalize(self) -> bytes:
        if self._done:
            raise ValueError("deflater already finalized")
        self._done = True
        return self._obj.flush()


class Inflater:
    """Streaming lenient inflate: skips the header, ignores the trailer, caps the output.

    Raises ``ValueError`` for corrupt or truncated deflate data, or when the output
    would exceed ``max_size`` bytes (a zip-bomb guard).
    """

    def __init__(self, max_size: int | None = DEFAULT_MAX_INFLATED) -> None:
        self._obj = zlib.decompressobj(-15)
        self._max = max_size
        self._skip = _HEADER_SIZE
        self._out = 0
        self._done = False

    def _account(self, piece: bytes) -> bytes:
        self._out += len(piece)
        if self._max is not None and self._out > self._max:
            raise ValueError("inflated data exceeds the size limit")
        return piece

    def update(self, data: bytes) -> bytes:
        if self._done:
            raise ValueError("inflater already finalized")
        data = bytes(data)
        if self._skip:
            taken = min(self._skip, len(data))
            self._skip -= taken
            data = data[taken:]
        if self._obj.eof:
            return b""  # trailer (Adler-32 or zeros) and anything after it: ignored
        out = []
        try:
            chunk = data
            while True:
                limit = _PIECE if self._max is None else min(_PIECE, self._max - self._out + 1)
                piece = self._obj.decompress(chunk, limit)
                out.append(self._account(piece))
                chunk = self._obj.unconsumed_tail
                # Go on while input is left over or zlib may still hold pending output.
                if self._obj.eof or (not chunk and len(piece) < limit):
                    break
        except zlib.error:
            raise ValueError("corrupt deflate data") from None
        return b"".join(out)

    def finalize(self) -> bytes:
        if self._done:
            raise ValueError("inflater already finalized")
        self._done = True
        if self._skip or not self._obj.eof:
            raise ValueError("truncated deflate data")
        return b""


def inflate(data: bytes, max_size: int | None = DEFAULT_MAX_INFLATED) -> bytes:
    """Inflate a zlib stream the way the original readers do (no header or Adler-32 check)."""
    inf = Inflater(max_size)
    return inf.update(data) + inf.finalize()


def decode_text(data: bytes) -> str:
    """Decode UTF-8 that may contain CESU-8 surrogate pairs; lone surrogates raise ValueError."""
    try:
        loose = bytes(data).decode("utf-8", "surrogatepass")
        # A round trip through UTF-16 joins surrogate pairs and rejects unpaired ones.
        return loose.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
    except UnicodeError as e:
        raise ValueError("text is neither UTF-8 nor CESU-8") from e


def encode_web_text(text: str) -> bytes:
    """Encode like the web client's Utf.js: every UTF-16 code unit on its own (CESU-8)."""
    units = array("H")
    units.frombytes(text.encode("utf-16-le", "surrogatepass"))
    if sys.byteorder == "big":
        units.byteswap()
    return "".join(map(chr, units)).encode("utf-8", "surrogatepass")
