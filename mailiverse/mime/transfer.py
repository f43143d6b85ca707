"""JavaMail 1.4's transfer decoders (base64, quoted-printable, uuencode, RFC 2047 B and Q), quirks included."""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable, Iterator

from mailiverse.mime.errors import TwinError, io_error

_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
#: Value of each byte in a base64 group; '=' is carried as 0xFF (Java's byte -1, masked).
_B64_VALUE = [-1] * 256
for _i, _c in enumerate(_ALPHABET):
    _B64_VALUE[_c] = _i
_B64_VALUE[ord("=")] = 0xFF
# JavaMail's decode table fills only indexes 0..254 with "invalid", so byte 0xFF stays a valid
# character worth 0 (the same as 'A'); 1.4 and 1.6.5 both count and decode it.
_B64_VALUE[0xFF] = 0
_B64_KEEP = bytes(c for c in range(256) if _B64_VALUE[c] != -1)
_B64_DROP = bytes(c for c in range(256) if _B64_VALUE[c] == -1)


class DecodeResult:
    """Decoded bytes, and the IOException Java raises once the reader reaches the end."""

    __slots__ = ("data", "error")

    def __init__(self, data: bytes, error: TwinError | None = None) -> None:
        self.data = data
        self.error = error


#: Encoded bytes the streaming Base64 decoder reads at a time.
_B64_PIECE = 256 * 1024


def _b64_kept(encoded: bytes) -> bytes:
    """The characters BASE64DecoderStream counts: junk dropped, byte 0xFF read as 'A'."""
    return encoded.translate(None, _B64_DROP).replace(b"\xff", b"A")


def _b64_error(kept: int) -> TwinError | None:
    """The IOException Java raises at the end of a body with ``kept`` counted characters."""
    return io_error(f"Error in encoded stream, got {kept % 4}") if kept % 4 else None


def _b64_decode_groups(body: bytes, out: bytearray) -> None:
    """Append the decoding of ``body`` (whole groups of four kept characters) to ``out``."""
    pos = 0
    whole = len(body)
    while pos < whole:
        eq = body.find(b"=", pos)
        if eq < 0:
            out += binascii.a2b_base64(body[pos:])
            break
        group = eq - eq % 4
        if group > pos:
            out += binascii.a2b_base64(body[pos:group])
        _decode_group(body, group, out)
        pos = group + 4


def base64_decode(encoded: bytes) -> DecodeResult:
    """BASE64DecoderStream: junk skipped, '=' counted in groups, decoding goes on after padding."""
    kept = _b64_kept(encoded)
    out = bytearray()
    _b64_decode_groups(kept[: len(kept) - len(kept) % 4], out)
    return DecodeResult(bytes(out), _b64_error(len(kept)))


def base64_error(buf: bytes, start: int, end: int) -> TwinError | None:
    """``base64_decode(buf[start:end]).error`` without decoding or copying the whole body."""
    kept = 0
    for pos in range(start, end, _B64_PIECE):
        kept += len(buf[pos : min(pos + _B64_PIECE, end)].translate(None, _B64_DROP))
    return _b64_error(kept)


def iter_base64_decode(buf: bytes, start: int, end: int) -> Iterator[bytes]:
    """``base64_decode(buf[start:end]).data`` in pieces, holding one piece at a time.

    Groups of four kept characters decode independently, so cutting at group boundaries gives the
    same bytes as decoding the whole body.
    """
    carry = b""
    for pos in range(start, end, _B64_PIECE):
        kept = carry + _b64_kept(buf[pos : min(pos + _B64_PIECE, end)])
        whole = len(kept) - len(kept) % 4
        carry = kept[whole:]
        if whole:
            out = bytearray()
            _b64_decode_groups(kept[:whole], out)
            yield bytes(out)


