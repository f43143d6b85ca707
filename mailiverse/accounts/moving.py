"""Moving house (docs/moving.md): the rules of both ends of a move.

The **old** appliance switches an account to *moved* only on a moved record its current key signed, naming
exactly its addresses and the new address; the record goes into the key log (so a sender's client can verify
where the address went) in the transaction that switches the account. Before the switch the client marks the
received mail it copied (never forwarded); after it, nothing is deleted until the user asks (:meth:`finish`),
and not while mail waits to be forwarded.

The **new** appliance registers the keys the account brought along: each proven by its own signature over the
account's address and its id (so nobody registers a key they do not hold), the request as a whole signed by the
account's current key (so a stolen session cannot swap the key block). Envelopes sealed to a brought key are
then stored for the account (``store.keylog.sealable_key_ids_txn``).
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from mailiverse.contracts.errors import Refusal
from mailiverse.keylog.records import (
    DAY_MS,
    MAX_GRACE_DAYS,
    MovedRecord,
    RecordError,
    address_hash,
    key_block_change_statement,
    plain_address,
    unb64,
    verify_brought_key,
    verify_moved_record,
    verify_rsa_signature,
)
from mailiverse.store.db import Database
from mailiverse.store.homes import Homes
from mailiverse.store.keylog import KeyLog, SignedHead, current_key_of_user_txn
from mailiverse.store.moving import (
    MAX_DIGESTS,
    MAX_MARKS,
    BroughtKey,
    Digest,
    KeyIdTaken,
    MoveState,
    add_brought_keys_txn,
    delete_objects_txn,
    digests_txn,
    forget_moved_mail_txn,
    mail_states_txn,
    mark_copied_txn,
    move_state_txn,
    pending_forward_count_txn,
    switch_to_moved_txn,
)
from mailiverse.store.users import User, get_user_by_id_txn, set_key_block_txn

#: Keys one request may bring (a current key and the retired ones of a key block: at most 41).
MAX_BROUGHT_KEYS = 64
#: How far a moved record's ``created_ms`` may be from the appliance's clock.
CLOCK_SLACK_MS = DAY_MS
_KEY_BASE = re.compile(r"[0-9]{1,16}_[0-9]{1,19}")


class MovingError(Refusal):
    """A move request the appliance refuses; ``code`` is the API's stable error code."""


@dataclass(frozen=True)
class MoveStatus:
    """What ``GET /api/account/move`` answers: the moved state (None: not moved) and the mail's marks."""

    state: MoveState | None
    marks: dict[str, int]
    pending: int


