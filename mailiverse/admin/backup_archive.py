"""The backup archive: a tar of the data dir's keys and its database, sealed under a passphrase.

The tar stream is sealed with the chunked AES-256-GCM stream of :mod:`mailiverse.crypto.stream`
under a key derived from the passphrase with scrypt.  Layout of the file (all integers big-endian)::

    header   "MVBACKUP" | version u8 (=1) | kdf u8 (=1, scrypt) | log2(N) u8 | r u8 | p u8
             | salt (16 bytes) | nonce prefix (7 bytes)                       -- 37 bytes
    chunks   length u32 | AES-256-GCM(key, nonce, plaintext, aad=header)       -- repeated
             nonce = nonce prefix | chunk index u32 | last-chunk flag u8 (1 on the last chunk only)
             plaintext is at most 1 MiB; length counts the ciphertext and its 16-byte tag

The key is ``scrypt(passphrase UTF-8, salt, N, r, p, 32 bytes)``.  Reordered, dropped, truncated
or appended chunks fail authentication: the index and the last-chunk flag are in the nonce.

The tar holds ``manifest.json`` first, then the data dir's ``appliance.json``, ``keys/*`` and
``tls/*``, and the database: ``database.sqlite3`` or ``database.jsonl``
(:mod:`mailiverse.admin.backup_dump`).  Restore accepts either form into either backend.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import os
import secrets
import struct
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from mailiverse.admin.backup_dump import (
    JSONL_MEMBER,
    SQLITE_MEMBER,
    load_rows,
    logical_dump,
    replace_sqlite,
    rows_from_jsonl,
    rows_from_sqlite,
    sqlite_snapshot,
)
from mailiverse.admin.errors import BackupError, BadArchive
from mailiverse.admin.ownership import write_owned
from mailiverse.config import DataDir, read_recorded
from mailiverse.crypto.errors import DecryptionError
from mailiverse.crypto.stream import NONCE_PREFIX_SIZE, TAG_SIZE, ChunkOpener, ChunkSealer
from mailiverse.privatefile import private_writer

MAGIC = b"MVBACKUP"
FORMAT_VERSION = 1
KDF_SCRYPT = 1
SCRYPT_LOG2_N = 17
SCRYPT_R = 8
SCRYPT_P = 1
SALT_SIZE = 16
HEADER_SIZE = len(MAGIC) + 5 + SALT_SIZE + NONCE_PREFIX_SIZE
CHUNK_SIZE = 1024 * 1024
MIN_PASSPHRASE_LENGTH = 10
MAX_PASSPHRASE_LENGTH = 1024
#: Limits on what a restore accepts, so a hostile archive cannot exhaust the disk or memory.
MAX_MEMBER_SIZE = 64 * 1024 * 1024 * 1024
MAX_SMALL_FILE = 1024 * 1024
_KEY_DIRS = ("keys", "tls")
_MANIFEST = "manifest.json"
_RECORDED = "appliance.json"
_LENGTH = struct.Struct(">I")


@dataclass(frozen=True)
class RestoreResult:
    """What a restore put back."""

    files: tuple[str, ...]
    tables: dict[str, int]
    db_url: str


def _check_passphrase(passphrase: str) -> bytes:
    data = passphrase.encode("utf-8")
    if len(passphrase) < MIN_PASSPHRASE_LENGTH:
        raise BackupError(f"the passphrase must be at least {MIN_PASSPHRASE_LENGTH} characters")
    if len(data) > MAX_PASSPHRASE_LENGTH:
        raise BackupError(f"the passphrase must be at most {MAX_PASSPHRASE_LENGTH} bytes")
    return data


def _derive(passphrase: bytes, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=1 << log2_n, r=r, p=p).derive(passphrase)


class _SealingWriter(io.RawIOBase):
    """A write-only stream that seals what it is given into the archive's chunks, each after its length."""

    def __init__(self, out: IO[bytes], passphrase: str, log2_n: int = SCRYPT_LOG2_N) -> None:
        salt = secrets.token_bytes(SALT_SIZE)
        prefix = secrets.token_bytes(NONCE_PREFIX_SIZE)
        header = MAGIC + bytes([FORMAT_VERSION, KDF_SCRYPT, log2_n, SCRYPT_R, SCRYPT_P]) + salt + prefix
        key = _derive(_check_passphrase(passphrase), salt, log2_n, SCRYPT_R, SCRYPT_P)
        self._chunks = ChunkSealer(key, prefix, header, CHUNK_SIZE)
        self._out = out
        out.write(header)

    def writable(self) -> bool:
        return True

    def _emit(self, sealed: bytes) -> None:
        self._out.write(_LENGTH.pack(len(sealed)) + sealed)

    def write(self, data: Any) -> int:
        for sealed in self._chunks.update(data):
            self._emit(sealed)
        return len(data)

    def finish(self) -> None:
        """Seal the last chunk (possibly empty); the stream is complete after this."""
        self._emit(self._chunks.finalize())


