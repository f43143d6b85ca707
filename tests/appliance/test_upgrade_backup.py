"""``mailiverse-admin backup-before-upgrade``: the backup the unit takes before a new version migrates the schema."""

from __future__ import annotations

import contextlib
import datetime
import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from mailiverse.admin import main
from mailiverse.admin.cli import build_parser
from mailiverse.admin.upgrade_backup import backup_before_upgrade, prune, space_needed
from mailiverse.config import DataDir
from mailiverse.legacy.serverkeys import ensure_server_keys
from mailiverse.store import migrate
from mailiverse.store.engine import normalise_url
from mailiverse.store.migrate import HEAD_REVISION, MigrationFailed, upgrade_in_child
from tests.support.backup_reader import open_backup
from tests.support.database import fresh_postgres_database

OLD = "0012"
FAST_KDF = 14  # scrypt N=2^14 keeps the in-process runs quick; the CLI runs use the default
ADMIN = Path(sys.executable).parent / "mailiverse-admin"


@contextlib.contextmanager
def _engine(url: str) -> Iterator[Engine]:
    engine = create_engine(normalise_url(url))
    try:
        yield engine
    finally:
        engine.dispose()


def _at(url: str, revision: str, users: tuple[str, ...] = ("alice", "bob")) -> None:
    """Migrate ``url`` to ``revision`` only, and add ``users`` with plain SQL (the store's code is at head)."""
    with _engine(url) as engine:
        migrate.upgrade(engine, revision)
        with engine.begin() as conn:
            for name in users:
                conn.execute(
                    text(
                        "INSERT INTO users (name, created_ms, envelope_format, public_key) "
                        "VALUES (:name, 1, 'v1', :key)"
                    ),
                    {"name": name, "key": b"\x30" * 300},
                )


def _set_revision(url: str, revision: str) -> None:
    with _engine(url) as engine, engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})


def _appliance(root: Path, revision: str | None = OLD) -> DataDir:
    """A data dir with its keys and, unless ``revision`` is None, its SQLite database at ``revision``."""
    data = DataDir(root)
    data.create()
    ensure_server_keys(data)
    if revision is not None:
        _at(data.default_db_url, revision)
    return data


def _command(data_dir: Path, *options: str, db: str | None = None) -> Any:
    argv = ["--data-dir", str(data_dir)] + (["--db", db] if db else []) + ["backup-before-upgrade", *options]
    return build_parser().parse_args(argv)


def _clock(start: datetime.datetime) -> Callable[[], datetime.datetime]:
    times = iter(start + datetime.timedelta(minutes=i) for i in range(1000))
    return lambda: next(times)


def _backups(data: DataDir) -> list[Path]:
    return sorted((data.root / "upgrade-backups").glob("before-*.mvb"))


def _user_names(database: Path) -> list[str]:
    conn = sqlite3.connect(database)
    try:
        return [row[0] for row in conn.execute("SELECT name FROM users ORDER BY name")]
    finally:
        conn.close()


