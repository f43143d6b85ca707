"""Group keys (docs/keys.md, "Groups"): a group address with a key pair of its own whose private half the
server only ever holds wrapped to each member's public key.

A member's client makes the group key, signs its record (published in the transparency log like any key) and
wraps the private key to itself; members add others by wrapping the key to the new member's verified key;
removing a member means a new group key, wrapped to the members who remain, whose record supersedes the old
one (signed by the old key). Mail to the group is sealed to its current key and filed in the group's own
store, which its active members read.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from mailiverse.accounts.directory import (
    DirectoryError,
    check_binding,
    check_supersession,
    same_but_status,
    stored_record_txn,
)
from mailiverse.auth.usernames import InvalidUsername, canonical_username
from mailiverse.keylog.records import KeyRecord
from mailiverse.logs import Logger
from mailiverse.store.db import Database
from mailiverse.store.errors import HomeUnavailable, InvalidInput, UserExists
from mailiverse.store.groups import (
    Group,
    active_members_txn,
    add_member_txn,
    create_group_txn,
    group_by_name_txn,
    groups_of_member_txn,
    is_active_member_txn,
    rekey_group_txn,
    users_by_name_txn,
    wrapped_keys_txn,
)
from mailiverse.store.homes import Homes
from mailiverse.store.keylog import Holder, KeyLog, current_key_of_user_txn, key_of_txn, record_keys_txn
from mailiverse.store.users import User

log = Logger()


@dataclass(frozen=True)
class GroupView:
    """What a member sees of a group: its key, its members, and the group keys wrapped to them."""

    group: Group
    members: list[str]
    wrapped: list[tuple[str, bytes]]


class GroupService:
    """Creates groups and changes their membership; every key change goes through the log."""

    def __init__(
        self,
        database: Database,
        log: KeyLog,
        addresses_of: Callable[[str], Sequence[str]],
        clock: Callable[[], float] = time.time,
        homes: Homes | None = None,
    ) -> None:
        self.database = database
        #: A group's account gets a home like any account (store/homes.py).
        self.homes = homes or Homes.single(database)
        self.log = log
        self._addresses_of = addresses_of
        self._clock = clock

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def create(self, owner: User, name: str, record: KeyRecord, wrapped: bytes) -> GroupView:
        try:
            name = canonical_username(name)
        except InvalidUsername as error:
            raise DirectoryError("invalid_group", f"bad group name: {error.message}") from None
        check_binding(record, self._addresses_of(name))
        if record.kind != "group" or record.status != "current" or record.supersedes is not None:
            raise DirectoryError("invalid_record", "a new group's record is a current group key superseding none")
        view: GroupView = await self.database.transact(self._create_txn, owner, name, record, wrapped)
        try:
            await self.homes.place(view.group.account.id)
        except HomeUnavailable:
            # The group exists (its key is in the log): its mail lives in the metabase until it is moved to a home.
            log.warn("the home chosen for a new group did not answer; the group's mail stays in the metabase")
        return view

    def _create_txn(self, conn: Connection, owner: User, name: str, record: KeyRecord, wrapped: bytes) -> GroupView:
        if key_of_txn(conn, record.key_id) is not None:
            raise DirectoryError("key_id_taken", "that key id is already in the directory", 409)
        try:
            group = create_group_txn(
                conn,
                name,
                kind="group",
                key_id=record.key_id,
                public_key=record.public_key,
                envelope_format=record.envelope_format,
                owner_id=owner.id,
                wrapped={owner.id: wrapped},
                now_ms=self._now_ms(),
            )
        except UserExists:
            raise DirectoryError("name_taken", "that name is taken", 409) from None
        except InvalidInput as error:
            raise DirectoryError("invalid_group", str(error)) from None
        record_keys_txn(conn, self.log, [record], Holder(user_id=group.account.id, group_id=group.id), self._now_ms())
        return self._view_txn(conn, group, owner.id)

    def _view_txn(self, conn: Connection, group: Group, user_id: int) -> GroupView:
        members = [user.name for user in active_members_txn(conn, group)]
        return GroupView(group, members, wrapped_keys_txn(conn, group, user_id))

    def _member_group_txn(self, conn: Connection, name: str, user: User) -> Group:
        """The group, if ``user`` is one of its active members (one answer for unknown and not yours)."""
        group = group_by_name_txn(conn, name)
        if group is None or not is_active_member_txn(conn, group, user.id):
            raise DirectoryError("not_found", "no group of yours has that name", 404)
        return group

    async def view(self, user: User, name: str) -> GroupView:
        return await self.database.run(self._view_of_txn, user, name)

    def _view_of_txn(self, conn: Connection, user: User, name: str) -> GroupView:
        return self._view_txn(conn, self._member_group_txn(conn, name, user), user.id)

    async def of_member(self, user: User) -> list[GroupView]:
        """The groups ``user`` is an active member of."""
        return await self.database.run(self._of_member_txn, user)

    def _of_member_txn(self, conn: Connection, user: User) -> list[GroupView]:
        return [self._view_txn(conn, group, user.id) for group in groups_of_member_txn(conn, user.id)]

    async def store_account(self, user: User, name: str) -> User:
        """The group's account (whose store holds its mail), for one of its active members."""
        group: Group = await self.database.run(self._member_group_txn, name, user)
        return group.account

    async def add(self, user: User, name: str, member: str, key_id: str, wrapped: bytes) -> GroupView:
        return await self.database.transact(self._add_txn, user, name, member, key_id, wrapped)

    def _add_txn(self, conn: Connection, user: User, name: str, member: str, key_id: str, wrapped: bytes) -> GroupView:
        group = self._member_group_txn(conn, name, user)
        if key_id != group.key_id:
            raise DirectoryError("stale_key", "the group has a newer key: wrap that one", 409)
        target = users_by_name_txn(conn, [member]).get(member.lower())
        if target is None or target.disabled or group_by_name_txn(conn, target.name) is not None:
            raise DirectoryError("not_found", "no account has that name", 404)
        try:
            add_member_txn(conn, group, target.id, wrapped)
        except InvalidInput as error:
            raise DirectoryError("invalid_member", str(error), 409) from None
        return self._view_txn(conn, group, user.id)

    async def rekey(
        self, user: User, name: str, records: list[KeyRecord], wrapped: Mapping[str, bytes], removed: Sequence[str]
    ) -> GroupView:
        """A new group key for the members in ``wrapped``: exactly the active members but ``removed``."""
        kind = records[0].kind if records and records[0].kind in ("group", "organisation") else "group"
        new, old = check_supersession(records, kind=kind)
        check_binding(new, self._addresses_of(name))
        return await self.database.transact(self._rekey_txn, user, name, new, old, dict(wrapped), list(removed))

    def _rekey_txn(
        self,
        conn: Connection,
        user: User,
        name: str,
        new: KeyRecord,
        old: KeyRecord,
        wrapped: dict[str, bytes],
        removed: list[str],
    ) -> GroupView:
        group = self._member_group_txn(conn, name, user)
        if new.kind != group.kind:
            raise DirectoryError("invalid_record", f"the new key must be a {group.kind} key")
        current = current_key_of_user_txn(conn, group.account.id)
        if current is None or current.key_id != old.key_id or not hmac.compare_digest(group.public_key, old.public_key):
            raise DirectoryError("stale_key", "the superseded record is not the group's current key", 409)
        if key_of_txn(conn, new.key_id) is not None:
            raise DirectoryError("key_id_taken", "that key id is already in the directory", 409)
        stored = stored_record_txn(conn, current.leaf_index)
        if stored is None or not same_but_status(stored, old):
            raise DirectoryError("key_mismatch", "the superseded record changes more than its status", 409)
        members = {member.name: member for member in active_members_txn(conn, group)}
        remaining = set(members) - {name.lower() for name in removed}
        if set(wrapped) != remaining or not remaining:
            raise DirectoryError(
                "invalid_member", "wrap the new key to exactly the members who remain (at least one)", 409
            )
        rekey_group_txn(
            conn,
            group,
            new.key_id,
            new.public_key,
            {members[member_name].id: blob for member_name, blob in wrapped.items()},
        )
        record_keys_txn(conn, self.log, [old, new], Holder(user_id=group.account.id, group_id=group.id), self._now_ms())
        refreshed = group_by_name_txn(conn, group.name)
        assert refreshed is not None
        return self._view_txn(conn, refreshed, user.id)


__all__ = ["GroupService", "GroupView"]
