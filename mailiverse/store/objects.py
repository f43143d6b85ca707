"""Per-user objects: versioned, chunked bodies under validated paths; synchronous functions on a Connection.

Why one module of this size: every function here reads or writes the same two tables
(``objects``, ``object_chunks``) under the same version and chunk rules; splitting them would
spread one consistency rule over several files.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, tuple_, update
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import ColumnElement, operators
from sqlalchemy.sql.elements import UnaryExpression

from mailiverse.contracts import paths as _paths
from mailiverse.contracts.paths import MAX_PATH_BYTES, prefix_upper_bound
from mailiverse.store.errors import (
    InvalidInput,
    InvalidPath,
    ObjectNotFound,
    ObjectTooLarge,
    UserNotFound,
    VersionConflict,
)
from mailiverse.store.quota import charge_txn, lock_usage_txn
from mailiverse.store.schema import object_chunks, objects
from mailiverse.store.seq import next_seqs_txn, tombstone_txn

CHUNK_SIZE = 1024 * 1024
MAX_OBJECT_BYTES = 128 * 1024 * 1024
MAX_LIST_LIMIT = 10_000
# Newest-first listing on SQLite: when a prefix matches fewer objects than this, sorting them (found
# through the path index) beats walking the user's modification-time index past non-matching objects.
SPARSE_PREFIX_ROWS = 2_000

_INFO_COLUMNS = (
    objects.c.id,
    objects.c.user_id,
    objects.c.path,
    objects.c.version,
    objects.c.created_ms,
    objects.c.modified_ms,
    objects.c.size,
    objects.c.seq,
)


def validate_path(path: object) -> str:
    """The contracts' path rule, raising the store's ``InvalidPath`` (an ``InvalidInput`` too)."""
    try:
        return _paths.validate_path(path)
    except _paths.InvalidPath as error:
        raise InvalidPath(str(error)) from None


def validate_prefix(prefix: object) -> str:
    """The contracts' prefix rule, raising the store's ``InvalidPath``."""
    try:
        return _paths.validate_prefix(prefix)
    except _paths.InvalidPath as error:
        raise InvalidPath(str(error)) from None


@dataclass(frozen=True, order=True)
class NewestCursor:
    """Where a newest-first listing stopped: the (modified_ms, path) of the last object returned.

    ``to_token``/``from_token`` give an opaque string for clients to hand back.
    """

    modified_ms: int
    path: str

    def to_token(self) -> str:
        """``"<modified_ms>:<path>"``."""
        return f"{self.modified_ms}:{self.path}"

    @classmethod
    def from_token(cls, token: str) -> NewestCursor:
        """Parse a token from ``to_token``; raises InvalidInput for anything else."""
        if not isinstance(token, str) or len(token) > MAX_PATH_BYTES + 32:
            raise InvalidInput("listing cursor is malformed")
        stamp, separator, path = token.partition(":")
        if not separator or not stamp.isascii() or not stamp.isdigit() or len(stamp) > 19:
            raise InvalidInput("listing cursor is malformed")
        validate_prefix(path)
        return cls(int(stamp), path)


@dataclass(frozen=True)
class ObjectInfo:
    """An object's metadata (not its body)."""

    id: int
    user_id: int
    path: str
    version: int
    created_ms: int
    modified_ms: int
    size: int
    #: The account's change number of the write that made this version (store/seq.py).
    seq: int = 0

    @property
    def newest_cursor(self) -> NewestCursor:
        """The cursor that continues a newest-first listing after this object."""
        return NewestCursor(self.modified_ms, self.path)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _info(row: RowMapping) -> ObjectInfo:
    return ObjectInfo(
        id=row["id"],
        user_id=row["user_id"],
        path=row["path"],
        version=row["version"],
        created_ms=row["created_ms"],
        modified_ms=row["modified_ms"],
        size=row["size"],
        seq=row["seq"],
    )


#: Built once: executing a prebuilt statement skips SQLAlchemy's construction and cache-key work,
#: which was a large share of a delivery's CPU time.
_INSERT_CHUNK = insert(object_chunks)


