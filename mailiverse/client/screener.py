"""The account's screener for first-time senders as the client drives it (``/api/screener``, issue 19).

The appliance files mail from a sender the user never wrote to nor approved in ``Mail/Screener`` while the
screener is on. Approving a screened message approves its sender (the From address its JSON twin records,
read here after decryption: the appliance keeps senders only as keyed hashes and cannot say who sent what)
and moves the message and its twin to the inbox in one ``POST /api/move``; blocking one blocks its sender
and deletes both objects. The appliance's answers are read defensively: a count or flag of the wrong type
is a protocol error, and an address reaches the terminal only as one plain ``local@domain``.
"""

from __future__ import annotations

import base64
import binascii
import email.parser
import email.policy
import email.utils
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from mailiverse.client.api import INBOX, MESSAGE_ID, SCREENER_FOLDER, SEARCHED_FOLDERS, Client, plain_address
from mailiverse.client.errors import ApiError, ClientError, DecryptionFailed, ProtocolError, UsageError

#: What ``POST /api/screener/senders`` takes: approve, block, or forget (``None``) a sender.
APPROVED, BLOCKED = "approved", "blocked"
#: Folders as a refusal names them.
_SHOWN = {"Mail/In": "Inbox", "Mail/Spam": "Spam", "Mail/Sent": "Sent"}


@dataclass(frozen=True)
class ScreenerState:
    """Whether the screener is on, and how many senders are approved and blocked (only counts: the appliance
    keeps them as keyed hashes)."""

    enabled: bool
    approved: int
    blocked: int

    def line(self) -> str:
        """What ``screener status`` prints: ``on`` or ``off``, then the counts, on one line."""
        return f"{'on' if self.enabled else 'off'} (approved: {self.approved}, blocked: {self.blocked})"


@dataclass(frozen=True)
class Screened:
    """A message in ``Mail/Screener``: its ID (the store key) and its sender's address."""

    id: str
    sender: str

    @property
    def path(self) -> str:
        return f"{SCREENER_FOLDER}/{self.id}"


def _count(value: object) -> int:
    # bool is an int to Python; JSON true is not a count.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError("the server's screener answer is malformed")
    return value


def read_state(answer: dict[str, Any]) -> ScreenerState:
    """``{"enabled", "approved", "blocked"}`` as a state; a protocol error when a member is missing or wrong."""
    enabled = answer.get("enabled")
    if not isinstance(enabled, bool):
        raise ProtocolError("the server's screener answer is malformed")
    return ScreenerState(enabled, _count(answer.get("approved")), _count(answer.get("blocked")))


def screener_state(client: Client) -> ScreenerState:
    """``GET /api/screener``."""
    return read_state(client.request_json("GET", "/api/screener"))


def set_screener(client: Client, enabled: bool) -> ScreenerState:
    """Turn the screener on or off (``PUT /api/screener``); the state afterwards. An account read by original
    Mailiverse clients (v1), which never list ``Mail/Screener``, is refused (409) in one clear line."""
    try:
        answer = client.request_json("PUT", "/api/screener", {"enabled": enabled})
    except ApiError as error:
        if error.status == 409 and error.code == "screener_unavailable":
            raise ClientError(
                "this account cannot use the screener: its mail is kept for original Mailiverse clients, "
                "which never show the screener folder (screener_unavailable)",
                error.code,
            ) from None
        raise
    return read_state(answer)


def checked_address(address: str) -> str:
    """An address the user typed, trimmed and lower-cased (the appliance compares senders in any case); a usage
    error unless it is one plain ``local@domain``."""
    text = address.strip()
    if not plain_address(text):
        shown = "".join(c for c in text if c.isprintable())[:80]
        raise UsageError(f"not an e-mail address: {shown!r}")
    return text.lower()


def set_sender(client: Client, address: str, verdict: str | None) -> str:
    """Approve or block ``address``, or forget it (``verdict`` None: the screener treats it as new again)
    (``POST /api/screener/senders``); the address as the appliance keeps it, lower case."""
    if verdict not in (APPROVED, BLOCKED, None):
        raise UsageError("a sender is approved, blocked or forgotten")
    text = checked_address(address)
    client.request_json("POST", "/api/screener/senders", {"address": text, "verdict": verdict})
    return text


def _twin_path(path: str) -> str:
    base, _, name = path.rpartition("/")
    return f"{base}_Json/{name}"


