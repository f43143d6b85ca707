"""The store tests' shorthand: each repository function called through the one door, with the test's clock.

Production code calls ``database.run(fn, ...)`` / ``database.transact(fn, ...)`` directly; the store
tests use this to give every write a timestamp from their ticking clock.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable

from mailiverse.store import objects as _objects
from mailiverse.store import users as _users
from mailiverse.store.db import Database
from mailiverse.store.objects import NewestCursor, ObjectInfo
from mailiverse.store.reading import open_object
from mailiverse.store.users import User


def wall_clock_ms() -> int:
    """Milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


class StoreCalls:
    """Users and objects through ``Database.run``/``transact``; timestamps come from ``clock`` (milliseconds)."""

    def __init__(self, database: Database, *, clock: Callable[[], int] = wall_clock_ms) -> None:
        self.database = database
        self._clock = clock

    # -- users -------------------------------------------------------------------------------

    async def add_user(
        self,
        name: str,
        public_key_der: bytes,
        envelope_format: str,
        *,
        legacy: bool = False,
    ) -> User:
        """Create a user (UserExists if the name is taken)."""
        return await self.database.transact(
            _users.add_user_txn,
            name,
            public_key_der,
            envelope_format,
            legacy=legacy,
            now_ms=self._clock(),
        )

    async def get_user(self, name: str) -> User | None:
        """The user named ``name`` (case-insensitive), or None."""
        return await self.database.run(_users.get_user_txn, name)

    async def get_user_by_id(self, user_id: int) -> User | None:
        """The user with id ``user_id``, or None."""
        return await self.database.run(_users.get_user_by_id_txn, user_id)

    async def list_users(self) -> list[User]:
        """Every user, by name."""
        return await self.database.run(_users.list_users_txn)

    async def delete_user(self, user_id: int) -> bool:
        """Delete a user and all their objects."""
        return await self.database.transact(_users.delete_user_txn, user_id)

    async def update_user_auth(
        self,
        user_id: int,
        *,
        srp_salt: bytes,
        srp_verifier: bytes,
        srp_group: str,
        key_block: bytes | None = None,
        if_key_block_version: int | None = None,
    ) -> User:
        """Replace SRP data (and optionally the key block); see users.update_user_auth."""
        return await self.database.transact(
            _users.update_user_auth_txn,
            user_id,
            srp_salt=srp_salt,
            srp_verifier=srp_verifier,
            srp_group=srp_group,
            key_block=key_block,
            if_key_block_version=if_key_block_version,
        )

    async def set_key_block(self, user_id: int, key_block: bytes, *, if_version: int | None = None) -> User:
        """Store a new encrypted key block (VersionConflict if ``if_version`` is stale)."""
        return await self.database.transact(_users.set_key_block_txn, user_id, key_block, if_version=if_version)

    async def set_disabled(self, user_id: int, disabled: bool) -> User:
        """Disable or re-enable an account."""
        return await self.database.transact(_users.set_disabled_txn, user_id, disabled)

    # -- objects -----------------------------------------------------------------------------

    async def put_object(
        self,
        user_id: int,
        path: str,
        data: bytes | Iterable[bytes],
        *,
        if_version: int | None = None,
        if_absent: bool = False,
        max_size: int = _objects.MAX_OBJECT_BYTES,
    ) -> ObjectInfo:
        """Create or replace an object; ``data`` may be bytes or an iterable of pieces (read on the writer thread)."""
        return await self.database.transact(
            _objects.put_object_txn,
            user_id,
            path,
            data,
            if_version=if_version,
            if_absent=if_absent,
            now_ms=self._clock(),
            max_size=max_size,
        )

    async def get_object_info(self, user_id: int, path: str) -> ObjectInfo | None:
        """The object's metadata, or None."""
        return await self.database.run(_objects.get_object_info_txn, user_id, path)

    async def read_object(self, user_id: int, path: str) -> bytes:
        """The whole body (ObjectNotFound if absent); for large objects prefer ``iter_object``."""
        return await self.database.run(_objects.read_object_txn, user_id, path)

    async def iter_object(self, user_id: int, path: str) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
        """The object's metadata and its body as chunks, each fetched in its own short read.

        Raises ObjectNotFound at once; the iterator raises VersionConflict if the object is
        replaced part-way, so a reader never mixes two versions.
        """
        return await open_object(self.database, user_id, path)

    async def list_objects(
        self,
        user_id: int,
        prefix: str = "",
        *,
        after: str | NewestCursor | None = None,
        limit: int = 1000,
        newest_first: bool = False,
    ) -> list[ObjectInfo]:
        """A page of objects under ``prefix``; see objects.list_objects."""
        return await self.database.run(
            _objects.list_objects_txn,
            user_id,
            prefix,
            after=after,
            limit=limit,
            newest_first=newest_first,
        )

    async def count_objects(self, user_id: int, prefix: str = "") -> int:
        """How many objects are under ``prefix``."""
        return await self.database.run(_objects.count_objects_txn, user_id, prefix)

    async def delete_object(self, user_id: int, path: str, *, if_version: int | None = None) -> bool:
        """Delete an object; False if absent (VersionConflict if ``if_version`` is stale)."""
        return await self.database.transact(_objects.delete_object_txn, user_id, path, if_version=if_version)