@functools.cache
def _insert_object(dialect: str, if_absent: bool) -> Any:
    """The object-row insert of ``put_object`` for one dialect, built once.

    Values come as execute parameters; on a conflict it does nothing (``if_absent``) or bumps the
    version and takes ``replaced_ms`` and ``replaced_size``.
    """
    # Each dialect's package is imported only where it is in use: the PostgreSQL one (with all its
    # drivers) costs an SQLite appliance ~2 MB of resident memory for nothing.
    statement: Any
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        statement = postgresql_insert(objects)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        statement = sqlite_insert(objects)
    key = ["user_id", "path"]
    if if_absent:
        statement = statement.on_conflict_do_nothing(index_elements=key)
    else:
        statement = statement.on_conflict_do_update(
            index_elements=key,
            set_={
                "version": objects.c.version + 1,
                "modified_ms": bindparam("replaced_ms"),
                "size": bindparam("replaced_size"),
                "seq": bindparam("replaced_seq"),
            },
        )
    return statement.returning(objects.c.id, objects.c.version, objects.c.created_ms)


def _pieces(
    chunks: Iterable[bytes] | bytes,
) -> Iterable[bytes | bytearray | memoryview]:
    if isinstance(chunks, (bytes, bytearray, memoryview)):
        return (chunks,)
    return chunks


def _cut(chunks: Iterable[bytes] | bytes, max_size: int) -> Iterator[bytes]:
    """``chunks`` re-cut into CHUNK_SIZE pieces (the last may be shorter), one piece in memory at a time.

    Raises InvalidInput for data that is not bytes, ObjectTooLarge past ``max_size``.
    """
    pending = bytearray()
    size = 0
    for piece in _pieces(chunks):
        if not isinstance(piece, (bytes, bytearray, memoryview)):
            raise InvalidInput("object data must be given as bytes")
        view = memoryview(piece).cast("B")
        size += len(view)
        if size > max_size:
            raise ObjectTooLarge(f"object is larger than {max_size} bytes")
        while view:
            if not pending and len(view) >= CHUNK_SIZE:
                yield bytes(view[:CHUNK_SIZE])
                view = view[CHUNK_SIZE:]
                continue
            take = min(CHUNK_SIZE - len(pending), len(view))
            pending += view[:take]
            view = view[take:]
            if len(pending) == CHUNK_SIZE:
                yield bytes(pending)
                pending.clear()
    if pending:
        yield bytes(pending)


@dataclass
class _Body:
    """An object's body with its first pieces read before its row is written.

    When the whole body fits in what was read ahead, its size is known up front and the row is
    written with it: one statement fewer than inserting and then updating the size. A failure while
    reading ahead is kept in ``error`` and raised where it would have been had nothing been read early.
    """

    head: list[bytes]
    rest: Iterator[bytes] | None
    error: Exception | None = None

    @property
    def known_size(self) -> int | None:
        """The body's size if it has been read completely, else None."""
        if self.rest is not None or self.error is not None:
            return None
        return sum(len(piece) for piece in self.head)


def _read_ahead(chunks: Iterable[bytes] | bytes, max_size: int) -> _Body:
    pieces = _cut(chunks, max_size)
    head: list[bytes] = []
    try:
        for piece in pieces:
            head.append(piece)
            if len(head) == 2:
                return _Body(head, pieces)
    except Exception as e:  # noqa: BLE001 - re-raised by _write_body, after the row checks
        return _Body(head, None, e)
    return _Body(head, None)


def _write_body_txn(conn: Connection, object_id: int, body: _Body) -> int:
    """Insert the body's chunk rows (what was read ahead in one executemany); its size in bytes."""
    if body.error is not None:
        raise body.error
    size = 0
    seq = 0
    if body.head:
        rows = [{"object_id": object_id, "seq": index, "data": data} for index, data in enumerate(body.head)]
        conn.execute(_INSERT_CHUNK, rows)
        size = sum(len(data) for data in body.head)
        seq = len(body.head)
    for data in body.rest or ():
        conn.execute(_INSERT_CHUNK, {"object_id": object_id, "seq": seq, "data": data})
        seq += 1
        size += len(data)
    return size


@dataclass(frozen=True)
class NewObject:
    """An object to create whole in one statement with others: its body fits one chunk."""

    user_id: int
    path: str
    data: bytes
    now_ms: int


