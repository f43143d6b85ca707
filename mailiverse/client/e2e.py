"""End to end (docs/e2e.md): the message is built, signed and sealed on this device; its signature is checked
when it is read.

Sending: every recipient's key comes from a verified directory (this appliance's, or the recipient domain's
appliance through this one: ``keys.find_key``). When every recipient has one, the device composes the message
exactly as ``/api/send`` would (``mime/compose.py``), builds its JSON twin as the appliance would
(``mime/twin.py``) with an ``e2e`` member carrying the sender's signature, and seals both per recipient the way
the appliance seals delivered mail: ``envelope(format, zlib(bytes))`` to the recipient's key, in that key's
format. The appliance then only stores or forwards ciphertext (``POST /api/send/sealed``). When a recipient has
no key anywhere (their domain runs no mailiverse appliance, or has no key for them), the message goes the old
way, after saying so; ``require`` refuses instead. A key that fails a check is never a reason to fall back: it
refuses the message (``KeyAlarm``).

Reading: a twin's ``e2e`` member claims a signature; it is shown as verified only when the signature verifies
with the directory's key of ``from`` (current, or in its history with that ``key_id``), over the original's
SHA-256, and ``from`` is the message's one From address.

Why one module of this size: building, sealing and checking the ``e2e`` member are one format, and the
sending decision uses all of them.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import email.parser
import email.policy
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mailiverse import hashcash
from mailiverse.client import keys
from mailiverse.client.api import Client, SealedEnvelope, SendResult, check_addresses, plain_address
from mailiverse.client.errors import ApiError, ClientError, UsageError
from mailiverse.crypto.formats import seal_mail_object
from mailiverse.crypto.keys import public_key_der
from mailiverse.keylog.records import KeyRecord
from mailiverse.mime import jsonout
from mailiverse.mime.compose import Composed, ComposeError, compose
from mailiverse.mime.limits import Limits
from mailiverse.mime.twin import convert_document

VERSION = 1
#: What the sender's key signs, followed by the 32 bytes of the original's SHA-256.
SIGNED_PREFIX = b"mailiverse-e2e-v1\n"
SALT_BYTES = 32
#: Hashcash stamps ``/api/send/sealed`` takes (one per recipient, 20 bits each, minted here).
MAX_STAMPS = 8
STAMP_BITS = 20
#: The folders a copy's twin names its original in.
INBOX, SENT = "Mail/In", "Mail/Sent"
#: The account an organisation's key serves at each domain (``mailiverse-admin domain policy --account``).
ORGANISATION_ACCOUNT = "organisation"
#: How ``send`` goes: end to end when it can, only end to end, or never.
AUTO, REQUIRE, OFF = "auto", "require", "off"
#: Answers that say a recipient has no key to check (not an alarm): the old path may be used.
_NO_KEY_CODES = frozenset({"no_appliance", "not_found"})


def new_key_base(now_ms: int) -> str:
    """``<ms>_<non-negative random 63-bit decimal>``, as the appliance names delivered mail (PROTOCOL.md §2)."""
    return f"{now_ms}_{secrets.randbits(63)}"


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=SALT_BYTES)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- building and sealing ------------------------------------------------------------------------------


def compose_message(composed: Composed, *, default_from: str, now_ms: int, stamps: Sequence[str] = ()) -> bytes:
    """The RFC 5322 bytes ``/api/send`` would have composed (``X-Hashcash`` fields first, as it adds them);
    a value that could add a header line is a UsageError."""
    sender = composed.from_address or default_from
    try:
        raw = compose(
            composed, default_from=default_from, hostname=sender.rpartition("@")[2] or "localhost", now_ms=now_ms
        )
    except ComposeError as error:
        raise UsageError(f"{error.message} ({error.code})") from None
    return b"".join(f"X-Hashcash: {stamp}\r\n".encode("ascii") for stamp in stamps) + raw


def signature_member(raw: bytes, from_address: str, key_id: str, private_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    """The twin's ``e2e`` member: RSA-PSS (SHA-256, salt 32) over ``SIGNED_PREFIX`` and the original's SHA-256."""
    digest = hashlib.sha256(raw).digest()
    signature = private_key.sign(SIGNED_PREFIX + digest, _pss(), hashes.SHA256())
    return {"v": VERSION, "from": from_address, "key_id": key_id, "sha256": _b64(digest), "signature": _b64(signature)}


def twin_document(raw: bytes, original_path: str, now_ms: int, member: dict[str, Any]) -> dict[str, Any]:
    """The JSON twin as the appliance builds it for ``original_path`` (safe HTML, default limits), plus ``e2e``."""
    document = convert_document(raw, original_path=original_path, written_ms=now_ms, limits=Limits(), safe_html=True)
    document["e2e"] = member
    return document


def twin_bytes(document: dict[str, Any], delivered_to: str = "") -> bytes:
    """The twin's UTF-8 JSON text for one copy; ``delivered_to`` as the appliance records it (the address the
    copy is for)."""
    copy = dict(document)
    if delivered_to:
        copy["delivered_to"] = delivered_to
    return jsonout.dumps(copy).encode("utf-8")


@dataclass(frozen=True)
class Outgoing:
    """One message ready to seal: its bytes, key base, time, and the ``e2e`` member its twins carry."""

    raw: bytes
    key_base: str
    now_ms: int
    member: dict[str, Any]
    #: The Sent copy's own key base: a message to oneself then has two distinct IDs (Inbox and Sent).
    sent_key_base: str = ""
    #: The twin per folder, built once (each copy only adds ``delivered_to``).
    _twins: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False, repr=False)

    def twin(self, folder: str) -> dict[str, Any]:
        if folder not in self._twins:
            base = self.sent_key_base if folder == SENT and self.sent_key_base else self.key_base
            self._twins[folder] = twin_document(self.raw, f"{folder}/{base}", self.now_ms, self.member)
        return self._twins[folder]

    def seal(
        self,
        record: KeyRecord,
        *,
        folder: str = INBOX,
        delivered_to: str = "",
        to: str | None = None,
        organisation: str | None = None,
    ) -> SealedEnvelope:
        """The original and its twin sealed to ``record``'s key in its envelope format, as delivery seals them."""
        public_key = record_public_key(record)
        fmt = record.envelope_format
        twin = twin_bytes(self.twin(folder), delivered_to)
        return SealedEnvelope(
            record.key_id,
            seal_mail_object(fmt, public_key, self.raw),
            seal_mail_object(fmt, public_key, twin),
            to=to,
            organisation=organisation,
        )


