"""Login sessions: random bearer tokens stored only as hashes, idle and absolute expiry, CSRF tokens, cookies.

The client holds the token (in an ``HttpOnly`` cookie); the store holds ``SHA-256(token)``,
so a copy of the database gives no live session. Lookups go by that hash: the timing of an
index or dict lookup depends on a digest the caller cannot steer, not on the secret.
Each session also has a public ``session_id`` (for listing and logs), and a CSRF token
``HMAC(server secret, session_id)`` that the web layer asks for on every state-changing request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Awaitable
from dataclasses import dataclass, replace

from zope.interface import Interface, implementer

from mailiverse.auth.clock import TimeSource, as_clock
from mailiverse.auth.keys import subkey

#: Bytes of randomness in a session token.
TOKEN_BYTES = 32
#: Name of the session cookie. The ``__Host-`` prefix makes browsers insist on Secure,
#: Path=/ and no Domain attribute, so a sibling host cannot plant or read it.
SESSION_COOKIE = "__Host-mv-session"
_COOKIE_ATTRIBUTES = "HttpOnly; Secure; SameSite=Strict; Path=/"
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}", re.ASCII)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_token() -> str:
    """Return a fresh session token: 32 random bytes, URL-safe base64 without padding (43 characters)."""
    return _b64(secrets.token_bytes(TOKEN_BYTES))


def token_hash(token: str) -> bytes:
    """Return the stored form of a token: SHA-256 of its ASCII text."""
    return hashlib.sha256(token.encode("ascii")).digest()


def is_well_formed_token(token: object) -> bool:
    """Tell whether ``token`` has the shape of a session token (checked before any lookup)."""
    return isinstance(token, str) and _TOKEN_SHAPE.fullmatch(token) is not None


@dataclass(frozen=True)
class SessionRecord:
    """What the server stores about one session. Never contains the token itself."""

    session_id: str
    token_hash: bytes
    username: str
    created_at: float
    last_seen: float


@dataclass(frozen=True)
class NewSession:
    """A session just created: the token goes to the client once and is then forgotten."""

    token: str
    record: SessionRecord
    csrf_token: str


class ISessionStore(Interface):
    """Where session records live. Every method returns an awaitable (``async def`` in implementations)."""

    def add(record: SessionRecord) -> Awaitable[None]:
        """Store a new record."""

    def get(token_hash: bytes) -> Awaitable[SessionRecord | None]:
        """Return the record with this token hash, or ``None``."""

    def touch(token_hash: bytes, last_seen: float) -> Awaitable[None]:
        """Update the record's ``last_seen``; no effect if it is gone."""

    def remove(token_hash: bytes) -> Awaitable[bool]:
        """Delete the record; return ``True`` if there was one."""

    def remove_user(username: str) -> Awaitable[int]:
        """Delete every record of ``username``; return how many."""

    def remove_expired(idle_before: float, created_before: float) -> Awaitable[int]:
        """Delete records last seen before ``idle_before`` or created before ``created_before``; return how many."""


@implementer(ISessionStore)
class MemorySessionStore:
    """``ISessionStore`` in a dict, for tests and single-process set-ups without a database."""

    def __init__(self) -> None:
        self._records: dict[bytes, SessionRecord] = {}

    def __len__(self) -> int:
        return len(self._records)

    async def add(self, record: SessionRecord) -> None:
        self._records[record.token_hash] = record

    async def get(self, token_hash: bytes) -> SessionRecord | None:
        return self._records.get(token_hash)

    async def touch(self, token_hash: bytes, last_seen: float) -> None:
        record = self._records.get(token_hash)
        if record is not None:
            self._records[token_hash] = replace(record, last_seen=last_seen)

    async def remove(self, token_hash: bytes) -> bool:
        return self._records.pop(token_hash, None) is not None

    async def remove_user(self, username: str) -> int:
        doomed = [key for key, record in self._records.items() if record.username == username]
        for key in doomed:
            del self._records[key]
        return len(doomed)

    async def remove_expired(self, idle_before: float, created_before: float) -> int:
        doomed = [
            key
            for key, record in self._records.items()
            if record.last_seen < idle_before or record.created_at < created_before
        ]
        for key in doomed:
            del self._records[key]
        return len(doomed)


