"""Reading a large object through the one door in short reads: its metadata first, then one chunk per read."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, TypeVar

from mailiverse.store.errors import ObjectNotFound
from mailiverse.store.objects import ObjectInfo, get_object_info_txn, read_chunk_txn

T = TypeVar("T")


class Reader(Protocol):
    """What reading needs of a database: ``run`` (``Database``, or an account's home through the router)."""

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...


async def open_object(database: Reader, user_id: int, path: str) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
    """The object's metadata and its body as chunks, each fetched in its own short read.

    Raises ObjectNotFound at once; the iterator raises VersionConflict if the object is
    replaced part-way, so a reader never mixes two versions.
    """
    info = await database.run(get_object_info_txn, user_id, path)
    if info is None:
        raise ObjectNotFound("no object at this path")
    return info, _chunks(database, info)


async def _chunks(database: Reader, info: ObjectInfo) -> AsyncIterator[bytes]:
    seq = 0
    while True:
        data = await database.run(read_chunk_txn, info.user_id, info.path, info.version, seq)
        if data is None:
            return
        yield data
        seq += 1


__all__ = ["open_object"]
