"""Alembic migrations: from an empty database to head, idempotently, concurrently, matching schema.py."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Connection, Engine

from mailiverse.store import Database, migrate
from mailiverse.store import objects as objects_repo
from mailiverse.store import users as users_repo
from mailiverse.store.engine import normalise_url
from mailiverse.store.schema import metadata
from mailiverse.testing_db import (
    create_postgres_database,
    drop_postgres_database,
    require_postgres,
    sqlite_url,
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of an empty database (a new SQLite file or a new PostgreSQL database)."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path_factory.mktemp("migrate"))
        return
    require_postgres()
    url = create_postgres_database("mv_migrate")
    try:
        yield url
    finally:
        drop_postgres_database(url)


def _engine(url: str) -> Engine:
    return create_engine(normalise_url(url))


def test_upgrade_from_base_is_idempotent_and_keeps_data(empty_url: str) -> None:
    """An empty database is at no revision; upgrading reaches head; a second start changes nothing."""
    db = Database.open(empty_url, migrate=False)
    try:
        with db.blocking_allowed():
            assert migrate.current_revision(db.engine) is None
            migrate.upgrade(db.engine)
            assert migrate.current_revision(db.engine) == migrate.head_revision()
            owner = db.transact_sync(users_repo.add_user_txn, "alice", b"k", "v2")
            db.transact_sync(objects_repo.put_object_txn, owner.id, "Mail/In/1", b"kept")
    finally:
        db.close()
    again = Database.open(empty_url)
    try:
        with again.blocking_allowed():
            assert migrate.current_revision(again.engine) == migrate.head_revision()
            assert again.run_sync(objects_repo.read_object_txn, owner.id, "Mail/In/1") == b"kept"
    finally:
        again.close()


def test_migrated_schema_matches_the_metadata(empty_url: str) -> None:
    """After upgrade, Alembic finds no difference between the database and schema.py."""
    engine = _engine(empty_url)
    try:
        migrate.upgrade(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_downgrade_to_base_and_back(empty_url: str) -> None:
    """Downgrading to base removes every table; upgrading again recreates them."""
    engine = _engine(empty_url)
    try:
        migrate.upgrade(engine)
        migrate.downgrade(engine, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        assert migrate.current_revision(engine) is None
        migrate.upgrade(engine)
        assert {"users", "objects", "object_chunks"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_concurrent_starts_migrate_once(empty_url: str) -> None:
    """Six processes upgrading the same empty database at once all succeed and leave it at head."""
    script = (
        "import sys; from sqlalchemy import create_engine; "
        "from mailiverse.store import migrate; from mailiverse.store.engine import normalise_url; "
        "migrate.upgrade(create_engine(normalise_url(sys.argv[1])))"
    )
    root = Path(__file__).resolve().parents[2]
    environment = {**os.environ, "PYTHONPATH": str(root)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, empty_url],
            env=environment,
            stderr=subprocess.PIPE,
        )
        for _ in range(6)
    ]
    failures = []
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        if process.returncode != 0:
            failures.append(stderr.decode(errors="replace")[-2000:])
    assert failures == []
    engine = _engine(empty_url)
    try:
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()


def test_head_constant_matches_the_scripts() -> None:
    """migrate.HEAD_REVISION, used to skip Alembic on a current schema, is the scripts' real head."""
    from mailiverse.store import migrate

    assert migrate.HEAD_REVISION == migrate.head_revision()


_CHILD_CHECK = """
import sys
from mailiverse.store import Database
from mailiverse.store.migrate import HEAD_REVISION, at_head, upgrade_in_child
url = sys.stdin.read().strip()
db = Database.open(url, migrate=False)
with db.blocking_allowed():
    upgrade_in_child(db.engine, url)
    assert at_head(db.engine)
db.close()
loaded = sorted(m for m in sys.modules if m == "alembic" or m.startswith("alembic."))
print("alembic modules in the server process:", len(loaded))
"""


