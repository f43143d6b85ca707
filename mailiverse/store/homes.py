"""Homes: which database each account's mail lives in, and the one router every per-account query goes through.

CryptoMail's MetaBase (docs/homes.md): with ``--metabase URL --home NAME=URL``, the metabase holds the accounts,
the map of each account to its home (``user_homes``), the key log and whatever front ends share; each home (a
PostgreSQL database) holds its accounts' objects, chunks, usage and screened senders. A home's ``users`` row is the
account's *copy* there: its id and name, its usage and quota, ``home_state``, and no key (the directory has it).

Without ``--metabase`` there is one database, which is both the metabase and the only home (``Homes.single``): the
same code runs, with no map to read. Accounts of a database that became a metabase keep living in it (the home
``metabase``) until ``mailiverse-admin user move-home`` moves them.

Writes to a home check, in their transaction, that the home's copy of the account is ``active`` (``leaving`` while
``user move-home`` flips it, ``arriving`` while it is being copied to): a write routed by a stale map entry fails
with HomeMoving instead of landing where nobody reads, and the router looks the home up again once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from mailiverse.store.db import Database
from mailiverse.store.errors import HomeMoving, HomeUnavailable, UserNotFound
from mailiverse.store.quota import Usage, get_usage_txn, set_quota_txn
from mailiverse.store.schema import user_homes, users

T = TypeVar("T")
P = ParamSpec("P")

ACTIVE, ARRIVING, LEAVING = "active", "arriving", "leaving"
MOVING = "moving"
#: The home of accounts without a map row: the metabase itself (the only home without --metabase).
METABASE_HOME = "metabase"
#: How long a front end trusts its copy of an account's map entry; ``user move-home`` waits longer than this
#: after the flip before it deletes the old copy, so no read routed by an old entry finds it gone.
MAP_TTL_S = 2.0
#: After a home failed to answer, how long its accounts are answered "unavailable" without asking it again.
DOWN_FOR_S = 2.0
_CACHE_LIMIT = 100_000
_UNREACHABLE = (OperationalError, InterfaceError, PoolTimeout)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Homes:
    """The metabase and the homes, by name; which home an account lives in; per-account reads and writes there."""

    def __init__(
        self,
        meta: Database,
        homes: Mapping[str, Database] | None = None,
        weights: Mapping[str, int] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.meta = meta
        self._homes: dict[str, Database] = {METABASE_HOME: meta, **(homes or {})}
        self._weights = {name: (weights or {}).get(name, 1) for name in (homes or {})}
        self._clock = clock
        self._map: dict[int, tuple[float, str]] = {}
        self._down_until: dict[str, float] = {}

    @classmethod
    def single(cls, database: Database) -> Homes:
        """One database for everything (``--db``): every account's home is that database."""
        return cls(database)

    @property
    def multi(self) -> bool:
        """Whether accounts live in homes of their own (``--metabase``)."""
        return bool(self._weights)

    @property
    def names(self) -> list[str]:
        """The configured homes, then ``metabase`` (the home of accounts not yet moved out of it)."""
        return [*self._weights, METABASE_HOME]

    def weight(self, name: str) -> int:
        return self._weights.get(name, 0)

    def database(self, name: str) -> Database:
        try:
            return self._homes[name]
        except KeyError:
            raise LookupError(f"no home is called {name!r}; the homes are {', '.join(self.names)}") from None

    def close(self) -> None:
        """Close the homes' databases (not the metabase, which its opener closes)."""
        for name, database in self._homes.items():
            if name != METABASE_HOME:
                database.close()

    # -- the map -----------------------------------------------------------------------------

    async def home_of(self, user_id: int) -> str:
        """The name of the home ``user_id`` lives in (cached for MAP_TTL_S)."""
        if not self.multi:
            return METABASE_HOME
        now = self._clock()
        cached = self._map.get(user_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        name = await self.meta.run(home_of_txn, user_id)
        if len(self._map) >= _CACHE_LIMIT:
            self._map.clear()
        self._map[user_id] = (now + MAP_TTL_S, name)
        return name

    def forget(self, user_id: int) -> None:
        """Drop the cached map entry of ``user_id`` (its home answered that the account is not active there)."""
        self._map.pop(user_id, None)

    async def of(self, user_id: int) -> Database:
        """The database ``user_id`` lives in; HomeUnavailable while that home is known to be down."""
        name = await self.home_of(user_id)
        self._check_up(name)
        return self._homes[name]

    def _check_up(self, name: str) -> None:
        until = self._down_until.get(name)
        if until is not None:
            if until > self._clock():
                raise HomeUnavailable(f"home {name} is unavailable")
            del self._down_until[name]

    def _failed(self, name: str) -> None:
        self._down_until[name] = self._clock() + DOWN_FOR_S

    async def _call(self, user_id: int, call: Callable[[Database], Any]) -> Any:
        """``call(database)`` in ``user_id``'s home; once more after a HomeMoving (the map may have changed)."""
        for attempt in (1, 2):
            name = await self.home_of(user_id)
            self._check_up(name)
            try:
                return await self.write_in(name, call)
            except HomeMoving:
                self.forget(user_id)
                if attempt == 2 or await self.home_of(user_id) == name:
                    raise
        raise AssertionError("unreachable")

    async def run_for(
        self, user_id: int, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``Database.run`` in ``user_id``'s home."""
        result: T = await self._call(user_id, lambda database: database.run(fn, *args, **kwargs))
        return result

    def reader(self, user_id: int) -> HomeReader:
        """``run`` in ``user_id``'s home, for code written against a database's ``run`` (store/reading.py)."""
        return HomeReader(self, user_id)

    async def transact_for(
        self, user_id: int, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``Database.transact`` in ``user_id``'s home, refused (HomeMoving) unless the account is active there."""
        if not self.multi:
            return await self.meta.transact(fn, *args, **kwargs)

        def guarded(conn: Connection) -> T:
            require_active_txn(conn, user_id)
            return fn(conn, *args, **kwargs)

        result: T = await self._call(user_id, lambda database: database.transact(guarded))
        return result

    async def grouped_for(self, user_ids: list[int]) -> dict[str, list[int]]:
        """``user_ids`` by the name of their home, each home checked to be up (HomeUnavailable otherwise)."""
        by_home: dict[str, list[int]] = {}
        for user_id in user_ids:
            name = await self.home_of(user_id)
            self._check_up(name)
            by_home.setdefault(name, []).append(user_id)
        return by_home

    async def write_in(self, name: str, call: Callable[[Database], Any]) -> Any:
        """``call(database)`` in the home ``name``; HomeUnavailable (the home marked down) if it does not answer."""
        try:
            return await call(self._homes[name])
        except _UNREACHABLE:
            if not self.multi:
                raise
            self._failed(name)
            raise HomeUnavailable(f"home {name} is unavailable") from None

    # -- accounts arriving and leaving -------------------------------------------------------

    async def place(self, user_id: int) -> str:
        """Give the new account ``user_id`` (its metabase row written) a home: the one with the fewest accounts
        for its weight. Its copy there is written first, then its map entry; HomeUnavailable if the home is down."""
        if not self.multi:
            return METABASE_HOME
        counts = await self.meta.run(home_counts_txn)
        name = choose_home(self._weights, counts)
        account = await self.meta.run(account_row_txn, user_id)
        await self.write_in(name, lambda database: database.transact(add_copy_txn, account, ACTIVE))
        await self.meta.transact(set_home_txn, user_id, name, ACTIVE)
        self._map[user_id] = (self._clock() + MAP_TTL_S, name)
        return name

    async def remove(self, user_id: int) -> None:
        """Delete the home's copy of ``user_id`` and everything it holds there (before its metabase row goes)."""
        if not self.multi:
            return
        name = await self.home_of(user_id)
        if name != METABASE_HOME:
            await self.write_in(name, lambda database: database.transact(delete_copy_txn, user_id))
        self.forget(user_id)

    async def usage(self, user_id: int) -> Usage:
        """The account's stored bytes and quota, as its home counts them."""
        return await self._call(user_id, lambda database: database.run(get_usage_txn, user_id))  # type: ignore[no-any-return]

    async def set_quota(self, user_id: int, quota_bytes: int | None) -> Usage:
        """The account's own quota (None: the default), in its home (and the metabase's row, for listings)."""
        if self.multi and await self.home_of(user_id) != METABASE_HOME:
            await self.meta.transact(set_quota_txn, user_id, quota_bytes)
        return await self._call(user_id, lambda database: database.transact(set_quota_txn, user_id, quota_bytes))  # type: ignore[no-any-return]


class HomeReader:
    """``Database.run`` for one account, through the router (its home, unavailable errors translated)."""

    def __init__(self, homes: Homes, user_id: int) -> None:
        self._homes = homes
        self._user_id = user_id

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self._homes.run_for(self._user_id, fn, *args, **kwargs)


# -- the metabase's map --------------------------------------------------------------------------


def home_of_txn(conn: Connection, user_id: int) -> str:
    """The home of ``user_id``: its map row, else the metabase (accounts from before the homes)."""
    name = conn.execute(select(user_homes.c.home).where(user_homes.c.user_id == user_id)).scalar()
    return METABASE_HOME if name is None else str(name)


def home_counts_txn(conn: Connection) -> dict[str, int]:
    """How many accounts live in each home (the metabase's own: accounts without a map row)."""
    counts = {
        str(row[0]): int(row[1])
        for row in conn.execute(select(user_homes.c.home, func.count()).group_by(user_homes.c.home))
    }
    mapped = select(user_homes.c.user_id)
    counts[METABASE_HOME] = int(
        conn.execute(select(func.count()).select_from(users).where(users.c.id.not_in(mapped))).scalar() or 0
    )
    return counts


def homes_of_users_txn(conn: Connection) -> list[tuple[str, str, str]]:
    """Every account as (name, home, state), by name."""
    rows = conn.execute(
        select(users.c.name, user_homes.c.home, user_homes.c.state)
        .select_from(users.outerjoin(user_homes, user_homes.c.user_id == users.c.id))
        .order_by(users.c.name)
    )
    return [(str(name), str(home or METABASE_HOME), str(state or ACTIVE)) for name, home, state in rows]


def set_home_txn(conn: Connection, user_id: int, home: str, state: str) -> None:
    """Point the map entry of ``user_id`` at ``home`` (its copy there is written) in ``state``."""
    values = {"home": home, "state": state, "changed_ms": _now_ms()}
    if conn.execute(update(user_homes).where(user_homes.c.user_id == user_id).values(**values)).rowcount == 0:
        conn.execute(insert(user_homes).values(user_id=user_id, **values))


def set_map_state_txn(conn: Connection, user_id: int, state: str) -> None:
    conn.execute(update(user_homes).where(user_homes.c.user_id == user_id).values(state=state, changed_ms=_now_ms()))


def choose_home(weights: Mapping[str, int], counts: Mapping[str, int]) -> str:
    """The home with the fewest accounts for its weight (weight 0 takes none); ties go to the first named."""
    candidates = [
        (counts.get(name, 0) / weight, index, name)
        for index, (name, weight) in enumerate(weights.items())
        if weight > 0
    ]
    if not candidates:
        raise HomeUnavailable("no home takes new accounts (every --home-weight is 0)")
    return min(candidates)[2]


def account_row_txn(conn: Connection, user_id: int) -> dict[str, Any]:
    """The metabase's ``users`` row of ``user_id`` (what ``add_copy_txn`` copies into a home)."""
    row = conn.execute(select(users).where(users.c.id == user_id)).mappings().first()
    if row is None:
        raise UserNotFound("no such user")
    return dict(row)


# -- a home's copy of an account -----------------------------------------------------------------


def add_copy_txn(conn: Connection, account: Mapping[str, Any], state: str) -> None:
    """Write the home's copy of ``account`` (a metabase ``users`` row): id, name, quota, flags; no key, no
    verifier, no key block. A leftover copy of an account that no longer exists under this name is replaced."""
    stale = (
        conn.execute(select(users.c.id).where(users.c.name == account["name"], users.c.id != account["id"]))
        .scalars()
        .all()
    )
    for stale_id in stale:
        conn.execute(delete(users).where(users.c.id == stale_id))
    conn.execute(delete(users).where(users.c.id == account["id"]))
    conn.execute(
        insert(users).values(
            id=account["id"],
            name=account["name"],
            created_ms=account["created_ms"],
            envelope_format=account["envelope_format"],
            public_key=b"",
            legacy=account["legacy"],
            disabled=account["disabled"],
            quota_bytes=account["quota_bytes"],
            screener=account["screener"],
            home_state=state,
        )
    )


def delete_copy_txn(conn: Connection, user_id: int) -> None:
    """Delete the home's copy of ``user_id`` with its objects, chunks and screened senders (by cascade)."""
    conn.execute(delete(users).where(users.c.id == user_id))


def require_active_txn(conn: Connection, user_id: int) -> None:
    """HomeMoving unless this home's copy of ``user_id`` takes writes; holds a share lock on it (PostgreSQL) so
    ``user move-home`` marking it ``leaving`` waits for this transaction."""
    statement = select(users.c.home_state).where(users.c.id == user_id)
    if conn.dialect.name == "postgresql":
        statement = statement.with_for_update(read=True)
    state = conn.execute(statement).scalar()
    if state is None:
        raise HomeMoving("the account does not live in this home")
    if state != ACTIVE:
        raise HomeMoving("the account is moving between homes; try again in a few seconds")


def set_copy_state_txn(conn: Connection, user_id: int, state: str) -> None:
    conn.execute(update(users).where(users.c.id == user_id).values(home_state=state))


__all__ = [
    "ACTIVE",
    "ARRIVING",
    "LEAVING",
    "MAP_TTL_S",
    "METABASE_HOME",
    "Homes",
    "account_row_txn",
    "add_copy_txn",
    "choose_home",
    "delete_copy_txn",
    "home_counts_txn",
    "home_of_txn",
    "homes_of_users_txn",
    "require_active_txn",
    "set_copy_state_txn",
    "set_home_txn",
]
