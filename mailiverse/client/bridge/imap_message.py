"""What IMAP FETCH and SEARCH see of one message, computed from its bytes: byte-exact sections (``BODY[...]``), the
``BODYSTRUCTURE`` and ``ENVELOPE`` lists, and the decoded text SEARCH matches; plus the wire encoding of those lists.

Sections are slices of the original bytes, never a re-serialisation: mbsync and offlineimap keep what FETCH
``BODY[]`` returns, and it must be the message exactly as it was sent. The MIME tree is therefore split here on the
bytes (header/body at the first empty line, parts at their boundary lines); the stdlib ``email`` package (policy
``compat32``) only reads header values and decodes text for SEARCH. Everything stays in memory.
"""

from __future__ import annotations

import email
import email.header
import email.utils
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Union

#: Nesting deeper than this (hostile input) is shown as an opaque leaf.
MAX_DEPTH = 24
#: More parts than this in one multipart (hostile input): the rest are not split out.
MAX_PARTS = 2000

_END_OF_HEADER = re.compile(rb"\n\r?\n")
_FOLD = re.compile(r"\r?\n(?=[ \t])")

#: A value of an IMAP parenthesised list: NIL, a number, a string, a nested list, or bytes already on the wire.
Wire = Union[None, int, bytes, str, "Raw", Sequence["Wire"]]


@dataclass(frozen=True)
class Raw:
    """Bytes to put on the wire as they are (a body structure already encoded, an atom)."""

    value: bytes


@dataclass
class Part:
    """One MIME entity: its header (with the empty line that ends it), its body, and what it contains (the parts
    of a multipart, or the one message of a ``message/rfc822``)."""

    header: bytes
    body: bytes
    fields: Message
    maintype: str
    subtype: str
    children: list[Part] = field(default_factory=list)

    @property
    def is_multipart(self) -> bool:
        return self.maintype == "multipart" and bool(self.children)

    @property
    def is_rfc822(self) -> bool:
        return (self.maintype, self.subtype) == ("message", "rfc822") and bool(self.children)


def split_header(data: bytes) -> tuple[bytes, bytes]:
    """The header (through the empty line) and the body; a part without a header has an empty one."""
    if data.startswith(b"\r\n"):
        return b"\r\n", data[2:]
    if data.startswith(b"\n"):
        return b"\n", data[1:]
    found = _END_OF_HEADER.search(data)
    if found is None:
        return data, b""
    return data[: found.end()], data[found.end() :]


def parse(data: bytes, *, default: str = "text/plain", depth: int = 0) -> Part:
    """The MIME tree of ``data`` (a message or a body part)."""
    header, body = split_header(data)
    fields = BytesHeaderParser(policy=compat32).parsebytes(header)
    fields.set_default_type(default)
    content_type = fields.get_content_type() if fields.get("content-type") is not None else default
    maintype, _, subtype = content_type.partition("/")
    part = Part(header, body, fields, maintype, subtype)
    if depth >= MAX_DEPTH:
        return part
    if maintype == "multipart":
        boundary = fields.get_boundary()
        if boundary:
            child_default = "message/rfc822" if subtype == "digest" else "text/plain"
            chunks = split_multipart(body, boundary.encode("ascii", "surrogateescape"))
            part.children = [parse(chunk, default=child_default, depth=depth + 1) for chunk in chunks]
    elif (maintype, subtype) == ("message", "rfc822"):
        part.children = [parse(body, depth=depth + 1)]
    return part


def split_multipart(body: bytes, boundary: bytes) -> list[bytes]:
    """The parts between the boundary lines of a multipart body (RFC 2046 §5.1.1: the line break before a
    boundary line belongs to it)."""
    delimiter = re.compile(rb"(?:\A|\r?\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?=\r?\n|\Z)")
    chunks: list[bytes] = []
    start: int | None = None
    for found in delimiter.finditer(body):
        if start is not None:
            chunks.append(body[start : max(start, found.start())])
            if len(chunks) >= MAX_PARTS:
                return chunks
        if found.group(1):
            return chunks
        start = found.end()
        if body.startswith(b"\r\n", start):
            start += 2
        elif body.startswith(b"\n", start):
            start += 1
    if start is not None:
        chunks.append(body[start:])
    return chunks