def record_public_key(record: KeyRecord) -> rsa.RSAPublicKey:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_der_public_key(record.public_key)
    if not isinstance(key, rsa.RSAPublicKey):
        raise keys.KeyAlarm(f"key {record.key_id} is not an RSA key")
    return key


# -- the sending decision ------------------------------------------------------------------------------


@dataclass
class Plan:
    """Every key the message needs, verified, and why any is missing (then it cannot go end to end)."""

    recipients: dict[str, keys.VerifiedKey] = field(default_factory=dict)
    organisations: dict[str, keys.VerifiedKey] = field(default_factory=dict)
    own: keys.VerifiedKey | None = None
    missing: dict[str, str] = field(default_factory=dict)


def _alarm(address: str, alarm: keys.KeyAlarm) -> keys.KeyAlarm:
    return keys.KeyAlarm(f"not sent: KEY ALARM for {address}: {alarm.message}")


def _why_no_key(address: str, error: ApiError, client: Client) -> str:
    domain = address.rpartition("@")[2].lower()
    if error.code == "no_appliance":
        return f"{domain} has no mailiverse appliance"
    if domain in keys.local_domains(client):
        return "no key in this appliance's directory"
    return f"no key in the directory of {domain}"


def plan(client: Client, recipients: Sequence[str], sender: str, state: keys.TrustState) -> Plan:
    """Look every key up and verify it; a failed check raises KeyAlarm naming the address (never a fallback)."""
    found = Plan()
    own_address = next((a for a in client.addresses if a.lower() == sender.lower()), None)
    own_address = own_address or (client.addresses[0] if client.addresses else sender)
    try:
        own = keys.lookup(client, own_address, state)
    except keys.KeyAlarm as alarm:
        raise _alarm(own_address, alarm) from None
    except ApiError as error:
        if error.code != "not_found":
            raise
        found.missing[own_address] = "your own key is not in the directory yet"
    else:
        if not hmac.compare_digest(own.record.public_key, public_key_der(client.private_key)):
            raise _alarm(own_address, keys.KeyAlarm("the directory's current key for you is not the key you hold"))
        found.own = own
    no_appliance: dict[str, str] = {}
    for address in dict.fromkeys(a.lower() for a in recipients):
        domain = address.rpartition("@")[2]
        if domain in no_appliance:  # one answer stands for the domain: no lookup per address
            found.missing[address] = no_appliance[domain]
            continue
        try:
            found.recipients[address] = keys.find_key(client, address, state)
        except keys.KeyAlarm as alarm:
            raise _alarm(address, alarm) from None
        except ApiError as error:
            if error.code not in _NO_KEY_CODES:
                raise
            found.missing[address] = _why_no_key(address, error, client)
            if error.code == "no_appliance":
                no_appliance[domain] = found.missing[address]
    for verified in list(found.recipients.values()):
        policy = verified.policy
        if policy is None or policy.policy != "organisation" or policy.domain in found.organisations:
            continue
        organisation = _organisation_key(client, policy, state)
        if organisation is None:
            found.missing[verified.address] = f"the organisation key of {policy.domain} is not in its directory"
        else:
            found.organisations[policy.domain] = organisation
    return found


