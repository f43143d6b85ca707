"""The store's change sequence on both backends: every write numbered, deletes and moves as tombstones, pages in
order, the floor and resets, and many objects read at once (store/seq.py, store/changes.py)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from mailiverse.store import Database, User
from mailiverse.store import objects as repo
from mailiverse.store.changes import MAX_CHANGES_LIMIT, Gone, changes_since_txn, read_many_txn
from mailiverse.store.errors import InvalidInput
from mailiverse.store.moves import move_objects_txn
from mailiverse.store.moving import delete_objects_txn
from mailiverse.store.objects import NewObject, insert_new_objects_txn
from mailiverse.store.schema import object_tombstones, objects
from mailiverse.store.seq import prune_tombstones_txn
from mailiverse.store.users import add_user_txn


def _put(db: Database, user: User, path: str, data: bytes = b"x", **kw: Any) -> repo.ObjectInfo:
    return db.transact_sync(repo.put_object_txn, user.id, path, data, **kw)


def _changes(db: Database, user: User, since: int, **kw: Any) -> Any:
    kw.setdefault("limit", 100)
    return db.run_sync(changes_since_txn, user.id, since, **kw)


def _apply(held: dict[str, int], page: Any) -> None:
    """What a client does with a page: the changes in order."""
    for item in page.items:
        if isinstance(item, Gone):
            held.pop(item.path, None)
        else:
            held[item.path] = item.version


def _sync(db: Database, user: User, since: int, held: dict[str, int], limit: int = 100) -> int:
    """One round of a client's sync, page after page; the new since."""
    after = None
    fresh: dict[str, int] = {}
    while True:
        page = _changes(db, user, since, after=after, limit=limit)
        target = fresh if page.reset else held
        _apply(target, page)
        if page.next is None:
            if page.reset:
                held.clear()
                held.update(fresh)
            return page.seq
        after = page.next


def _live(db: Database, user: User) -> dict[str, int]:
    rows = db.run_sync(
        lambda c: c.execute(select(objects.c.path, objects.c.version).where(objects.c.user_id == user.id)).all()
    )
    return {str(p): int(v) for p, v in rows}


@pytest.fixture
def db(database: Database) -> Any:
    with database.blocking_allowed():
        yield database


def test_every_write_takes_the_next_number(db: Database, user: User) -> None:
    """Puts, replacements, bulk inserts, moves and deletes each take new, growing numbers."""
    a = _put(db, user, "Mail/In/1")
    b = _put(db, user, "Mail/In/2")
    again = _put(db, user, "Mail/In/1", b"y")
    assert (a.seq, b.seq, again.seq) == (1, 2, 3)
    db.transact_sync(insert_new_objects_txn, [NewObject(user.id, f"Mail/In_Json/{i}", b"t", 5) for i in range(3)])
    seqs = db.run_sync(
        lambda c: sorted(int(s) for s in c.execute(select(objects.c.seq).where(objects.c.user_id == user.id)).scalars())
    )
    assert seqs == [2, 3, 4, 5, 6]
    db.transact_sync(move_objects_txn, user.id, [("Mail/In/2", "Mail/Spam/2")])
    assert db.transact_sync(repo.delete_object_txn, user.id, "Mail/In/1")
    stones = db.run_sync(
        lambda c: c.execute(
            select(object_tombstones.c.path, object_tombstones.c.seq).order_by(object_tombstones.c.seq)
        ).all()
    )
    assert [(str(p), int(s)) for p, s in stones] == [("Mail/In/2", 7), ("Mail/In/1", 9)]
    assert db.run_sync(repo.get_object_info_txn, user.id, "Mail/Spam/2").seq == 8
    assert db.run_sync(lambda c: c.execute(select(func.min(objects.c.seq))).scalar_one()) > 0


def test_a_client_following_the_changes_ends_with_the_store(db: Database, user: User) -> None:
    """Rounds of paged changes after every kind of write leave the client holding exactly the live objects."""
    held: dict[str, int] = {}
    since = _sync(db, user, 0, held)
    assert held == {}
    for i in range(25):
        _put(db, user, f"Mail/In_Json/{i:03d}")
    since = _sync(db, user, since, held, limit=7)
    assert held == _live(db, user)
    _put(db, user, "Mail/In_Json/003", b"new")
    db.transact_sync(repo.delete_object_txn, user.id, "Mail/In_Json/004")
    db.transact_sync(move_objects_txn, user.id, [("Mail/In_Json/005", "Mail/Spam_Json/005")])
    _put(db, user, "Mail/In_Json/004", b"back")
    page = _changes(db, user, since)
    assert not page.reset
    assert {i.path for i in page.items if isinstance(i, Gone)} == {"Mail/In_Json/004", "Mail/In_Json/005"}
    since = _sync(db, user, since, held, limit=2)
    assert held == _live(db, user)
    assert _changes(db, user, since).items == []


