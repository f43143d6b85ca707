"""The carrier: a message sealed on the sender's device, travelling between appliances over ordinary SMTP.

An ordinary ``multipart/mixed`` message whose first part says, in words, that it is end-to-end encrypted and
whose attachment (``application/mailiverse-envelope``) carries the sealed objects as JSON (docs/e2e.md §3):

    {"v": 1, "type": "mailiverse-envelope", "key_base": "<ms>_<n>",
     "envelopes": [{"key_id": "<uuid>", "original": "<base64>", "twin": "<base64>"}, ...]}

Any server sees a normal message with an attachment; a receiving appliance's delivery worker (which runs
``parse_carrier`` on hostile input) takes, for each recipient, the envelope sealed to a key that recipient's
account holds, and stores those bytes without opening them.

The email package's parser is imported when a carrier is parsed, not at start-up (idle memory); a delivery
worker imports it before it isolates itself (``delivery/worker.py``, ``_warm_up``).
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

#: The attachment's media type.
CARRIER_TYPE = "application/mailiverse-envelope"
#: A header that names the carrier's version (a hint only: recognition is by the attachment).
CARRIER_HEADER = "X-Mailiverse-Envelope"
#: The subject every carrier has: the real subject is inside the envelopes.
CARRIER_SUBJECT = "End-to-end encrypted message"
#: Envelopes one carrier may hold (one per recipient, plus organisation copies).
MAX_ENVELOPES = 16
_KEY_BASE = re.compile(r"[0-9]{1,16}_[0-9]{1,19}")
_KEY_ID = re.compile(r"[0-9A-Za-z-]{1,64}")
_MEDIA_TYPE = re.compile(re.escape(CARRIER_TYPE.encode("ascii")), re.IGNORECASE)
_NOTICE = (
    "This message is end-to-end encrypted: it was sealed on the sender's device to the recipient's key,\r\n"
    "and no server on its way could read it. Open it with a mailiverse client of the recipient's appliance.\r\n"
    "\r\n"
    "The attachment (message.mailiverse, {media_type}) holds the sealed message.\r\n"
)


class CarrierError(ValueError):
    """A message that presents itself as a carrier is malformed; the words are safe to show."""


@dataclass(frozen=True)
class CarriedEnvelope:
    """The sealed original and twin of one message for the holder of ``key_id``."""

    key_id: str
    original: bytes
    twin: bytes


@dataclass(frozen=True)
class Carrier:
    key_base: str
    envelopes: tuple[CarriedEnvelope, ...]

    def for_keys(self, key_ids: Sequence[str]) -> CarriedEnvelope | None:
        """The envelope sealed to one of ``key_ids`` (a recipient's keys), or None."""
        wanted = set(key_ids)
        return next((e for e in self.envelopes if e.key_id in wanted), None)


def valid_key_base(value: object) -> bool:
    return isinstance(value, str) and _KEY_BASE.fullmatch(value) is not None


def valid_key_id(value: object) -> bool:
    return isinstance(value, str) and _KEY_ID.fullmatch(value) is not None


def envelope_document(key_base: str, envelopes: Sequence[CarriedEnvelope]) -> bytes:
    """The attachment's JSON."""
    if not valid_key_base(key_base):
        raise CarrierError("the key base is not <digits>_<digits>")
    if not 0 < len(envelopes) <= MAX_ENVELOPES:
        raise CarrierError(f"a carrier holds 1 to {MAX_ENVELOPES} envelopes")
    for envelope in envelopes:
        if not valid_key_id(envelope.key_id):
            raise CarrierError("an envelope's key id is malformed")
    document = {
        "v": 1,
        "type": "mailiverse-envelope",
        "key_base": key_base,
        "envelopes": [{"key_id": e.key_id, "original": _b64(e.original), "twin": _b64(e.twin)} for e in envelopes],
    }
    return json.dumps(document, separators=(",", ":")).encode("ascii")


def build_carrier(
    *,
    mail_from: str,
    to: str,
    key_base: str,
    envelopes: Sequence[CarriedEnvelope],
    hostname: str,
    now_ms: int,
) -> bytes:
    """The carrier's RFC 5322 bytes (CRLF line ends, base64 lines of 76), From ``mail_from``, To ``to``.

    The addresses must be plain (the caller checked them as the sender's and a recipient's address); nothing
    of the message's content is in the carrier's header.
    """
    for address in (mail_from, to):
        if not address or any(c in address for c in '\r\n<>,;"') or address.count("@") != 1 or not address.isascii():
            raise CarrierError("a carrier's addresses are plain addresses")
    payload = base64.encodebytes(envelope_document(key_base, envelopes)).replace(b"\n", b"\r\n")
    boundary = "mailiverse-" + secrets.token_hex(12)
    head = (
        f"From: {mail_from}\r\n"
        f"To: {to}\r\n"
        f"Subject: {CARRIER_SUBJECT}\r\n"
        f"Date: {email.utils.formatdate(now_ms / 1000, usegmt=True)}\r\n"
        f"Message-ID: {email.utils.make_msgid(domain=hostname)}\r\n"
        "MIME-Version: 1.0\r\n"
        f"{CARRIER_HEADER}: 1\r\n"
        f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 7bit\r\n"
        "\r\n" + _NOTICE.format(media_type=CARRIER_TYPE) + f"--{boundary}\r\n"
        f"Content-Type: {CARRIER_TYPE}\r\n"
        'Content-Disposition: attachment; filename="message.mailiverse"\r\n'
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
    )
    return head.encode("ascii") + payload + f"--{boundary}--\r\n".encode("ascii")


def looks_like_carrier(raw: bytes) -> bool:
    """A cheap first test (the bytes name the media type) before ``parse_carrier`` parses the MIME."""
    return _MEDIA_TYPE.search(raw) is not None


def parse_carrier(raw: bytes, max_bytes: int) -> Carrier | None:
    """The carrier in ``raw``, None when it is no carrier; CarrierError when it is one, malformed.

    Only a top-level ``multipart/mixed`` with exactly one ``application/mailiverse-envelope`` part counts; that
    part's decoded JSON is at most ``max_bytes`` and strictly of the documented shape (canonical base64,
    known members only).
    """
    if not looks_like_carrier(raw):
        return None
    import email.message
    import email.parser
    import email.policy

    message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw)
    if message.get_content_type() != "multipart/mixed" or not message.is_multipart():
        return None
    parts = message.get_payload()
    if not isinstance(parts, list):
        return None
    found = [p for p in parts if isinstance(p, email.message.Message) and p.get_content_type() == CARRIER_TYPE]
    if not found:
        return None
    if len(found) > 1:
        raise CarrierError("the carrier has more than one envelope attachment")
    payload = found[0].get_payload()
    if not isinstance(payload, str):
        raise CarrierError("the envelope attachment is not a single body")
    encoding = str(found[0].get("Content-Transfer-Encoding", "7bit")).strip().lower()
    if encoding != "base64":
        raise CarrierError("the envelope attachment is not base64")
    compact = "".join(payload.split())
    if len(compact) > (max_bytes * 4) // 3 + 4:
        raise CarrierError("the envelope attachment is too large")
    try:
        document = json.loads(base64.b64decode(compact, validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise CarrierError("the envelope attachment is not base64 JSON") from None
    return _carrier(document, max_bytes)


def _carrier(document: object, max_bytes: int) -> Carrier:
    if not isinstance(document, dict) or set(document) != {"v", "type", "key_base", "envelopes"}:
        raise CarrierError("the envelope document has other members than v, type, key_base and envelopes")
    if document["v"] != 1 or document["type"] != "mailiverse-envelope":
        raise CarrierError("the envelope document is not version 1 of mailiverse-envelope")
    if not valid_key_base(document["key_base"]):
        raise CarrierError("the key base is not <digits>_<digits>")
    items = document["envelopes"]
    if not isinstance(items, list) or not 0 < len(items) <= MAX_ENVELOPES:
        raise CarrierError(f"a carrier holds 1 to {MAX_ENVELOPES} envelopes")
    envelopes = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, dict) or set(item) != {"key_id", "original", "twin"}:
            raise CarrierError("an envelope is {key_id, original, twin}")
        if not valid_key_id(item["key_id"]) or item["key_id"] in seen:
            raise CarrierError("an envelope's key id is malformed or repeated")
        seen.add(item["key_id"])
        envelopes.append(
            CarriedEnvelope(item["key_id"], _unb64(item["original"], max_bytes), _unb64(item["twin"], max_bytes))
        )
    return Carrier(document["key_base"], tuple(envelopes))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object, max_bytes: int) -> bytes:
    if not isinstance(value, str) or not value or len(value) > (max_bytes * 4) // 3 + 4:
        raise CarrierError("an envelope's object is missing or too large")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise CarrierError("an envelope's object is not base64") from None
    if _b64(data) != value:
        raise CarrierError("an envelope's object is not canonical base64")
    return data


__all__ = [
    "CARRIER_HEADER",
    "CARRIER_SUBJECT",
    "CARRIER_TYPE",
    "MAX_ENVELOPES",
    "CarriedEnvelope",
    "Carrier",
    "CarrierError",
    "build_carrier",
    "envelope_document",
    "looks_like_carrier",
    "parse_carrier",
    "valid_key_base",
    "valid_key_id",
]
