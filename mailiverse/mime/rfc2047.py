"""MimeUtility.decodeText / decodeWord of JavaMail 1.4 (strict mode)."""

from __future__ import annotations

import re

from mailiverse.mime import charsets
from mailiverse.mime.errors import unsupported_encoding
from mailiverse.mime.transfer import b_decode, q_decode

_TOKENS = re.compile(r"[ \t\n\r]|[^ \t\n\r]+")


class _NotEncoded(Exception):
    """decodeWord's ParseException: the token is left as it is."""


def _ascii_bytes(text: str) -> bytes:
    return bytes(ord(c) & 0xFF for c in text)


def decode_word(word: str) -> str:
    """One encoded-word; raises _NotEncoded, or TwinError for an unknown charset or encoding."""
    if not word.startswith("=?"):
        raise _NotEncoded
    pos = word.find("?", 2)
    if pos < 0:
        raise _NotEncoded
    charset = charsets.java_charset(word[2:pos])
    start = pos + 1
    pos = word.find("?", start)
    if pos < 0:
        raise _NotEncoded
    encoding = word[start:pos]
    start = pos + 1
    pos = word.find("?=", start)
    if pos < 0:
        raise _NotEncoded
    payload = word[start:pos]
    decoded = ""
    if payload:
        if encoding.lower() == "b":
            data = b_decode(_ascii_bytes(payload))
        elif encoding.lower() == "q":
            data = q_decode(_ascii_bytes(payload))
        else:
            raise unsupported_encoding(f"unknown encoding: {encoding}")
        if data is None:
            raise _NotEncoded
        if data:
            decoded = charsets.decode(data, charset)
    rest = word[pos + 2 :]
    return decoded + rest


def decode_text(text: str) -> str:
    """Decode every whole-token encoded word; whitespace between two decoded words is dropped."""
    if "=?" not in text:
        return text
    out: list[str] = []
    white: list[str] = []
    prev_encoded = False
    for token in _TOKENS.findall(text):
        if token in (" ", "\t", "\r", "\n"):
            white.append(token)
            continue
        try:
            word = decode_word(token)
        except _NotEncoded:
            word = token
            out.extend(white)
            prev_encoded = False
        else:
            if not prev_encoded:
                out.extend(white)
            prev_encoded = True
        out.append(word)
        white = []
    out.extend(white)
    return "".join(out)
