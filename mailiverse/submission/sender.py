"""Who a raw message says it is from: exactly one From holding exactly one address, the sender's own.

The header section is read strictly (issue 16, finding 9): a line is a field name followed directly
by a colon, or a folded continuation. Parsers disagree about anything else (``From\\t: x`` ends the
header section for Python's email package, yet is a second From for DKIM and for many mail readers),
so anything else is refused, never skipped. An address field is read by two parsers (the header
registry and ``getaddresses``), which must agree on the one address.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from email.utils import getaddresses

from mailiverse.contracts import InvalidAddress, normalise_address
from mailiverse.submission.errors import SubmissionError
from mailiverse.submission.headers import FORBIDDEN_IN_HEADERS, is_clean

#: Longest From or Sender value read (unfolded): one address with a generous display name.
MAX_ADDRESS_FIELD_CHARS = 2000
# Where a line ends: the rule of the email package, the delivery pipeline and the outbound queue.
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_FIELD_NAME = re.compile(rb"([\x21-\x39\x3b-\x7e]+):")
_SPACED_FIELD_NAME = re.compile(rb"([\x21-\x39\x3b-\x7e]{1,40})[ \t]+:")


def _malformed(why: str) -> SubmissionError:
    return SubmissionError("invalid_message", f"the message's header section is malformed: {why}")


def header_fields(message: bytes) -> list[tuple[str, str]]:
    """The header section of ``message`` as (lower-case name, unfolded value) pairs; SubmissionError when
    any line of it is neither a ``Name:`` field nor a folded continuation."""
    fields: list[tuple[str, list[bytes]]] = []
    start = number = 0
    while start < len(message):
        found = _LINE_BREAK.search(message, start)
        end, after = (found.start(), found.end()) if found else (len(message), len(message))
        line, start, number = message[start:end], after, number + 1
        if not line:
            break
        if line[:1] in (b" ", b"\t"):
            if not fields:
                raise _malformed("it starts with a folded line")
            fields[-1][1].append(line)
            continue
        name = _FIELD_NAME.match(line)
        if name is None:
            spaced = _SPACED_FIELD_NAME.match(line)
            if spaced:
                name_text = spaced.group(1).decode("ascii")
                raise _malformed(f"line {number}: write '{name_text}:' with no space or TAB before the colon")
            raise _malformed(f"line {number} is not a header field")
        fields.append((name.group(1).decode("ascii").lower(), [line[name.end() :]]))
    read = [(name, b"".join(parts).decode("utf-8", "surrogateescape")) for name, parts in fields]
    for field_name, value in read:
        if not is_clean(value):
            raise _malformed(
                f"the {field_name.title()} field holds a line break or control character (encoded words included)"
            )
    return read


def one_address(value: str, what: str = "From") -> tuple[str, str]:
    """(display name, ``local@domain``) of an address field holding exactly one plain address and no group;
    SubmissionError ``invalid_message`` otherwise (several addresses, a group, a line break, parsers that
    disagree)."""
    refused = SubmissionError("invalid_message", f"the {what} header field must hold exactly one address")
    if len(value) > MAX_ADDRESS_FIELD_CHARS or FORBIDDEN_IN_HEADERS.search(value):
        raise refused
    from email.policy import default  # the header registry loads only when a message is read (idle memory)

    try:
        value.encode("utf-8")
        parsed = default.header_factory("From", value)
        groups, defects = parsed.groups, parsed.defects
        listed = getaddresses([value])
    except Exception:  # noqa: BLE001 - the parsers fail in many ways on hostile values; one refusal
        raise refused from None
    if defects or len(groups) != 1 or groups[0].display_name is not None or len(groups[0].addresses) != 1:
        raise refused
    address = groups[0].addresses[0]
    if len(listed) != 1 or listed[0][1].lower() != address.addr_spec.lower():
        raise refused
    if FORBIDDEN_IN_HEADERS.search(address.display_name):
        raise refused
    try:
        return address.display_name, normalise_address(address.addr_spec)
    except InvalidAddress:
        raise refused from None


def own_address(address: str, own_addresses: Sequence[str], what: str = "From") -> str:
    """The one of ``own_addresses`` that ``address`` is (any case); 403 ``sender_not_allowed`` otherwise."""
    mine = {own.lower(): own for own in own_addresses}
    found = mine.get(address.lower())
    if found is None:
        raise SubmissionError("sender_not_allowed", f"the {what} address is not one of your addresses", 403)
    return found


def sender_of(message: bytes, own_addresses: Sequence[str]) -> tuple[str, list[str]]:
    """The message's one From address (one of ``own_addresses``) and its To, Cc and Bcc addresses.

    Refused: no From or more than one (however spelt), a From with several addresses or a group, more
    than one Sender, or a From or Sender that is not the sender's own.
    """
    fields = header_fields(message)
    froms = [value for name, value in fields if name == "from"]
    if len(froms) != 1:
        raise SubmissionError("invalid_message", "the message needs exactly one From header field")
    sender = own_address(one_address(froms[0])[1], own_addresses)
    senders = [value for name, value in fields if name == "sender"]
    if len(senders) > 1:
        raise SubmissionError("invalid_message", "the message may have at most one Sender header field")
    for value in senders:
        own_address(one_address(value, "Sender")[1], own_addresses, "Sender")
    recipients = [value for name, value in fields if name in ("to", "cc", "bcc")]
    return sender, [address for _name, address in getaddresses(recipients) if address]


def claimed_from(message: bytes) -> str | None:
    """The address the message's one From claims, or None when the message has no single plain From
    (``sender_of`` then says why)."""
    try:
        froms = [value for name, value in header_fields(message) if name == "from"]
        return one_address(froms[0])[1] if len(froms) == 1 else None
    except SubmissionError:
        return None


__all__ = ["MAX_ADDRESS_FIELD_CHARS", "claimed_from", "header_fields", "one_address", "own_address", "sender_of"]
