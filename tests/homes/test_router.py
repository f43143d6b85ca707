"""Homes on real PostgreSQL (a metabase and two homes): accounts are spread over both, every per-account statement
reaches the account's own home (a query log on each home proves it), and no object lands in the metabase."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from sqlalchemy import event, select

from mailiverse.store.db import Database
from mailiverse.store.homes import Homes, choose_home
from mailiverse.store.schema import objects, user_homes, users
from tests.homes.conftest import HomeUrls, set_reachable
from tests.support.webapi import Api, make_api, signed_in

PASSWORD = "homes password"
NAMES = ("alice", "bob", "carol", "dave")


class QueryLog:
    """Every statement each home's engine runs, with its parameters (SQLAlchemy's cursor events)."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str, Any]] = []

    def attach(self, name: str, database: Database) -> None:
        def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
            self.entries.append((name, statement, parameters))

        event.listen(database.engine, "before_cursor_execute", record)

    def user_ids(self, home: str) -> set[int]:
        """The values of every ``user_id`` parameter of the statements run on ``home``."""
        found: set[int] = set()
        for name, _statement, parameters in self.entries:
            if name != home:
                continue
            for params in parameters if isinstance(parameters, list | tuple) else [parameters]:
                if isinstance(params, dict):
                    found.update(int(v) for k, v in params.items() if k.startswith("user_id") and isinstance(v, int))
        return found


@pytest.fixture
def routed(home_urls: HomeUrls, tmp_path: Path) -> Iterator[tuple[Api, Homes, QueryLog]]:
    meta = Database.open(home_urls.metabase)
    opened = {name: Database.open(url) for name, url in home_urls.homes.items()}
    homes = Homes(meta, opened, {name: 1 for name in opened})
    log = QueryLog()
    for name, database in opened.items():
        log.attach(name, database)
    log.attach("metabase", meta)
    api, delivery = make_api(meta, tmp_path, open_signup=True, with_outbound=False, homes=homes)
    try:
        yield api, homes, log
    finally:
        delivery.stop()
        homes.close()
        meta.close()


def _homes_of(meta: Database) -> dict[str, str]:
    def read(conn: Any) -> dict[str, str]:
        rows = conn.execute(
            select(users.c.name, user_homes.c.home).join(user_homes, user_homes.c.user_id == users.c.id)
        )
        return {str(name): str(home) for name, home in rows}

    with meta.blocking_allowed():
        return meta.run_sync(read)


def _object_owners(database: Database) -> set[int]:
    with database.blocking_allowed():
        return set(database.run_sync(lambda conn: conn.execute(select(objects.c.user_id).distinct()).scalars().all()))


def test_the_home_with_fewest_accounts_for_its_weight_takes_the_next() -> None:
    assert choose_home({"a": 1, "b": 1}, {"a": 3, "b": 2}) == "b"
    assert choose_home({"a": 1, "b": 1}, {}) == "a"
    assert choose_home({"a": 3, "b": 1}, {"a": 5, "b": 2}) == "a"  # 5/3 < 2/1
    assert choose_home({"a": 0, "b": 1}, {"b": 100}) == "b"


@pytest_twisted.ensureDeferred
async def test_accounts_mail_and_api_calls_reach_their_own_home(routed: tuple[Api, Homes, QueryLog]) -> None:
    api, homes, log = routed
    clients = {name: await signed_in(api, name, PASSWORD, index) for index, name in enumerate(NAMES)}
    placed = _homes_of(homes.meta)
    assert sorted(placed) == sorted(NAMES)
    assert sorted(placed.values()) == ["home1", "home1", "home2", "home2"], placed

    for name, client in clients.items():
        put = await client.call("PUT", f"/api/store/Cache/{name}", data=name.encode() * 10)
        assert put.status == 201, put.body
    # Mail between accounts of both homes: one message, recipients in two homes, both copies before the reply.
    sent = await clients["alice"].call(
        "POST",
        "/api/send",
        json_body={"to": [f"{n}@example.org" for n in NAMES if n != "alice"], "subject": "hi", "text": "all\n"},
    )
    assert sent.status == 200, sent.body
    for name, client in clients.items():
        listing = (await client.call("GET", "/api/store?prefix=")).json()["objects"]
        paths = [item["path"] for item in listing]
        assert f"Cache/{name}" in paths
        assert any(p.startswith("Mail/In/" if name != "alice" else "Mail/Sent/") for p in paths), (name, paths)
        got = await client.call("GET", f"/api/store/Cache/{name}")
        assert got.body == name.encode() * 10

    ids = {name: await _id(homes.meta, name) for name in NAMES}
    for home in ("home1", "home2"):
        mine = {ids[name] for name, where in placed.items() if where == home}
        theirs = set(ids.values()) - mine
        assert _object_owners(homes.database(home)) == mine
        touched = log.user_ids(home)
        assert touched & mine, f"no statement with a user_id reached {home}"
        assert not touched & theirs, f"{home} was asked about another home's accounts: {touched & theirs}"
    # The metabase was never asked for an object (before this test's own look into it below).
    on_meta = [statement for name, statement, _ in log.entries if name == "metabase" and " objects" in statement]
    assert not on_meta, on_meta[:3]
    assert _object_owners(homes.meta) == set()


async def _id(meta: Database, name: str) -> int:
    return int(await meta.run(lambda conn: conn.execute(select(users.c.id).where(users.c.name == name)).scalar_one()))


@pytest_twisted.ensureDeferred
async def test_a_deleted_account_leaves_nothing_in_its_home(routed: tuple[Api, Homes, QueryLog]) -> None:
    api, homes, _log = routed
    client = await signed_in(api, "erin", PASSWORD, 0)
    assert (await client.call("PUT", "/api/store/Cache/x", data=b"x" * 100)).status == 201
    home = _homes_of(homes.meta)["erin"]
    assert _object_owners(homes.database(home))
    user_id = await _id(homes.meta, "erin")
    await homes.remove(user_id)
    assert _object_owners(homes.database(home)) == set()


@pytest_twisted.ensureDeferred
async def test_a_home_that_is_down_answers_503_for_its_accounts_only(
    routed: tuple[Api, Homes, QueryLog], home_urls: HomeUrls
) -> None:
    api, homes, _log = routed
    clients = {name: await signed_in(api, name, PASSWORD, index) for index, name in enumerate(("erin", "frank"))}
    placed = _homes_of(homes.meta)
    for name, client in clients.items():
        assert (await client.call("PUT", f"/api/store/Cache/{name}", data=b"x")).status == 201
    down = "erin"
    up = "frank"
    assert placed[down] != placed[up]
    set_reachable(home_urls.homes[placed[down]], False)
    try:
        for method in ("GET", "PUT"):
            refused = await clients[down].call(
                method, f"/api/store/Cache/{down}", data=b"y" if method == "PUT" else None
            )
            assert (refused.status, refused.json()["error"]) == (503, "home_unavailable"), refused.body
            assert refused.header("Retry-After") == "5"
        listing = await clients[down].call("GET", "/api/store?prefix=")
        assert listing.status == 503
        fine = await clients[up].call("GET", f"/api/store/Cache/{up}")
        assert (fine.status, fine.body) == (200, b"x")
        assert (await clients[up].call("PUT", f"/api/store/Cache/{up}2", data=b"z")).status == 201
    finally:
        set_reachable(home_urls.homes[placed[down]], True)
