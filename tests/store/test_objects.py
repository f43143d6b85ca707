"""Object repository behaviour on both backends: versions, conditions, chunking, streaming, cascade."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
import pytest_twisted
from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from twisted.internet import defer

from mailiverse.store import (
    CHUNK_SIZE,
    Database,
    InvalidPath,
    ObjectNotFound,
    ObjectTooLarge,
    User,
    UserNotFound,
    VersionConflict,
)
from mailiverse.store import objects as objects_repo
from mailiverse.store.schema import object_chunks, objects
from tests.support.store_calls import StoreCalls


def _chunk_stats(conn: Connection) -> tuple[int, int, int]:
    row = conn.execute(
        select(
            func.count(),
            func.max(func.length(object_chunks.c.data)),
            func.min(object_chunks.c.seq),
        )
    ).one()
    return int(row[0]), int(row[1] or 0), int(row[2] or 0)


def _row_counts(conn: Connection) -> tuple[int, int]:
    return (
        int(conn.execute(select(func.count()).select_from(objects)).scalar_one()),
        int(conn.execute(select(func.count()).select_from(object_chunks)).scalar_one()),
    )


@pytest_twisted.ensureDeferred
async def test_put_get_and_versions(store: StoreCalls, user: User) -> None:
    """The first put makes version 1, each later put adds one and replaces the body; created_ms stays."""
    first = await store.put_object(user.id, "Mail/In/1", b"hello")
    assert (first.version, first.size, first.path) == (1, 5, "Mail/In/1")
    second = await store.put_object(user.id, "Mail/In/1", [b"good", b"bye"])
    assert (second.version, second.size) == (2, 7)
    assert second.created_ms == first.created_ms and second.modified_ms > first.modified_ms
    assert await store.read_object(user.id, "Mail/In/1") == b"goodbye"
    assert await store.get_object_info(user.id, "Mail/In/1") == second
    assert await store.get_object_info(user.id, "Mail/In/2") is None


@pytest_twisted.ensureDeferred
async def test_empty_object(store: StoreCalls, user: User) -> None:
    """An empty body is stored with size 0 and reads back as b''."""
    info = await store.put_object(user.id, "Cache/empty", [])
    assert info.size == 0
    assert await store.read_object(user.id, "Cache/empty") == b""


@pytest_twisted.ensureDeferred
async def test_if_absent_and_if_version(store: StoreCalls, user: User) -> None:
    """if_absent fails on an existing object; if_version succeeds only at exactly that version."""
    await store.put_object(user.id, "a/b", b"1", if_absent=True)
    with pytest.raises(VersionConflict):
        await store.put_object(user.id, "a/b", b"2", if_absent=True)
    with pytest.raises(VersionConflict):
        await store.put_object(user.id, "a/b", b"2", if_version=2)
    with pytest.raises(VersionConflict):
        await store.put_object(user.id, "a/missing", b"2", if_version=1)
    updated = await store.put_object(user.id, "a/b", b"2", if_version=1)
    assert updated.version == 2
    assert await store.read_object(user.id, "a/b") == b"2"


@pytest_twisted.ensureDeferred
async def test_concurrent_conditional_puts_have_one_winner(store: StoreCalls, user: User) -> None:
    """Of twenty concurrent If-Match puts against the same version exactly one succeeds."""
    await store.put_object(user.id, "Cache/index", b"base")
    attempts = [
        defer.Deferred.fromCoroutine(store.put_object(user.id, "Cache/index", f"w{i}".encode(), if_version=1))
        for i in range(20)
    ]
    results = await defer.DeferredList(attempts, consumeErrors=True)
    winners = [value for ok, value in results if ok]
    losers = [value for ok, value in results if not ok]
    assert len(winners) == 1 and winners[0].version == 2
    assert all(failure.check(VersionConflict) for failure in losers)
    assert await store.read_object(user.id, "Cache/index") == f"w{[ok for ok, _ in results].index(True)}".encode()


@pytest_twisted.ensureDeferred
async def test_concurrent_unconditional_puts_count_versions(store: StoreCalls, user: User) -> None:
    """Fifty concurrent puts to one path all land: the final version is 50 and the body is one of theirs."""
    bodies = {f"body{i}".encode() for i in range(50)}
    await defer.gatherResults(
        [defer.Deferred.fromCoroutine(store.put_object(user.id, "Mail/In/x", body)) for body in bodies]
    )
    info = await store.get_object_info(user.id, "Mail/In/x")
    assert info is not None and info.version == 50
    assert await store.read_object(user.id, "Mail/In/x") in bodies


def _pieces(total: int, piece: int) -> Iterator[bytes]:
    counter = 0
    sent = 0
    while sent < total:
        block = hashlib.sha256(counter.to_bytes(8, "big")).digest() * (piece // 32)
        block = block[: min(piece, total - sent)]
        sent += len(block)
        counter += 1
        yield block


@pytest_twisted.ensureDeferred
async def test_fifty_mebibyte_round_trip_is_chunked(store: StoreCalls, database: Database, user: User) -> None:
    """A 50 MiB object streamed in odd-sized pieces is stored as 1 MiB chunks and reads back intact."""
    total = 50 * 1024 * 1024
    expected = hashlib.sha256()
    for block in _pieces(total, 300_000):
        expected.update(block)
    info = await store.put_object(user.id, "Mail/In/big", _pieces(total, 300_000))
    assert info.size == total
    count, largest, first_seq = await database.run(_chunk_stats)
    assert (count, largest, first_seq) == (total // CHUNK_SIZE, CHUNK_SIZE, 0)
    streamed_info, chunks = await store.iter_object(user.id, "Mail/In/big")
    assert streamed_info == info
    actual = hashlib.sha256()
    seen = 0
    async for chunk in chunks:
        assert len(chunk) <= CHUNK_SIZE
        actual.update(chunk)
        seen += 1
    assert seen == count
    assert actual.hexdigest() == expected.hexdigest()

    def stream_in_one_read(conn: Connection) -> str:
        digest = hashlib.sha256()
        for chunk in objects_repo.iter_object_chunks_txn(conn, user.id, "Mail/In/big"):
            digest.update(chunk)
        return digest.hexdigest()

    assert await database.run(stream_in_one_read) == expected.hexdigest()


@pytest_twisted.ensureDeferred
async def test_replacing_an_object_during_streaming_is_detected(store: StoreCalls, user: User) -> None:
    """A chunked read raises VersionConflict if the object is replaced part-way, never mixing versions."""
    await store.put_object(user.id, "Mail/In/m", b"a" * (CHUNK_SIZE + 10))
    _, chunks = await store.iter_object(user.id, "Mail/In/m")
    first = await chunks.__anext__()
    assert first == b"a" * CHUNK_SIZE
    await store.put_object(user.id, "Mail/In/m", b"b" * (CHUNK_SIZE + 10))
    with pytest.raises(VersionConflict):
        await chunks.__anext__()


@pytest_twisted.ensureDeferred
async def test_size_limit_rolls_back(store: StoreCalls, database: Database, user: User) -> None:
    """A body over max_size raises ObjectTooLarge and leaves the previous version untouched."""
    await store.put_object(user.id, "Mail/In/s", b"old")
    with pytest.raises(ObjectTooLarge):
        await store.put_object(user.id, "Mail/In/s", [b"x" * 600, b"y" * 600], max_size=1000)
    info = await store.get_object_info(user.id, "Mail/In/s")
    assert info is not None and info.version == 1
    assert await store.read_object(user.id, "Mail/In/s") == b"old"


@pytest_twisted.ensureDeferred
async def test_missing_objects_and_unknown_users(store: StoreCalls, user: User) -> None:
    """Reading a missing object raises ObjectNotFound; putting for an unknown user raises UserNotFound."""
    with pytest.raises(ObjectNotFound):
        await store.read_object(user.id, "nope")
    with pytest.raises(ObjectNotFound):
        await store.iter_object(user.id, "nope")
    with pytest.raises(UserNotFound):
        await store.put_object(user.id + 1000, "Mail/In/1", b"x")


@pytest.mark.parametrize("path", ["../../etc/passwd", "/abs", "a//b", "a/\x00", "a/./b", "x" * 2000])
@pytest_twisted.ensureDeferred
async def test_hostile_paths_never_reach_the_database(
    store: StoreCalls, database: Database, user: User, path: str
) -> None:
    """put, get, read and delete refuse invalid paths with InvalidPath and store nothing."""
    with pytest.raises(InvalidPath):
        await store.put_object(user.id, path, b"x")
    with pytest.raises(InvalidPath):
        await store.get_object_info(user.id, path)
    with pytest.raises(InvalidPath):
        await store.delete_object(user.id, path)
    assert await database.run(_row_counts) == (0, 0)


@pytest_twisted.ensureDeferred
async def test_delete_object_with_and_without_version(store: StoreCalls, database: Database, user: User) -> None:
    """delete reports existence, honours if_version, and removes the object's chunks."""
    await store.put_object(user.id, "a", b"1")
    await store.put_object(user.id, "a", b"2")
    with pytest.raises(VersionConflict):
        await store.delete_object(user.id, "a", if_version=1)
    assert await store.delete_object(user.id, "a", if_version=2) is True
    assert await store.delete_object(user.id, "a") is False
    assert await store.delete_object(user.id, "a", if_version=3) is False
    assert await database.run(_row_counts) == (0, 0)


