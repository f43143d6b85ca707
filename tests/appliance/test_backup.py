"""Encrypted backup and restore of an appliance's database and keys."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from mailiverse.admin.backup_archive import HEADER_SIZE, BackupError, BadArchive, create_backup, restore_backup
from mailiverse.config import DataDir
from mailiverse.legacy.serverkeys import ensure_server_keys
from mailiverse.store.db import Database

PASSPHRASE = "correct horse battery staple"
FAST_KDF = 14  # scrypt N=2^14 keeps the tests quick; the default is 2^17


def _appliance(root: Path) -> tuple[DataDir, int]:
    from mailiverse.store.users import add_user_txn

    data = DataDir(root)
    data.create()
    ensure_server_keys(data)
    db = Database.open(data.default_db_url, reactor=None)
    try:
        with db.blocking_allowed():
            user = db.transact_sync(add_user_txn, "alice", b"\x30" * 300, "v1")
    finally:
        db.close()
    return data, user.id


def _users(url: str) -> list[str]:
    from mailiverse.store.users import list_users_txn

    db = Database.open(url, reactor=None)
    try:
        with db.blocking_allowed():
            return [u.name for u in db.run_sync(list_users_txn)]
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
    from mailiverse.admin.backup_dump import load_rows, logical_dump, rows_from_jsonl

    data, _ = _appliance(tmp_path / "a")
    dump = tmp_path / "dump.jsonl"
    with dump.open("wb") as handle:
        counts = logical_dump(data.default_db_url, handle)
    assert counts["users"] == 1
    (tmp_path / "c").mkdir()
    url = f"sqlite:///{tmp_path / 'c' / 'db.sqlite3'}"
    loaded = load_rows(url, rows_from_jsonl(dump))
    assert loaded == counts
    assert _users(url) == ["alice"]
    with pytest.raises(BackupError, match="already holds data"):
        load_rows(url, rows_from_jsonl(dump))


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


#: Made by the backup code as it was before the container moved onto ``mailiverse.crypto.stream``
#: (commit 02d6d80): its ``_SealingWriter`` with 2 KiB chunks (so several chunks, all but the last
#: short: the format allows any length up to 1 MiB), holding a manifest, ``keys/send.key.pem`` and
#: the JSONL dump of a database with the one user ``alice``; scrypt N=2^14, passphrase PASSPHRASE.
OLD_ARCHIVE = Path(__file__).parent / "data" / "backup-v1-2kib-chunks.mvb"

#: SHA-256 of what that earlier ``_SealingWriter`` wrote for a plaintext of each length, given
#: ``secrets.token_bytes(n)`` = ``bytes(range(n))`` and the plaintext fed in 70,001-byte pieces.
OLD_CONTAINER_SHA256 = {
    0: "1c75eeb7689253969c7848b0f36b9f60b08af48df0df05989b6e9aa53ab438aa",
    1: "b4bb9f8355c4db4566e0cc7ef3826740b0c3c9a68bdc59597d5d03a0790330a1",
    5000: "847215afa64784def733f77caeabfad006f707b809c37afb40dac565814b2973",
    1048575: "ee5cd9f237dd9bb77997c4a6bde13d29ecb9d11048087116bd23ddd596d59ac9",
    1048576: "31d9545e6dd1e708f03961f8c0510ef8e4fc2cebcc562dcde6626f9c37f740a4",
    1048577: "85cde29d9b0667d85d49545bd9e9004680c30698994d0bf9ee54a26ee42ab904",
    2097152: "cea7fd4d97bfc9de619dff71de2921fabe35c863e84b72a3cda42ac659038a04",
    2109497: "84a77a47ef130e8d2fb84edd1dbc627f904c3ee2c5cada47b5f3f270bc43d84d",
}


def test_an_archive_made_by_the_earlier_code_restores(tmp_path: Path) -> None:
    """A backup written before the container was built on the crypto stream restores its keys and accounts."""
    result = restore_backup(tmp_path / "b", OLD_ARCHIVE, PASSPHRASE)
    assert result.files == ("keys/send.key.pem", "appliance.json")
    assert (tmp_path / "b" / "keys" / "send.key.pem").read_bytes().startswith(b"not a real key")
    assert result.tables["users"] == 1
    assert _users(result.db_url) == ["alice"]


@pytest.mark.parametrize("length", sorted(OLD_CONTAINER_SHA256))
def test_container_bytes_are_those_of_the_earlier_code(monkeypatch: pytest.MonkeyPatch, length: int) -> None:
    """Given the same salt and nonce prefix, the sealed container is byte for byte what the earlier code wrote."""
    import hashlib
    import secrets

    from mailiverse.admin import backup_archive

    monkeypatch.setattr(secrets, "token_bytes", lambda n: bytes(range(n)))
    plaintext = hashlib.shake_256(b"mailiverse-backup-%d" % length).digest(length) if length else b""
    out = io.BytesIO()
    writer = backup_archive._SealingWriter(out, PASSPHRASE, FAST_KDF)
    for start in range(0, length, 70001):
        writer.write(plaintext[start : start + 70001])
    writer.finish()
    assert hashlib.sha256(out.getvalue()).hexdigest() == OLD_CONTAINER_SHA256[length]
    opened = io.BufferedReader(backup_archive._OpeningReader(io.BytesIO(out.getvalue()), PASSPHRASE))
    assert opened.read() == plaintext


def test_a_dump_from_before_quotas_restores_with_each_account_usage_counted(tmp_path: Path) -> None:
    """Rows from a dump made before the usage counter existed load with every account's usage recounted."""
    from mailiverse.admin.backup_dump import load_rows
    from mailiverse.store.quota import get_usage_txn

    account = {"id": 1, "name": "alice", "created_ms": 0, "envelope_format": "v1", "public_key": b"k"}
    stored = {"user_id": 1, "version": 1, "created_ms": 0, "modified_ms": 0}
    rows = [
        ("users", account),
        ("objects", {"id": 1, "path": "Mail/In/1", "size": 1000, **stored}),
        ("objects", {"id": 2, "path": "Mail/In_Json/1", "size": 234, **stored}),
    ]
    (tmp_path / "c").mkdir()
    url = f"sqlite:///{tmp_path / 'c' / 'db.sqlite3'}"
    load_rows(url, iter(rows))
    db = Database.open(url, reactor=None)
    try:
        with db.blocking_allowed():
            assert db.run_sync(get_usage_txn, 1).used_bytes == 1234
    finally:
        db.close()
