"""Passphrase-encrypted backup and restore of one appliance: its database and its keys.

The archive is a tar stream sealed with AES-256-GCM in chunks under a key derived from the
passphrase with scrypt.  Layout of the file (all integers big-endian)::

    header   "MVBACKUP" | version u8 (=1) | kdf u8 (=1, scrypt) | log2(N) u8 | r u8 | p u8
             | salt (16 bytes) | nonce prefix (7 bytes)                       -- 37 bytes
    chunks   length u32 | AES-256-GCM(key, nonce, plaintext, aad=header)       -- repeated
             nonce = nonce prefix | chunk index u32 | last-chunk flag u8 (1 on the last chunk only)
             plaintext is at most 1 MiB; length counts the ciphertext and its 16-byte tag

The key is ``scrypt(passphrase UTF-8, salt, N, r, p, 32 bytes)``.  Reordered, dropped, truncated
or appended chunks fail authentication: the index and the last-chunk flag are in the nonce.

The tar holds ``manifest.json`` first, then the data dir's ``appliance.json``, ``keys/*`` and
``tls/*``, and the database: ``database.sqlite3`` (a consistent copy made with SQLite's online
backup API) or ``database.jsonl`` (PostgreSQL: every row of every table, read in one
REPEATABLE READ snapshot; one JSON object per line, bytes as base64).  Restore accepts either
form into either backend.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import io
import json
import os
import secrets
import sqlite3
import struct
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from mailiverse.config import DataDir
from mailiverse.privatefile import private_dir, private_writer

MAGIC = b"MVBACKUP"
FORMAT_VERSION = 1
KDF_SCRYPT = 1
SCRYPT_LOG2_N = 17
SCRYPT_R = 8
SCRYPT_P = 1
SALT_SIZE = 16
NONCE_PREFIX_SIZE = 7
HEADER_SIZE = len(MAGIC) + 5 + SALT_SIZE + NONCE_PREFIX_SIZE
CHUNK_SIZE = 1024 * 1024
TAG_SIZE = 16
MIN_PASSPHRASE_LENGTH = 10
MAX_PASSPHRASE_LENGTH = 1024
#: Limits on what a restore accepts, so a hostile archive cannot exhaust the disk or memory.
MAX_MEMBER_SIZE = 64 * 1024 * 1024 * 1024
MAX_SMALL_FILE = 1024 * 1024
MAX_JSONL_LINE = 256 * 1024 * 1024
_KEY_DIRS = ("keys", "tls")
_MANIFEST = "manifest.json"
_SQLITE_MEMBER = "database.sqlite3"
_JSONL_MEMBER = "database.jsonl"


class BackupError(Exception):
    """A backup or restore failed; the message says what to do (never a secret)."""


class BadArchive(BackupError):
    """The archive does not decrypt: wrong passphrase, or it is damaged or was altered."""

    def __init__(self) -> None:
        super().__init__("the backup does not decrypt: wrong passphrase, or the file is damaged or was altered")


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
    """A write-only stream that seals what it is given into the chunked format."""

    def __init__(self, out: IO[bytes], passphrase: str, log2_n: int = SCRYPT_LOG2_N) -> None:
        salt = secrets.token_bytes(SALT_SIZE)
        self._prefix = secrets.token_bytes(NONCE_PREFIX_SIZE)
        self._header = MAGIC + bytes([FORMAT_VERSION, KDF_SCRYPT, log2_n, SCRYPT_R, SCRYPT_P]) + salt + self._prefix
        self._aead = AESGCM(_derive(_check_passphrase(passphrase), salt, log2_n, SCRYPT_R, SCRYPT_P))
        self._out = out
        self._buffer = bytearray()
        self._index = 0
        out.write(self._header)

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._buffer += data
        while len(self._buffer) > CHUNK_SIZE:
            self._seal(bytes(self._buffer[:CHUNK_SIZE]), last=False)
            del self._buffer[:CHUNK_SIZE]
        return len(data)

    def _seal(self, plaintext: bytes, last: bool) -> None:
        nonce = self._prefix + struct.pack(">IB", self._index, 1 if last else 0)
        sealed = self._aead.encrypt(nonce, plaintext, self._header)
        self._out.write(struct.pack(">I", len(sealed)) + sealed)
        self._index += 1

    def finish(self) -> None:
        """Seal the last chunk (possibly empty); the stream is complete after this."""
        self._seal(bytes(self._buffer), last=True)
        self._buffer.clear()


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
        self._prefix = header[-NONCE_PREFIX_SIZE:]
        self._header = header
        data = passphrase.encode("utf-8")
        if len(data) > MAX_PASSPHRASE_LENGTH:
            raise BadArchive()
        self._aead = AESGCM(_derive(data, salt, log2_n, r, p))
        self._source = source
        self._index = 0
        self._pending = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> None:
        raw_length = self._source.read(4)
        if len(raw_length) != 4:
            raise BadArchive()  # truncated: the last chunk never came
        (length,) = struct.unpack(">I", raw_length)
        if not TAG_SIZE <= length <= CHUNK_SIZE + TAG_SIZE:
            raise BadArchive()
        sealed = self._source.read(length)
        if len(sealed) != length:
            raise BadArchive()
        for last in (0, 1):
            nonce = self._prefix + struct.pack(">IB", self._index, last)
            try:
                self._pending = self._aead.decrypt(nonce, sealed, self._header)
            except InvalidTag:
                continue
            self._index += 1
            if last:
                if self._source.read(1):
                    raise BadArchive()  # data after the last chunk
                self._done = True
            return
        raise BadArchive()

    def readinto(self, buffer: Any) -> int:
        while not self._pending and not self._done:
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


def _sqlite_snapshot(database: str, target: Path) -> None:
    source = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        dest = sqlite3.connect(target)
        try:
            source.backup(dest)
        finally:
            dest.close()
    finally:
        source.close()


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, datetime.datetime):
        return {"dt": value.isoformat()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "b64" in value:
            return base64.b64decode(value["b64"], validate=True)
        if "dt" in value:
            return datetime.datetime.fromisoformat(value["dt"])
        raise BackupError("the database dump holds a value of an unknown kind")
    return value


def _logical_dump(url: str, out: IO[bytes]) -> dict[str, int]:
    from sqlalchemy import create_engine, select

    from mailiverse.store.db import normalise_url
    from mailiverse.store.schema import metadata

    engine = create_engine(normalise_url(url))
    counts: dict[str, int] = {}
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin():
                for table in metadata.sorted_tables:
                    counts[table.name] = 0
                    order = list(table.primary_key.columns) or list(table.columns)
                    for row in conn.execute(select(table).order_by(*order)).mappings():
                        line = {"t": table.name, "r": {k: _encode(v) for k, v in row.items()}}
                        out.write(json.dumps(line, separators=(",", ":")).encode("utf-8") + b"\n")
                        counts[table.name] += 1
    finally:
        engine.dispose()
    return counts


def _chown_like(fd: int, reference: Path) -> None:
    """Running as root, give what we made to the data dir's owner, so the service can read it."""
    if os.geteuid() != 0:
        return
    st = reference.stat()
    with contextlib.suppress(OSError):
        os.fchown(fd, st.st_uid, st.st_gid)


