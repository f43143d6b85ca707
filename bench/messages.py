"""Make deterministic test messages of an exact size: plain text when small,
text plus a Base64 attachment when large."""

from __future__ import annotations

import base64
import random

RECIPIENT = "alice@example.org"
SENDER = "sender@bench.test"
#: Below this size a message is one text/plain part; above it, multipart/mixed with an attachment.
ATTACHMENT_THRESHOLD = 16 * 1024
_WORDS = (
    "mail appliance message encrypted store twin latency throughput commit parse zlib envelope "
    "connection baseline sender recipient header body attachment quarter report meeting agenda"
).split()
_BOUNDARY = "=_bench_boundary_7f3a9c"


def _headers(size: int, content_type: str) -> bytes:
    lines = [
        "From: Bench Sender <sender@bench.test>",
        f"To: Alice <{RECIPIENT}>",
        f"Subject: benchmark message of {size} bytes",
        "Date: Mon, 02 Mar 2026 10:00:00 +0000",
        f"Message-ID: <bench-{size}@bench.test>",
        "MIME-Version: 1.0",
        f"Content-Type: {content_type}",
        "",
        "",
    ]
    return "\r\n".join(lines).encode("ascii")


def _text(length: int, rng: random.Random) -> bytes:
    """ASCII prose of exactly ``length`` bytes in CRLF lines of at most 78 characters."""
    out = bytearray()
    line = ""
    while len(out) + len(line) < length:
        word = rng.choice(_WORDS)
        if len(line) + len(word) + 1 > 76:
            out += line.encode("ascii") + b"\r\n"
            line = ""
        line = f"{line} {word}" if line else word
    out += line.encode("ascii")
    del out[length:]
    while len(out) < length:
        out += b"x"
    return bytes(out)


def make_message(size: int, seed: int = 7) -> bytes:
    """An RFC 5322 message of exactly ``size`` bytes with CRLF line ends and no line starting with a dot.

    It ends with CRLF, so the SMTP client can append ``.\\r\\n`` directly.
    """
    if size < 512:
        raise ValueError("messages are at least 512 bytes")
    rng = random.Random(seed)
    if size < ATTACHMENT_THRESHOLD:
        head = _headers(size, "text/plain; charset=us-ascii")
        return head + _text(size - len(head) - 2, rng) + b"\r\n"
    head = _headers(size, f'multipart/mixed; boundary="{_BOUNDARY}"')
    text_head = f"--{_BOUNDARY}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n".encode("ascii")
    attach_head = (
        f"\r\n--{_BOUNDARY}\r\nContent-Type: application/octet-stream\r\n"
        'Content-Disposition: attachment; filename="data.bin"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode("ascii")
    tail = f"\r\n--{_BOUNDARY}--\r\n".encode("ascii")
    text_size = 2048
    room = size - len(head) - len(text_head) - text_size - len(attach_head) - len(tail)
    # Base64 in 76-character lines costs 78 bytes per 57 raw bytes.
    raw = rng.randbytes(max(0, (room // 78) * 57))
    encoded = base64.encodebytes(raw).replace(b"\n", b"\r\n").rstrip(b"\r\n")
    filler = size - len(head) - len(text_head) - len(attach_head) - len(encoded) - len(tail)
    message = head + text_head + _text(filler, rng) + attach_head + encoded + tail
    assert len(message) == size
    return message


def label(size: int) -> str:
    """``5 KB``, ``75 KB``, ``1 MB``, ``10 MB`` (decimal units, as the issue names them)."""
    if size >= 1_000_000 and size % 1_000_000 == 0:
        return f"{size // 1_000_000} MB"
    if size >= 1000 and size % 1000 == 0:
        return f"{size // 1000} KB"
    return f"{size} B"