def test_prefix_limits_objects_and_tombstones(db: Database, user: User) -> None:
    """A prefix selects both the live objects and the tombstones under it."""
    _put(db, user, "Mail/In_Json/1")
    _put(db, user, "Cache/W_state")
    db.transact_sync(repo.delete_object_txn, user.id, "Cache/W_state")
    page = _changes(db, user, 1, prefix="Mail/")
    assert page.items == []
    assert _changes(db, user, 1, prefix="Cache/").items == [Gone("Cache/W_state", 3)]
    assert [i.path for i in _changes(db, user, 0, prefix="Mail/").items] == ["Mail/In_Json/1"]


def test_pruned_tombstones_raise_the_floor_and_force_a_full_listing(db: Database, user: User) -> None:
    """A client behind forgotten tombstones gets reset and a full listing; one ahead (another copy) does too."""
    held: dict[str, int] = {}
    for i in range(5):
        _put(db, user, f"Mail/In/{i}")
    since = _sync(db, user, 0, held)
    db.transact_sync(repo.delete_object_txn, user.id, "Mail/In/0")
    now = 10**13
    assert db.transact_sync(prune_tombstones_txn, now) == 1
    page = _changes(db, user, since)
    assert page.reset and {i.path for i in page.items} == {f"Mail/In/{i}" for i in range(1, 5)}
    _sync(db, user, since, held)
    assert held == _live(db, user)
    assert _changes(db, user, page.seq).reset is False
    assert _changes(db, user, page.seq + 50).reset is True


def test_an_account_emptied_at_once_resets_its_clients(db: Database, user: User) -> None:
    """Moving house deletes every object without tombstones: the floor sends every client to a full listing."""
    for i in range(3):
        _put(db, user, f"Mail/In/{i}")
    since = _changes(db, user, 0).seq
    while db.transact_sync(delete_objects_txn, user.id) > 0:
        pass
    page = _changes(db, user, since)
    assert page.reset and page.items == []


def test_accounts_are_numbered_apart(db: Database, user: User) -> None:
    """Each account has its own sequence and sees only its own changes."""
    bob = db.transact_sync(add_user_txn, "bob", b"pk", "v2")
    _put(db, user, "Mail/In/1")
    other = db.transact_sync(repo.put_object_txn, bob.id, "Mail/In/1", b"b")
    assert other.seq == 1
    assert [i.path for i in _changes(db, user, 0).items] == ["Mail/In/1"]
    assert _changes(db, bob, 0).items[0].seq == 1


def test_bad_numbers_are_refused(db: Database, user: User) -> None:
    """Negative or non-integer numbers and limits out of range are InvalidInput."""
    for since, kw in (
        (-1, {}),
        (True, {}),
        (0, {"after": -2}),
        (0, {"limit": 0}),
        (0, {"limit": MAX_CHANGES_LIMIT + 1}),
    ):
        with pytest.raises(InvalidInput):
            _changes(db, user, since, **kw)  # type: ignore[arg-type]


def test_read_many_in_order_with_missing_and_too_large(db: Database, user: User) -> None:
    """Bodies come whole (several chunks too) in the order asked; missing and oversized ones say why."""
    _put(db, user, "Mail/In/a", b"A" * 10)
    _put(db, user, "Mail/In/b", b"B" * (repo.CHUNK_SIZE + 5))
    _put(db, user, "Mail/In/c", b"")
    got = db.run_sync(
        read_many_txn, user.id, ["Mail/In/c", "Mail/In/zz", "Mail/In/b", "Mail/In/a"], 2 * repo.CHUNK_SIZE
    )
    assert [(g.path, g.error) for g in got] == [
        ("Mail/In/c", None),
        ("Mail/In/zz", "not_found"),
        ("Mail/In/b", None),
        ("Mail/In/a", None),
    ]
    assert got[0].body == b"" and got[2].body == b"B" * (repo.CHUNK_SIZE + 5) and got[3].body == b"A" * 10
    small = db.run_sync(read_many_txn, user.id, ["Mail/In/b", "Mail/In/a"], 100)
    assert [(g.error, g.body) for g in small] == [("too_large", None), (None, b"A" * 10)]