def _organisation_key(client: Client, policy: keys.DomainPolicyView, state: keys.TrustState) -> keys.VerifiedKey | None:
    """The organisation key a domain's policy names, verified in the domain's directory.

    The policy record names only the key's id; the key's record is the organisation account's, looked up at
    ``organisation@<domain>`` (the account ``mailiverse-admin domain policy`` makes by default). None when that
    address has no key, or not the one the policy names (an organisation account under another name).
    """
    address = f"{ORGANISATION_ACCOUNT}@{policy.domain}"
    try:
        verified = keys.find_key(client, address, state)
    except keys.KeyAlarm as alarm:
        raise _alarm(address, alarm) from None
    except ApiError as error:
        if error.code not in _NO_KEY_CODES:
            raise
        return None
    if verified.record.kind != "organisation" or verified.record.key_id != policy.key_id:
        return None
    return verified


def check_local_keys(client: Client, recipients: Sequence[str], state: keys.TrustState) -> None:
    """For ordinary mail: refuse when a recipient on this appliance has a key that fails verification."""
    local = keys.local_domains(client)
    for address in recipients:
        if address.rpartition("@")[2].lower() not in local:
            continue
        try:
            keys.lookup(client, address, state)
        except ApiError as error:
            if error.code != "not_found":
                raise
        except keys.KeyAlarm as alarm:
            raise _alarm(address, alarm) from None


def _stamps(recipients: Sequence[str], now: datetime.datetime) -> list[str]:
    targets = list(dict.fromkeys(r.strip().lower() for r in recipients))
    if len(targets) > MAX_STAMPS:
        raise UsageError(f"hashcash stamps go to at most {MAX_STAMPS} recipients of end-to-end mail")
    try:
        return [hashcash.mint(target, bits=STAMP_BITS, now=now) for target in targets]
    except ValueError:
        raise UsageError("a recipient address cannot carry a hashcash stamp") from None