def test_a_fresh_data_dir_has_nothing_due_and_gets_no_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A first start (no data dir, or one without a database) is told nothing is due, and nothing is written."""
    assert main(["--data-dir", str(tmp_path / "absent"), "backup-before-upgrade"]) == 0
    assert "no migration is due" in capsys.readouterr().out
    assert not (tmp_path / "absent").exists()

    data = _appliance(tmp_path / "fresh", revision=None)
    before = sorted(p.name for p in data.root.rglob("*"))
    assert main(["--data-dir", str(data.root), "backup-before-upgrade"]) == 0
    assert "no migration is due" in capsys.readouterr().out
    assert sorted(p.name for p in data.root.rglob("*")) == before  # not even an empty database file


def test_a_due_migration_is_backed_up_restorable_then_nothing_is_due(tmp_path: Path) -> None:
    """Through the real CLI: an older schema gets one encrypted backup (0700 dir, 0600 passphrase) that
    ``restore --passphrase-file`` puts back with its rows; after the upgrade nothing is due."""
    data = _appliance(tmp_path / "a")
    run = subprocess.run(
        [str(ADMIN), "--data-dir", str(data.root), "backup-before-upgrade"], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    (backup,) = _backups(data)
    assert backup.name.startswith(f"before-{OLD}-to-{HEAD_REVISION}-") and backup.name.endswith("Z.mvb")
    assert f"{backup}" in run.stdout and "KiB" in run.stdout
    folder = data.root / "upgrade-backups"
    passphrase_file = folder / "passphrase"
    assert folder.stat().st_mode & 0o777 == 0o700
    assert passphrase_file.stat().st_mode & 0o777 == 0o600 and backup.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in folder.iterdir()) == sorted([backup.name, "passphrase"])  # no temporary left
    passphrase = passphrase_file.read_text().strip()
    assert len(passphrase) >= 40 and passphrase.encode() not in backup.read_bytes()

    # Read independently of the appliance's code: the snapshot is the database as it was, at the old revision.
    members = open_backup(backup, passphrase)
    assert "keys/send.key.pem" in members
    snapshot = sqlite3.connect(":memory:")
    snapshot.deserialize(members["database.sqlite3"])
    assert snapshot.execute("SELECT version_num FROM alembic_version").fetchall() == [(OLD,)]

    target = DataDir(tmp_path / "b")
    target.root.mkdir()  # restore wants an appliance data dir, as the one being rolled back is
    assert (
        main(["--data-dir", str(target.root), "restore", str(backup), "--passphrase-file", str(passphrase_file)]) == 0
    )
    assert _user_names(target.database_path) == ["alice", "bob"]
    assert (target.root / "keys" / "send.key.pem").read_bytes() == (data.root / "keys" / "send.key.pem").read_bytes()

    with _engine(data.default_db_url) as engine:
        migrate.upgrade(engine)
    again = subprocess.run(
        [str(ADMIN), "--data-dir", str(data.root), "backup-before-upgrade"], capture_output=True, text=True, check=False
    )
    assert again.returncode == 0 and f"no migration is due: the database is at {HEAD_REVISION}" in again.stdout
    assert _backups(data) == [backup]


def test_nothing_due_loads_neither_alembic_nor_the_backup_code(tmp_path: Path) -> None:
    """The every-start path at head stays light: Alembic and the backup machinery are never imported."""
    data = _appliance(tmp_path / "a", revision="head")
    probe = (
        "import sys; from mailiverse.admin import main; "
        f"code = main(['--data-dir', {str(data.root)!r}, 'backup-before-upgrade']); "
        "print(code, 'alembic' in sys.modules, 'mailiverse.admin.backup_archive' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "0 False False"


def test_only_the_newest_backups_are_kept_and_nothing_else_is_removed(tmp_path: Path) -> None:
    """Five due runs with --keep 3 leave the three newest backups, the passphrase and unrelated files."""
    data = _appliance(tmp_path / "a")
    folder = data.root / "upgrade-backups"
    folder.mkdir(mode=0o700)
    (folder / "notes.txt").write_text("mine")
    (folder / "before-0001-to-0002-20200101T000000Z.mvb.orig").write_text("not a backup name")
    clock = _clock(datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC))
    written = [
        backup_before_upgrade(_command(data.root, "--keep", "3"), clock=clock, log2_n=FAST_KDF) for _ in range(5)
    ]
    assert all(path is not None for path in written)
    assert _backups(data) == sorted(p for p in written[2:] if p is not None)
    assert (folder / "notes.txt").read_text() == "mine"
    assert (folder / "before-0001-to-0002-20200101T000000Z.mvb.orig").exists()
    assert (folder / "passphrase").exists()


def test_prune_counts_only_regular_files_named_as_backups(tmp_path: Path) -> None:
    """A symlink or directory with a backup's name, and look-alike names, are neither counted nor removed."""
    (tmp_path / "elsewhere.mvb").write_text("keep me")
    names = [f"before-0011-to-0012-2026010{i}T000000Z.mvb" for i in range(1, 5)]
    for name in names:
        (tmp_path / name).write_text("x")
    (tmp_path / "before-0012-to-0013-20990101T000000Z.mvb").symlink_to(tmp_path / "elsewhere.mvb")
    (tmp_path / "before-0012-to-0013-20980101T000000Z.mvb").mkdir()
    (tmp_path / "before-0012-to-0013-2000.mvb").write_text("odd time")
    assert prune(tmp_path, 1) == sorted(names, reverse=True)[1:]
    assert (tmp_path / names[-1]).exists() and (tmp_path / "elsewhere.mvb").read_text() == "keep me"
    assert (tmp_path / "before-0012-to-0013-2000.mvb").exists()


def test_a_schema_newer_than_the_code_is_refused_as_the_appliance_refuses_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A downgraded package finds revision 9999: a clear error and exit 1, no backup; the appliance's own
    start-up migration fails on it too."""
    data = _appliance(tmp_path / "a", revision="head")
    _set_revision(data.default_db_url, "9999")
    assert main(["--data-dir", str(data.root), "backup-before-upgrade", "--no-backup"]) == 1
    error = capsys.readouterr().err
    assert "9999" in error and HEAD_REVISION in error and "downgraded" in error
    assert "Reinstall the newer version" in error and "restore" in error
    assert not (data.root / "upgrade-backups").exists()
    with _engine(data.default_db_url) as engine, pytest.raises(MigrationFailed):
        upgrade_in_child(engine, data.default_db_url)


def test_too_little_space_fails_naming_needed_and_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With less free space than the backup needs, the command fails naming both, and writes no backup."""
    data = _appliance(tmp_path / "a")
    real = __import__("shutil").disk_usage
    monkeypatch.setattr("shutil.disk_usage", lambda path: real(path)._replace(free=500))
    assert main(["--data-dir", str(data.root), "backup-before-upgrade"]) == 1
    error = capsys.readouterr().err
    assert "not enough free space" in error and "500 bytes is free" in error and "--no-backup" in error
    assert _backups(data) == []
    assert [p.name for p in (data.root / "upgrade-backups").iterdir()] == []


