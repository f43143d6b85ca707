"""Per-account storage quotas: the usage counter follows every put and delete; a put past the quota stores nothing."""

from __future__ import annotations

import functools

import pytest
import pytest_twisted
from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection
from twisted.internet import defer

from mailiverse.store import CHUNK_SIZE, Database, InvalidInput, User, UserNotFound, quota
from mailiverse.store import objects as objects_repo
from mailiverse.store import users as users_repo
from mailiverse.store.errors import OverQuota
from mailiverse.store.schema import objects, users


def _summed_txn(conn: Connection, user_id: int) -> int:
    total = conn.execute(select(func.coalesce(func.sum(objects.c.size), 0)).where(objects.c.user_id == user_id))
    return int(total.scalar_one())


async def _used(database: Database, user_id: int) -> tuple[int, int]:
    """(the counter, the sum of the user's object sizes): always equal."""
    usage = await database.run(quota.get_usage_txn, user_id)
    return usage.used_bytes, await database.run(_summed_txn, user_id)


@pytest_twisted.ensureDeferred
async def test_usage_follows_puts_replacements_and_deletes(database: Database, user: User) -> None:
    """Creating, replacing (in place, conditionally, streamed) and deleting objects keep the counter at the sum."""
    put = objects_repo.put_object_txn
    assert await _used(database, user.id) == (0, 0)
    await database.transact(put, user.id, "Cache/a", b"12345")
    assert await _used(database, user.id) == (5, 5)
    await database.transact(put, user.id, "Cache/a", b"1234567")
    assert await _used(database, user.id) == (7, 7)
    await database.transact(put, user.id, "Cache/a", b"12", if_version=2)
    assert await _used(database, user.id) == (2, 2)
    big = [b"x" * CHUNK_SIZE, b"y" * CHUNK_SIZE, b"z"]
    await database.transact(put, user.id, "Cache/big", iter(big))
    assert await _used(database, user.id) == (2 + 2 * CHUNK_SIZE + 1, 2 + 2 * CHUNK_SIZE + 1)
    await database.transact(put, user.id, "Mail/In/1", b"abc", if_absent=True)
    assert await _used(database, user.id) == (2 * CHUNK_SIZE + 6, 2 * CHUNK_SIZE + 6)
    assert await database.transact(objects_repo.delete_object_txn, user.id, "Cache/big")
    assert not await database.transact(objects_repo.delete_object_txn, user.id, "Cache/none")
    assert await _used(database, user.id) == (5, 5)
    fetched = await database.run(users_repo.get_user_txn, "alice")
    assert fetched is not None and (fetched.used_bytes, fetched.quota_bytes) == (5, None)


@pytest_twisted.ensureDeferred
async def test_a_put_past_the_quota_is_refused_and_stores_nothing(database: Database, user: User) -> None:
    """With a quota of 10 bytes, a put that would pass it fails with OverQuota and changes nothing."""
    put = objects_repo.put_object_txn
    await database.transact(quota.set_quota_txn, user.id, 10)
    await database.transact(put, user.id, "Cache/a", b"12345678", default_quota=1000)
    with pytest.raises(OverQuota):
        await database.transact(put, user.id, "Cache/b", b"123", default_quota=1000)
    with pytest.raises(OverQuota):
        await database.transact(put, user.id, "Cache/a", b"12345678901", default_quota=1000)
    streamed = iter([b"x" * CHUNK_SIZE, b"y" * CHUNK_SIZE, b"z"])
    with pytest.raises(OverQuota):
        await database.transact(put, user.id, "Cache/c", streamed, default_quota=1000)
    assert await database.run(objects_repo.get_object_info_txn, user.id, "Cache/b") is None
    assert await database.run(objects_repo.read_object_txn, user.id, "Cache/a") == b"12345678"
    assert await _used(database, user.id) == (8, 8)
    # Up to the quota exactly is allowed; a put that shrinks an object always is.
    await database.transact(put, user.id, "Cache/b", b"12", default_quota=1000)
    assert await _used(database, user.id) == (10, 10)
    await database.transact(put, user.id, "Cache/a", b"1", default_quota=1000)
    assert await _used(database, user.id) == (3, 3)