def _decode_group(body: bytes, g: int, out: bytearray) -> None:
    value = _B64_VALUE
    a = value[body[g]]
    b = value[body[g + 1]]
    out.append(((a << 2) & 0xFC) | ((b >> 4) & 3))
    if body[g + 2] == 0x3D:
        return
    a = b
    b = value[body[g + 2]]
    out.append(((a << 4) & 0xF0) | ((b >> 2) & 0xF))
    if body[g + 3] == 0x3D:
        return
    a = b
    b = value[body[g + 3]]
    out.append(((a << 6) & 0xC0) | (b & 0x3F))


def _hex_value(pair: bytes) -> int | None:
    """ASCIIUtility.parseInt(ba, 0, 2, 16), or None for NumberFormatException."""
    negative = pair[0] == 0x2D
    digits = pair[1:] if negative else pair
    if not digits:
        return None
    total = 0
    for ch in digits:
        d = _hexdigit(ch)
        if d < 0:
            return None
        total = total * 16 + d
    return -total if negative else total


def _hexdigit(ch: int) -> int:
    if 0x30 <= ch <= 0x39:
        return ch - 0x30
    if 0x41 <= ch <= 0x46:
        return ch - 0x37
    if 0x61 <= ch <= 0x66:
        return ch - 0x57
    return -1


_QP_INTERESTING = re.compile(rb"[ =]")


def qp_decode(data: bytes, tick: Callable[[], None] | None = None) -> bytes:
    """QPDecoderStream: soft breaks dropped, bad escapes kept, spaces before EOL stripped."""
    out = bytearray()
    pending: list[int] = []  # the pushback buffer, next byte last
    pos = 0
    n = len(data)

    def read() -> int:
        nonlocal pos
        if pending:
            return pending.pop()
        if pos < n:
            pos += 1
            return data[pos - 1]
        return -1

    while True:
        if not pending:
            m = _QP_INTERESTING.search(data, pos)
            stop = m.start() if m else n
            if stop > pos:
                out += data[pos:stop]
                pos = stop
        if tick is not None:
            tick()
        c = read()
        if c == -1:
            break
        if c == 0x20:
            spaces = 0
            c = read()
            while c == 0x20:
                spaces += 1
                c = read()
            if c in (0x0D, 0x0A, -1):
                if c == -1:
                    break
                out.append(c)
            else:
                pending.append(c)
                out += b" " * (spaces + 1)
            continue
        if c == 0x3D:
            escaped = _qp_escape(read, pending)
            if escaped is None:
                break
            if escaped >= 0:
                out.append(escaped & 0xFF)
            continue
        out.append(c)
    return bytes(out)


def _qp_escape(read: Callable[[], int], pending: list[int]) -> int | None:
    """The byte after '=' (soft breaks skipped); None at a final lone '='; -2 for nothing."""
    while True:
        a = read()
        if a == 0x0A:
            return -2
        if a == 0x0D:
            b = read()
            if b != 0x0A:
                pending.append(b & 0xFF)
            return -2
        if a == -1:
            return None
        b = read()
        pair = bytes([a & 0xFF, b & 0xFF])
        value = _hex_value(pair)
        if value is None:
            pending.append(b & 0xFF)
            pending.append(a & 0xFF)
            return 0x3D
        if value == -1:
            # Java's read() returns -1 here, which its readers take as a short read.
            return -2
        return value & 0xFF


def q_decode(word: bytes) -> bytes | None:
    """QDecoderStream for an RFC 2047 Q word; None where Java raises (a bad =XY)."""
    out = bytearray()
    i = 0
    n = len(word)
    while i < n:
        c = word[i]
        i += 1
        if c == 0x5F:
            out.append(0x20)
        elif c == 0x3D:
            a = word[i] if i < n else 0xFF
            b = word[i + 1] if i + 1 < n else 0xFF
            i += 2
            value = _hex_value(bytes([a, b]))
            if value is None:
                return None
            if value == -1:
                break
            out.append(value & 0xFF)
        else:
            out.append(c)
    return bytes(out)


def b_decode(word: bytes) -> bytes | None:
    """BASE64DecoderStream for an RFC 2047 B word; None where Java raises (a partial group)."""
    result = base64_decode(word)
    return None if result.error is not None else result.data


