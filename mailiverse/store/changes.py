"""What changed in an account's store since a change number, and many objects read at once: the two questions
of a client's sync (``GET /api/store?since=``, ``POST /api/store/batch``; docs/api.md).

A page of changes holds live objects whose number is above ``since`` and tombstones above it, merged in number
order, so a client applying a page in order, page after page, ends with the store as it was. ``since`` 0 (or a
``since`` the account has forgotten tombstones past, or one from another copy of the store) lists every live
object: the answer then says ``reset`` and the client drops what it holds that is not listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Connection

from mailiverse.store.errors import InvalidInput, UserNotFound
from mailiverse.store.objects import (
    _INFO_COLUMNS,
    ObjectInfo,
    _info,
    _prefix_conditions,
    validate_path,
    validate_prefix,
)
from mailiverse.store.schema import object_chunks, object_tombstones, objects, users

#: Most entries in one page of changes.
MAX_CHANGES_LIMIT = 5000


@dataclass(frozen=True)
class Gone:
    """A tombstone: ``path`` went away (deleted, or moved to another path) at change ``seq``."""

    path: str
    seq: int


@dataclass(frozen=True)
class ChangesPage:
    """One page of changes: ``items`` (ObjectInfo or Gone) in change order; ``seq``, the account's latest change
    number when the page was read; ``next``, the ``since`` of the following page (None: this was the last);
    ``reset``, whether this is a full listing a client must replace what it holds with."""

    items: list[ObjectInfo | Gone]
    seq: int
    next: int | None
    reset: bool


def changes_since_txn(
    conn: Connection, user_id: int, since: int, *, after: int | None = None, prefix: str = "", limit: int
) -> ChangesPage:
    """Up to ``limit`` changes under ``prefix`` of ``user_id`` after change ``since`` (module docstring).

    A round's later pages keep its ``since`` and continue ``after`` the previous page's ``next``; ``reset`` is
    judged on ``since`` alone, so every page of a full listing says so."""
    validate_prefix(prefix)
    for name, value in (("since", since), ("after", 0 if after is None else after)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidInput(f"{name} is a change number, 0 or more")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_CHANGES_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_CHANGES_LIMIT}")
    row = conn.execute(select(users.c.store_seq, users.c.tombstone_floor).where(users.c.id == user_id)).first()
    if row is None:
        raise UserNotFound("no such user")
    latest, floor = int(row[0]), int(row[1])
    # Behind the floor, the tombstones it needs are forgotten; ahead of the account, it is from another copy of
    # the store (a restore, a move between homes): either way, everything is listed again.
    reset = since == 0 or since < floor or since > latest
    lower = max(0 if reset else since, after or 0)
    found: list[ObjectInfo | Gone] = [
        _info(r)
        for r in conn.execute(
            select(*_INFO_COLUMNS)
            .where(objects.c.user_id == user_id, objects.c.seq > lower, *_prefix_conditions(prefix))
            .order_by(objects.c.seq)
            .limit(limit)
        ).mappings()
    ]
    if not reset:
        found += [
            Gone(str(r[0]), int(r[1]))
            for r in conn.execute(
                select(object_tombstones.c.path, object_tombstones.c.seq)
                .where(
                    object_tombstones.c.user_id == user_id,
                    object_tombstones.c.seq > lower,
                    *_prefix_conditions(prefix, object_tombstones.c.path),
                )
                .order_by(object_tombstones.c.seq)
                .limit(limit)
            )
        ]
        found.sort(key=lambda item: item.seq)
    page = found[:limit]
    last = page[-1].seq if page else 0
    return ChangesPage(page, max(latest, last), last if len(page) == limit else None, reset)


@dataclass(frozen=True)
class Fetched:
    """One object of a batch: its metadata and whole body, or (``body`` None) why it is not here."""

    path: str
    info: ObjectInfo | None
    body: bytes | None
    error: str | None = None


def sizes_txn(conn: Connection, user_id: int, paths: Sequence[str]) -> dict[str, ObjectInfo]:
    """The metadata of those of ``paths`` that exist."""
    for path in paths:
        validate_path(path)
    rows = conn.execute(select(*_INFO_COLUMNS).where(objects.c.user_id == user_id, objects.c.path.in_(list(paths))))
    return {str(r["path"]): _info(r) for r in rows.mappings()}


def read_many_txn(conn: Connection, user_id: int, paths: Sequence[str], max_size: int) -> list[Fetched]:
    """The bodies of ``paths`` (each at the version read with it, in one transaction), in the order asked; one
    grown past ``max_size`` since it was asked for says ``too_large``."""
    infos = sizes_txn(conn, user_id, paths)
    ids = {info.id: info for info in infos.values() if info.size <= max_size}
    parts: dict[int, list[bytes]] = {i: [] for i in ids}
    if ids:
        rows = conn.execute(
            select(object_chunks.c.object_id, object_chunks.c.data)
            .where(object_chunks.c.object_id.in_(list(ids)))
            .order_by(object_chunks.c.object_id, object_chunks.c.seq)
        )
        for object_id, data in rows:
            parts[int(object_id)].append(bytes(data))
    out = []
    for path in paths:
        info = infos.get(path)
        if info is None:
            out.append(Fetched(path, None, None, "not_found"))
        elif info.id not in ids:
            out.append(Fetched(path, None, None, "too_large"))
        else:
            out.append(Fetched(path, info, b"".join(parts[info.id])))
    return out


__all__ = ["MAX_CHANGES_LIMIT", "ChangesPage", "Fetched", "Gone", "changes_since_txn", "read_many_txn", "sizes_txn"]