def _twin_sender(twin: Any) -> str:
    """The twin's one From address (``addresses.from[0].email``, base64), as the appliance screened it; ""
    when it has none, several, or one that is not a plain address."""
    addresses = twin.get("addresses") if isinstance(twin, dict) else None
    entries = addresses.get("from") if isinstance(addresses, dict) else None
    if not isinstance(entries, list) or len(entries) != 1 or not isinstance(entries[0], dict):
        return ""
    value = entries[0].get("email")
    if not isinstance(value, str):
        return ""
    try:
        return plain_address(base64.b64decode(value, validate=True).decode("utf-8"))
    except (binascii.Error, ValueError):
        return ""


def _header_sender(raw: bytes) -> str:
    """The message's one From address, for a message whose twin cannot be read."""
    headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    found = [address for _name, address in email.utils.getaddresses(headers.get_all("From", [])) if address]
    return plain_address(found[0]) if len(found) == 1 else ""


def _screened_id(client: Client, message_id: str) -> str:
    """The key of ``message_id`` (a bare ID or ``Mail/Screener/<ID>``) when it is in ``Mail/Screener``;
    otherwise a failure that says where it is, if anywhere."""
    base, slash, key = message_id.rpartition("/")
    if not MESSAGE_ID.fullmatch(key) or (slash and not base.startswith("Mail/")):
        raise UsageError("a message ID is the first column of `ls --folder screener`")
    if base in ("", SCREENER_FOLDER) and client.object_exists(f"{SCREENER_FOLDER}/{key}"):
        return key
    for folder in SEARCHED_FOLDERS:
        if folder != SCREENER_FOLDER and client.object_exists(f"{folder}/{key}"):
            shown = _SHOWN.get(folder, folder)
            raise ClientError(f"message {key} is in {shown}, not in the screener", "not_screened")
    raise ClientError(
        f"no message {key} in the screener; `ls --folder screener` lists the screened mail", "not_screened"
    )


def screened_message(client: Client, message_id: str) -> Screened:
    """The screened message ``message_id`` and its sender, read from its twin (or its From header) here."""
    key = _screened_id(client, message_id)
    path = f"{SCREENER_FOLDER}/{key}"
    sender = _twin_sender(client.read_twin(path))
    if not sender:
        try:
            sender = _header_sender(client.open_mail(path))
        except (DecryptionFailed, ValueError):
            sender = ""
    if not sender:
        raise ClientError(f"message {key} names no single sender address to approve or block", "no_sender")
    return Screened(key, sender.lower())


def _moves_to_inbox(client: Client, screened: Screened) -> list[tuple[str, str]]:
    moves = [(screened.path, f"{INBOX}/{screened.id}")]
    twin = _twin_path(screened.path)
    if client.object_exists(twin):
        moves.append((twin, _twin_path(f"{INBOX}/{screened.id}")))
    return moves


def approve_message(client: Client, message_id: str) -> Screened:
    """Approve the sender of a screened message, so their later mail goes to the inbox, and move this message
    and its twin there. A move that fails leaves the sender approved and says so."""
    screened = screened_message(client, message_id)
    set_sender(client, screened.sender, APPROVED)
    try:
        client.move(_moves_to_inbox(client, screened))
    except ClientError as error:
        raise ClientError(
            f"{screened.sender} is approved, but message {screened.id} was not moved to the Inbox: {error}",
            error.code,
        ) from None
    return screened


def block_message(client: Client, message_id: str) -> Screened:
    """Block the sender of a screened message (their later mail is refused with 550 5.7.1) and delete this
    message and its twin. A deletion that fails leaves the sender blocked and says so."""
    screened = screened_message(client, message_id)
    set_sender(client, screened.sender, BLOCKED)
    try:
        for path in (screened.path, _twin_path(screened.path)):
            try:
                client.request_json("DELETE", "/api/store/" + quote(path, safe="/"))
            except ApiError as error:
                if error.code != "not_found":
                    raise
    except ClientError as error:
        raise ClientError(
            f"{screened.sender} is blocked, but message {screened.id} was not deleted: {error}", error.code
        ) from None
    return screened


__all__ = [
    "APPROVED",
    "BLOCKED",
    "Screened",
    "ScreenerState",
    "approve_message",
    "block_message",
    "checked_address",
    "read_state",
    "screened_message",
    "screener_state",
    "set_screener",
    "set_sender",
]