class MovingService:
    """Both ends of a move, over the database and the key log."""

    def __init__(
        self,
        database: Database,
        log: KeyLog,
        is_local: Callable[[str], bool],
        clock: Callable[[], float] = time.time,
        homes: Homes | None = None,
    ) -> None:
        self.database = database
        #: The account's objects and what of its mail was copied live in its home (store/homes.py).
        self.homes = homes or Homes.single(database)
        self.log = log
        self._is_local = is_local
        self._clock = clock

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- the old appliance ---------------------------------------------------------------------------

    def check_move(
        self, user: User, addresses: Sequence[str], to: object, grace_days: object, record: object
    ) -> MovedRecord:
        """The verified moved record of a move request, if it is this account's to make (MovingError if not)."""
        try:
            target = plain_address(to)
        except RecordError:
            raise MovingError("invalid_request", "to must be a plain lower-case address (local@domain.tld)") from None
        if self._is_local(target):
            raise MovingError("invalid_request", "to is an address of this appliance: a move goes to another one")
        if isinstance(grace_days, bool) or not isinstance(grace_days, int) or not 0 <= grace_days <= MAX_GRACE_DAYS:
            raise MovingError("invalid_request", f"grace_days must be an integer from 0 to {MAX_GRACE_DAYS}")
        try:
            moved = verify_moved_record(record, user.public_key)
        except RecordError as error:
            raise MovingError("invalid_record", f"the moved record is refused: {error}") from None
        if list(moved.addresses) != sorted({address_hash(a) for a in addresses}):
            raise MovingError("invalid_record", "the moved record must name exactly the account's addresses")
        if moved.to != target:
            raise MovingError("invalid_record", "the moved record names another address than to")
        if moved.forward_until_ms - moved.created_ms != grace_days * DAY_MS:
            raise MovingError("invalid_record", "the moved record's forward_until_ms is not created_ms + grace_days")
        if abs(moved.created_ms - self._now_ms()) > CLOCK_SLACK_MS:
            raise MovingError("invalid_record", "the moved record's created_ms is more than a day from now")
        return moved

    async def move(
        self, user: User, addresses: Sequence[str], to: object, grace_days: object, record: object
    ) -> tuple[MoveState, SignedHead]:
        """Switch the account to moved: its record into the log, its state changed, in one transaction."""
        moved = self.check_move(user, addresses, to, grace_days, record)
        return await self.database.transact(self._move_txn, user.id, moved, user.public_key)

    def _move_txn(
        self, conn: Connection, user_id: int, moved: MovedRecord, signer: bytes
    ) -> tuple[MoveState, SignedHead]:
        user = get_user_by_id_txn(conn, user_id)
        if user is None or user.disabled:
            raise MovingError("not_found", "the account is gone", 404)
        if user.moved_to is not None:
            raise MovingError("already_moved", f"the account moved to {user.moved_to} already", 409)
        current = current_key_of_user_txn(conn, user_id)
        if current is None or current.key_id != moved.key_id:
            raise MovingError("key_mismatch", "the moved record must be signed by the account's current key", 409)
        if not hmac.compare_digest(user.public_key, signer):
            raise MovingError("key_mismatch", "the account's key changed while it moved: sign the record again", 409)
        now_ms = self._now_ms()
        leaf_index, head = self.log.append_txn(conn, [moved.leaf], now_ms)
        state = MoveState(moved.to, now_ms, moved.forward_until_ms, leaf_index)
        if not switch_to_moved_txn(
            conn,
            user_id,
            to=state.moved_to,
            moved_ms=now_ms,
            forward_until_ms=state.forward_until_ms,
            leaf_index=leaf_index,
        ):
            raise MovingError("already_moved", "the account moved already", 409)
        return state, head

    async def status(self, user: User) -> MoveStatus:
        state = await self.database.run(move_state_txn, user.id)
        pending = await self.homes.run_for(user.id, pending_forward_count_txn, user.id) if state is not None else 0
        return MoveStatus(state, await self.homes.run_for(user.id, mail_states_txn, user.id), pending)

    async def mark_copied(self, user: User, key_bases: object) -> int:
        """Mark received mail the client copied (and verified) at the new appliance: it is never forwarded."""
        if not isinstance(key_bases, list) or not 0 < len(key_bases) <= MAX_MARKS:
            raise MovingError("invalid_request", f"key_bases must be a list of 1 to {MAX_MARKS} key bases")
        if not all(isinstance(k, str) and _KEY_BASE.fullmatch(k) for k in key_bases):
            raise MovingError("invalid_request", "a key base is <digits>_<digits>")
        if await self.database.run(move_state_txn, user.id) is not None:
            raise MovingError("already_moved", "the account moved already: what was not copied is forwarded", 409)
        await self.homes.transact_for(user.id, mark_copied_txn, user.id, list(key_bases), self._now_ms())
        return len(set(key_bases))

    async def finish(self, user: User) -> int:
        """Delete every object of a moved account (the user asked); how many. Refused before the move and while
        received mail waits to be forwarded in the grace period."""
        state = await self.database.run(move_state_txn, user.id)
        pending = await self.homes.run_for(user.id, pending_forward_count_txn, user.id) if state is not None else 0
        if state is None:
            raise MovingError("not_moved", "the account has not moved: nothing is deleted", 409)
        if pending and state.forward_until_ms > self._now_ms():
            raise MovingError(
                "forwarding_pending", f"{pending} message(s) wait to be forwarded; try again in a minute", 409
            )
        deleted = 0
        while True:
            gone = await self.homes.transact_for(user.id, delete_objects_txn, user.id)
            deleted += gone
            if gone == 0:
                break
        await self.homes.transact_for(user.id, forget_moved_mail_txn, user.id)
        return deleted

    # -- both ends -----------------------------------------------------------------------------------

    async def digests(self, user: User, prefix: str, after: str | None, limit: int) -> list[Digest]:
        """A page of the account's objects with their SHA-256 (the client compares both ends without downloading)."""
        return await self.homes.run_for(
            user.id, digests_txn, user.id, prefix=prefix, after=after, limit=min(limit, MAX_DIGESTS)
        )

    # -- the new appliance ---------------------------------------------------------------------------

    def check_brought(
        self,
        user: User,
        addresses: Sequence[str],
        address: object,
        keys: object,
        key_block: bytes | None,
        signature: bytes,
    ) -> list[BroughtKey]:
        """The brought keys of a request, each proven by its own signature over ``address`` (one of the account's)
        and the request signed by the account's current key over the key ids and the new key block."""
        if not isinstance(address, str) or address.lower() not in {a.lower() for a in addresses}:
            raise MovingError("invalid_request", "address must be one of the account's addresses")
        if not isinstance(keys, list) or not 0 < len(keys) <= MAX_BROUGHT_KEYS:
            raise MovingError("invalid_request", f"keys must be a list of 1 to {MAX_BROUGHT_KEYS} keys")
        brought: list[BroughtKey] = []
        for item in keys:
            if not isinstance(item, dict) or set(item) != {"key_id", "public_key", "signature"}:
                raise MovingError("invalid_request", "each key is {key_id, public_key, signature}")
            try:
                der = unb64(item["public_key"], "public_key", limit=1024)
                proof = unb64(item["signature"], "signature", limit=1024)
                verify_brought_key(der, address, item["key_id"], proof)
            except RecordError as error:
                raise MovingError("invalid_key", f"a brought key is refused: {error}") from None
            if hmac.compare_digest(der, user.public_key):
                raise MovingError("invalid_key", "the account's own current key is not brought along")
            brought.append(BroughtKey(item["key_id"], der, address.lower(), proof))
        if len({key.key_id for key in brought}) != len(brought):
            raise MovingError("invalid_request", "a key id is given twice")
        statement = key_block_change_statement(address, [key.key_id for key in brought], key_block or b"")
        try:
            verify_rsa_signature(user.public_key, signature, statement, "request")
        except RecordError:
            raise MovingError(
                "invalid_signature", "the request is not signed by the account's current key", 403
            ) from None
        return brought

    async def bring_keys(
        self,
        user: User,
        addresses: Sequence[str],
        address: object,
        keys: object,
        key_block: bytes | None,
        key_block_version: int | None,
        signature: bytes,
    ) -> tuple[list[str], User]:
        """Register the brought keys, and with ``key_block`` replace the key block (conditional on its version)."""
        brought = self.check_brought(user, addresses, address, keys, key_block, signature)
        return await self.database.transact(self._bring_txn, user.id, brought, key_block, key_block_version)

    def _bring_txn(
        self,
        conn: Connection,
        user_id: int,
        brought: list[BroughtKey],
        key_block: bytes | None,
        key_block_version: int | None,
    ) -> tuple[list[str], User]:
        try:
            added = add_brought_keys_txn(conn, user_id, brought, self._now_ms())
        except KeyIdTaken as error:
            raise MovingError("key_id_taken", str(error), 409) from None
        user = get_user_by_id_txn(conn, user_id)
        if user is None:
            raise MovingError("not_found", "the account is gone", 404)
        if key_block is not None:
            user = set_key_block_txn(conn, user_id, key_block, if_version=key_block_version)
        return added, user


__all__ = ["MAX_BROUGHT_KEYS", "MoveStatus", "MovingError", "MovingService"]
