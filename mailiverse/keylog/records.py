"""Signed key records and domain-policy records: the entries of the key directory's log.

A **key record** binds a public key to the addresses it serves and says what it is; the key signs it itself::

    {"v": 1, "type": "key", "key_id": "<UUID>", "kind": "personal" | "group" | "organisation",
     "addresses": ["<address hash>", ...], "algorithm": "RSA", "bits": 2048, "format": "v2",
     "public_key": "<base64 DER SubjectPublicKeyInfo>", "created_ms": int, "status": "current" |
     "superseded" | "revoked", "retired_ms": int | null, "supersedes": "<key id>" | null,
     "signature": "<base64>"}

The signature is RSA-PSS (SHA-256, MGF1-SHA-256, salt of 32 bytes) by the record's own private key over
``KEY_RECORD_PREFIX`` followed by the canonical JSON of every member but ``signature``. A **policy record**
(``"type": "policy"``) says how a domain's mail is sealed; the appliance's log key signs it (Ed25519) over
``POLICY_RECORD_PREFIX`` and the same canonical JSON. Each policy names the hash of the domain's previous
policy leaf and a sequence number one higher, so a policy only ever changes forward in the log.

A **moved record** (``"type": "moved"``) says that the addresses it names moved to another appliance
(docs/moving.md); the account's current key (``key_id``) signs it, RSA-PSS over ``MOVED_RECORD_PREFIX`` and the
canonical JSON, like a key record. A **brought-key statement** (never a log entry) is a key's signature over
the address of the account it is brought to, its id and its public key: the proof that whoever registers an old
key at a new appliance holds it.

**Canonical JSON** (RFC 8785 for the values used here: strings, integers, null, lists, objects): keys sorted,
no white space, UTF-8, non-ASCII characters as themselves. A log leaf is the canonical JSON of the whole
signed record, signature included; a record read back from a leaf must re-encode to the same bytes.

Addresses appear only as hashes (``address_hash``), so the log's entries do not list the appliance's users.
docs/keys.md is the outside verifier's copy of these rules. Pure: stdlib and ``cryptography`` only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_RECORD_PREFIX = b"mailiverse-key-record-v1\n"
"""The bytes before a key record's canonical JSON in what its key signs."""

POLICY_RECORD_PREFIX = b"mailiverse-policy-record-v1\n"
"""The bytes before a policy record's canonical JSON in what the log key signs."""

ADDRESS_HASH_PREFIX = b"mailiverse-address-v1\n"
"""The bytes before a lower-cased address in its hash."""

MOVED_RECORD_PREFIX = b"mailiverse-moved-record-v1\n"
"""The bytes before a moved record's canonical JSON in what the moving account's key signs."""

BROUGHT_KEY_PREFIX = b"mailiverse-brought-key-v1\n"
"""The bytes before a brought-key statement's canonical JSON in what the brought key signs."""

KEY_BLOCK_CHANGE_PREFIX = b"mailiverse-key-block-change-v1\n"
"""The bytes before the canonical JSON an account's current key signs to change its key block with brought keys."""

#: How long, at most, an appliance forwards the mail of an address that moved (days).
MAX_GRACE_DAYS = 365
DAY_MS = 86_400_000

KINDS = ("personal", "group", "organisation")
STATUSES = ("current", "superseded", "revoked")
POLICIES = ("personal", "groups", "organisation")
FORMATS = ("v1", "v2")

#: A record is a few hundred bytes of JSON plus a 4096-bit key at most; anything longer is refused unread.
MAX_RECORD_BYTES = 4096
MAX_ADDRESSES = 64
MAX_OFFICERS = 64
_PSS_SALT = 32
_MAX_MS = 2**63 - 1


class RecordError(ValueError):
    """A record that is malformed, badly signed, or not what the reader asked for."""