def test_upgrade_in_a_child_keeps_alembic_out_of_the_server(empty_url: str) -> None:
    """The appliance's start-up path: the schema reaches head and Alembic is never imported by the caller."""
    result = subprocess.run(
        [sys.executable, "-c", _CHILD_CHECK], input=empty_url, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "alembic modules in the server process: 0" in result.stdout
    engine = _engine(empty_url)
    try:
        assert migrate.current_revision(engine) == migrate.head_revision()
        # A second start finds the schema current and starts no child at all.
        started: list[object] = []
        real_run = subprocess.run
        try:
            subprocess.run = lambda *a, **k: started.append(a) or real_run(*a, **k)  # type: ignore[assignment]
            migrate.upgrade_in_child(engine, empty_url)
        finally:
            subprocess.run = real_run  # type: ignore[assignment]
        assert started == []
    finally:
        engine.dispose()


def test_a_failing_child_upgrade_is_a_clear_error(tmp_path: Path) -> None:
    """A database from a newer release (an unknown revision) fails in the child: MigrationFailed with its reason."""
    url = sqlite_url(tmp_path)
    engine = _engine(url)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
            connection.exec_driver_sql("INSERT INTO alembic_version VALUES ('9999')")
            connection.commit()
        with pytest.raises(migrate.MigrationFailed, match=r"schema upgrade failed \(exit 1\).*9999"):
            migrate.upgrade_in_child(engine, url)
    finally:
        engine.dispose()


def _three_accounts(conn: Connection) -> None:
    """alice, bob and carol (ids 1 to 3), as the revisions before 0013 stored accounts."""
    for user_id, name in ((1, "alice"), (2, "bob"), (3, "carol")):
        conn.execute(
            text(
                "INSERT INTO users (id, name, created_ms, envelope_format, public_key)"
                " VALUES (:id, :name, 0, 'v2', :key)"
            ),
            {"id": user_id, "name": name, "key": b"k"},
        )


def test_the_quota_revision_counts_what_each_account_already_stores(empty_url: str) -> None:
    """Upgrading a database with mail in it sets every account's usage to the sum of its objects, quota unset."""
    engine = _engine(empty_url)
    try:
        migrate.upgrade(engine, "0006")
        with engine.begin() as conn:
            _three_accounts(conn)
            for object_id, user_id, size in ((1, 1, 100), (2, 1, 23), (3, 2, 7)):
                conn.execute(
                    text(
                        "INSERT INTO objects (id, user_id, path, version, created_ms, modified_ms, size)"
                        " VALUES (:id, :user_id, :path, 1, 0, 0, :size)"
                    ),
                    {"id": object_id, "user_id": user_id, "path": f"Mail/In/{object_id}", "size": size},
                )
        migrate.upgrade(engine)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT name, used_bytes, quota_bytes FROM users ORDER BY name")).all()
        assert [tuple(row) for row in rows] == [("alice", 123, None), ("bob", 7, None), ("carol", 0, None)]
        migrate.downgrade(engine, "0006")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM objects")).scalar_one() == 3
    finally:
        engine.dispose()


def test_the_changes_revision_numbers_existing_objects_per_account(empty_url: str) -> None:
    """Upgrading a database with objects numbers each account's objects 1..n in creation order, sets its sequence to
    n, and keeps every chunk (no table copy on SQLite); the downgrade keeps them too."""
    engine = _engine(empty_url)
    try:
        migrate.upgrade(engine, "0012")
        with engine.begin() as conn:
            _three_accounts(conn)
            for object_id, user_id in ((1, 1), (2, 2), (3, 1), (4, 1), (5, 2)):
                conn.execute(
                    text(
                        "INSERT INTO objects (id, user_id, path, version, created_ms, modified_ms, size)"
                        " VALUES (:id, :user_id, :path, 1, 0, 0, 1)"
                    ),
                    {"id": object_id, "user_id": user_id, "path": f"Mail/In/{object_id}"},
                )
                conn.execute(
                    text("INSERT INTO object_chunks (object_id, seq, data) VALUES (:id, 0, :data)"),
                    {"id": object_id, "data": b"x"},
                )
        migrate.upgrade(engine)
        with engine.connect() as conn:
            seqs = conn.execute(text("SELECT id, seq FROM objects ORDER BY id")).all()
            users = conn.execute(text("SELECT name, store_seq, tombstone_floor FROM users ORDER BY name")).all()
            chunks = conn.execute(text("SELECT COUNT(*) FROM object_chunks")).scalar_one()
        assert [tuple(row) for row in seqs] == [(1, 1), (2, 1), (3, 2), (4, 3), (5, 2)]
        assert [tuple(row) for row in users] == [("alice", 3, 0), ("bob", 2, 0), ("carol", 0, 0)]
        assert chunks == 5
        migrate.downgrade(engine, "0012")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM object_chunks")).scalar_one() == 5
    finally:
        engine.dispose()
