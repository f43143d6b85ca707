"""Prefix listing and paging on both backends, checked against a Python model and at 100,000 objects."""

from __future__ import annotations

import time

import pytest
import pytest_twisted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert
from sqlalchemy.engine import Connection

from mailiverse.store import (
    Database,
    InvalidInput,
    InvalidPath,
    NewestCursor,
    User,
    validate_path,
)
from mailiverse.store import objects as objects_repo
from mailiverse.store import users as users_repo
from mailiverse.store.schema import objects
from tests.support.store_calls import StoreCalls

# Characters chosen to break naive implementations: LIKE wildcards, case, punctuation that
# linguistic collations ignore, multi-byte and astral code points, the last code point.
_TRICKY = [
    "a",
    "b",
    "A",
    "B",
    "%",
    "_",
    "-",
    ".",
    " ",
    "é",
    "ß",
    "ÿ",
    "\u00e9",
    "\ud7ff",
    "\ue000",
    "😀",
    "\U0010ffff",
    "0",
    "~",
]
_segment = st.text(alphabet=st.sampled_from(_TRICKY), min_size=1, max_size=4).filter(lambda s: s not in (".", ".."))
_path = st.lists(_segment, min_size=1, max_size=3).map("/".join)


def _all_pages(conn: Connection, user_id: int, prefix: str, limit: int, newest_first: bool) -> list[str]:
    listed: list[str] = []
    after: str | NewestCursor | None = None
    while True:
        page = objects_repo.list_objects_txn(conn, user_id, prefix, after=after, limit=limit, newest_first=newest_first)
        listed.extend(info.path for info in page)
        if len(page) < limit:
            return listed
        after = page[-1].newest_cursor if newest_first else page[-1].path


def test_prefix_listing_matches_a_python_model(database: Database) -> None:
    """Listing by prefix, by path or newest first, paged or not, equals filtering and sorting in Python."""
    # The property is built per test item: pytest-twisted rewraps a shared @given function, which
    # breaks when the database fixture parametrizes the test.

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        entries=st.dictionaries(_path, st.integers(min_value=0, max_value=3), max_size=25),
        prefix_choice=st.one_of(
            st.text(alphabet=st.sampled_from([*_TRICKY, "/"]), max_size=3),
            st.integers(0, 30),
        ),
        limit=st.integers(min_value=1, max_value=7),
    )
    def check(entries: dict[str, int], prefix_choice: str | int, limit: int) -> None:
        _check_listing_model(database, entries, prefix_choice, limit)

    check()


def _check_listing_model(database: Database, entries: dict[str, int], prefix_choice: str | int, limit: int) -> None:
    for path in entries:
        validate_path(path)
    paths = sorted(entries)
    if isinstance(prefix_choice, int):
        source = paths[prefix_choice % len(paths)] if paths else ""
        prefix = source[: prefix_choice % (len(source) + 1)]
    else:
        prefix = prefix_choice.lstrip("/")

    def scenario(conn: Connection) -> tuple[list[str], list[str], list[str], int]:
        owner = users_repo.add_user_txn(conn, "model", b"k", "v2")
        for path, stamp in entries.items():
            objects_repo.put_object_txn(conn, owner.id, path, b"", now_ms=stamp)
        by_path = _all_pages(conn, owner.id, prefix, limit, newest_first=False)
        newest = _all_pages(conn, owner.id, prefix, limit, newest_first=True)
        one_page = [i.path for i in objects_repo.list_objects_txn(conn, owner.id, prefix, limit=1000)]
        count = objects_repo.count_objects_txn(conn, owner.id, prefix)
        users_repo.delete_user_txn(conn, owner.id)
        return by_path, newest, one_page, count

    with database.blocking_allowed():
        by_path, newest, one_page, count = database.transact_sync(scenario)
    expected = [p for p in paths if p.startswith(prefix)]
    assert by_path == expected
    assert one_page == expected
    assert count == len(expected)
    assert newest == sorted(expected, key=lambda p: (entries[p], p), reverse=True)


