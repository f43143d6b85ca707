"""Wire framing of the legacy line protocol: Java class names, b64 lines, packet field checks.

Every packet is one line, ``b64(utf8("<Java class>!<JSON>")) + "\\n"`` (docs/protocol.md §4.1).
This module turns packets into lines and back, checks each packet's fields and
their types, and splits a byte stream into lines without ever buffering more than
the server's maximum line length.  It knows nothing about Twisted or SRP maths.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from mailiverse.compat.typed import TypedEnvelopeError, decode_typed, encode_typed

_SRP = "core.srp.SRPPackets$"
PACKET1_CLIENT_HELLO = _SRP + "Packet1_ClientSendsHello"
PACKET2_SERVER_SALT = _SRP + "Packet2_ServerSendSalt"
PACKET3_CLIENT_PUBLIC_KEY = _SRP + "Packet3_ClientSendPublicKey"
PACKET4_SERVER_PUBLIC_KEY = _SRP + "Packet4_ServerSendPublicKey"
PACKET5_CLIENT_EVIDENCE = _SRP + "Packet5_ClientSendEvidence"
PACKET6_SERVER_EVIDENCE = _SRP + "Packet6_ServerSendEvidenceAndPayload"
#: The original's class name, misspelling ("Authetication") included: it is a type tag.
PACKET_INIT_CREATE = _SRP + "PacketInit_ClientPreAutheticationInitialization"
PACKET_INIT_TEST_CREATE = _SRP + "PacketInit_ClientTestCreate"
PACKET_INIT_ENCRYPTED = _SRP + "PacketInit_EncryptedPacket"
PACKET_INIT_SERVER_RESPONSE = _SRP + "PacketInit_ServerResponse"

_MESSAGES = "core.client.messages."
MESSAGE_GET = _MESSAGES + "Get"
MESSAGE_PUT = _MESSAGES + "Put"
MESSAGE_DELETE = _MESSAGES + "Delete"
MESSAGE_RESPONSE = _MESSAGES + "Response"

#: MINA TextLineCodec limits of the original servers (characters per line).
KEY_SERVER_MAX_LINE = 50_000
MAIL_SERVER_MAX_LINE = 100_000

#: Longest user name accepted in any packet.
MAX_USER_CHARS = 320

_STR = str
_BOOL = bool

#: For each class: required fields, then optional fields, each with its JSON type.
PACKET_FIELDS: dict[str, tuple[dict[str, type], dict[str, type]]] = {
    PACKET1_CLIENT_HELLO: ({"user": _STR, "version": _STR}, {}),
    PACKET2_SERVER_SALT: ({"salt": _STR, "version": _STR}, {}),
    PACKET3_CLIENT_PUBLIC_KEY: ({"publicKey": _STR}, {}),
    PACKET4_SERVER_PUBLIC_KEY: ({"publicKey": _STR}, {}),
    PACKET5_CLIENT_EVIDENCE: ({"evidence": _STR}, {}),
    PACKET6_SERVER_EVIDENCE: ({"evidence": _STR}, {}),
    PACKET_INIT_CREATE: (
        {"version": _STR, "user": _STR, "v": _STR, "s": _STR, "extra": _STR},
        {},
    ),
    PACKET_INIT_TEST_CREATE: ({"version": _STR, "user": _STR}, {}),
    PACKET_INIT_ENCRYPTED: ({"encryptedBlock": _STR}, {}),
    PACKET_INIT_SERVER_RESPONSE: ({"succeeded": _BOOL}, {"reason": _STR}),
    MESSAGE_GET: ({}, {}),
    MESSAGE_PUT: ({"block": _STR}, {}),
    MESSAGE_DELETE: ({}, {}),
    MESSAGE_RESPONSE: ({}, {"block": _STR}),
}


class PacketError(ValueError):
    """A line or packet is malformed; the message says what is wrong, never what it held."""


class LineTooLong(PacketError):
    """A line exceeded the maximum length; the connection should be dropped."""


def strict_b64decode(text: str) -> bytes:
    """Decode standard base64 with padding, rejecting anything a canonical encoder would not write."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise PacketError("not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise PacketError("not canonical base64")
    return raw


def b64encode(data: bytes) -> str:
    """Standard base64 with padding and no line breaks, as the original expects."""
    return base64.b64encode(data).decode("ascii")


def frame_line(text: str) -> bytes:
    """One wire line: ``b64(utf8(text)) + "\\n"``."""
    return base64.b64encode(text.encode("utf-8")) + b"\n"