class _OpeningReader(io.RawIOBase):
    """A read-only stream of the plaintext; raises :class:`BadArchive` on any authentication failure."""

    def __init__(self, source: IO[bytes], passphrase: str) -> None:
        header = source.read(HEADER_SIZE)
        if len(header) != HEADER_SIZE or not header.startswith(MAGIC):
            raise BackupError("this is not a mailiverse backup (the header is missing)")
        version, kdf, log2_n, r, p = header[len(MAGIC) : len(MAGIC) + 5]
        if version != FORMAT_VERSION or kdf != KDF_SCRYPT:
            raise BackupError(f"unsupported backup format version {version}")
        if not (14 <= log2_n <= 22 and 1 <= r <= 32 and 1 <= p <= 16):
            raise BadArchive()
        salt = header[len(MAGIC) + 5 : len(MAGIC) + 5 + SALT_SIZE]
        data = passphrase.encode("utf-8")
        if len(data) > MAX_PASSPHRASE_LENGTH:
            raise BadArchive()
        self._chunks = ChunkOpener(_derive(data, salt, log2_n, r, p), header[-NONCE_PREFIX_SIZE:], header)
        self._source = source
        self._pending = b""

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> None:
        raw_length = self._source.read(_LENGTH.size)
        if len(raw_length) != _LENGTH.size:
            raise BadArchive()  # truncated: the last chunk never came
        (length,) = _LENGTH.unpack(raw_length)
        if not TAG_SIZE <= length <= CHUNK_SIZE + TAG_SIZE:
            raise BadArchive()
        sealed = self._source.read(length)
        if len(sealed) != length:
            raise BadArchive()
        try:
            # The length framing does not say which chunk is the last: its flag in the nonce does.
            self._pending = self._chunks.open_either(sealed)
        except DecryptionError:
            raise BadArchive() from None
        if self._chunks.finished and self._source.read(1):
            raise BadArchive()  # data after the last chunk

    def readinto(self, buffer: Any) -> int:
        while not self._pending and not self._chunks.finished:
            self._next_chunk()
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


# -- writing -----------------------------------------------------------------------------------


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = int(datetime.datetime.now(datetime.UTC).timestamp())
    tar.addfile(info, io.BytesIO(data))


def _add_file(tar: tarfile.TarFile, name: str, path: Path) -> None:
    info = tarfile.TarInfo(name)
    info.size = path.stat().st_size
    info.mode = 0o600
    info.mtime = int(path.stat().st_mtime)
    with path.open("rb") as handle:
        tar.addfile(info, handle)


def _key_files(data_dir: DataDir) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    if data_dir.appliance_file.is_file():
        found.append((data_dir.appliance_file.name, data_dir.appliance_file))
    for sub in _KEY_DIRS:
        folder = data_dir.root / sub
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.is_file() and not path.is_symlink() and not path.name.startswith("."):
                    found.append((f"{sub}/{path.name}", path))
    return found


def _db_url(data_dir: DataDir, db_url: str | None) -> str:
    if db_url:
        return db_url
    return str(read_recorded(data_dir).get("db_url") or data_dir.default_db_url)


def create_backup(
    data_dir: Path, target: Path, passphrase: str, *, db_url: str | None = None, log2_n: int = SCRYPT_LOG2_N
) -> dict[str, Any]:
    """Write an encrypted snapshot of the data dir's keys and its database to ``target``; return the manifest.

    ``target`` is created with mode 0600 and must not exist.  The appliance may keep running.
    """
    from mailiverse.store.engine import normalise_url

    layout = DataDir(Path(data_dir))
    if not layout.root.is_dir():
        raise BackupError(f"{layout.root} is not an appliance data dir")
    _check_passphrase(passphrase)
    url = _db_url(layout, db_url)
    try:
        parsed = normalise_url(url)
    except ValueError as e:
        raise BackupError(str(e)) from None
    target = Path(target)
    if os.path.lexists(target):
        raise BackupError(f"{target} exists; choose a new file name")
    # The archive is written beside ``target`` and appears under that name only once complete;
    # a file someone else creates there meanwhile is never overwritten.
    try:
        with contextlib.ExitStack() as stack:
            try:
                out = stack.enter_context(private_writer(target, exclusive=True))
            except OSError as e:
                raise BackupError(f"cannot create {target}: {e.strerror}") from None
            scratch = stack.enter_context(
                tempfile.TemporaryDirectory(dir=layout.tmp_dir if layout.tmp_dir.is_dir() else None)
            )
            writer = _SealingWriter(out, passphrase, log2_n)
            files = _key_files(layout)
            manifest: dict[str, Any] = {
                "format": "mailiverse-backup",
                "version": FORMAT_VERSION,
                "created": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "files": [name for name, _ in files],
                "database": parsed.get_backend_name(),
            }
            db_member: tuple[str, Path]
            if parsed.get_backend_name() == "sqlite":
                snapshot = Path(scratch) / SQLITE_MEMBER
                sqlite_snapshot(str(parsed.database), snapshot)
                db_member = (SQLITE_MEMBER, snapshot)
            else:
                dump = Path(scratch) / JSONL_MEMBER
                with dump.open("wb") as handle:
                    manifest["tables"] = logical_dump(url, handle)
                db_member = (JSONL_MEMBER, dump)
            with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                _add_bytes(tar, _MANIFEST, json.dumps(manifest, indent=2).encode("utf-8"))
                for name, path in files:
                    _add_file(tar, name, path)
                _add_file(tar, *db_member)
            writer.finish()
    except FileExistsError:
        raise BackupError(f"{target} exists; choose a new file name") from None
    return manifest


