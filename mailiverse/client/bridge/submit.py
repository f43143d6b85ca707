"""Handing a message from the bridge's SMTP port to the appliance as the logged-in user, and the SMTP reply
that says how it went. Everything here blocks (HTTPS and RSA): the SMTP server runs it off the reactor thread.

The raw bytes the mail app sent go out unchanged (only a ``Bcc`` header is removed, so no recipient learns of
the others). When every recipient has a verified key (docs/e2e.md) they are signed and sealed here and handed
over through ``POST /api/send/sealed``, as ``mailiverse-client send`` does; otherwise through the raw form of
``POST /api/send`` (``{"message", "recipients"}``), where the appliance seals them. ``e2e.send`` itself only
takes the fields of a message it composes, so the sealed path is assembled from its parts (``plan``,
``Outgoing``, ``signature_member``) for bytes composed elsewhere. A key that fails verification refuses the
message in both cases (``KeyAlarm``), never a silent fallback.

The appliance cannot check the From header of a sealed message, so it is checked here: exactly one address,
the envelope sender or another of the user's own addresses.
"""

from __future__ import annotations

import email.parser
import email.policy
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mailiverse.client import aliases, e2e, keys
from mailiverse.client.api import Client, SendResult, b64
from mailiverse.client.errors import ApiError, ClientError
from mailiverse.logs import Logger

log = Logger()

#: The appliance's limit on recipients per message (docs/api.md, send).
MAX_RECIPIENTS = 100
_HEADER_NAME = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]*:")


@dataclass(frozen=True)
class Reply:
    """An SMTP reply: code, enhanced status code, text (one line, no message content)."""

    code: int
    enhanced: str
    text: str


ACCEPTED = Reply(250, "2.0.0", "Message accepted")
TEMPORARY = Reply(451, "4.3.0", "The appliance could not take the message now; try again later")

#: The appliance's refusals (``error`` codes of docs/api.md) as SMTP replies; any other is temporary.
_REFUSALS = {
    "sender_not_allowed": Reply(550, "5.7.1", "The sender is not one of your addresses or active aliases"),
    "unknown_recipient": Reply(550, "5.1.1", "A recipient does not exist"),
    "recipient_refused": Reply(550, "5.1.1", "Every recipient refused mail from you"),
    "invalid_recipients": Reply(550, "5.1.3", "A recipient address is not valid"),
    "invalid_address": Reply(550, "5.1.3", "An address is not valid"),
    "invalid_message": Reply(554, "5.6.0", "The appliance refused the message's header"),
    "message_too_large": Reply(552, "5.3.4", "The message is larger than the appliance accepts"),
    "body_too_large": Reply(552, "5.3.4", "The message is larger than the appliance accepts"),
    "remote_delivery_disabled": Reply(550, "5.7.1", "The appliance does not send mail to other domains"),
    "organisation_copy_required": Reply(550, "5.7.1", "A recipient's domain needs an organisation copy"),
    "rate_limited": Reply(451, "4.7.0", "Hourly send limit reached; try again later"),
    "recipient_over_quota": Reply(452, "4.2.2", "A recipient's mailbox is full; try again later"),
    "over_quota": Reply(452, "4.2.2", "Your mailbox is full (no room for the Sent copy); make room and retry"),
    "unauthenticated": Reply(451, "4.3.0", "The bridge's session with the appliance ended; restart the bridge"),
    "login_refused": Reply(451, "4.7.0", "The appliance refused the bridge's new login; restart the bridge"),
}


def reply_for(error: ClientError) -> Reply:
    """The SMTP reply for a failed hand-over: a refusal the appliance made for good is 5xx, anything that may
    pass on a retry (a network error, a 5xx from the appliance, a code this bridge does not know) 4xx."""
    if isinstance(error, keys.KeyAlarm):
        return Reply(554, "5.7.1", " ".join(f"Not sent: {error.message}".split())[:300])
    if isinstance(error, ApiError):
        return _REFUSALS.get(error.code, TEMPORARY)
    return TEMPORARY