@pytest_twisted.ensureDeferred
async def test_the_default_quota_applies_when_the_account_has_none(database: Database, user: User) -> None:
    """A NULL quota means the caller's default; an account's own quota overrides it; ``default`` restores it."""
    put = objects_repo.put_object_txn
    with pytest.raises(OverQuota):
        await database.transact(put, user.id, "Cache/a", b"12345", default_quota=4)
    usage = await database.transact(quota.set_quota_txn, user.id, 5)
    assert (usage.used_bytes, usage.quota_bytes, usage.limit(4)) == (0, 5, 5)
    await database.transact(put, user.id, "Cache/a", b"12345", default_quota=4)
    usage = await database.transact(quota.set_quota_txn, user.id, None)
    assert (usage.quota_bytes, usage.limit(4), usage.is_full(4), usage.is_full(6)) == (None, 4, True, False)


@pytest_twisted.ensureDeferred
async def test_counting_only_puts_and_deletes_are_never_refused(database: Database, user: User) -> None:
    """Without a default quota a put is counted but not refused (the Sent copy); a delete always succeeds."""
    put = objects_repo.put_object_txn
    await database.transact(quota.set_quota_txn, user.id, 0)
    await database.transact(put, user.id, "Mail/Sent/1", b"sent copy", if_absent=True)
    assert await _used(database, user.id) == (9, 9)
    assert await database.transact(objects_repo.delete_object_txn, user.id, "Mail/Sent/1", if_version=1)
    assert await _used(database, user.id) == (0, 0)


@pytest_twisted.ensureDeferred
async def test_set_quota_checks_its_input(database: Database, user: User) -> None:
    """A negative or huge quota is InvalidInput; an unknown account is UserNotFound."""
    for wrong in (-1, quota.MAX_QUOTA_BYTES + 1, True, 1.5):
        with pytest.raises(InvalidInput):
            await database.transact(quota.set_quota_txn, user.id, wrong)
    with pytest.raises(UserNotFound):
        await database.transact(quota.set_quota_txn, user.id + 1000, 5)
    with pytest.raises(UserNotFound):
        await database.run(quota.get_usage_txn, user.id + 1000)


@pytest_twisted.ensureDeferred
async def test_recount_repairs_every_counter(database: Database, user: User) -> None:
    """recount_usage_txn sets each account's counter to the sum of its objects (used by restores)."""
    await database.transact(objects_repo.put_object_txn, user.id, "Cache/a", b"1234")
    await database.transact(lambda conn: conn.execute(update(users).values(used_bytes=999)))
    await database.transact(quota.recount_usage_txn)
    assert await _used(database, user.id) == (4, 4)


@pytest_twisted.ensureDeferred
async def test_concurrent_writers_keep_every_counter_exact(database: Database, user: User) -> None:
    """Puts, replacements and deletes of the same paths at once, and grouped writes to two accounts in
    both orders (on PostgreSQL, on several connections), all succeed and leave each counter at its sum."""
    other = await database.transact(users_repo.add_user_txn, "bob", b"public-key-der", "v2")

    def both_txn(conn: Connection, first: int, second: int, n: int) -> None:
        for owner in (first, second):
            objects_repo.put_object_txn(conn, owner, f"Mail/In/{n}_{first}", b"m" * n, if_absent=True)

    writes = []
    for n in range(1, 61):
        path = f"Cache/{n % 5}"
        if n % 3 == 0:
            writes.append(database.transact(objects_repo.delete_object_txn, user.id, path))
        else:
            writes.append(database.transact(objects_repo.put_object_txn, user.id, path, b"x" * n))
        first, second = (user.id, other.id) if n % 2 else (other.id, user.id)
        grouped = functools.partial(both_txn, first=first, second=second, n=n)
        writes.append(database.transact_grouped(grouped, user_ids=[first, second]))
    await defer.gatherResults([defer.Deferred.fromCoroutine(write) for write in writes], consumeErrors=True)
    for owner in (user.id, other.id):
        used, summed = await _used(database, owner)
        assert used == summed > 0
