"""The pipe protocol between the appliance and a delivery worker: length-prefixed frames.

A frame is one tag byte, a 4-byte big-endian length and that many bytes. The appliance sends a job
(``JOB``: the JSON of a ``SealJob`` and the message size) followed by the message bytes unframed.
The worker answers, once at start, ``HELLO`` (JSON: the isolation measures it applied), and per
job any number of ``CHUNK`` frames of the current object, ``END_OBJECT`` after each object, then
``RESULT`` (JSON: ``SealedMeta``) or ``ERROR`` (JSON: the exception's type name, never its text).
"""

from __future__ import annotations

import json
import struct
from typing import Any

JOB = b"J"
HELLO = b"H"
CHUNK = b"C"
END_OBJECT = b"F"
RESULT = b"R"
ERROR = b"X"

HEADER = struct.Struct(">cI")
#: The largest frame either side accepts (a worker's chunks are far smaller); bounds what a
#: misbehaving worker can make the appliance buffer.
MAX_FRAME = 4 * 1024 * 1024


def frame(tag: bytes, payload: bytes) -> bytes:
    return HEADER.pack(tag, len(payload)) + payload


def json_frame(tag: bytes, value: Any) -> bytes:
    return frame(tag, json.dumps(value, separators=(",", ":")).encode("utf-8"))


class FrameError(Exception):
    """The peer broke the framing (unknown tag, frame too large)."""


class FrameReader:
    """Cuts a byte stream into ``(tag, payload)`` frames as data arrives."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._max_frame = max_frame

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self._buffer += data
        frames: list[tuple[bytes, bytes]] = []
        position = 0
        buffer = self._buffer
        while len(buffer) - position >= HEADER.size:
            tag, length = HEADER.unpack_from(buffer, position)
            if length > self._max_frame:
                raise FrameError(f"frame of {length} bytes is over the limit")
            end = position + HEADER.size + length
            if len(buffer) < end:
                break
            frames.append((tag, bytes(buffer[position + HEADER.size : end])))
            position = end
        del buffer[:position]
        return frames
