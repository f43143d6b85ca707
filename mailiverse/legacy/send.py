"""The legacy ``Send`` relay with the original's holes closed.

The body is base64 of RSA-AES(send key, utf8("java.util.HashMap!{...}")).  Unlike the
original, the sender must name a complete legacy account, give that account's
``smtpPassword`` and send from its own address.  The message is rebuilt as
multipart/alternative (text and HTML) and handed to the submission service, which delivers
local recipients and queues remote ones (without an outbound queue, a message with any remote
recipient is refused before anything is delivered).
"""

from __future__ import annotations

import base64
import binascii
import re
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, getaddresses, make_msgid

from mailiverse.compat.typed import decode_typed
from mailiverse.contracts import split_address
from mailiverse.crypto import lenient, rsaaes
from mailiverse.legacy.backend import LegacyBackend, LegacyRefused
from mailiverse.logs import Logger
from mailiverse.submission import Submission, SubmissionError, one_address, serialized, set_header

log = Logger()

HASHMAP_CLASS = "java.util.HashMap"
MAX_BODY_BYTES = 1024 * 1024
MAX_RECIPIENTS = 100
MAX_FIELD_CHARS = 512 * 1024
_MESSAGE_ID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]{1,250}@[\x21-\x3b\x3d\x3f-\x7e]{1,250}>")


class SendRefused(LegacyRefused):
    """The relay refuses the request; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def open_send_body(backend: LegacyBackend, body: bytes) -> dict[str, str]:
    """Decode and decrypt a Send body into its string map; SendRefused for anything wrong."""
    try:
        blob = base64.b64decode(body.strip(), validate=True)
        text = lenient.decode_text(rsaaes.decrypt(backend.send_key, blob))
        class_name, value = decode_typed(text)
    except (binascii.Error, ValueError, Exception):  # noqa: BLE001 - one generic error
        raise SendRefused("the message could not be read") from None
    if class_name != HASHMAP_CLASS or not isinstance(value, dict):
        raise SendRefused("the message could not be read")
    fields: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(item, str) or len(item) > MAX_FIELD_CHARS:
            raise SendRefused("the message could not be read")
        fields[key] = item
    return fields


def _recipients(fields: dict[str, str]) -> list[str]:
    found: list[str] = []
    headers = [fields[k] for k in ("to", "cc", "bcc") if fields.get(k, "").strip()]
    for _, address in getaddresses(headers):
        parts = split_address(address)
        if parts is None or any(c.isspace() or ord(c) < 33 for c in address):
            raise SendRefused(f"not a usable recipient address: {address[:80]!r}")
        found.append(address)
    unique = list(dict.fromkeys(found))
    if not unique:
        raise SendRefused("the message has no recipients")
    if len(unique) > MAX_RECIPIENTS:
        raise SendRefused(f"at most {MAX_RECIPIENTS} recipients")
    return unique


def build_message(fields: dict[str, str], sender: str, hostname: str, now: float, display_name: str = "") -> bytes:
    """The MIME message the original relay would build: text and HTML alternatives, no attachments.

    The From is the checked ``sender`` (with ``display_name``), never the field as given; every header
    goes through the submission service's header rules, so no value can add a header line.
    """
    message = EmailMessage(policy=SMTP)
    try:
        set_header(message, "From", Address(display_name=display_name, addr_spec=sender), "From field")
        for header, key in (("To", "to"), ("Cc", "cc")):
            if fields.get(key, "").strip():
                set_header(message, header, fields[key], f"{key} field")
        set_header(message, "Subject", fields.get("subject", ""), "subject")
        set_header(message, "Date", formatdate(now, usegmt=True), "Date")
        given = fields.get("messageId", "")
        set_header(message, "Message-ID", given if _MESSAGE_ID.fullmatch(given) else make_msgid(domain=hostname), "id")
        message.set_content(fields.get("text", ""))
        message.add_alternative(fields.get("html", ""), subtype="html")
        return serialized(message)
    except SubmissionError as refusal:
        raise SendRefused(refusal.message) from None
    except (ValueError, TypeError, IndexError) as e:
        raise SendRefused(f"the message headers are not valid: {type(e).__name__}") from None


#: What a refusal of the submission service answers in the legacy protocol (its own texts and statuses).
_LEGACY_REFUSALS = {
    "unknown_recipient": (400, "no such local recipient"),
    "remote_delivery_disabled": (403, "this server does not relay to other domains"),
}


async def relay(backend: LegacyBackend, submission: Submission | None, body: bytes, peer: str) -> None:
    """Check, build and hand on one Send request to the submission service; SendRefused says why not."""
    if len(body) > MAX_BODY_BYTES:
        raise SendRefused("the message is too large", 413)
    fields = open_send_body(backend, body)
    user_field = fields.get("user", "")
    name = backend.local_name(user_field)
    key = backend.throttle_key(name, user_field)
    if not (await backend.send_throttle.admit(key, peer)).allowed:
        raise SendRefused("too many failed attempts, try again later", 429)
    login = await backend.login_data(name) if name is not None else None
    environment = await backend.get_server_environment(login) if login is not None else None
    password_ok = environment is not None and backend.mail_block_password_matches(environment, fields.get("password"))
    if login is None or not password_ok:
        await backend.send_throttle.failed(key, peer)
        raise SendRefused("the sender is not authenticated", 403)
    assert name is not None
    try:
        display_name, from_address = one_address(fields.get("from", ""))
    except SubmissionError:
        raise SendRefused("the From field must hold exactly one address, the sender's own", 403) from None
    if backend.local_name(from_address) != name:
        raise SendRefused("the From address does not belong to the sender", 403)
    recipients = _recipients(fields)
    message = build_message(fields, from_address, backend.options.hostname, backend.clock(), display_name)
    if submission is None:
        raise SendRefused("this server does not send mail", 503)
    try:
        # The original relay kept no Sent copy: its clients file their own.
        result = await submission.submit(
            submission.submitter(name), message, recipients, mail_from=from_address, sent_copy=False
        )
    except SubmissionError as refusal:
        status, text = _LEGACY_REFUSALS.get(refusal.code, (refusal.status, refusal.message))
        raise SendRefused(text, status) from None
    log.info(
        "legacy Send from {name}: {local} local, {remote} remote recipient(s)",
        name=name,
        local=len(result.local),
        remote=len(result.remote),
    )


__all__ = ["SendRefused", "build_message", "open_send_body", "relay"]
