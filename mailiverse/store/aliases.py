"""The alias directory: each account's extra addresses, stored so that the database reveals none of them.

An alias is found by a keyed hash of its local part (HMAC-SHA-256 under the appliance's address key,
``keys/address-hash.key`` in the data directory, never in the database), after look-alike characters
are made one (``canonical_local``: case, 1/i/l, 0/o, v/w). The row keeps that hash, the owner, the
state and the policy; the address itself only sealed to the owner's public key (``sealed_address``,
which the clients open) and its label only as the client sealed it. Counters of use are plain.

* **shield** aliases are made here: 16 characters from an alphabet without look-alikes (80 bits);
  **chosen** ones follow the user-name rules and may not shadow an account or another alias;
* ``state``: ``active``; ``disabled`` (refused at RCPT, reversible); ``deleted`` (refused for good: the
  row stays as a tombstone of its hash, without owner data, so the address is never issued again);
* ``senders``: ``any``; ``known`` (only senders that wrote to it while it accepted anyone) or
  ``known-domains`` (their domains), kept as keyed hashes in ``alias_senders``.

Limits: ``max_aliases`` live aliases per account and ``rate`` new ones per ``window_ms``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from mailiverse.contracts import canonical_local
from mailiverse.store.errors import InvalidInput, StoreError
from mailiverse.store.schema import alias_senders, aliases

#: The shield alphabet: digits and lower-case letters without i, l, o and w (32 characters, 5 bits each).
SHIELD_ALPHABET = "0123456789abcdefghjkmnpqrstuvxyz"
SHIELD_LENGTH = 16
KINDS = frozenset({"shield", "chosen"})
STATES = frozenset({"active", "disabled", "deleted"})
SENDER_POLICIES = frozenset({"any", "known", "known-domains"})
#: Defaults comparable to alias services: 1,000 live aliases, 10 new ones per 15 minutes.
DEFAULT_MAX_ALIASES = 1000
DEFAULT_ALIAS_RATE = 10
ALIAS_RATE_WINDOW_MS = 15 * 60 * 1000
#: Sealed addresses and labels are small; a label the client sealed is at most this.
MAX_SEALED_BYTES = 4096
#: Senders remembered per alias (address and domain hashes); more are not recorded.
MAX_KNOWN_SENDERS = 10_000
#: The address key's length (HMAC-SHA-256 keys of 32 random bytes; 16 is the least accepted).
ADDRESS_KEY_BYTES = 32


class AliasError(StoreError):
    """An alias request the directory refuses; ``code`` names why (``alias_taken``, ``alias_limit``,
    ``alias_rate_limited``, ``not_found``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def new_shield_local() -> str:
    """A fresh shield local part: 16 characters of ``SHIELD_ALPHABET`` from the system's CSPRNG."""
    return "".join(secrets.choice(SHIELD_ALPHABET) for _ in range(SHIELD_LENGTH))


class AddressHasher:
    """Keyed hashes of addresses (HMAC-SHA-256 under the appliance's address key), one purpose per prefix."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the address key is at least 16 bytes")
        self._key = key

    def _mac(self, purpose: bytes, text: str) -> bytes:
        return hmac.new(self._key, purpose + b"\0" + text.encode("utf-8"), hashlib.sha256).digest()

    def alias(self, local: str) -> bytes:
        """The directory's hash of an alias local part (look-alikes made one)."""
        return self._mac(b"alias", canonical_local(local))

    def sender(self, address: str) -> bytes:
        return self._mac(b"sender", address.lower())

    def sender_domain(self, address: str) -> bytes:
        return self._mac(b"sender-domain", address.rpartition("@")[2].lower())

    def stamp(self, stamp_key: bytes) -> bytes:
        """A spent Hashcash stamp as the screener remembers it."""
        return self._mac(b"stamp", stamp_key.hex())

    def received(self, digest: bytes) -> bytes:
        """A received message's SHA-256 as the store remembers it (store/receipts.py)."""
        return self._mac(b"received", digest.hex())


@dataclass(frozen=True)
class Alias:
    """One alias as stored: never its address in clear."""

    id: int
    public_id: str
    user_id: int | None
    kind: str
    state: str
    senders: str
    sealed_address: bytes | None
    label: bytes | None
    received: int
    last_used_ms: int | None
    created_ms: int


def _alias(row: RowMapping) -> Alias:
    return Alias(
        id=row["id"],
        public_id=row["public_id"],
        user_id=row["user_id"],
        kind=row["kind"],
        state=row["state"],
        senders=row["senders"],
        sealed_address=row["sealed_address"],
        label=row["label"],
        received=int(row["received"]),
        last_used_ms=row["last_used_ms"],
        created_ms=int(row["created_ms"]),
    )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def find_alias_txn(conn: Connection, address_hash: bytes) -> Alias | None:
    """The alias (a tombstone too) whose hash is ``address_hash``."""
    row = conn.execute(select(aliases).where(aliases.c.address_hash == address_hash)).mappings().first()
    return None if row is None else _alias(row)


def create_alias_txn(
    conn: Connection,
    user_id: int,
    address_hash: bytes,
    *,
    kind: str,
    sealed_address: bytes,
    label: bytes | None = None,
    senders: str = "any",
    max_aliases: int = DEFAULT_MAX_ALIASES,
    rate: int = DEFAULT_ALIAS_RATE,
    now_ms: int | None = None,
) -> Alias:
    """A new active alias of ``user_id``; AliasError when its hash is taken (or was ever), or a limit is met."""
    if kind not in KINDS or senders not in SENDER_POLICIES:
        raise InvalidInput("unknown alias kind or sender policy")
    _check_sealed(sealed_address, "sealed address")
    if label is not None:
        _check_sealed(label, "label")
    now = _now_ms() if now_ms is None else now_ms
    live = conn.execute(
        select(func.count()).where(aliases.c.user_id == user_id, aliases.c.state != "deleted")
    ).scalar_one()
    if live >= max_aliases:
        raise AliasError("alias_limit", f"an account has at most {max_aliases} aliases; delete some first")
    recent = conn.execute(
        select(func.count()).where(aliases.c.user_id == user_id, aliases.c.created_ms > now - ALIAS_RATE_WINDOW_MS)
    ).scalar_one()
    if recent >= rate:
        raise AliasError("alias_rate_limited", f"at most {rate} new aliases per 15 minutes; try again later")
    if find_alias_txn(conn, address_hash) is not None:
        raise AliasError("alias_taken", "that address is taken (or was once)")
    values = {
        "public_id": secrets.token_urlsafe(12),
        "address_hash": address_hash,
        "user_id": user_id,
        "kind": kind,
        "state": "active",
        "senders": senders,
        "sealed_address": sealed_address,
        "label": label,
        "received": 0,
        "last_used_ms": None,
        "created_ms": now,
    }
    try:
        with conn.begin_nested():
            new_id = conn.execute(insert(aliases).values(**values).returning(aliases.c.id)).scalar_one()
    except IntegrityError:
        raise AliasError("alias_taken", "that address is taken (or was once)") from None
    values.pop("address_hash")
    return Alias(id=new_id, **values)  # type: ignore[arg-type]


def _check_sealed(value: object, what: str) -> None:
    if not isinstance(value, bytes) or not 0 < len(value) <= MAX_SEALED_BYTES:
        raise InvalidInput(f"the {what} is 1 to {MAX_SEALED_BYTES} bytes")


def list_aliases_txn(conn: Connection, user_id: int) -> list[Alias]:
    """The account's aliases that are not deleted, oldest first."""
    rows = conn.execute(
        select(aliases)
        .where(aliases.c.user_id == user_id, aliases.c.state != "deleted")
        .order_by(aliases.c.created_ms, aliases.c.id)
    ).mappings()
    return [_alias(row) for row in rows]


def _owned_txn(conn: Connection, user_id: int, public_id: str) -> Alias:
    row = (
        conn.execute(
            select(aliases).where(
                aliases.c.public_id == public_id, aliases.c.user_id == user_id, aliases.c.state != "deleted"
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise AliasError("not_found", "no such alias")
    return _alias(row)


def update_alias_txn(
    conn: Connection,
    user_id: int,
    public_id: str,
    *,
    state: str | None = None,
    senders: str | None = None,
    label: bytes | None = None,
    clear_label: bool = False,
) -> Alias:
    """Change an alias's state (active or disabled), sender policy or label; AliasError ``not_found``."""
    current = _owned_txn(conn, user_id, public_id)
    values: dict[str, object] = {}
    if state is not None:
        if state not in ("active", "disabled"):
            raise InvalidInput("an alias is made active or disabled (deleting is DELETE)")
        values["state"] = state
    if senders is not None:
        if senders not in SENDER_POLICIES:
            raise InvalidInput("senders is any, known or known-domains")
        values["senders"] = senders
    if clear_label:
        values["label"] = None
    elif label is not None:
        _check_sealed(label, "label")
        values["label"] = label
    if values:
        conn.execute(update(aliases).where(aliases.c.id == current.id).values(**values))
    return _owned_txn(conn, user_id, public_id)


def delete_alias_txn(conn: Connection, user_id: int, public_id: str) -> None:
    """Delete for good: the row becomes a tombstone of its hash (no owner, no sealed data, no senders)."""
    current = _owned_txn(conn, user_id, public_id)
    conn.execute(delete(alias_senders).where(alias_senders.c.alias_id == current.id))
    conn.execute(
        update(aliases)
        .where(aliases.c.id == current.id)
        .values(state="deleted", user_id=None, sealed_address=None, label=None, received=0, last_used_ms=None)
    )


def owner_of_alias_txn(conn: Connection, user_id: int, address_hash: bytes) -> Alias:
    """The live alias of ``user_id`` with ``address_hash``; AliasError ``not_found`` otherwise."""
    found = find_alias_txn(conn, address_hash)
    if found is None or found.user_id != user_id or found.state == "deleted":
        raise AliasError("not_found", "no such alias")
    return found


def knows_sender_txn(conn: Connection, alias_id: int, sender_hashes: Sequence[bytes]) -> bool:
    """Whether any of ``sender_hashes`` has written to the alias."""
    if not sender_hashes:
        return False
    found = conn.execute(
        select(alias_senders.c.alias_id)
        .where(alias_senders.c.alias_id == alias_id, alias_senders.c.sender_hash.in_(list(sender_hashes)))
        .limit(1)
    ).first()
    return found is not None


def record_use_txn(conn: Connection, alias_id: int, sender_hashes: Sequence[bytes], now_ms: int | None = None) -> None:
    """One more message received on the alias, now; its sender's hashes remembered (up to MAX_KNOWN_SENDERS)."""
    now = _now_ms() if now_ms is None else now_ms
    conn.execute(
        update(aliases)
        .where(aliases.c.id == alias_id, aliases.c.state != "deleted")
        .values(received=aliases.c.received + 1, last_used_ms=now)
    )
    if not sender_hashes:
        return
    known = conn.execute(
        select(alias_senders.c.sender_hash).where(
            and_(alias_senders.c.alias_id == alias_id, alias_senders.c.sender_hash.in_(list(sender_hashes)))
        )
    ).scalars()
    new = [h for h in dict.fromkeys(sender_hashes) if h not in set(known)]
    if not new:
        return
    count = conn.execute(select(func.count()).where(alias_senders.c.alias_id == alias_id)).scalar_one()
    if count + len(new) > MAX_KNOWN_SENDERS:
        return
    conn.execute(insert(alias_senders), [{"alias_id": alias_id, "sender_hash": h} for h in new])