# RETURNING the key with the id: rows come back in no promised order, and asking for one makes
# SQLAlchemy insert row by row on SQLite.
_INSERT_NEW_OBJECTS = insert(objects).returning(objects.c.id, objects.c.user_id, objects.c.path)


def insert_new_objects_txn(conn: Connection, items: list[NewObject]) -> list[int]:
    """Create every object of ``items`` at version 1: two ``executemany`` statements in all; their ids.

    For many deliveries at once (store/groupcommit.py's bulk form). No row may exist at any of the
    paths and every user must exist: either fails with IntegrityError, and the caller rolls back.
    Usage is not charged here: the caller adds it (``quota.add_usage_txn``) after checking quotas.
    Raises InvalidPath, and ObjectTooLarge for a body over one chunk.
    """
    rows = []
    counts: dict[int, int] = {}
    for item in items:
        counts[item.user_id] = counts.get(item.user_id, 0) + 1
    next_seq = {user_id: next_seqs_txn(conn, user_id, n) for user_id, n in sorted(counts.items())}
    for item in items:
        validate_path(item.path)
        if len(item.data) > CHUNK_SIZE:
            raise ObjectTooLarge(f"a body inserted whole is at most {CHUNK_SIZE} bytes")
        size = len(item.data)
        rows.append(
            {
                "user_id": item.user_id,
                "path": item.path,
                "version": 1,
                "created_ms": item.now_ms,
                "modified_ms": item.now_ms,
                "size": size,
                "seq": next_seq[item.user_id],
            }
        )
        next_seq[item.user_id] += 1
    if not rows:
        return []
    id_of = {(row[1], row[2]): row[0] for row in conn.execute(_INSERT_NEW_OBJECTS, rows)}
    ids = [id_of[item.user_id, item.path] for item in items]
    chunks = [{"object_id": i, "seq": 0, "data": item.data} for i, item in zip(ids, items, strict=True) if item.data]
    if chunks:
        conn.execute(_INSERT_CHUNK, chunks)
    return ids


def put_object_txn(
    conn: Connection,
    user_id: int,
    path: str,
    chunks: Iterable[bytes] | bytes,
    *,
    if_version: int | None = None,
    if_absent: bool = False,
    now_ms: int | None = None,
    max_size: int = MAX_OBJECT_BYTES,
    default_quota: int | None = None,
) -> ObjectInfo:
    """Create or replace the object at ``path``, streaming its body from ``chunks``.

    The version starts at 1 and grows by one on every put. ``if_absent`` fails with VersionConflict
    when an object exists; ``if_version`` fails with VersionConflict unless the object exists at
    exactly that version. The owner's usage changes by the bytes the put adds or frees
    (store/quota.py); with ``default_quota``, a put that would take it past the owner's quota (their
    own, else this default) raises OverQuota, and the caller's transaction must be rolled back.
    Raises InvalidPath, ObjectTooLarge, UserNotFound, OverQuota.
    """
    validate_path(path)
    if if_absent and if_version is not None:
        raise InvalidInput("if_absent and if_version cannot be combined")
    if if_version is not None and (isinstance(if_version, bool) or not isinstance(if_version, int)):
        raise InvalidInput("if_version must be an integer")
    now = _now_ms() if now_ms is None else now_ms
    body = _read_ahead(chunks, max_size)
    known_size = body.known_size
    sized = {} if known_size is None else {"size": known_size}
    lock_usage_txn(conn, (user_id,))
    seq = next_seqs_txn(conn, user_id)
    replaced = 0 if if_absent else _size_of_txn(conn, user_id, path)
    try:
        if if_version is not None:
            statement = (
                update(objects)
                .where(
                    objects.c.user_id == user_id,
                    objects.c.path == path,
                    objects.c.version == if_version,
                )
                .values(version=objects.c.version + 1, modified_ms=now, seq=seq, **sized)
                .returning(objects.c.id, objects.c.version, objects.c.created_ms)
            )
            row = conn.execute(statement).mappings().first()
            if row is None:
                raise VersionConflict("the object is not at the expected version")
        else:
            # An unknown size is written as 0 here and set once the chunks are written.
            size = 0 if known_size is None else known_size
            fresh = {
                "user_id": user_id,
                "path": path,
                "version": 1,
                "created_ms": now,
                "modified_ms": now,
                "size": size,
                "seq": seq,
                "replaced_ms": now,
                "replaced_size": size,
                "replaced_seq": seq,
            }
            if if_absent:
                del fresh["replaced_ms"], fresh["replaced_size"], fresh["replaced_seq"]
            statement = _insert_object(conn.dialect.name, if_absent)
            row = conn.execute(statement, fresh).mappings().first()
            if row is None:
                raise VersionConflict("an object already exists at this path")
    except IntegrityError:
        raise UserNotFound("no such user") from None
    object_id = row["id"]
    if row["version"] > 1:
        conn.execute(delete(object_chunks).where(object_chunks.c.object_id == object_id))
    size = _write_body_txn(conn, object_id, body)
    if known_size is None:
        conn.execute(update(objects).where(objects.c.id == object_id).values(size=size))
    charge_txn(conn, user_id, size - replaced, default_quota=default_quota)
    return ObjectInfo(
        id=object_id,
        user_id=user_id,
        path=path,
        version=row["version"],
        created_ms=row["created_ms"],
        modified_ms=now,
        size=size,
        seq=seq,
    )