def _db_url(data_dir: DataDir, db_url: str | None) -> str:
    if db_url:
        return db_url
    from mailiverse.config import read_recorded

    return str(read_recorded(data_dir).get("db_url") or data_dir.default_db_url)


def create_backup(
    data_dir: Path, target: Path, passphrase: str, *, db_url: str | None = None, log2_n: int = SCRYPT_LOG2_N
) -> dict[str, Any]:
    """Write an encrypted snapshot of the data dir's keys and its database to ``target``; return the manifest.

    ``target`` is created with mode 0600 and must not exist.  The appliance may keep running.
    """
    from mailiverse.store.db import normalise_url

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
                snapshot = Path(scratch) / _SQLITE_MEMBER
                _sqlite_snapshot(str(parsed.database), snapshot)
                db_member = (_SQLITE_MEMBER, snapshot)
            else:
                dump = Path(scratch) / _JSONL_MEMBER
                with dump.open("wb") as handle:
                    manifest["tables"] = _logical_dump(url, handle)
                db_member = (_JSONL_MEMBER, dump)
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
    allowed = {_MANIFEST, _SQLITE_MEMBER, _JSONL_MEMBER, "appliance.json"}
    if name in allowed:
        return name
    head, _, tail = name.partition("/")
    if head in _KEY_DIRS and tail and "/" not in tail and not tail.startswith(".") and tail not in ("..",):
        return name
    raise BackupError(f"the backup holds an unexpected entry {name[:80]!r}; refusing to restore it")