def send(
    client: Client,
    to: Sequence[str],
    subject: str,
    text: str,
    *,
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    from_address: str | None = None,
    hashcash_stamps: bool = False,
    mode: str = AUTO,
    notify: Callable[[str], object] = lambda line: None,
    now: Callable[[], float] = time.time,
) -> SendResult:
    """Send end to end when every recipient has a verified key (``mode`` ``auto``), else the old way after
    ``notify``-ing each recipient that prevents it; ``require`` refuses then, ``off`` always goes the old way.

    A key that fails a check raises KeyAlarm in every mode. ``SendResult.end_to_end`` says which way it went.
    """
    if mode not in (AUTO, REQUIRE, OFF):
        raise UsageError(f"unknown end-to-end mode {mode!r}")
    recipients = [*to, *cc, *bcc]
    check_addresses(recipients, from_address)
    state = keys.load_state(client)

    def ordinary() -> SendResult:
        keys.save_state(client, state)
        return client.send(to, subject, text, cc=cc, bcc=bcc, from_address=from_address, hashcash=hashcash_stamps)

    if mode == OFF:
        check_local_keys(client, recipients, state)
        return ordinary()
    sender = from_address or (client.addresses[0] if client.addresses else "")
    for attempt in range(2):
        found = plan(client, recipients, sender, state)
        if found.missing:
            if mode == REQUIRE:
                address, why = next(iter(found.missing.items()))
                raise ClientError(
                    f"not sent: {address} cannot be written to end to end ({why}), and --require-e2e refuses "
                    "ordinary mail"
                )
            for address, why in found.missing.items():
                notify(f"not end to end: {address} ({why}); sent as ordinary mail")
            return ordinary()
        keys.save_state(client, state)
        try:
            return _send_sealed(client, found, to, cc, bcc, subject, text, from_address, hashcash_stamps, now)
        except ApiError as error:
            # A recipient's key changed since it was looked up, or the key base is taken: look again, once.
            if attempt or error.code not in ("stale_key", "conflict"):
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _send_sealed(
    client: Client,
    found: Plan,
    to: Sequence[str],
    cc: Sequence[str],
    bcc: Sequence[str],
    subject: str,
    text: str,
    from_address: str | None,
    stamped: bool,
    now: Callable[[], float],
) -> SendResult:
    assert found.own is not None
    now_ms = int(now() * 1000)
    stamps = _stamps([*to, *cc, *bcc], datetime.datetime.fromtimestamp(now_ms / 1000, datetime.UTC)) if stamped else []
    default_from = client.addresses[0] if client.addresses else ""
    composed = Composed(to=tuple(to), cc=tuple(cc), subject=subject, text=text, from_address=from_address)
    raw = compose_message(composed, default_from=default_from, now_ms=now_ms, stamps=stamps)
    sender = _from_of(raw) or (from_address or default_from)
    if sender.lower() in {a.lower() for a in client.addresses}:
        member = signature_member(raw, sender, found.own.record.key_id, client.private_key)
    else:
        # From an alias: a signature would name the account's key and tie the alias to it in the public log.
        member = {"v": VERSION, "from": sender}
    outgoing = Outgoing(raw, new_key_base(now_ms), now_ms, member, sent_key_base=new_key_base(now_ms))
    envelopes = [outgoing.seal(v.record, delivered_to=a, to=a) for a, v in found.recipients.items()]
    envelopes += [
        outgoing.seal(v.record, delivered_to=v.address, organisation=domain)
        for domain, v in found.organisations.items()
    ]
    sent = outgoing.seal(found.own.record, folder=SENT, delivered_to=sender)
    return client.send_sealed(
        outgoing.key_base,
        envelopes,
        sent=sent,
        sent_key_base=outgoing.sent_key_base,
        from_address=from_address,
        stamps=stamps,
    )


# -- reading -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seal:
    """What a message's ``e2e`` member proves: ``verified`` (signed by ``signer``), or why not."""

    verified: bool
    signer: str
    reason: str = ""

    def line(self) -> str:
        if self.verified:
            return f"End-to-end encrypted \u00b7 signed by {self.signer} (verified)"
        return f"End-to-end encrypted \u00b7 signature not verified: {self.reason}"