def _size_of_txn(conn: Connection, user_id: int, path: str) -> int:
    """The size of the object a put may replace (0 if none); read under the owner's usage lock."""
    statement = select(objects.c.size).where(objects.c.user_id == user_id, objects.c.path == path)
    return int(conn.execute(statement).scalar_one_or_none() or 0)


def get_object_info_txn(conn: Connection, user_id: int, path: str) -> ObjectInfo | None:
    """The object's metadata, or None if there is none at ``path``."""
    validate_path(path)
    statement = select(*_INFO_COLUMNS).where(objects.c.user_id == user_id, objects.c.path == path)
    row = conn.execute(statement).mappings().first()
    return None if row is None else _info(row)


def _require_txn(conn: Connection, user_id: int, path: str) -> ObjectInfo:
    info = get_object_info_txn(conn, user_id, path)
    if info is None:
        raise ObjectNotFound("no object at this path")
    return info


def _chunk_iterator_txn(conn: Connection, object_id: int) -> Iterator[bytes]:
    sequence = select(object_chunks.c.seq).where(object_chunks.c.object_id == object_id)
    for seq in conn.execute(sequence.order_by(object_chunks.c.seq)).scalars().all():
        data = conn.execute(
            select(object_chunks.c.data).where(object_chunks.c.object_id == object_id, object_chunks.c.seq == seq)
        ).scalar_one()
        yield bytes(data)


def iter_object_chunks_txn(conn: Connection, user_id: int, path: str) -> Iterator[bytes]:
    """The object's body chunk by chunk (one chunk in memory at a time); raises ObjectNotFound at once.

    Consume it inside the same ``run``/``transact`` call.
    """
    return _chunk_iterator_txn(conn, _require_txn(conn, user_id, path).id)


def read_object_txn(conn: Connection, user_id: int, path: str) -> bytes:
    """The object's whole body; raises ObjectNotFound."""
    return b"".join(iter_object_chunks_txn(conn, user_id, path))


def read_chunk_txn(conn: Connection, user_id: int, path: str, version: int, seq: int) -> bytes | None:
    """Chunk ``seq`` of version ``version`` of the object, or None past the end.

    Raises ObjectNotFound, or VersionConflict if the object changed: lets a reader stream an object
    across several short transactions without mixing two versions.
    """
    info = _require_txn(conn, user_id, path)
    if info.version != version:
        raise VersionConflict("the object changed while it was being read")
    data = conn.execute(
        select(object_chunks.c.data).where(object_chunks.c.object_id == info.id, object_chunks.c.seq == seq)
    ).scalar_one_or_none()
    return None if data is None else bytes(data)


def _prefix_conditions(prefix: str, column: ColumnElement[str] = objects.c.path) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if prefix:
        # A range, not LIKE: '%' and '_' stay literal and the (user_id, path) index applies.
        conditions.append(column >= prefix)
        upper = prefix_upper_bound(prefix)
        if upper is not None:
            conditions.append(column < upper)
    return conditions


