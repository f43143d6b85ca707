"""Listing the newest 50 of 100,000 objects through the API stays fast on SQLite and PostgreSQL (figures printed)."""

from __future__ import annotations

import time

import pytest
import pytest_twisted
from sqlalchemy import insert

from mailiverse.store.schema import objects
from mailiverse.store.users import get_user_txn
from tests.support.webapi import Api

COUNT = 100_000


def _fill(conn, user_id: int) -> None:  # type: ignore[no-untyped-def]
    rows = [
        {
            "user_id": user_id,
            "path": f"Mail/In/{1_700_000_000_000 + i}_{i}",
            "version": 1,
            "created_ms": 1_700_000_000_000 + i,
            "modified_ms": 1_700_000_000_000 + i,
            "size": 0,
        }
        for i in range(COUNT)
    ]
    for start in range(0, COUNT, 10_000):
        conn.execute(insert(objects), rows[start : start + 10_000])


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_newest_50_of_100000(open_api: Api) -> None:
    """GET /api/store?order=newest&limit=50 over 100,000 objects returns the right page quickly."""
    client = open_api.client()
    assert (await client.signup("alice", "scale password")).status == 201
    assert (await client.login("alice", "scale password")).status == 200
    user = await open_api.database.run(get_user_txn, "alice")
    assert user is not None
    await open_api.database.transact(_fill, user.id)
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        reply = await client.call("GET", "/api/store?prefix=Mail/In/&order=newest&limit=50")
        timings.append(time.perf_counter() - started)
    page = reply.json()
    assert [o["path"] for o in page["objects"]][:2] == [
        f"Mail/In/{1_700_000_000_000 + COUNT - 1}_{COUNT - 1}",
        f"Mail/In/{1_700_000_000_000 + COUNT - 2}_{COUNT - 2}",
    ]
    assert len(page["objects"]) == 50 and page["next"] is not None
    best = min(timings)
    print(
        f"\n[{open_api.database.dialect_name}] newest 50 of {COUNT} via API: best {best * 1000:.1f} ms, "
        f"median {sorted(timings)[2] * 1000:.1f} ms"
    )
    assert best < 0.5
