"""The account's aliases as the client sees them: made, listed (addresses and labels opened here), limited,
disabled, enabled and deleted through ``/api/aliases`` (docs/api.md, issue 19).

The server keeps each alias's address sealed to the account's public key (``sealed_address``) and its label
as the client sealed it; both are opened here with the private key held in memory, so only this device sees
them in clear. A label is sealed here, to the account's own key, before it leaves (``{"label": TEXT}``, as
a stored mail object). The answer of the list is read defensively: a field of the wrong type, a word the
client does not know or a sealed value that does not open is shown as ``?``, never as an exception and never
as text that reaches the terminal unchecked.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from mailiverse.client.api import Client, plain_address
from mailiverse.client.errors import ApiError, ClientError, ProtocolError, UsageError
from mailiverse.crypto.errors import CryptoError
from mailiverse.crypto.formats import seal_mail_object

KINDS = frozenset({"shield", "chosen"})
STATES = frozenset({"active", "disabled"})
SENDER_POLICIES = ("any", "known", "known-domains")
#: What the list shows for a value that is missing, of the wrong type or does not open.
UNKNOWN = "?"
#: The longest label accepted (its sealed form must stay within the server's 4096 bytes).
MAX_LABEL_CHARS = 256
#: A sealed address or label is a few hundred bytes; nothing that opens larger is believed.
MAX_OPENED_BYTES = 64 * 1024
#: How many aliases one listing shows (the server keeps at most its ``--max-aliases``, 1,000 by default).
MAX_LISTED = 100_000
_ALIAS_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True)
class AliasInfo:
    """One alias as listed: every text field is safe for a terminal, :data:`UNKNOWN` when unreadable."""

    id: str
    address: str
    state: str
    kind: str
    senders: str
    received: str
    #: The last message's day (``YYYY-MM-DD``, UTC), ``-`` if none yet.
    last_used: str
    #: The decrypted label, control characters stripped; "" when it has none.
    label: str


def strip_controls(text: str) -> str:
    """``text`` without control characters (tabs and line breaks included), so it stays one column of one line."""
    return _CONTROL.sub("", text)


def _envelope_format(client: Client) -> str:
    return client.envelope_format if client.envelope_format in ("v1", "v2") else "v2"


def seal_label(client: Client, label: str) -> str:
    """``{"label": label}`` sealed to the account's own public key, as a stored mail object, in base64."""
    text = strip_controls(label).strip()
    if not text:
        raise UsageError("the label is empty")
    if len(text) > MAX_LABEL_CHARS:
        raise UsageError(f"the label is longer than {MAX_LABEL_CHARS} characters")
    data = json.dumps({"label": text}).encode("utf-8")
    sealed = seal_mail_object(_envelope_format(client), client.private_key.public_key(), data)
    return base64.b64encode(sealed).decode("ascii")


def _open_sealed(client: Client, value: object, member: str) -> str | None:
    """The text member ``member`` of a sealed JSON object (base64 of a mail object), or None."""
    if not isinstance(value, str):
        return None
    try:
        blob = base64.b64decode(value, validate=True)
        opened = json.loads(client.open_sealed(blob, MAX_OPENED_BYTES))
    except (binascii.Error, ValueError, CryptoError, RecursionError):
        return None
    text = opened.get(member) if isinstance(opened, dict) else None
    return text if isinstance(text, str) else None


def _count(value: object) -> str:
    # bool is an int to Python; JSON true is not a count.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return UNKNOWN
    return str(value)


def _day(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int):
        return UNKNOWN
    try:
        return datetime.datetime.fromtimestamp(value / 1000, datetime.UTC).strftime("%Y-%m-%d")
    except (OverflowError, OSError, ValueError):
        return UNKNOWN


def _word(value: object, known: frozenset[str] | tuple[str, ...]) -> str:
    return value if isinstance(value, str) and value in known else UNKNOWN