def _unindexed(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """SQLite's unary ``+``: the same value, but the planner may not use an index for it."""
    return UnaryExpression(column, operator=operators.custom_op("+"), type_=column.type)


def _prefix_is_sparse_txn(conn: Connection, user_id: int, prefix: str) -> bool:
    if not prefix:
        return False
    sample = (
        select(objects.c.id)
        .where(objects.c.user_id == user_id, *_prefix_conditions(prefix))
        .limit(SPARSE_PREFIX_ROWS)
        .subquery()
    )
    return int(conn.execute(select(func.count()).select_from(sample)).scalar_one()) < SPARSE_PREFIX_ROWS


def list_objects_txn(
    conn: Connection,
    user_id: int,
    prefix: str = "",
    *,
    after: str | NewestCursor | None = None,
    limit: int = 1000,
    newest_first: bool = False,
) -> list[ObjectInfo]:
    """Objects whose path starts with ``prefix``, at most ``limit`` of them.

    By path (code-point order) by default, continuing after the path ``after``; with
    ``newest_first``, by modification time then path, both descending, continuing after the
    NewestCursor ``after`` (``ObjectInfo.newest_cursor`` of the last item of the previous page).
    """
    validate_prefix(prefix)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIST_LIMIT}")
    if not newest_first:
        conditions = [objects.c.user_id == user_id, *_prefix_conditions(prefix)]
        if after is not None:
            if not isinstance(after, str):
                raise InvalidInput("a listing by path continues after a path")
            validate_prefix(after)
            conditions.append(objects.c.path > after)
        statement = select(*_INFO_COLUMNS).where(*conditions).order_by(objects.c.path.asc()).limit(limit)
        return [_info(row) for row in conn.execute(statement).mappings()]

    if after is not None and not isinstance(after, NewestCursor):
        raise InvalidInput("a newest-first listing continues after a NewestCursor")
    path_column: ColumnElement[str] = objects.c.path
    modified_order: ColumnElement[Any] = objects.c.modified_ms
    path_order: ColumnElement[Any] = objects.c.path
    if conn.dialect.name == "sqlite":
        # SQLite has no statistics for a prefix range, so steer it: for a prefix matching few objects,
        # find them by path and sort; otherwise walk the modification-time index newest first.
        if _prefix_is_sparse_txn(conn, user_id, prefix):
            modified_order, path_order = (
                _unindexed(objects.c.modified_ms),
                _unindexed(objects.c.path),
            )
        else:
            path_column = _unindexed(objects.c.path)
    conditions = [
        objects.c.user_id == user_id,
        *_prefix_conditions(prefix, path_column),
    ]
    if after is not None:
        conditions.append(tuple_(objects.c.modified_ms, objects.c.path) < tuple_(after.modified_ms, after.path))
    statement = (
        select(*_INFO_COLUMNS).where(*conditions).order_by(modified_order.desc(), path_order.desc()).limit(limit)
    )
    return [_info(row) for row in conn.execute(statement).mappings()]


def count_objects_txn(conn: Connection, user_id: int, prefix: str = "") -> int:
    """How many objects the user has under ``prefix``."""
    validate_prefix(prefix)
    statement = (
        select(func.count()).select_from(objects).where(objects.c.user_id == user_id, *_prefix_conditions(prefix))
    )
    return int(conn.execute(statement).scalar_one())


def delete_object_txn(conn: Connection, user_id: int, path: str, *, if_version: int | None = None) -> bool:
    """Delete the object (its chunks go by cascade), freeing its bytes from the owner's usage; False if absent.

    With ``if_version``, raises VersionConflict if the object exists at another version. A delete is
    never refused for the quota.
    """
    validate_path(path)
    conditions = [objects.c.user_id == user_id, objects.c.path == path]
    if if_version is not None:
        conditions.append(objects.c.version == if_version)
    lock_usage_txn(conn, (user_id,))
    freed = conn.execute(delete(objects).where(*conditions).returning(objects.c.size)).scalar_one_or_none()
    if freed is None:
        if if_version is not None and get_object_info_txn(conn, user_id, path) is not None:
            raise VersionConflict("the object is not at the expected version")
        return False
    charge_txn(conn, user_id, -int(freed))
    tombstone_txn(conn, user_id, [path], _now_ms())
    return True