def without_bcc(raw: bytes) -> bytes:
    """``raw`` with every ``Bcc`` field (and its folded lines) taken out of the header block; the rest as is."""
    end = raw.find(b"\r\n\r\n")
    head, body = (raw, b"") if end < 0 else (raw[: end + 2], raw[end + 2 :])
    kept: list[bytes] = []
    dropping = False
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        name = _HEADER_NAME.match(line)
        dropping = name is not None and name.group(1).lower() == b"bcc"
        if not dropping:
            kept.append(line)
    return b"".join(kept) + body


def from_address(raw: bytes) -> str:
    """The one address of the one From field (lower case), or "" when there is none or more than one."""
    try:
        headers = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(raw)
        values = headers.get_all("From") or []
        if len(values) != 1:
            return ""
        found: Any = getattr(values[0], "addresses", ())
        return str(found[0].addr_spec).lower() if len(found) == 1 else ""
    except (LookupError, ValueError, TypeError, AttributeError):
        return ""


class Submitter:
    """The logged-in user's way out for mail from the SMTP port. Every method blocks: call it on a thread."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def own_addresses(self) -> frozenset[str]:
        return frozenset(a.lower() for a in self.client.addresses)

    def sender_allowed(self, address: str) -> bool:
        """Whether ``address`` is one of the account's own addresses or active aliases (the appliance checks
        again when the message is handed over)."""
        wanted = address.lower()
        if wanted in self.own_addresses():
            return True
        return any(a.address.lower() == wanted and a.state == "active" for a in aliases.list_aliases(self.client))

    def submit(self, sender: str, recipients: Sequence[str], raw: bytes) -> Reply:
        """Hand the message over; the reply says whether the appliance took it (250 only then)."""
        message = without_bcc(raw)
        author = from_address(message)
        if not author or (author != sender.lower() and author not in self.own_addresses()):
            return Reply(550, "5.7.1", "The From header must hold one address: the sender's, or another of yours")
        targets = list(dict.fromkeys(r.lower() for r in recipients))
        try:
            result = self._send(sender, targets, message, author)
        except ClientError as error:
            log.info("bridge: the appliance did not take a message ({code})", code=error.code)
            return reply_for(error)
        how = "end to end" if result.end_to_end else "sealed by the appliance"
        return Reply(250, "2.0.0", f"Message accepted ({how})")

    def _send(self, sender: str, recipients: list[str], raw: bytes, author: str) -> SendResult:
        client = self.client
        state = keys.load_state(client)
        for attempt in range(2):
            found = e2e.plan(client, recipients, sender, state)
            keys.save_state(client, state)
            if found.missing:
                return self._ordinary(recipients, raw)
            try:
                return self._sealed(found, sender, raw, author)
            except ApiError as error:
                # A recipient's key changed since it was looked up, or the key base is taken: look again, once.
                if attempt or error.code not in ("stale_key", "conflict"):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _ordinary(self, recipients: list[str], raw: bytes) -> SendResult:
        answer = self.client.request_json("POST", "/api/send", {"message": b64(raw), "recipients": recipients})
        return Client._send_result(answer, end_to_end=False)

    def _sealed(self, found: e2e.Plan, sender: str, raw: bytes, author: str) -> SendResult:
        client = self.client
        assert found.own is not None
        now_ms = int(time.time() * 1000)
        if author in self.own_addresses():
            member = e2e.signature_member(raw, author, found.own.record.key_id, client.private_key)
        else:
            # From an alias: a signature would tie the alias to the account's key in the public log.
            member = {"v": e2e.VERSION, "from": author}
        outgoing = e2e.Outgoing(raw, e2e.new_key_base(now_ms), now_ms, member, sent_key_base=e2e.new_key_base(now_ms))
        envelopes = [outgoing.seal(v.record, delivered_to=a, to=a) for a, v in found.recipients.items()]
        envelopes += [
            outgoing.seal(v.record, delivered_to=v.address, organisation=domain)
            for domain, v in found.organisations.items()
        ]
        sent = outgoing.seal(found.own.record, folder=e2e.SENT, delivered_to=author)
        return client.send_sealed(
            outgoing.key_base, envelopes, sent=sent, sent_key_base=outgoing.sent_key_base, from_address=sender
        )