def read_alias(client: Client, entry: object) -> AliasInfo:
    """An entry of ``GET /api/aliases`` (any JSON value) as a listed alias; never raises."""
    if not isinstance(entry, dict):
        return AliasInfo(UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN)
    alias_id = entry.get("id")
    address = plain_address(_open_sealed(client, entry.get("sealed_address"), "address"))
    sealed_label = entry.get("label")
    if sealed_label is None:
        label = ""
    else:
        opened = _open_sealed(client, sealed_label, "label")
        label = UNKNOWN if opened is None else strip_controls(opened)[:MAX_LABEL_CHARS]
    return AliasInfo(
        id=alias_id if isinstance(alias_id, str) and _ALIAS_ID.fullmatch(alias_id) else UNKNOWN,
        address=address or UNKNOWN,
        state=_word(entry.get("state"), STATES),
        kind=_word(entry.get("kind"), KINDS),
        senders=_word(entry.get("senders"), SENDER_POLICIES),
        received=_count(entry.get("received")),
        last_used=_day(entry.get("last_used_ms")),
        label=label,
    )


def list_aliases(client: Client) -> list[AliasInfo]:
    """The account's aliases (not deleted ones), oldest first, addresses and labels opened here."""
    entries = client.request_json("GET", "/api/aliases").get("aliases")
    if not isinstance(entries, list):
        raise ProtocolError("the server's alias list is malformed")
    return [read_alias(client, entry) for entry in entries[:MAX_LISTED]]


def format_alias(alias: AliasInfo) -> str:
    """One ``alias list`` line: ADDRESS, STATE, KIND, SENDERS, RECEIVED, LAST-USED, LABEL, tab-separated."""
    fields = [
        alias.address,
        alias.state,
        alias.kind,
        alias.senders,
        alias.received,
        alias.last_used,
        alias.label,
    ]
    return "\t".join(fields)


def checked_address(address: str) -> str:
    """An address the user typed, trimmed; a usage error unless it is one plain ``local@domain``."""
    text = address.strip()
    if not plain_address(text):
        raise UsageError(f"not an e-mail address: {strip_controls(text)[:80]!r}")
    return text


def new_alias(
    client: Client,
    *,
    label: str | None = None,
    chosen: str | None = None,
    domain: str | None = None,
    known_senders: bool = False,
) -> str:
    """Make a shield alias (at ``domain``, else the appliance's first) or the ``chosen`` address; returns
    the new address, which only this answer shows in clear."""
    body: dict[str, Any]
    if chosen is not None:
        if domain is not None:
            raise UsageError("--domain is for shield aliases; a chosen address names its domain")
        body = {"kind": "chosen", "address": checked_address(chosen)}
    else:
        body = {"kind": "shield"}
        if domain is not None:
            if not domain.strip() or "@" in domain or _CONTROL.search(domain) or len(domain) > 253:
                raise UsageError("--domain is one of the appliance's domains, e.g. example.org")
            body["domain"] = domain.strip()
    if label is not None:
        body["label"] = seal_label(client, label)
    if known_senders:
        body["senders"] = "known"
    answer = client.request_json("POST", "/api/aliases", body)
    address = plain_address(answer.get("address"))
    if not address:
        raise ProtocolError("the server's answer names no usable address")
    return address


def find_alias(client: Client, address: str) -> str:
    """The ID of the caller's alias at ``address`` (``POST /api/aliases/lookup``); a clear failure if none."""
    text = checked_address(address)
    try:
        answer = client.request_json("POST", "/api/aliases/lookup", {"address": text})
    except ApiError as error:
        if error.code in ("not_found", "invalid_request"):
            raise ClientError(f"{text} is not one of your aliases", "unknown_alias") from None
        raise
    alias_id = answer.get("id")
    if not isinstance(alias_id, str) or not _ALIAS_ID.fullmatch(alias_id):
        raise ProtocolError("the server's alias lookup answer is malformed")
    return alias_id


def _path(alias_id: str) -> str:
    return "/api/aliases/" + quote(alias_id, safe="")


def set_state(client: Client, address: str, state: str) -> None:
    """Disable (mail to it is refused at RCPT with 550 5.1.1) or enable the alias at ``address``."""
    if state not in STATES:
        raise UsageError("state is active or disabled")
    client.request_json("PATCH", _path(find_alias(client, address)), {"state": state})


def limit_senders(client: Client, address: str, senders: str) -> None:
    """Let the alias at ``address`` take mail from anyone, or only from senders (or their domains) that
    have written to it before."""
    if senders not in SENDER_POLICIES:
        raise UsageError(f"--senders is one of {', '.join(SENDER_POLICIES)}")
    client.request_json("PATCH", _path(find_alias(client, address)), {"senders": senders})


def delete_alias(client: Client, address: str) -> None:
    """Delete the alias at ``address`` for good: refused at RCPT from now on, never issued again."""
    client.request_json("DELETE", _path(find_alias(client, address)))