def locate(message: Part, path: Sequence[int]) -> Part | None:
    """The part a section's part number names (``path`` counts from 0), or None when there is no such part.

    Part 1 of a message that is not multipart is its body; inside a ``message/rfc822`` part the numbers go on
    into the message it carries (RFC 3501 §6.4.5)."""
    node = message
    for index in path:
        if node is not message and node.is_rfc822:
            node = node.children[0]
        if node.is_multipart:
            if not 0 <= index < len(node.children):
                return None
            node = node.children[index]
        elif index != 0:
            return None
    return node


def section(message: Part, whole: bytes, path: Sequence[int], kind: str, names: Sequence[bytes] = ()) -> bytes:
    """The bytes of one ``BODY[...]`` section. ``kind`` is ``""`` (the part, or the whole message without a
    path), ``HEADER``, ``HEADER.FIELDS``, ``HEADER.FIELDS.NOT``, ``TEXT`` or ``MIME``; a section that does not
    exist is empty, as Dovecot answers it."""
    if not path:
        if kind == "":
            return whole
        target: Part | None = message
    else:
        node = locate(message, path)
        if node is None:
            return b""
        if kind == "":
            return node.body
        if kind == "MIME":
            return node.header
        target = node.children[0] if node.is_rfc822 else None
        if target is None:
            return b""
    assert target is not None
    if kind == "TEXT":
        return target.body
    if kind == "HEADER":
        return target.header
    if kind in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        return header_fields(target.header, names, negate=kind.endswith(".NOT"))
    return b""


def header_fields(header: bytes, names: Iterable[bytes], *, negate: bool) -> bytes:
    """The header fields named (or, with ``negate``, all the others) as they stand, folding kept, then the empty
    line."""
    wanted = {name.strip().lower() for name in names}
    selected: list[bytes] = []
    keep = False
    for line in header.splitlines(keepends=True):
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t"):
            if keep:
                selected.append(line)
            continue
        name = line.split(b":", 1)[0].strip().lower()
        keep = (name in wanted) != negate
        if keep:
            selected.append(line)
    if selected and not selected[-1].endswith(b"\n"):
        selected.append(b"\r\n")
    return b"".join(selected) + b"\r\n"


# --- ENVELOPE and BODYSTRUCTURE ------------------------------------------------------------------------------------


def _raw(value: str) -> bytes:
    """A header value as it was on the wire (``compat32`` keeps undecodable bytes as surrogates), unfolded."""
    return _FOLD.sub("", value).strip().encode("ascii", "surrogateescape")


def _header(fields: Message, name: str) -> bytes | None:
    value = fields.get(name)
    return None if value is None else _raw(str(value))


def _addresses(fields: Message, name: str) -> list[list[Wire]] | None:
    value = fields.get(name)
    if value is None:
        return None
    found: list[list[Wire]] = []
    for display, address in email.utils.getaddresses([_FOLD.sub("", str(value))]):
        if not display and not address:
            continue
        mailbox, at, host = address.rpartition("@")
        if not at:
            mailbox, host = address, ""
        found.append([_raw(display) or None, None, _raw(mailbox) or None, _raw(host) or None])
    return found or None


def envelope(message: Part) -> list[Wire]:
    """The ENVELOPE of a message (RFC 3501 §7.4.2): sender and reply-to default to from."""
    fields = message.fields
    sender_from = _addresses(fields, "from")
    return [
        _header(fields, "date"),
        _header(fields, "subject"),
        sender_from,
        _addresses(fields, "sender") or sender_from,
        _addresses(fields, "reply-to") or sender_from,
        _addresses(fields, "to"),
        _addresses(fields, "cc"),
        _addresses(fields, "bcc"),
        _header(fields, "in-reply-to"),
        _header(fields, "message-id"),
    ]


def _params(fields: Message, header: str, *, skip_first: bool) -> list[Wire] | None:
    """A header's parameters as a flat name/value list (names upper-cased, values as sent)."""
    try:
        pairs = fields.get_params(header=header, unquote=False) or []
    except Exception:  # noqa: BLE001 - a malformed parameter list reads as none
        return None
    flat: list[Wire] = []
    for name, value in pairs[1:] if skip_first else pairs:
        if isinstance(value, tuple):
            charset, language, text = value
            name = name + "*"
            value = email.utils.encode_rfc2231(text, charset or "utf-8", language or None)
        flat.append(_raw(name).upper())
        flat.append(_raw(email.utils.unquote(value)))
    return flat or None