class SessionManager:
    """Creates, looks up and revokes sessions over an ``ISessionStore``, applying the expiry policy.

    A session ends ``idle_timeout`` seconds after it was last used, and ``absolute_timeout``
    seconds after login whatever happens. ``last_seen`` is written at most once per
    ``touch_interval`` seconds so reads do not each cost a database write.
    """

    def __init__(
        self,
        store: ISessionStore,
        server_secret: bytes,
        clock: TimeSource = None,
        idle_timeout: float = 3600.0,
        absolute_timeout: float = 12 * 3600.0,
        touch_interval: float = 60.0,
    ) -> None:
        if not 0 < idle_timeout <= absolute_timeout:
            raise ValueError("session timeouts need 0 < idle_timeout <= absolute_timeout")
        self._store = store
        self._csrf_key = subkey(server_secret, "csrf")
        self._now = as_clock(clock)
        self.idle_timeout = idle_timeout
        self.absolute_timeout = absolute_timeout
        self._touch_interval = touch_interval

    async def create(self, username: str) -> NewSession:
        """Start a session for ``username`` (after a successful login) and return its token once."""
        now = self._now()
        token = new_token()
        record = SessionRecord(
            session_id=secrets.token_hex(16),
            token_hash=token_hash(token),
            username=username,
            created_at=now,
            last_seen=now,
        )
        await self._store.add(record)
        return NewSession(token=token, record=record, csrf_token=self.csrf_token(record))

    def _expired(self, record: SessionRecord, now: float) -> bool:
        return now - record.last_seen >= self.idle_timeout or now - record.created_at >= self.absolute_timeout

    async def lookup(self, token: str | None) -> SessionRecord | None:
        """Return the live session for ``token``, or ``None`` (malformed, unknown, revoked or expired)."""
        if not is_well_formed_token(token):
            return None
        assert token is not None
        digest = token_hash(token)
        record = await self._store.get(digest)
        if record is None:
            return None
        now = self._now()
        if self._expired(record, now):
            await self._store.remove(digest)
            return None
        if now - record.last_seen >= self._touch_interval:
            await self._store.touch(digest, now)
            record = replace(record, last_seen=now)
        return record

    async def revoke(self, token: str | None) -> bool:
        """Log out: delete the session of ``token``; return whether one existed."""
        if not is_well_formed_token(token):
            return False
        assert token is not None
        return await self._store.remove(token_hash(token))

    async def revoke_user(self, username: str) -> int:
        """Delete every session of ``username`` (password change, account deletion)."""
        return await self._store.remove_user(username)

    async def purge_expired(self) -> int:
        """Delete expired sessions from the store; run it now and then (e.g. a ``LoopingCall``)."""
        now = self._now()
        return await self._store.remove_expired(now - self.idle_timeout, now - self.absolute_timeout)

    def csrf_token(self, record: SessionRecord) -> str:
        """Return the session's CSRF token: URL-safe base64 of HMAC(server secret, session_id)."""
        return _b64(hmac.new(self._csrf_key, record.session_id.encode("ascii"), hashlib.sha256).digest())

    def check_csrf(self, record: SessionRecord, supplied: str | None) -> bool:
        """Tell, in constant time, whether ``supplied`` is this session's CSRF token."""
        if not isinstance(supplied, str) or len(supplied) > 128 or not supplied.isascii():
            return False
        return hmac.compare_digest(self.csrf_token(record).encode("ascii"), supplied.encode("ascii"))

    def cookie(self, token: str) -> str:
        """Return the ``Set-Cookie`` value that hands ``token`` to the browser."""
        return session_cookie(token, int(self.absolute_timeout))


def host_cookie(name: str, value: str, max_age: int | None = None) -> str:
    """A ``Set-Cookie`` value with ``HttpOnly; Secure; SameSite=Strict; Path=/`` and no Domain.

    Those are the attributes a ``__Host-`` cookie needs; an update or a clearing (``Max-Age=0``)
    without them would be ignored by the browser. ``value`` must already be cookie-safe.
    """
    age = "" if max_age is None else f"; Max-Age={int(max_age)}"
    return f"{name}={value}{age}; {_COOKIE_ATTRIBUTES}"


def session_cookie(token: str, max_age: int | None = None) -> str:
    """Return a ``Set-Cookie`` value carrying ``token`` with ``HttpOnly; Secure; SameSite=Strict; Path=/``."""
    if not is_well_formed_token(token):
        raise ValueError("not a session token")
    return host_cookie(SESSION_COOKIE, token, max_age)


def clear_session_cookie() -> str:
    """Return the ``Set-Cookie`` value that makes the browser drop the session cookie (logout)."""
    return host_cookie(SESSION_COOKIE, "", 0)
