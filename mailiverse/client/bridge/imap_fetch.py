"""What one FETCH response says of one message (RFC 3501 §6.4.5, §7.4.2): each requested item rendered from the
message's listing and, when an item needs it, its decrypted bytes; which items set ``\\Seen``.

Items come from Twisted's FETCH attribute parser (``imap4._FetchParser``): objects with a ``type`` and, for body
sections, ``peek``, ``header`` (``negate``, ``fields``), ``text``, ``mime``, ``empty``, ``part`` (0-based) and
``partialBegin``/``partialLength``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from mailiverse.client.bridge import imap_syntax as syntax
from mailiverse.client.bridge.imap_message import Part, body_structure, body_text, encode, envelope, parse, section
from mailiverse.client.bridge.model import MessageRef

#: Items that need the message itself, not only its listing.
CONTENT_ITEMS = {"envelope", "rfc822", "rfc822header", "rfc822text", "bodystructure", "body"}


class Loaded:
    """A decrypted message, its MIME tree parsed on first use."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    @cached_property
    def tree(self) -> Part:
        return parse(self.data)

    @cached_property
    def text(self) -> str:
        return body_text(self.data)


def text_of(loaded: Loaded) -> str:
    return loaded.text


def sets_seen(item: Any) -> bool:
    """Whether fetching ``item`` sets ``\\Seen`` (RFC 3501 §6.4.5): BODY[...] without PEEK, RFC822, RFC822.TEXT."""
    if item.type in ("rfc822", "rfc822text"):
        return True
    return item.type == "body" and not item.peek and bool(item.header or item.text or item.mime or item.empty)


def _literal(data: bytes) -> bytes:
    return b"{%d}\r\n%b" % (len(data), data)


def _section_label(item: Any) -> tuple[str, list[bytes], bytes]:
    """The section kind, header field names, and the ``BODY[...]`` label of a FETCH body item."""
    fields: list[bytes] = []
    if item.header:
        fields = list(item.header.fields or [])
        kind = ("HEADER.FIELDS.NOT" if item.header.negate else "HEADER.FIELDS") if fields else "HEADER"
    elif item.text:
        kind = "TEXT"
    elif item.mime:
        kind = "MIME"
    else:
        kind = ""
    label = b".".join(b"%d" % (number + 1) for number in item.part)
    if item.part and kind:
        label += b"."
    label += kind.encode()
    if fields:
        label += b" (" + b" ".join(fields) + b")"
    return kind, fields, b"BODY[" + label + b"]"


def fetch_response(sequence: int, ref: MessageRef, items: Sequence[Any], loaded: Loaded | None, flags: bool) -> bytes:
    """One untagged FETCH response."""
    out: list[bytes] = []
    for item in items:
        kind = item.type
        if kind == "flags":
            out.append(b"FLAGS " + syntax.flags_wire(ref.flags))
        elif kind == "uid":
            out.append(b"UID %d" % ref.uid)
        elif kind == "internaldate":
            out.append(b"INTERNALDATE " + syntax.internal_date(ref.internal_ms))
        elif kind == "rfc822size":
            out.append(b"RFC822.SIZE %d" % (len(loaded.data) if loaded is not None else ref.size))
        else:
            assert loaded is not None
            out.append(_content_item(item, loaded))
    if flags and not any(item.type == "flags" for item in items):
        out.append(b"FLAGS " + syntax.flags_wire(ref.flags))
    return b"* %d FETCH (%s)\r\n" % (sequence, b" ".join(out))


def _content_item(item: Any, loaded: Loaded) -> bytes:
    kind = item.type
    if kind == "envelope":
        return b"ENVELOPE " + encode(envelope(loaded.tree))
    if kind == "bodystructure":
        return b"BODYSTRUCTURE " + body_structure(loaded.tree, extended=True)
    if kind == "rfc822":
        return b"RFC822 " + _literal(loaded.data)
    if kind == "rfc822header":
        return b"RFC822.HEADER " + _literal(loaded.tree.header)
    if kind == "rfc822text":
        return b"RFC822.TEXT " + _literal(loaded.tree.body)
    if not (item.header or item.text or item.mime or item.empty):
        return b"BODY " + body_structure(loaded.tree, extended=False)
    section_kind, fields, label = _section_label(item)
    data = section(loaded.tree, loaded.data, item.part, section_kind, fields)
    if item.partialBegin is not None:
        begin = item.partialBegin
        data = data[begin : begin + item.partialLength]
        label += b"<%d>" % begin
    return label + b" " + _literal(data)