# -- restoring ---------------------------------------------------------------------------------


def _safe_member(name: str) -> str:
    allowed = {_MANIFEST, SQLITE_MEMBER, JSONL_MEMBER, _RECORDED}
    if name in allowed:
        return name
    head, _, tail = name.partition("/")
    if head in _KEY_DIRS and tail and "/" not in tail and not tail.startswith(".") and tail not in ("..",):
        return name
    raise BackupError(f"the backup holds an unexpected entry {name[:80]!r}; refusing to restore it")


def _extract_all(reader: IO[bytes], scratch: Path) -> list[str]:
    """Every entry of the archive's tar into ``scratch`` (``keys/x`` as ``keys__x``); their names in order."""
    names: list[str] = []
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            for member in tar:
                name = _safe_member(member.name)
                if not member.isfile() or name in names:
                    raise BackupError(f"the backup entry {name!r} is not a single regular file")
                limit = MAX_MEMBER_SIZE if name in (SQLITE_MEMBER, JSONL_MEMBER) else MAX_SMALL_FILE
                if member.size > limit:
                    raise BackupError(f"the backup entry {name!r} is too large")
                extracted = tar.extractfile(member)
                if extracted is None:
                    raise BadArchive()
                write_owned(scratch / name.replace("/", "__"), extracted, member.size, scratch)
                names.append(name)
    except tarfile.TarError:
        raise BadArchive() from None
    return names


def restore_backup(data_dir: Path, source: Path, passphrase: str, *, db_url: str | None = None) -> RestoreResult:
    """Put a backup made by :func:`create_backup` back into ``data_dir`` (stop the appliance first).

    Keys and certificates are restored into the data dir.  A SQLite snapshot restored to a SQLite
    target replaces the database file; otherwise rows are copied into the target database, which
    must be empty (it is migrated to the current schema first).  Nothing is written to the data
    dir or database unless the whole archive authenticates.
    """
    from mailiverse.store.engine import normalise_url

    layout = DataDir(Path(data_dir))
    layout.create()
    try:
        handle = Path(source).open("rb")
    except OSError as e:
        raise BackupError(f"cannot read {source}: {e.strerror}") from None
    with handle, tempfile.TemporaryDirectory(dir=layout.tmp_dir) as scratch_name:
        scratch = Path(scratch_name)
        reader = io.BufferedReader(_OpeningReader(handle, passphrase), buffer_size=CHUNK_SIZE)
        names = _extract_all(reader, scratch)
        # Everything authenticated (the reader checked the last chunk): now change the data dir.
        if not names or names[0] != _MANIFEST:
            raise BackupError("the backup has no manifest; it was not made by mailiverse-admin backup")
        manifest = json.loads((scratch / _MANIFEST).read_bytes())
        if manifest.get("format") != "mailiverse-backup":
            raise BackupError("the backup manifest is not a mailiverse backup manifest")
        recorded: dict[str, Any] = {}
        if _RECORDED in names:
            with contextlib.suppress(ValueError):
                recorded = json.loads((scratch / _RECORDED).read_bytes())
        url = db_url or str(_current_url(layout) or "") or layout.default_db_url
        try:
            target = normalise_url(url)
        except ValueError as e:
            raise BackupError(str(e)) from None
        restored: list[str] = []
        for name in names:
            if "/" in name:
                member_path = scratch / name.replace("/", "__")
                with member_path.open("rb") as member_file:
                    write_owned(layout.root / name, member_file, member_path.stat().st_size, layout.root)
                restored.append(name)
        tables: dict[str, int]
        if SQLITE_MEMBER in names and target.get_backend_name() == "sqlite":
            tables = replace_sqlite(scratch / SQLITE_MEMBER, Path(str(target.database)), layout.root)
        elif SQLITE_MEMBER in names:
            tables = load_rows(url, rows_from_sqlite(scratch / SQLITE_MEMBER))
        elif JSONL_MEMBER in names:
            tables = load_rows(url, rows_from_jsonl(scratch / JSONL_MEMBER))
        else:
            raise BackupError("the backup holds no database")
        _record(layout, url, recorded)
        restored.append(_RECORDED)
    return RestoreResult(files=tuple(restored), tables=tables, db_url=url)


def _current_url(layout: DataDir) -> str | None:
    value = read_recorded(layout).get("db_url")
    return str(value) if value else None


def _record(layout: DataDir, url: str, recorded: dict[str, Any]) -> None:
    content = {
        "db_url": url,
        "domains": list(recorded.get("domains") or []),
        "hostname": str(recorded.get("hostname") or ""),
    }
    data = (json.dumps(content, indent=2) + "\n").encode("utf-8")
    write_owned(layout.appliance_file, io.BytesIO(data), len(data), layout.root)


__all__ = ["BackupError", "BadArchive", "RestoreResult", "create_backup", "restore_backup"]
