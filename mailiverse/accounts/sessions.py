"""``ISessionStore`` in the database, so several front ends sharing PostgreSQL see the same sessions."""

from __future__ import annotations

from zope.interface import implementer

from mailiverse.auth.sessions import ISessionStore, SessionRecord
from mailiverse.store import accounts as repo
from mailiverse.store.db import Database


def _row(record: SessionRecord) -> repo.SessionRow:
    return repo.SessionRow(
        token_hash=record.token_hash,
        session_id=record.session_id,
        username=record.username,
        created_at=record.created_at,
        last_seen=record.last_seen,
    )


def _record(row: repo.SessionRow) -> SessionRecord:
    return SessionRecord(
        session_id=row.session_id,
        token_hash=row.token_hash,
        username=row.username,
        created_at=row.created_at,
        last_seen=row.last_seen,
    )


@implementer(ISessionStore)
class DatabaseSessionStore:
    """Session records in the ``sessions`` table (keyed by the token's SHA-256)."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def add(self, record: SessionRecord) -> None:
        await self._db.transact(repo.add_session_txn, _row(record))

    async def get(self, token_hash: bytes) -> SessionRecord | None:
        row = await self._db.run(repo.get_session_txn, token_hash)
        return None if row is None else _record(row)

    async def touch(self, token_hash: bytes, last_seen: float) -> None:
        await self._db.transact(repo.touch_session_txn, token_hash, last_seen)

    async def remove(self, token_hash: bytes) -> bool:
        return await self._db.transact(repo.remove_session_txn, token_hash)

    async def remove_user(self, username: str) -> int:
        return await self._db.transact(repo.remove_user_sessions_txn, username)

    async def remove_expired(self, idle_before: float, created_before: float) -> int:
        return await self._db.transact(repo.remove_expired_sessions_txn, idle_before, created_before)