def parse_line(line: bytes, max_length: int) -> str:
    """Turn one wire line (with or without its ``\\n``/``\\r\\n``) back into the packet text."""
    body = line[:-1] if line.endswith(b"\n") else line
    if body.endswith(b"\r"):
        body = body[:-1]
    if len(body) > max_length:
        raise LineTooLong(f"line longer than {max_length} characters")
    if not body:
        raise PacketError("empty line")
    try:
        ascii_text = body.decode("ascii")
    except UnicodeDecodeError:
        raise PacketError("line is not base64 text") from None
    raw = strict_b64decode(ascii_text)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PacketError("packet is not UTF-8 text") from None


def _check_fields(class_name: str, value: Any) -> dict[str, Any]:
    required, optional = PACKET_FIELDS[class_name]
    if not isinstance(value, dict):
        raise PacketError(f"{class_name} payload is not a JSON object")
    fields: dict[str, Any] = {}
    for name, kind in {**required, **optional}.items():
        if name not in value:
            if name in required:
                raise PacketError(f"{class_name} lacks field {name!r}")
            continue
        item = value[name]
        # bool is an int subclass in Python, but JSON keeps them apart.
        if not isinstance(item, kind) or (kind is not bool and isinstance(item, bool)):
            raise PacketError(f"{class_name} field {name!r} has the wrong type")
        fields[name] = item
    user = fields.get("user")
    if isinstance(user, str) and (not user or len(user) > MAX_USER_CHARS):
        raise PacketError(f"{class_name} field 'user' has a bad length")
    return fields


def encode_packet(class_name: str, fields: Mapping[str, Any]) -> str:
    """The envelope text of a known packet, after checking its fields."""
    if class_name not in PACKET_FIELDS:
        raise PacketError("unknown packet class")
    value = dict(fields)
    _check_fields(class_name, value)
    return encode_typed(class_name, value)


def decode_packet(text: str, *expected: str) -> tuple[str, dict[str, Any]]:
    """Parse envelope text whose class must be one of ``expected`` (any known class if none given).

    Returns ``(class_name, fields)`` with only the known fields, type-checked.
    """
    try:
        class_name, value = decode_typed(text)
    except TypedEnvelopeError as e:
        raise PacketError(str(e)) from None
    allowed = expected or tuple(PACKET_FIELDS)
    if class_name not in allowed or class_name not in PACKET_FIELDS:
        raise PacketError("unexpected packet class")
    return class_name, _check_fields(class_name, value)


def decode_expected_packet(text: str, class_name: str) -> dict[str, Any]:
    """Parse envelope text that must be ``class_name``; returns its checked fields."""
    return decode_packet(text, class_name)[1]


def encode_line(class_name: str, fields: Mapping[str, Any]) -> bytes:
    """A packet straight to its wire line."""
    return frame_line(encode_packet(class_name, fields))


def decode_line(line: bytes, max_length: int, *expected: str) -> tuple[str, dict[str, Any]]:
    """A wire line straight to ``(class_name, fields)``."""
    return decode_packet(parse_line(line, max_length), *expected)


class LineSplitter:
    """Incremental splitter of a byte stream into lines, bounded by ``max_length``.

    :meth:`feed` returns the complete lines seen so far, without terminators; a
    trailing ``\\r`` is dropped and empty lines are skipped, as the original ignores
    them.  Once a line (or the unfinished tail) exceeds ``max_length`` it raises
    :class:`LineTooLong` and stays broken: the caller must drop the connection.
    """

    def __init__(self, max_length: int) -> None:
        if max_length <= 0:
            raise ValueError("max_length must be positive")
        self.max_length = max_length
        self._buffer = bytearray()
        self._broken = False

    @property
    def pending(self) -> int:
        """Bytes held waiting for a newline."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        if self._broken:
            raise LineTooLong("stream already rejected")
        lines: list[bytes] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            piece = data[start:end]
            if len(self._buffer) + len(piece) > self.max_length + 1:
                self._fail()
            line = bytes(self._buffer) + piece
            self._buffer.clear()
            start = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > self.max_length:
                self._fail()
            if line:
                lines.append(line)
        tail = data[start:]
        # One extra byte is allowed in the tail for a "\r" that precedes the "\n".
        if len(self._buffer) + len(tail) > self.max_length + 1:
            self._fail()
        self._buffer += tail
        return lines

    def _fail(self) -> None:
        self._broken = True
        self._buffer.clear()
        raise LineTooLong(f"line longer than {self.max_length} characters")
