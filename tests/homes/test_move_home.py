"""``move_home`` (``mailiverse-admin user move-home``) on real PostgreSQL: an account moved out of the metabase (from
before the homes) and between homes keeps every object, byte for byte; a copy that does not verify aborts the move
and leaves the account where it was, taking mail."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, update

from mailiverse.store.db import Database
from mailiverse.store.homemove import HomeMoveError, digest_txn, move_home
from mailiverse.store.homes import ACTIVE, METABASE_HOME, add_copy_txn, home_of_txn, set_home_txn
from mailiverse.store.objects import list_objects_txn, put_object_txn
from mailiverse.store.schema import object_chunks, objects, users
from mailiverse.store.screener import set_sender_txn
from mailiverse.store.users import add_user_txn, get_user_txn
from tests.homes.conftest import HomeUrls


@pytest.fixture
def databases(home_urls: HomeUrls) -> Iterator[dict[str, Database]]:
    opened = {METABASE_HOME: Database.open(home_urls.metabase, reactor=None)}
    opened.update({name: Database.open(url, reactor=None) for name, url in home_urls.homes.items()})
    try:
        with contextlib.ExitStack() as stack:
            # These are the admin command's blocking calls, made here on the test's thread.
            for database in opened.values():
                stack.enter_context(database.blocking_allowed())
            yield opened
    finally:
        for database in opened.values():
            database.close()


def _account(databases: dict[str, Database], name: str, home: str, count: int) -> int:
    meta = databases[METABASE_HOME]
    user = meta.transact_sync(add_user_txn, name, b"k" * 300, "v2")
    if home != METABASE_HOME:
        row = meta.run_sync(
            lambda conn: dict(conn.execute(select(users).where(users.c.id == user.id)).mappings().one())
        )
        databases[home].transact_sync(add_copy_txn, row, ACTIVE)
        meta.transact_sync(set_home_txn, user.id, home, ACTIVE)
    for i in range(count):
        body = bytes([i % 251]) * (10 + i * 997 % 300_000)  # some objects span several chunks
        databases[home].transact_sync(put_object_txn, user.id, f"Mail/In/{1_000 + i}_1", body)
    databases[home].transact_sync(set_sender_txn, user.id, b"h" * 32, "approved")
    return user.id


def _paths(database: Database, user_id: int) -> list[str]:
    return [info.path for info in database.run_sync(list_objects_txn, user_id, "", limit=10_000)]


def test_an_account_moves_out_of_the_metabase_byte_for_byte(databases: dict[str, Database]) -> None:
    meta = databases[METABASE_HOME]
    user_id = _account(databases, "alice", METABASE_HOME, 40)
    before = meta.run_sync(digest_txn, user_id)
    lines: list[str] = []
    report = move_home(meta, databases, "alice", "home1", wait_s=0, say=lines.append)
    assert (report.source, report.target, report.objects) == (METABASE_HOME, "home1", 40)
    assert databases["home1"].run_sync(digest_txn, user_id) == before
    assert report.digest == before[2] and report.bytes == before[1]
    assert meta.run_sync(home_of_txn, user_id) == "home1"
    assert _paths(meta, user_id) == []
    assert meta.run_sync(get_user_txn, "alice") is not None  # the account itself stays in the directory
    assert any("verified" in line for line in lines)
    # and on to the other home
    again = move_home(meta, databases, "alice", "home2", wait_s=0)
    assert databases["home2"].run_sync(digest_txn, user_id) == before
    assert again.source == "home1" and _paths(databases["home1"], user_id) == []
    assert databases["home1"].run_sync(lambda conn: conn.execute(select(users.c.id)).all()) == []


def test_a_copy_that_does_not_verify_leaves_the_account_where_it_was(databases: dict[str, Database]) -> None:
    meta = databases[METABASE_HOME]
    user_id = _account(databases, "bob", "home1", 10)
    before = databases["home1"].run_sync(digest_txn, user_id)

    def corrupt(line: str) -> None:
        if "holding its mail" in line:  # after the first copy: one byte of the copy changes, its listing does not

            def flip(conn: Any) -> None:
                chunk = conn.execute(
                    select(object_chunks.c.object_id, object_chunks.c.data)
                    .join(objects, objects.c.id == object_chunks.c.object_id)
                    .where(objects.c.user_id == user_id)
                    .limit(1)
                ).one()
                changed = bytes([chunk.data[0] ^ 1]) + bytes(chunk.data[1:])
                conn.execute(
                    update(object_chunks).where(object_chunks.c.object_id == chunk.object_id).values(data=changed)
                )

            databases["home2"].transact_sync(flip)

    with pytest.raises(HomeMoveError, match="does not match"):
        move_home(meta, databases, "bob", "home2", wait_s=0, say=corrupt)
    assert meta.run_sync(home_of_txn, user_id) == "home1"
    assert databases["home1"].run_sync(digest_txn, user_id) == before
    assert _paths(databases["home2"], user_id) == []
    # the source takes writes again
    databases["home1"].transact_sync(put_object_txn, user_id, "Mail/In/9999_1", b"after")
    state = databases["home1"].run_sync(lambda conn: conn.execute(select(users.c.home_state)).scalar())
    assert state == ACTIVE


def test_moving_to_an_unknown_home_or_where_it_lives_is_refused(databases: dict[str, Database]) -> None:
    meta = databases[METABASE_HOME]
    _account(databases, "carol", "home1", 1)
    with pytest.raises(HomeMoveError, match="no home is called"):
        move_home(meta, databases, "carol", "home9", wait_s=0)
    with pytest.raises(HomeMoveError, match="lives in home1 already"):
        move_home(meta, databases, "carol", "home1", wait_s=0)
    with pytest.raises(HomeMoveError, match="no user named"):
        move_home(meta, databases, "nobody", "home2", wait_s=0)