def test_space_needed_counts_the_archive_and_a_scratch_copy_on_the_same_file_system() -> None:
    """The archive needs 1.2 times the database; a scratch snapshot on the same file system adds its size."""
    assert space_needed(1000, scratch_on_same_fs=False) == 1200
    assert space_needed(1000, scratch_on_same_fs=True) == 2200
    assert space_needed(0, scratch_on_same_fs=True) == 0


def test_no_backup_warns_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--no-backup with a migration due warns on stderr and exits 0 without touching the data dir."""
    data = _appliance(tmp_path / "a")
    assert main(["--data-dir", str(data.root), "backup-before-upgrade", "--no-backup"]) == 0
    captured = capsys.readouterr()
    assert f"from {OLD} to {HEAD_REVISION} WITHOUT a backup" in captured.err
    assert not (data.root / "upgrade-backups").exists()


def test_homes_are_refused_unless_no_backup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An appliance with homes, migration due, is refused as ``backup`` refuses it; --no-backup lets it through."""
    data = _appliance(tmp_path / "a")
    home = f"sqlite:///{tmp_path / 'home.sqlite3'}"
    _at(home, OLD, users=())
    recorded = {"db_url": data.default_db_url, "homes": [["h1", home, 1]]}
    data.appliance_file.write_text(json.dumps(recorded))
    assert main(["--data-dir", str(data.root), "backup-before-upgrade"]) == 1
    assert "homes" in capsys.readouterr().err
    assert main(["--data-dir", str(data.root), "backup-before-upgrade", "--no-backup"]) == 0
    assert not (data.root / "upgrade-backups").exists()


def test_a_hostile_passphrase_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A passphrase file someone shortened, or filled with bytes that are not UTF-8, stops the backup."""
    data = _appliance(tmp_path / "a")
    folder = data.root / "upgrade-backups"
    folder.mkdir(mode=0o700)
    for content in (b"short\n", b"\xff\xfe" * 20):
        (folder / "passphrase").write_bytes(content)
        assert main(["--data-dir", str(data.root), "backup-before-upgrade"]) == 1
        assert "passphrase" in capsys.readouterr().err
    assert _backups(data) == []


def test_bad_keep_is_refused() -> None:
    """--keep must be a whole number of at least 1."""
    for value in ("0", "-2", "three"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["backup-before-upgrade", "--keep", value])


@pytest.mark.postgres
def test_postgres_at_head_and_newer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """On PostgreSQL: at head nothing is due; a newer revision is refused."""
    with fresh_postgres_database("mv_upgrade") as url:
        _at(url, "head")
        data = _appliance(tmp_path / "a", revision=None)
        assert main(["--data-dir", str(data.root), "--db", url, "backup-before-upgrade"]) == 0
        assert "no migration is due" in capsys.readouterr().out
        _set_revision(url, "9999")
        assert main(["--data-dir", str(data.root), "--db", url, "backup-before-upgrade"]) == 1
        assert "9999" in capsys.readouterr().err


@pytest.mark.postgres
def test_postgres_database_size_is_measured(tmp_path: Path) -> None:
    """The space check measures a PostgreSQL database with pg_database_size."""
    from mailiverse.admin.upgrade_backup import database_size

    with fresh_postgres_database("mv_upgrade") as url:
        _at(url, OLD)
        assert database_size(url) > 1024 * 1024  # an empty PostgreSQL database is several MiB


@pytest.mark.postgres
def test_postgres_due_migration_is_backed_up_and_restorable(tmp_path: Path) -> None:
    """On PostgreSQL at an older revision the backup is written and restores its rows into SQLite."""
    with fresh_postgres_database("mv_upgrade") as url:
        _at(url, OLD)
        data = _appliance(tmp_path / "a", revision=None)
        backup = backup_before_upgrade(_command(data.root, db=url), log2_n=FAST_KDF)
        assert backup is not None
        target = DataDir(tmp_path / "b")
        target.root.mkdir()
        passphrase = str(data.root / "upgrade-backups" / "passphrase")
        assert main(["--data-dir", str(target.root), "restore", str(backup), "--passphrase-file", passphrase]) == 0
        assert _user_names(target.database_path) == ["alice", "bob"]


def test_a_file_that_is_not_a_database_is_named_not_backed_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Garbage where the SQLite database should be stops the start with one clear line, and writes nothing."""
    data = _appliance(tmp_path / "a", revision=None)
    data.database_path.write_bytes(b"not a database " * 100)
    assert main(["--data-dir", str(data.root), "backup-before-upgrade"]) == 1
    assert "cannot read the schema revision" in capsys.readouterr().err
    assert not (data.root / "upgrade-backups").exists()
