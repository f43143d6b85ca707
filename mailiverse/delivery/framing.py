"""The pipe protocol between the appliance and a delivery worker: length-prefixed frames.

A frame is one tag byte, a 4-byte big-endian length and that many bytes. The appliance sends a job
(``JOB``: the JSON of a ``SealJob`` and the message size) followed by the message bytes unframed.
The worker answers, once at start, ``HELLO`` (JSON: the isolation measures it applied), and per
job any number of ``CHUNK`` frames of the current object, ``END_OBJECT`` after each object, then
``RESULT`` (JSON: ``SealedMeta``) or ``ERROR`` (JSON: the exception's type name, never its text).

A worker started behind a socket (``--worker-socket``: systemd starts it, with no command line from
the appliance) first reads ``SETTINGS`` (JSON: its ``IsolationSettings``), which the appliance sends as
soon as it connects.

A job whose message is judged (``SealJob.judge``) may, before its first ``CHUNK``, ask DNS questions:
the worker, which can open no socket, sends ``ENQUIRY`` (JSON ``{"name", "type"}``) and blocks until
the appliance sends back ``ANSWER`` (JSON ``{"records": [...], "error": null | "temperror" |
"nxdomain"}``). One question at a time, at most ``MAX_ENQUIRIES`` per message, all within
``DNS_BUDGET_SECONDS``; a worker that asks when it may not, or asks too much, is killed.
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
ENQUIRY = b"Q"
ANSWER = b"A"
SETTINGS = b"S"

HEADER = struct.Struct(">cI")
#: The largest frame either side accepts (a worker's chunks are far smaller); bounds what a
#: misbehaving worker can make the appliance buffer.
MAX_FRAME = 4 * 1024 * 1024

#: DNS questions one message may ask: SPF's ten lookups (and the addresses of its MX names) for the
#: MAIL FROM and the HELO name, a few DKIM and ARC keys, DMARC's two policy records, and the
#: connecting address in each DNS blocklist (judge.py and spamcheck.py share it out).
MAX_ENQUIRIES = 55
#: How long all of one message's DNS questions may take together, and one of them.
DNS_BUDGET_SECONDS = 20.0
DNS_LOOKUP_SECONDS = 5.0
#: The record types a worker may ask for (what SPF, DKIM, DMARC and ARC look up).
ENQUIRY_TYPES = frozenset({"TXT", "A", "AAAA", "MX", "PTR"})
#: The largest question (a DNS name is at most 253 characters) and answer a side accepts.
MAX_ENQUIRY = 1024
MAX_ANSWER = 64 * 1024
MAX_SETTINGS = 4096
ANSWER_ERRORS = frozenset({"temperror", "nxdomain"})


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


def enquiry(payload: bytes) -> tuple[str, str]:
    """The (name, type) of an ``ENQUIRY`` frame; ValueError when it is not a proper question."""
    if len(payload) > MAX_ENQUIRY:
        raise ValueError("an enquiry is too long")
    value = json.loads(payload)
    if not isinstance(value, dict) or set(value) != {"name", "type"}:
        raise ValueError("an enquiry is {name, type}")
    name, rtype = value["name"], value["type"]
    if not isinstance(name, str) or not 0 < len(name) <= 253 or not name.isascii() or not name.isprintable():
        raise ValueError("an enquiry names a DNS name")
    if " " in name or "\\" in name or rtype not in ENQUIRY_TYPES:
        raise ValueError("an enquiry asks for a known record type of a DNS name")
    return name, str(rtype)
