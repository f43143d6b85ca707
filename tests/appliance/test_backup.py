"""Encrypted backup and restore of an appliance's database and keys."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from mailiverse.backup import HEADER_SIZE, BackupError, BadArchive, create_backup, restore_backup
from mailiverse.config import DataDir
from mailiverse.serverkeys import ensure_server_keys
from mailiverse.store.db import Database

PASSPHRASE = "correct horse battery staple"
FAST_KDF = 14  # scrypt N=2^14 keeps the tests quick; the default is 2^17


def _appliance(root: Path) -> tuple[DataDir, int]:
    from mailiverse.store.users import add_user

    data = DataDir(root)
    data.create()
    ensure_server_keys(data)
    db = Database.open(data.default_db_url, reactor=None)
    try:
        with db.blocking_allowed():
            user = db.transact_sync(add_user, "alice", b"\x30" * 300, "v1")
    finally:
        db.close()
    return data, user.id


def _users(url: str) -> list[str]:
    from mailiverse.store.users import list_users

    db = Database.open(url, reactor=None)
    try:
        with db.blocking_allowed():
            return [u.name for u in db.run_sync(list_users)]
    finally:
        db.close()


def test_round_trip_restores_keys_and_database(tmp_path: Path) -> None:
    """A backup restored into an empty data dir gives back the same key files and the same accounts."""
    data, _ = _appliance(tmp_path / "a")
    archive = tmp_path / "backup.mvb"
    manifest = create_backup(data.root, archive, PASSPHRASE, log2_n=FAST_KDF)
    assert manifest["database"] == "sqlite" and "keys/send.key.pem" in manifest["files"]
    assert archive.stat().st_mode & 0o777 == 0o600
    assert b"BEGIN PRIVATE KEY" not in archive.read_bytes()

    result = restore_backup(tmp_path / "b", archive, PASSPHRASE)
    target = DataDir(tmp_path / "b")
    for name in manifest["files"]:
        assert (target.root / name).read_bytes() == (data.root / name).read_bytes()
        assert (target.root / name).stat().st_mode & 0o777 == 0o600
    assert result.tables["users"] == 1
    assert _users(result.db_url) == ["alice"]


def test_wrong_passphrase_is_one_generic_error_and_writes_nothing(tmp_path: Path) -> None:
    """A wrong passphrase fails with the generic decryption error and leaves the target without keys."""
    data, _ = _appliance(tmp_path / "a")
    archive = tmp_path / "backup.mvb"
    create_backup(data.root, archive, PASSPHRASE, log2_n=FAST_KDF)
    with pytest.raises(BadArchive) as caught:
        restore_backup(tmp_path / "b", archive, "not the passphrase at all")
    assert "passphrase" in str(caught.value) and PASSPHRASE not in str(caught.value)
    assert not (tmp_path / "b" / "keys" / "send.key.pem").exists()


@pytest.mark.parametrize("damage", ["flip", "truncate", "append"])
def test_tampered_archive_is_refused(tmp_path: Path, damage: str) -> None:
    """A flipped byte, a cut-off tail or appended bytes all fail authentication."""
    data, _ = _appliance(tmp_path / "a")
    archive = tmp_path / "backup.mvb"
    create_backup(data.root, archive, PASSPHRASE, log2_n=FAST_KDF)
    raw = bytearray(archive.read_bytes())
    if damage == "flip":
        raw[HEADER_SIZE + 40] ^= 1
    elif damage == "truncate":
        raw = raw[: len(raw) - 20]
    else:
        raw += b"\x00\x00\x00\x10" + b"x" * 16
    archive.write_bytes(bytes(raw))
    with pytest.raises(BadArchive):
        restore_backup(tmp_path / "b", archive, PASSPHRASE)


def test_logical_dump_restores_into_an_empty_database(tmp_path: Path) -> None:
    """The row-by-row path (used for PostgreSQL) reloads every row into a fresh database."""
    from mailiverse.backup import _load_rows, _logical_dump, _rows_from_jsonl

    data, _ = _appliance(tmp_path / "a")
    dump = tmp_path / "dump.jsonl"
    with dump.open("wb") as handle:
        counts = _logical_dump(data.default_db_url, handle)
    assert counts["users"] == 1
    (tmp_path / "c").mkdir()
    url = f"sqlite:///{tmp_path / 'c' / 'db.sqlite3'}"
    loaded = _load_rows(url, _rows_from_jsonl(dump))
    assert loaded == counts
    assert _users(url) == ["alice"]
    with pytest.raises(BackupError, match="already holds data"):
        _load_rows(url, _rows_from_jsonl(dump))


def test_short_passphrase_and_existing_target_are_refused(tmp_path: Path) -> None:
    """Backups need a passphrase of 10 characters or more and never overwrite a file."""
    data, _ = _appliance(tmp_path / "a")
    with pytest.raises(BackupError, match="at least"):
        create_backup(data.root, tmp_path / "x.mvb", "short", log2_n=FAST_KDF)
    existing = tmp_path / "exists.mvb"
    existing.write_bytes(b"keep")
    with pytest.raises(BackupError, match="exists"):
        create_backup(data.root, existing, PASSPHRASE, log2_n=FAST_KDF)
    assert existing.read_bytes() == b"keep"


def test_not_a_backup_is_named(tmp_path: Path) -> None:
    """A file without the header is reported as not a backup."""
    bogus = tmp_path / "bogus"
    bogus.write_bytes(io.BytesIO(b"hello").read())
    with pytest.raises(BackupError, match="not a mailiverse backup"):
        restore_backup(tmp_path / "b", bogus, PASSPHRASE)
