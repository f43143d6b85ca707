"""Moving a user's mail between the inbox, the spam folder and the screener: objects renamed in one transaction.

The clients' "this is spam" and "not spam" move a message's two objects (original and twin) between
``Mail/In`` and ``Mail/Spam``: the server renames them, ciphertext untouched (it cannot read them,
and the client need not upload them again). Only these folders, the same message key, original to
original and twin to twin: no other path under ``Mail/`` (which only the server writes) can be
reached this way. A moved object counts as modified now, so newest-first listings (client caches)
see it; its version goes up by one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from mailiverse.store.errors import InvalidPath, ObjectNotFound, VersionConflict
from mailiverse.store.objects import validate_path
from mailiverse.store.quota import lock_usage_txn
from mailiverse.store.schema import objects
from mailiverse.store.seq import next_seqs_txn, tombstone_txn

#: The folders a message moves between.
MOVABLE_FOLDERS = ("Mail/In", "Mail/Spam", "Mail/Screener")
#: Objects moved in one request (a hundred messages, each original and twin).
MAX_MOVES = 200


def check_move(source: str, target: str) -> None:
    """InvalidPath unless ``source`` -> ``target`` moves one object of a message between the movable folders."""
    validate_path(source)
    validate_path(target)
    from_folder, from_key = _split(source)
    to_folder, to_key = _split(target)
    if from_key != to_key or from_folder.endswith("_Json") != to_folder.endswith("_Json") or from_folder == to_folder:
        raise InvalidPath("a move keeps the message's key and kind (original or twin) and changes its folder")


def _split(path: str) -> tuple[str, str]:
    folder, _, key = path.rpartition("/")
    allowed = {*MOVABLE_FOLDERS, *(f"{f}_Json" for f in MOVABLE_FOLDERS)}
    if folder not in allowed or not key:
        raise InvalidPath(f"only mail in {' and '.join(MOVABLE_FOLDERS)} can be moved")
    return folder, key


def move_objects_txn(conn: Connection, user_id: int, moves: Sequence[tuple[str, str]]) -> int:
    """Rename each (source, target) of ``user_id``: all or none. ObjectNotFound when a source is missing,
    VersionConflict when a target exists (or two moves name one path)."""
    if not 0 < len(moves) <= MAX_MOVES:
        raise InvalidPath(f"move 1 to {MAX_MOVES} objects at once")
    for source, target in moves:
        check_move(source, target)
    sources = [source for source, _ in moves]
    targets = [target for _, target in moves]
    if len(set(sources) | set(targets)) != 2 * len(moves):
        raise VersionConflict("a path appears twice in the moves")
    lock_usage_txn(conn, (user_id,))
    found = _existing_txn(conn, user_id, sources)
    if len(found) != len(sources):
        raise ObjectNotFound("an object to move does not exist")
    if _existing_txn(conn, user_id, targets):
        raise VersionConflict("an object already exists where one would move")
    now_ms = time.time_ns() // 1_000_000
    # The sources' tombstones first, then the targets' numbers: a client applying changes in order ends with them.
    tombstone_txn(conn, user_id, sources, now_ms)
    first = next_seqs_txn(conn, user_id, len(moves))
    for i, (source, target) in enumerate(moves):
        conn.execute(
            update(objects)
            .where(objects.c.user_id == user_id, objects.c.path == source)
            .values(path=target, modified_ms=now_ms, version=objects.c.version + 1, seq=first + i)
        )
    return len(moves)


def _existing_txn(conn: Connection, user_id: int, paths: Sequence[str]) -> set[str]:
    rows = conn.execute(select(objects.c.path).where(objects.c.user_id == user_id, objects.c.path.in_(paths)))
    return {row.path for row in rows}