def canonical_json(value: Any) -> bytes:
    """The canonical encoding (sorted keys, no white space, UTF-8) of strings, integers, null, lists, objects."""
    _check_canonical_types(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _check_canonical_types(value: Any) -> None:
    if value is None or isinstance(value, str | bool):
        return
    if isinstance(value, int):
        if abs(value) > 2**53 - 1:
            raise RecordError("integers in a record stay within JSON's safe range")
        return
    if isinstance(value, list):
        for item in value:
            _check_canonical_types(item)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise RecordError("object keys are strings")
            _check_canonical_types(item)
        return
    raise RecordError(f"a record holds no {type(value).__name__}")


def address_hash(address: str) -> str:
    """The base64 SHA-256 of ``ADDRESS_HASH_PREFIX`` and the lower-cased address: how records name addresses."""
    return b64(hashlib.sha256(ADDRESS_HASH_PREFIX + address.strip().lower().encode("utf-8")).digest())


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(value: object, what: str, *, size: int | None = None, limit: int = 8192) -> bytes:
    """Strict standard base64 (the one canonical encoding of its bytes), optionally of an exact size."""
    if not isinstance(value, str) or len(value) > limit:
        raise RecordError(f"{what} is not base64 text")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RecordError(f"{what} is not base64") from None
    if b64(data) != value or (size is not None and len(data) != size):
        raise RecordError(f"{what} is not the canonical base64 of {size or 'its'} bytes")
    return data


def fingerprint(public_key_der: bytes) -> str:
    """The hex SHA-256 of a DER public key: what a person compares."""
    return hashlib.sha256(public_key_der).hexdigest()


@dataclass(frozen=True)
class KeyRecord:
    """A verified key record."""

    key_id: str
    kind: str
    addresses: tuple[str, ...]
    bits: int
    envelope_format: str
    public_key: bytes
    created_ms: int
    status: str
    retired_ms: int | None
    supersedes: str | None
    document: Mapping[str, Any]

    @property
    def leaf(self) -> bytes:
        return canonical_json(dict(self.document))

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def serves(self, address: str) -> bool:
        return address_hash(address) in self.addresses


@dataclass(frozen=True)
class PolicyRecord:
    """A verified domain-policy record."""

    domain: str
    policy: str
    seq: int
    previous: bytes | None
    key_id: str | None
    officers: tuple[str, ...]
    created_ms: int
    document: Mapping[str, Any]

    @property
    def leaf(self) -> bytes:
        return canonical_json(dict(self.document))


# -- key records ------------------------------------------------------------------------------------


def key_record_fields(
    public_key: rsa.RSAPublicKey,
    addresses: Sequence[str],
    *,
    key_id: str | None = None,
    kind: str = "personal",
    envelope_format: str = "v2",
    created_ms: int,
    status: str = "current",
    retired_ms: int | None = None,
    supersedes: str | None = None,
) -> dict[str, Any]:
    """The unsigned members of a key record for ``public_key`` serving ``addresses`` (plain addresses)."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {
        "v": 1,
        "type": "key",
        "key_id": key_id or str(uuid.uuid4()),
        "kind": kind,
        "addresses": sorted({address_hash(a) for a in addresses}),
        "algorithm": "RSA",
        "bits": public_key.key_size,
        "format": envelope_format,
        "public_key": b64(der),
        "created_ms": created_ms,
        "status": status,
        "retired_ms": retired_ms,
        "supersedes": supersedes,
    }


def sign_key_record(fields: Mapping[str, Any], private_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    """``fields`` with the ``signature`` of ``private_key`` (which must be the record's own key)."""
    unsigned = {k: v for k, v in fields.items() if k != "signature"}
    signature = private_key.sign(KEY_RECORD_PREFIX + canonical_json(unsigned), _pss(), hashes.SHA256())
    signed = dict(unsigned)
    signed["signature"] = b64(signature)
    verify_key_record(signed)
    return signed


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=_PSS_SALT)


_KEY_MEMBERS = frozenset(
    {"v", "type", "key_id", "kind", "addresses", "algorithm", "bits", "format", "public_key", "created_ms",
     "status", "retired_ms", "supersedes", "signature"}
)  # fmt: skip


def verify_key_record(document: object) -> KeyRecord:
    """Check a key record's shape and its own key's signature; RecordError says what is wrong."""
    record = _object(document, _KEY_MEMBERS, "key")
    key_id = _uuid(record["key_id"], "key_id")
    kind = _choice(record["kind"], KINDS, "kind")
    addresses = _hash_list(record["addresses"], "addresses", MAX_ADDRESSES)
    if not addresses:
        raise RecordError("a key record serves at least one address")
    if record["algorithm"] != "RSA":
        raise RecordError("algorithm must be RSA")
    envelope_format = _choice(record["format"], FORMATS, "format")
    der = unb64(record["public_key"], "public_key", limit=1024)
    try:
        key = serialization.load_der_public_key(der)
    except ValueError:
        raise RecordError("public_key is not a DER public key") from None
    if not isinstance(key, rsa.RSAPublicKey) or not 2048 <= key.key_size <= 4096:
        raise RecordError("public_key must be an RSA key of 2048 to 4096 bits")
    if record["bits"] != key.key_size:
        raise RecordError("bits does not match the key")
    created_ms = _ms(record["created_ms"], "created_ms")
    status = _choice(record["status"], STATUSES, "status")
    retired_ms = None if record["retired_ms"] is None else _ms(record["retired_ms"], "retired_ms")
    if (status == "current") != (retired_ms is None):
        raise RecordError("retired_ms is set exactly when the key is no longer current")
    supersedes = None if record["supersedes"] is None else _uuid(record["supersedes"], "supersedes")
    if supersedes == key_id:
        raise RecordError("a key cannot supersede itself")
    signature = unb64(record["signature"], "signature", limit=1024)
    unsigned = {k: v for k, v in record.items() if k != "signature"}
    try:
        key.verify(signature, KEY_RECORD_PREFIX + canonical_json(unsigned), _pss(), hashes.SHA256())
    except InvalidSignature:
        raise RecordError("the record's signature does not verify with its key") from None
    return KeyRecord(
        key_id=key_id,
        kind=kind,
        addresses=addresses,
        bits=key.key_size,
        envelope_format=envelope_format,
        public_key=der,
        created_ms=created_ms,
        status=status,
        retired_ms=retired_ms,
        supersedes=supersedes,
        document=record,
    )


# -- policy records ---------------------------------------------------------------------------------

_POLICY_MEMBERS = frozenset(
    {"v", "type", "domain", "policy", "seq", "previous", "key_id", "officers", "created_ms", "signature"}
)


def sign_policy_record(
    domain: str,
    policy: str,
    *,
    seq: int,
    previous: bytes | None,
    key_id: str | None,
    officers: Sequence[str],
    created_ms: int,
    log_key: Ed25519PrivateKey,
) -> dict[str, Any]:
    """A policy record for ``domain`` signed by the log key (``officers`` as plain addresses)."""
    unsigned: dict[str, Any] = {
        "v": 1,
        "type": "policy",
        "domain": domain.lower(),
        "policy": policy,
        "seq": seq,
        "previous": None if previous is None else b64(previous),
        "key_id": key_id,
        "officers": sorted({address_hash(a) for a in officers}),
        "created_ms": created_ms,
    }
    signed = dict(unsigned)
    signed["signature"] = b64(log_key.sign(POLICY_RECORD_PREFIX + canonical_json(unsigned)))
    verify_policy_record(signed, log_key.public_key())
    return signed


def verify_policy_record(document: object, log_key: Ed25519PublicKey) -> PolicyRecord:
    """Check a policy record's shape and the log key's signature on it."""
    record = _object(document, _POLICY_MEMBERS, "policy")
    domain = record["domain"]
    if not isinstance(domain, str) or not 0 < len(domain) <= 253 or domain != domain.lower():
        raise RecordError("domain must be a lower-case domain name")
    policy = _choice(record["policy"], POLICIES, "policy")
    seq = record["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq <= 2**31:
        raise RecordError("seq must be a positive integer")
    previous = None if record["previous"] is None else unb64(record["previous"], "previous", size=32)
    if (seq == 1) != (previous is None):
        raise RecordError("the first policy of a domain has no previous entry, and only the first")
    key_id = None if record["key_id"] is None else _uuid(record["key_id"], "key_id")
    if (policy == "organisation") != (key_id is not None):
        raise RecordError("an organisation policy names its key, and only it")
    officers = _hash_list(record["officers"], "officers", MAX_OFFICERS)
    if policy == "organisation" and not officers:
        raise RecordError("an organisation policy names its officers")
    created_ms = _ms(record["created_ms"], "created_ms")
    signature = unb64(record["signature"], "signature", size=64)
    unsigned = {k: v for k, v in record.items() if k != "signature"}
    try:
        log_key.verify(signature, POLICY_RECORD_PREFIX + canonical_json(unsigned))
    except InvalidSignature:
        raise RecordError("the policy's signature does not verify with the log key") from None
    return PolicyRecord(domain, policy, seq, previous, key_id, officers, created_ms, record)


# -- moved records ----------------------------------------------------------------------------------

_MOVED_MEMBERS = frozenset({"v", "type", "key_id", "addresses", "to", "created_ms", "forward_until_ms", "signature"})
#: A plain address in its canonical form: lower case, ASCII, a dotted domain (what ``to`` must be).
_PLAIN_ADDRESS = re.compile(r"[a-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63})+")


@dataclass(frozen=True)
class MovedRecord:
    """A verified moved record: the addresses (hashes) that moved, the key that signed it, where they went."""

    key_id: str
    addresses: tuple[str, ...]
    to: str
    created_ms: int
    forward_until_ms: int
    document: Mapping[str, Any]

    @property
    def leaf(self) -> bytes:
        return canonical_json(dict(self.document))

    def serves(self, address: str) -> bool:
        return address_hash(address) in self.addresses


def plain_address(value: object) -> str:
    """``value`` if it is a canonical plain address (lower case, ASCII, at most 254 characters), else RecordError."""
    if not isinstance(value, str) or len(value) > 254 or _PLAIN_ADDRESS.fullmatch(value) is None:
        raise RecordError("the address must be a plain lower-case address (local@domain.tld)")
    return value


def moved_record_fields(
    key_id: str, addresses: Sequence[str], to: str, *, created_ms: int, forward_until_ms: int
) -> dict[str, Any]:
    """The unsigned members of a moved record: ``addresses`` (plain) moved to ``to``, signed by ``key_id``."""
    return {
        "v": 1,
        "type": "moved",
        "key_id": key_id,
        "addresses": sorted({address_hash(a) for a in addresses}),
        "to": to.strip().lower(),
        "created_ms": created_ms,
        "forward_until_ms": forward_until_ms,
    }


def sign_moved_record(fields: Mapping[str, Any], private_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    """``fields`` with the ``signature`` of ``private_key`` (the moving account's current key)."""
    unsigned = {k: v for k, v in fields.items() if k != "signature"}
    signature = private_key.sign(MOVED_RECORD_PREFIX + canonical_json(unsigned), _pss(), hashes.SHA256())
    signed = dict(unsigned)
    signed["signature"] = b64(signature)
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    verify_moved_record(signed, der)
    return signed


def moved_record_key_id(document: object) -> str:
    """The key id a moved record names (to find the key that must have signed it); RecordError if malformed."""
    return _uuid(_object(document, _MOVED_MEMBERS, "moved")["key_id"], "key_id")


def verify_moved_record(document: object, public_key_der: bytes) -> MovedRecord:
    """Check a moved record's shape and its signature by ``public_key_der`` (the key ``key_id`` names)."""
    record = _object(document, _MOVED_MEMBERS, "moved")
    key_id = _uuid(record["key_id"], "key_id")
    addresses = _hash_list(record["addresses"], "addresses", MAX_ADDRESSES)
    if not addresses:
        raise RecordError("a moved record names at least one address")
    to = plain_address(record["to"])
    created_ms = _ms(record["created_ms"], "created_ms")
    forward_until_ms = _ms(record["forward_until_ms"], "forward_until_ms")
    if not created_ms <= forward_until_ms <= created_ms + MAX_GRACE_DAYS * DAY_MS:
        raise RecordError(f"forward_until_ms is from created_ms to {MAX_GRACE_DAYS} days after it")
    signature = unb64(record["signature"], "signature", limit=1024)
    _verify_rsa(public_key_der, signature, MOVED_RECORD_PREFIX + canonical_json(_unsigned(record)), "moved record")
    return MovedRecord(key_id, addresses, to, created_ms, forward_until_ms, record)


# -- brought keys -----------------------------------------------------------------------------------


def brought_key_statement(address: str, key_id: str, public_key_der: bytes) -> bytes:
    """What a key brought to the account at ``address`` signs: that address, the key's id and the key."""
    return BROUGHT_KEY_PREFIX + canonical_json(
        {"address": address.strip().lower(), "key_id": key_id, "public_key": b64(public_key_der)}
    )


def sign_brought_key(private_key: rsa.RSAPrivateKey, address: str, key_id: str) -> bytes:
    """The brought-key signature of ``private_key`` (whose id is ``key_id``) for the account at ``address``."""
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_key.sign(brought_key_statement(address, key_id, der), _pss(), hashes.SHA256())


def verify_brought_key(public_key_der: bytes, address: str, key_id: str, signature: bytes) -> None:
    """RecordError unless ``signature`` is the key's own over the brought-key statement for ``address``."""
    _uuid(key_id, "key_id")
    _verify_rsa(public_key_der, signature, brought_key_statement(address, key_id, public_key_der), "brought key")


def key_block_change_statement(address: str, key_ids: Sequence[str], key_block: bytes) -> bytes:
    """What an account's current key signs to replace its key block when it brings keys along: its address,
    the ids of the keys it brings and the SHA-256 of the new (encrypted) key block."""
    return KEY_BLOCK_CHANGE_PREFIX + canonical_json(
        {
            "address": address.strip().lower(),
            "key_ids": sorted(set(key_ids)),
            "key_block_sha256": b64(hashlib.sha256(key_block).digest()),
        }
    )


def verify_rsa_signature(public_key_der: bytes, signature: bytes, message: bytes, what: str) -> None:
    """RecordError unless ``signature`` is RSA-PSS (SHA-256, MGF1-SHA-256, salt 32) by the key over ``message``."""
    _verify_rsa(public_key_der, signature, message, what)


def sign_rsa(private_key: rsa.RSAPrivateKey, message: bytes) -> bytes:
    """The RSA-PSS signature (as the records use it) of ``private_key`` over ``message``."""
    return private_key.sign(message, _pss(), hashes.SHA256())


def _verify_rsa(public_key_der: bytes, signature: bytes, message: bytes, what: str) -> None:
    try:
        key = serialization.load_der_public_key(public_key_der)
    except ValueError:
        raise RecordError(f"the {what}'s key is not a DER public key") from None
    if not isinstance(key, rsa.RSAPublicKey) or not 2048 <= key.key_size <= 4096:
        raise RecordError(f"the {what}'s key must be an RSA key of 2048 to 4096 bits")
    if len(signature) > 1024:
        raise RecordError(f"the {what}'s signature is too long")
    try:
        key.verify(signature, message, _pss(), hashes.SHA256())
    except InvalidSignature:
        raise RecordError(f"the {what}'s signature does not verify with its key") from None


def _unsigned(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "signature"}


# -- leaves -----------------------------------------------------------------------------------------


def parse_leaf(leaf: bytes) -> dict[str, Any]:
    """The record a log leaf holds, which must be its canonical JSON (anything else is RecordError)."""
    if len(leaf) > MAX_RECORD_BYTES:
        raise RecordError("the leaf is longer than any record")
    try:
        document = json.loads(leaf.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise RecordError("the leaf is not JSON") from None
    if not isinstance(document, dict) or canonical_json(document) != leaf:
        raise RecordError("the leaf is not a record's canonical JSON")
    return document


def verify_leaf(
    leaf: bytes, log_key: Ed25519PublicKey, keys: Mapping[str, bytes] | None = None
) -> KeyRecord | PolicyRecord | MovedRecord:
    """The verified record of a log leaf, of any type. A moved record is checked with the key its ``key_id``
    names, which must be in ``keys`` (key id to DER public key: the key records before it in the log)."""
    document = parse_leaf(leaf)
    if document.get("type") == "policy":
        return verify_policy_record(document, log_key)
    if document.get("type") == "moved":
        key = (keys or {}).get(moved_record_key_id(document))
        if key is None:
            raise RecordError("the moved record's key is not a key the log published before it")
        return verify_moved_record(document, key)
    return verify_key_record(document)


# -- shape checks -----------------------------------------------------------------------------------


def _object(document: object, members: frozenset[str], kind: str) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise RecordError("a record is a JSON object")
    if len(canonical_json(document)) > MAX_RECORD_BYTES:
        raise RecordError("the record is too long")
    if set(document) != members:
        missing = sorted(members - set(document))
        extra = sorted(set(document) - members)
        raise RecordError(f"the record's members are wrong (missing {missing}, unknown {extra})")
    if document["v"] != 1 or document["type"] != kind:
        raise RecordError(f"not a version 1 {kind} record")
    return document


def _uuid(value: object, what: str) -> str:
    if not isinstance(value, str) or len(value) != 36:
        raise RecordError(f"{what} is not a UUID")
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise RecordError(f"{what} is not a UUID") from None
    if str(parsed) != value:
        raise RecordError(f"{what} is not a lower-case UUID")
    return value


def _choice(value: object, allowed: Sequence[str], what: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise RecordError(f"{what} must be one of {', '.join(allowed)}")
    return value


def _ms(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_MS:
        raise RecordError(f"{what} must be milliseconds since the epoch")
    return value


def _hash_list(value: object, what: str, limit: int) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > limit:
        raise RecordError(f"{what} must be a list of at most {limit} address hashes")
    for item in value:
        unb64(item, what, size=32)
    if value != sorted(set(value)):
        raise RecordError(f"{what} must be sorted and distinct")
    return tuple(value)


__all__ = [
    "ADDRESS_HASH_PREFIX",
    "BROUGHT_KEY_PREFIX",
    "DAY_MS",
    "KEY_BLOCK_CHANGE_PREFIX",
    "KEY_RECORD_PREFIX",
    "MAX_GRACE_DAYS",
    "MOVED_RECORD_PREFIX",
    "POLICY_RECORD_PREFIX",
    "KeyRecord",
    "MovedRecord",
    "PolicyRecord",
    "RecordError",
    "address_hash",
    "brought_key_statement",
    "canonical_json",
    "fingerprint",
    "key_block_change_statement",
    "key_record_fields",
    "moved_record_fields",
    "moved_record_key_id",
    "parse_leaf",
    "plain_address",
    "sign_brought_key",
    "sign_key_record",
    "sign_moved_record",
    "sign_policy_record",
    "sign_rsa",
    "verify_brought_key",
    "verify_key_record",
    "verify_leaf",
    "verify_moved_record",
    "verify_policy_record",
    "verify_rsa_signature",
]