def _write_private(path: Path, source: IO[bytes], size: int, owner: Path) -> None:
    private_dir(path.parent)
    with private_writer(path) as handle:
        remaining = size
        while remaining:
            block = source.read(min(remaining, 1024 * 1024))
            if not block:
                raise BadArchive()
            handle.write(block)
            remaining -= len(block)
        _chown_like(handle.fileno(), owner)


def _rows_from_sqlite(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    from sqlalchemy import create_engine, select

    from mailiverse.store.schema import metadata

    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            for table in metadata.sorted_tables:
                for row in conn.execute(select(table)).mappings():
                    yield table.name, dict(row)
    finally:
        engine.dispose()


def _rows_from_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    with path.open("rb") as handle:
        for raw in handle:
            if len(raw) > MAX_JSONL_LINE:
                raise BackupError("the database dump has an over-long line")
            line = json.loads(raw)
            yield str(line["t"]), {str(k): _decode(v) for k, v in line["r"].items()}


def _load_rows(url: str, rows: Iterator[tuple[str, dict[str, Any]]]) -> dict[str, int]:
    from sqlalchemy import func, insert, select, text

    from mailiverse.store.db import Database
    from mailiverse.store.schema import metadata

    database = Database.open(url, reactor=None, migrate=True)
    tables = {t.name: t for t in metadata.sorted_tables}
    counts = dict.fromkeys(tables, 0)

    def load(conn: Any) -> None:
        for table in tables.values():
            if conn.execute(select(func.count()).select_from(table)).scalar_one():
                raise BackupError(f"the target database already holds data (table {table.name}); restore into an empty one")
        batch: dict[str, list[dict[str, Any]]] = {}
        for name, row in rows:
            found = tables.get(name)
            if found is None:
                raise BackupError(f"the backup holds rows of an unknown table {name[:60]!r}")
            table = found
            known = {c.name for c in table.columns}
            batch.setdefault(name, []).append({k: v for k, v in row.items() if k in known})
            counts[name] += 1
        # parents before children, whatever order the rows came in
        for table in metadata.sorted_tables:
            pending = batch.get(table.name, [])
            for start in range(0, len(pending), 500):
                conn.execute(insert(table), pending[start : start + 500])
        if conn.dialect.name == "postgresql":
            for table in metadata.sorted_tables:
                for column in table.primary_key.columns:
                    if column.autoincrement is True or (column.autoincrement == "auto" and column.type.python_type is int):
                        conn.execute(
                            text(
                                f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "  # noqa: S608 -- names from our own schema
                                f"COALESCE((SELECT MAX({column.name}) FROM {table.name}), 0) + 1, false) "
                                f"WHERE pg_get_serial_sequence('{table.name}', '{column.name}') IS NOT NULL"
                            )
                        )

    try:
        with database.blocking_allowed():
            database.transact_sync(load)
    finally:
        database.close()
    return counts


def restore_backup(data_dir: Path, source: Path, passphrase: str, *, db_url: str | None = None) -> RestoreResult:
    """Put a backup made by :func:`create_backup` back into ``data_dir`` (stop the appliance first).

    Keys and certificates are restored into the data dir.  A SQLite snapshot restored to a SQLite
    target replaces the database file; otherwise rows are copied into the target database, which
    must be empty (it is migrated to the current schema first).  Nothing is written to the data
    dir or database unless the whole archive authenticates.
    """
    layout = DataDir(Path(data_dir))
    layout.create()
    try:
        handle = Path(source).open("rb")
    except OSError as e:
        raise BackupError(f"cannot read {source}: {e.strerror}") from None
    with handle, tempfile.TemporaryDirectory(dir=layout.tmp_dir) as scratch_name:
        scratch = Path(scratch_name)
        reader = io.BufferedReader(_OpeningReader(handle, passphrase), buffer_size=CHUNK_SIZE)
        names: list[str] = []
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tar:
                for member in tar:
                    name = _safe_member(member.name)
                    if not member.isfile() or name in names:
                        raise BackupError(f"the backup entry {name!r} is not a single regular file")
                    limit = MAX_MEMBER_SIZE if name in (_SQLITE_MEMBER, _JSONL_MEMBER) else MAX_SMALL_FILE
                    if member.size > limit:
                        raise BackupError(f"the backup entry {name!r} is too large")
                    extracted = tar.extractfile(member)
                    if extracted is None:
                        raise BadArchive()
                    _write_private(scratch / name.replace("/", "__"), extracted, member.size, scratch)
                    names.append(name)
        except tarfile.TarError:
            raise BadArchive() from None
        # Everything authenticated (the reader checked the last chunk): now change the data dir.
        if not names or names[0] != _MANIFEST:
            raise BackupError("the backup has no manifest; it was not made by mailiverse-admin backup")
        manifest = json.loads((scratch / _MANIFEST).read_bytes())
        if manifest.get("format") != "mailiverse-backup":
            raise BackupError("the backup manifest is not a mailiverse backup manifest")
        recorded: dict[str, Any] = {}
        if "appliance.json" in names:
            with contextlib.suppress(ValueError):
                recorded = json.loads((scratch / "appliance.json").read_bytes())
        url = db_url or str(_current_url(layout) or "") or layout.default_db_url
        from mailiverse.store.db import normalise_url

        try:
            target = normalise_url(url)
        except ValueError as e:
            raise BackupError(str(e)) from None
        restored: list[str] = []
        for name in names:
            if "/" in name:
                with (scratch / name.replace("/", "__")).open("rb") as member_file:
                    size = (scratch / name.replace("/", "__")).stat().st_size
                    _write_private(layout.root / name, member_file, size, layout.root)
                restored.append(name)
        tables: dict[str, int]
        if _SQLITE_MEMBER in names and target.get_backend_name() == "sqlite":
            tables = _replace_sqlite(scratch / _SQLITE_MEMBER, Path(str(target.database)), layout.root)
        elif _SQLITE_MEMBER in names:
            tables = _load_rows(url, _rows_from_sqlite(scratch / _SQLITE_MEMBER))
        elif _JSONL_MEMBER in names:
            tables = _load_rows(url, _rows_from_jsonl(scratch / _JSONL_MEMBER))
        else:
            raise BackupError("the backup holds no database")
        _record(layout, url, recorded)
        restored.append("appliance.json")
    return RestoreResult(files=tuple(restored), tables=tables, db_url=url)


def _current_url(layout: DataDir) -> str | None:
    from mailiverse.config import read_recorded

    value = read_recorded(layout).get("db_url")
    return str(value) if value else None


def _record(layout: DataDir, url: str, recorded: dict[str, Any]) -> None:
    content = {
        "db_url": url,
        "domains": list(recorded.get("domains") or []),
        "hostname": str(recorded.get("hostname") or ""),
    }
    data = (json.dumps(content, indent=2) + "\n").encode("utf-8")
    _write_private(layout.appliance_file, io.BytesIO(data), len(data), layout.root)


def _replace_sqlite(snapshot: Path, database: Path, owner: Path) -> dict[str, int]:
    from mailiverse.store.db import Database
    from mailiverse.store.schema import metadata

    check = sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True)
    try:
        if check.execute("PRAGMA integrity_check").fetchone() != ("ok",):
            raise BackupError("the database in the backup is damaged")
        existing = {r[0] for r in check.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        counts = {
            t.name: int(check.execute(f'SELECT COUNT(*) FROM "{t.name}"').fetchone()[0])  # noqa: S608 -- names from our schema
            for t in metadata.sorted_tables
            if t.name in existing
        }
    finally:
        check.close()
    private_dir(database.parent)
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    with snapshot.open("rb") as handle:
        _write_private(database, handle, snapshot.stat().st_size, owner)
    # An older snapshot is brought up to the current schema now, not at the next start.
    Database.open(f"sqlite:///{database}", reactor=None, migrate=True).close()
    return counts


__all__ = ["BackupError", "BadArchive", "RestoreResult", "create_backup", "restore_backup"]