def _uu_lines(data: bytes) -> list[bytes]:
    return re.split(rb"\r\n|\r|\n", data)


def uu_decode(data: bytes, tick: Callable[[], None] | None = None) -> DecodeResult:
    """UUDecoderStream: skip to 'begin', decode length-prefixed lines until 'end'."""
    lines = iter(_line_iter(data))
    for line in lines:
        if line[:5].lower() == b"begin":
            if len(line) < 9:
                return DecodeResult(
                    b"", TwinError("java.lang.StringIndexOutOfBoundsException", f"begin 6, end 9, length {len(line)}")
                )
            mode = line[6:9].decode("latin-1")
            if not re.fullmatch(r"[+-]?[0-9]+", mode) or mode in ("+", "-"):
                return DecodeResult(
                    b"", io_error(f'UUDecoder error: java.lang.NumberFormatException: For input string: "{mode}"')
                )
            if len(line) < 10:
                return DecodeResult(
                    b"",
                    TwinError(
                        "java.lang.StringIndexOutOfBoundsException", f"begin 10, end {len(line)}, length {len(line)}"
                    ),
                )
            break
    else:
        return DecodeResult(b"", io_error("UUDecoder error: No Begin"))
    out = bytearray()
    for line in lines:
        if tick is not None:
            tick()
        if line[:3].lower() == b"end":
            return DecodeResult(bytes(out))
        if not line:
            continue
        count = line[0]
        if count < 0x20:
            return DecodeResult(bytes(out), io_error("Buffer format error"))
        count = (count - 0x20) & 0x3F
        if count == 0:
            following = next(lines, None)
            if following is None or following[:3].lower() != b"end":
                return DecodeResult(bytes(out), io_error("Missing End"))
            return DecodeResult(bytes(out))
        need = (count * 8 + 5) // 6
        if len(line) < need + 1:
            return DecodeResult(bytes(out), io_error("Short buffer error"))
        produced = 0
        i = 1
        while produced < count:
            a = (line[i] - 0x20) & 0x3F
            b = (line[i + 1] - 0x20) & 0x3F
            i += 2
            out.append(((a << 2) & 0xFC) | ((b >> 4) & 3))
            produced += 1
            if produced < count:
                a = b
                b = (line[i] - 0x20) & 0x3F
                i += 1
                out.append(((a << 4) & 0xF0) | ((b >> 2) & 0xF))
                produced += 1
            if produced < count:
                a = b
                b = (line[i] - 0x20) & 0x3F
                i += 1
                out.append(((a << 6) & 0xC0) | (b & 0x3F))
                produced += 1
    return DecodeResult(bytes(out), io_error("Missing End"))


def _line_iter(data: bytes) -> Iterator[bytes]:
    """Lines as LineInputStream reads them (LF, CRLF, CR CR LF or lone CR end a line)."""
    pos = 0
    n = len(data)
    finder = re.compile(rb"[\r\n]")
    while pos < n:
        m = finder.search(data, pos)
        if m is None:
            yield data[pos:]
            return
        i = m.start()
        yield data[pos:i]
        if data[i] == 0x0A:
            pos = i + 1
        else:
            pos = i + 1
            if data[pos : pos + 1] == b"\r":
                pos += 1
            if data[pos : pos + 1] == b"\n":
                pos += 1


def transfer_decode(data: bytes, encoding: str | None, tick: Callable[[], None] | None = None) -> DecodeResult:
    """MimeUtility.decode: None means no Content-Transfer-Encoding header."""
    if encoding is None:
        return DecodeResult(data)
    enc = encoding.lower()
    if enc == "base64":
        return base64_decode(data)
    if enc == "quoted-printable":
        return DecodeResult(qp_decode(data, tick))
    if enc in ("uuencode", "x-uuencode", "x-uue"):
        return uu_decode(data, tick)
    if enc in ("binary", "7bit", "8bit"):
        return DecodeResult(data)
    raise io_error(f"Unknown encoding: {encoding}")