def _from_of(raw: bytes) -> str:
    """The message's one From address (lower case), or "" when it has none or several."""
    try:
        headers = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(raw)
        values = headers.get_all("From") or []
        if len(values) != 1:
            return ""
        addresses: Any = getattr(values[0], "addresses", ())
        return str(addresses[0].addr_spec).lower() if len(addresses) == 1 else ""
    except (LookupError, ValueError, TypeError, AttributeError):
        return ""


def _claim(member: object) -> tuple[str, str, bytes, bytes] | str:
    """(from, key_id, sha256, signature) of a well-formed ``e2e`` member, or why it is not one."""
    if not isinstance(member, dict) or member.get("v") != VERSION:
        return "the end-to-end member is not version 1"
    signer, key_id = plain_address(member.get("from")), member.get("key_id")
    if not signer or not isinstance(key_id, str) or not 0 < len(key_id) <= 64 or not key_id.isprintable():
        return "the end-to-end member is malformed"
    try:
        digest = base64.b64decode(str(member.get("sha256")), validate=True)
        signature = base64.b64decode(str(member.get("signature")), validate=True)
    except (binascii.Error, ValueError):
        return "the end-to-end member is malformed"
    if len(digest) != 32:
        return "the end-to-end member is malformed"
    return signer.lower(), key_id, digest, signature


def check_signature(member: object, raw: bytes, find: Callable[[str], keys.VerifiedKey]) -> Seal:
    """Check a twin's ``e2e`` member against the original ``raw``, with ``find(address)`` giving the verified
    directory key of an address (KeyAlarm or ApiError when there is none to trust)."""
    claim = _claim(member)
    if isinstance(claim, str):
        return Seal(False, "", claim)
    signer, key_id, digest, signature = claim
    if not hmac.compare_digest(digest, hashlib.sha256(raw).digest()):
        return Seal(False, signer, "the message is not the one that was signed")
    shown_from = _from_of(raw)
    if shown_from != signer:
        return Seal(False, signer, f"signed by {signer}, but the message is from {shown_from or 'no single address'}")
    try:
        verified = find(signer)
    except keys.KeyAlarm as alarm:
        return Seal(False, signer, f"KEY ALARM for {signer}: {alarm.message}")
    except ApiError as error:
        if error.code in _NO_KEY_CODES:
            return Seal(False, signer, f"{signer} has no key in a directory")
        return Seal(False, signer, f"the key of {signer} could not be looked up ({error.code})")
    except ClientError as error:
        return Seal(False, signer, f"the key of {signer} could not be looked up ({error.code})")
    record = next((r for r in (verified.record, *verified.history) if r.key_id == key_id), None)
    if record is None:
        return Seal(False, signer, f"the directory has no key {key_id} for {signer}")
    try:
        record_public_key(record).verify(signature, SIGNED_PREFIX + digest, _pss(), hashes.SHA256())
    except (InvalidSignature, keys.KeyAlarm, ValueError):
        return Seal(False, signer, f"the signature does not verify with the key of {signer}")
    return Seal(True, signer)


def seal_of(client: Client, raw: bytes, twin: object) -> Seal | None:
    """What the twin's ``e2e`` member proves about ``raw`` (None when it has none), checked with the directory."""
    if not isinstance(twin, dict) or "e2e" not in twin:
        return None
    try:
        state = keys.load_state(client)
    except keys.KeyAlarm as alarm:
        return Seal(False, "", f"KEY ALARM: {alarm.message}")
    seal = check_signature(twin["e2e"], raw, lambda address: keys.find_key(client, address, state))
    keys.save_state(client, state)
    return seal


__all__ = [
    "AUTO",
    "OFF",
    "REQUIRE",
    "SIGNED_PREFIX",
    "Outgoing",
    "Plan",
    "Seal",
    "check_local_keys",
    "check_signature",
    "compose_message",
    "new_key_base",
    "plan",
    "seal_of",
    "send",
    "signature_member",
    "twin_bytes",
    "twin_document",
]
