"""The cost of one delivery, step by step, by calling the delivery pipeline's pieces directly.

The steps follow ``mailiverse/delivery/pipeline.py`` for one recipient with a v1 account: spool the
message as the SMTP layer does and read it back, parse it into the twin document, serialise the twin,
zlib both objects (with the strategy the pipeline chooses from the raw bytes), encrypt both to the recipient's key,
and commit both in one transaction.
"""

from __future__ import annotations

import contextlib
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mailiverse.contracts import INBOX_FOLDER
from mailiverse.crypto.formats import stream_encryptor
from mailiverse.crypto.keys import generate_private_key, load_public_key, public_key_der
from mailiverse.crypto.lenient import Deflater
from mailiverse.delivery.compression import choose_strategy
from mailiverse.delivery.encrypt import CHUNK, IN_MEMORY, read_chunks
from mailiverse.delivery.naming import mail_paths, new_key_base
from mailiverse.mime import jsonout
from mailiverse.mime.twin import ERROR_SUBJECT, convert_document
from mailiverse.spool import SpoolWriter
from mailiverse.store.db import Database
from mailiverse.store.objects import put_object_txn
from mailiverse.store.users import add_user_txn

STEPS = ("spool", "parse", "twin", "zlib", "encryption", "commit")
_RECEIVE_PIECE = 64 * 1024
_RECEIVED = b"Received: from client.bench.test (127.0.0.1) by mail.example.org; Mon, 2 Mar 2026 10:00:00 +0000\r\n"


def _timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - start, value


def _spool(workdir: Path, message: bytes) -> bytes:
    writer = SpoolWriter(workdir, memory_limit=256 * 1024)
    writer.write(_RECEIVED)
    for offset in range(0, len(message), _RECEIVE_PIECE):
        writer.write(message[offset : offset + _RECEIVE_PIECE])
    spooled = writer.finish()
    try:
        return spooled.read_all()
    finally:
        spooled.close()


def _deflate(data: bytes, strategy: int) -> bytes:
    deflater = Deflater(strategy=strategy)
    out = [deflater.update(chunk) for chunk in read_chunks(io.BytesIO(data), CHUNK)]
    out.append(deflater.finalize())
    return b"".join(out)


def _serialise(document: dict[str, Any]) -> bytes:
    return jsonout.dumps(document).encode("utf-8")


def _deflate_both(raw: bytes, twin: bytes) -> list[bytes]:
    strategy = choose_strategy(raw)
    return [_deflate(raw, strategy), _deflate(twin, strategy)]


def _encrypt(public_der: bytes, compressed: list[bytes]) -> list[Any]:
    public_key = load_public_key(public_der)
    sealed = []
    for data in compressed:
        out = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY)  # noqa: SIM115 - returned open, closed by the caller
        encryptor = stream_encryptor("v1", public_key)
        for chunk in read_chunks(io.BytesIO(data), CHUNK):
            out.write(encryptor.update(chunk))
        out.write(encryptor.finalize())
        out.seek(0)
        sealed.append(out)
    return sealed


def _commit(conn: Any, user_id: int, paths: tuple[str, str], bodies: list[Any], now_ms: int) -> None:
    for path, body in zip(paths, bodies, strict=True):
        body.seek(0)
        put_object_txn(conn, user_id, path, read_chunks(body), if_absent=True, now_ms=now_ms)


def measure_size(
    message: bytes,
    databases: dict[str, Database],
    user_ids: dict[str, int],
    public_der: bytes,
    workdir: Path,
    budget_s: float,
    max_reps: int,
    min_reps: int = 3,
) -> dict[str, Any]:
    """Median seconds of each step over repetitions that fit in ``budget_s`` (between min_reps and max_reps)."""
    times: dict[str, list[float]] = {step: [] for step in STEPS}
    for name in databases:
        if name != "sqlite":
            times[f"commit ({name})"] = []
    twin_size = compressed_size = 0
    started = time.monotonic()
    for rep in range(max_reps):
        if rep >= min_reps and time.monotonic() - started > budget_s:
            break
        now_ms = int(time.time() * 1000)
        paths = mail_paths(new_key_base(now_ms), INBOX_FOLDER)
        t, raw = _timed(_spool, workdir, message)
        times["spool"].append(t)
        t, document = _timed(convert_document, raw, original_path=paths[0], written_ms=now_ms)
        times["parse"].append(t)
        if document.get("headers") == [["subject", ERROR_SUBJECT]]:
            raise RuntimeError("the bench message did not parse; the breakdown would measure the error path")
        t, twin = _timed(_serialise, document)
        times["twin"].append(t)
        t, compressed = _timed(_deflate_both, raw, twin)
        times["zlib"].append(t)
        t, sealed = _timed(_encrypt, public_der, compressed)
        times["encryption"].append(t)
        try:
            for name, database in databases.items():
                key = "commit" if name == "sqlite" else f"commit ({name})"
                t, _ = _timed(database.transact_sync, _commit, user_ids[name], paths, sealed, now_ms)
                times[key].append(t)
        finally:
            for body in sealed:
                body.close()
        twin_size, compressed_size = len(twin), sum(len(c) for c in compressed)
    medians = {step: statistics.median(values) for step, values in times.items() if values}
    core = sum(medians[step] for step in STEPS)
    return {
        "size": len(message),
        "repetitions": len(times["spool"]),
        "median_ms": {step: value * 1000 for step, value in medians.items()},
        "total_ms": core * 1000,
        "share": {step: medians[step] / core for step in STEPS},
        "twin_bytes": twin_size,
        "compressed_bytes": compressed_size,
    }


def run(
    messages: list[bytes], workdir: Path, budget_s: float, max_reps: int, postgres_url: str | None = None
) -> list[dict[str, Any]]:
    """Breakdown for each message; commits go to a fresh SQLite file (and PostgreSQL when a URL is given)."""
    workdir.mkdir(parents=True, exist_ok=True)
    key = generate_private_key()
    public_der = public_key_der(key.public_key())
    databases = {"sqlite": Database.open(f"sqlite:///{workdir / 'breakdown.sqlite3'}", migrate=True)}
    if postgres_url:
        databases["postgresql"] = Database.open(postgres_url, migrate=True)
    try:
        with contextlib.ExitStack() as stack:
            # A command-line tool may block; a reactor runs in this process only under pytest-twisted.
            for database in databases.values():
                stack.enter_context(database.blocking_allowed())
            user_ids = {
                name: db.transact_sync(add_user_txn, "alice", public_der, "v1").id for name, db in databases.items()
            }
            return [
                measure_size(message, databases, user_ids, public_der, workdir, budget_s, max_reps)
                for message in messages
            ]
    finally:
        for database in databases.values():
            database.close()