def _disposition(fields: Message) -> list[Wire] | None:
    value = fields.get("content-disposition")
    if value is None:
        return None
    kind = _raw(str(value)).split(b";", 1)[0].strip().upper()
    if not kind:
        return None
    return [kind, _params(fields, "content-disposition", skip_first=True)]


def _lines(body: bytes) -> int:
    """Lines of a body: a last line without its line break (the one before a boundary belongs to the boundary)
    still counts."""
    return body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)


def body_structure(part: Part, *, extended: bool) -> bytes:
    """BODYSTRUCTURE (``extended``) or BODY of a part, encoded for the wire (RFC 3501 §7.4.2)."""
    fields = part.fields
    if part.is_multipart:
        children = b"".join(body_structure(child, extended=extended) for child in part.children)
        items: list[Wire] = [Raw(children), part.subtype.upper()]
        if extended:
            items += [
                _params(fields, "content-type", skip_first=True),
                _disposition(fields),
                _header(fields, "content-language"),
                _header(fields, "content-location"),
            ]
        return encode(items)
    params = _params(fields, "content-type", skip_first=True) if fields.get("content-type") is not None else None
    if params is None and part.maintype == "text":
        params = [b"CHARSET", b"US-ASCII"]
    encoding = _header(fields, "content-transfer-encoding")
    items = [
        part.maintype.upper(),
        part.subtype.upper(),
        params,
        _header(fields, "content-id"),
        _header(fields, "content-description"),
        encoding.upper() if encoding else b"7BIT",
        len(part.body),
    ]
    if part.is_rfc822:
        inner = part.children[0]
        items += [envelope(inner), Raw(body_structure(inner, extended=extended)), _lines(part.body)]
    elif part.maintype == "text":
        items.append(_lines(part.body))
    if extended:
        items += [
            _header(fields, "content-md5"),
            _disposition(fields),
            _header(fields, "content-language"),
            _header(fields, "content-location"),
        ]
    return encode(items)


# --- the wire -----------------------------------------------------------------------------------------------------

_QUOTABLE = re.compile(rb"[\x20-\x7e]*")


def string(value: bytes) -> bytes:
    """An IMAP string: quoted when it can be, a literal otherwise (line breaks, 8-bit, NUL, very long)."""
    if len(value) <= 1000 and _QUOTABLE.fullmatch(value):
        return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n%b" % (len(value), value)


def encode(value: Wire) -> bytes:
    """A value as an IMAP parenthesised-list item."""
    if value is None:
        return b"NIL"
    if isinstance(value, Raw):
        return value.value
    if isinstance(value, bool):
        raise TypeError("no booleans on the IMAP wire")
    if isinstance(value, int):
        return b"%d" % value
    if isinstance(value, str):
        return string(value.encode("utf-8", "surrogateescape"))
    if isinstance(value, bytes):
        return string(value)
    return b"(" + b" ".join(encode(item) for item in value) + b")"


# --- SEARCH -------------------------------------------------------------------------------------------------------


def decoded_header(fields: Message, name: str) -> str:
    """All values of a header, RFC 2047 words decoded, unfolded (for SEARCH's substring match)."""
    values = []
    for value in fields.get_all(name) or []:
        text = _FOLD.sub("", str(value))
        try:
            text = str(email.header.make_header(email.header.decode_header(text)))
        except Exception:  # noqa: BLE001 - an undecodable encoded-word is matched as written
            text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        values.append(text)
    return "\n".join(values)


def body_text(data: bytes) -> str:
    """The text of a message's ``text/*`` parts, transfer encoding and charset undone (for SEARCH BODY/TEXT)."""
    texts = []
    for entity in email.message_from_bytes(data, policy=compat32).walk():
        if entity.get_content_maintype() != "text":
            continue
        payload = entity.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        charset = entity.get_content_charset() or "utf-8"
        try:
            texts.append(payload.decode(charset, "replace"))
        except LookupError:
            texts.append(payload.decode("utf-8", "replace"))
    return "\n".join(texts)