@pytest_twisted.ensureDeferred
async def test_listing_arguments_are_checked(store: StoreCalls, user: User) -> None:
    """Bad limits, cursors of the wrong kind and hostile prefixes are refused."""
    for bad_limit in (0, -1, 10_001):
        with pytest.raises(InvalidInput):
            await store.list_objects(user.id, limit=bad_limit)
    with pytest.raises(InvalidInput):
        await store.list_objects(user.id, after="Mail", newest_first=True)
    with pytest.raises(InvalidInput):
        await store.list_objects(user.id, after=NewestCursor(1, "a"))
    with pytest.raises(InvalidPath):
        await store.list_objects(user.id, "/etc")
    with pytest.raises(InvalidPath):
        await store.list_objects(user.id, "Mail\x00")


def test_newest_cursor_token_round_trip() -> None:
    """A NewestCursor survives to_token/from_token, paths with ':' included; garbage tokens are refused."""
    cursor = NewestCursor(1_700_000_000_123, "Mail/In/1:2_%é")
    assert NewestCursor.from_token(cursor.to_token()) == cursor
    for token in ("", "abc", "12", "-1:a", "1:\x00", "١٢:a", "1" * 30 + ":a"):
        with pytest.raises(InvalidInput):
            NewestCursor.from_token(token)


@pytest_twisted.ensureDeferred
async def test_wildcards_in_paths_are_literal(store: StoreCalls, user: User) -> None:
    """'%' and '_' in a prefix match only themselves."""
    for path in ["Cache/50%", "Cache/50x", "Cache/5_", "Cache/5a", "Cache/5_/x"]:
        await store.put_object(user.id, path, b"")
    assert [i.path for i in await store.list_objects(user.id, "Cache/50%")] == ["Cache/50%"]
    assert [i.path for i in await store.list_objects(user.id, "Cache/5_")] == [
        "Cache/5_",
        "Cache/5_/x",
    ]


@pytest_twisted.ensureDeferred
async def test_newest_fifty_of_a_hundred_thousand(database: Database, store: StoreCalls, user: User) -> None:
    """With 100,000 objects under Mail/In/ (and 100,000 elsewhere) the newest 50 come back correct and quickly."""
    count = 100_000

    def fill(conn: Connection) -> None:
        for base in range(0, count, 10_000):
            rows = []
            for i in range(base, base + 10_000):
                name = f"{i * 7919 % count:06d}"
                stamp = 1_700_000_000_000 + i
                rows.append(
                    {
                        "user_id": user.id,
                        "path": f"Mail/In/{name}",
                        "version": 1,
                        "created_ms": stamp,
                        "modified_ms": stamp,
                        "size": 0,
                    }
                )
                rows.append(
                    {
                        "user_id": user.id,
                        "path": f"Mail/In_Json/{name}",
                        "version": 1,
                        "created_ms": stamp,
                        "modified_ms": stamp + count,
                        "size": 0,
                    }
                )
            conn.execute(insert(objects), rows)
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE objects")

    await database.transact(fill)
    started = time.perf_counter()
    newest = await store.list_objects(user.id, "Mail/In/", limit=50, newest_first=True)
    elapsed_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    first_by_name = await store.list_objects(user.id, "Mail/In/", limit=50)
    by_name_ms = (time.perf_counter() - started) * 1000
    print(
        f"\n[{database.dialect_name}] newest 50 of {count}: {elapsed_ms:.1f} ms; first 50 by name: {by_name_ms:.1f} ms"
    )
    expected = [f"Mail/In/{i * 7919 % count:06d}" for i in range(count - 1, count - 51, -1)]
    assert [i.path for i in newest] == expected
    assert [i.path for i in first_by_name] == [f"Mail/In/{i:06d}" for i in range(50)]
    assert await store.count_objects(user.id, "Mail/In/") == count
    following = await store.list_objects(
        user.id, "Mail/In/", after=newest[-1].newest_cursor, limit=1, newest_first=True
    )
    assert [i.path for i in following] == [f"Mail/In/{(count - 51) * 7919 % count:06d}"]