@pytest_twisted.ensureDeferred
async def test_deleting_a_user_cascades_to_objects_and_chunks(
    store: StoreCalls, database: Database, user: User
) -> None:
    """Deleting a user removes their objects and chunks (ON DELETE CASCADE) but not other users' data."""
    other = await store.add_user("bob", b"k", "v2")
    for owner in (user, other):
        await store.put_object(owner.id, "Mail/In/1", b"x" * (CHUNK_SIZE + 1))
        await store.put_object(owner.id, "Mail/In/2", b"y")
    assert await database.run(_row_counts) == (4, 6)
    assert await store.delete_user(user.id)
    assert await database.run(_row_counts) == (2, 3)
    assert await store.read_object(other.id, "Mail/In/1") == b"x" * (CHUNK_SIZE + 1)


@pytest_twisted.ensureDeferred
async def test_objects_are_per_user(store: StoreCalls, user: User) -> None:
    """Two users may hold the same path independently."""
    other = await store.add_user("bob", b"k", "v2")
    await store.put_object(user.id, "Cache/x", b"alice's")
    await store.put_object(other.id, "Cache/x", b"bob's")
    assert await store.read_object(user.id, "Cache/x") == b"alice's"
    assert await store.read_object(other.id, "Cache/x") == b"bob's"
    assert await store.count_objects(user.id) == 1


@pytest_twisted.ensureDeferred
async def test_one_transaction_for_several_recipients(database: Database, user: User) -> None:
    """Several puts in one transact() commit together or not at all (as delivery to many recipients needs)."""

    def deliver(conn: Connection, fail: bool) -> None:
        objects_repo.put_object_txn(conn, user.id, "Mail/In/a", b"1")
        objects_repo.put_object_txn(conn, user.id, "Mail/In_Json/a", b"2")
        if fail:
            raise RuntimeError("crash before commit")

    with pytest.raises(RuntimeError):
        await database.transact(deliver, True)
    assert await database.run(_row_counts) == (0, 0)
    await database.transact(deliver, False)
    assert await database.run(_row_counts) == (2, 2)
