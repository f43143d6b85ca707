"""Key directory lookup with proof at 100,000 log entries: the server's time for one ``KeyDirectory.lookup_txn``.

Run from the repository root: ``.venv/bin/python -m bench.keylog [--entries 100000] [--lookups 2000]``.

The log is filled the way the appliance fills it: every entry is a real key record (RSA-2048, RSA-PSS signed by
its own key, verified before it is stored) for a different address, published by its own account through
``record_keys_txn``: one append and one signed tree head per record, as each first publication makes, a
thousand publications to a transaction so the fill stays fast. Fifty RSA keys are generated and reused (key
generation is the slow part; every record still differs, by its address, key id and time, and is signed).
The records are signed once, in a process pool, and the same ones fill each backend.

What is timed, through ``Database.run_sync`` (a pooled connection, one read transaction, as ``lookup``'s
``Database.run`` does on a reader thread, without the thread hop):

* **lookup**: ``KeyDirectory.lookup_txn`` of a random published address: the index read (``key_bindings``
  joined to ``key_records`` and ``users``), the newest head, the leaf, and its inclusion proof from the
  in-memory tree; every answer is then checked (outside the timing) as a client would: the leaf is the
  address's record, the proof verifies against the head's root, the head's signature verifies;
* **unknown address**: the same lookup of an address with no key (the index read alone answers);
* **index read** and **leaf + proof** (``prove_txn``): the two halves of a lookup, each in its own snapshot;
* **in-memory proof**: ``MerkleTree.inclusion`` alone, for a random leaf of the whole tree;
* besides the wall clock, the CPU time of the thread that runs the call (``time.thread_time``): on SQLite the
  whole lookup, on PostgreSQL the appliance's side only (the server works in its own process); it shows what
  a tail owes to other processes on the machine, whose load average the results record;
* **first lookup of a fresh front end**: a new ``KeyLog`` loads every leaf hash and checks the newest head's
  root before it answers (once per process start).

Writes ``bench/results/keylog-<date>.json`` and prints a markdown table; the goal is a lookup under 5 ms.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, select, text
from sqlalchemy.engine import make_url

from bench.smtpload import percentile
from mailiverse.accounts.directory import KeyDirectory
from mailiverse.keylog import sth
from mailiverse.keylog.merkle import MerkleTree, leaf_hash, verify_inclusion
from mailiverse.keylog.records import (
    KeyRecord,
    address_hash,
    key_record_fields,
    parse_leaf,
    sign_key_record,
    verify_key_record,
)
from mailiverse.store.db import Database
from mailiverse.store.keylog import Holder, KeyLog, keys_of_address_txn, record_keys_txn
from mailiverse.store.schema import key_log
from mailiverse.store.users import add_user_txn
from mailiverse.testing_db import (
    create_postgres_database,
    drop_postgres_database,
    postgres_admin_url,
    postgres_unavailable_reason,
    sqlite_url,
)

ROOT = Path(__file__).resolve().parents[1]
GOAL_MS = 5.0
DOMAIN = "bench.example"
START_MS = 1_790_000_000_000
_SIGN_CHUNK = 1_000


def address_of(index: int) -> str:
    return f"user{index:06d}@{DOMAIN}"


def name_of(index: int) -> str:
    return f"user{index:06d}"


# -- the records ------------------------------------------------------------------------------------

_worker_keys: list[rsa.RSAPrivateKey] = []


def _load_worker_keys(pems: list[bytes]) -> None:
    _worker_keys.clear()
    for pem in pems:
        key = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        _worker_keys.append(key)


def _sign_range(start: int, end: int) -> list[KeyRecord]:
    """Signed, verified key records ``start`` to ``end - 1``: record i serves ``address_of(i)``."""
    records = []
    for index in range(start, end):
        key = _worker_keys[index % len(_worker_keys)]
        fields = key_record_fields(key.public_key(), [address_of(index)], created_ms=START_MS + index)
        records.append(verify_key_record(sign_key_record(fields, key)))
    return records


def make_records(count: int, key_count: int, workers: int) -> list[KeyRecord]:
    """``count`` signed key records over ``key_count`` fresh RSA-2048 keys, signed on ``workers`` processes."""
    keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(key_count)]
    pems = [
        k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        for k in keys
    ]
    starts = list(range(0, count, _SIGN_CHUNK))
    ends = [min(count, s + _SIGN_CHUNK) for s in starts]
    records: list[KeyRecord] = []
    with ProcessPoolExecutor(max_workers=workers, initializer=_load_worker_keys, initargs=(pems,)) as pool:
        for chunk in pool.map(_sign_range, starts, ends):
            records.extend(chunk)
    return records


# -- filling a database -----------------------------------------------------------------------------


def _publish_txn(conn: Connection, log: KeyLog, first: int, records: Sequence[KeyRecord]) -> None:
    """Each record's account, then its first publication: one append and one signed head per record."""
    for offset, record in enumerate(records):
        index = first + offset
        user = add_user_txn(conn, name_of(index), record.public_key, "v2", now_ms=START_MS + index)
        record_keys_txn(conn, log, [record], Holder(user_id=user.id), START_MS + index)


def fill(database: Database, log: KeyLog, records: Sequence[KeyRecord], batch: int) -> float:
    """Publish every record (``batch`` publications per transaction); seconds taken."""
    began = time.perf_counter()
    for first in range(0, len(records), batch):
        database.transact_sync(_publish_txn, log, first, records[first : first + batch])
    if database.dialect_name == "postgresql":
        with database.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in ("users", "key_log", "key_log_heads", "key_records", "key_bindings"):
                conn.exec_driver_sql(f"VACUUM ANALYZE {table}")
    else:
        database.transact_sync(lambda conn: conn.execute(text("ANALYZE")))
    return time.perf_counter() - began


# -- timing -----------------------------------------------------------------------------------------


def summary(samples_s: list[float], cpu_s: list[float]) -> dict[str, float | int]:
    """Wall-clock median, p95, p99 and max, and the calling thread's CPU time (median, p99), in ms."""
    ordered, cpu = sorted(samples_s), sorted(cpu_s)
    return {
        "median_ms": statistics.median(ordered) * 1000,
        "p95_ms": percentile(ordered, 95) * 1000,
        "p99_ms": percentile(ordered, 99) * 1000,
        "max_ms": ordered[-1] * 1000,
        "cpu_median_ms": statistics.median(cpu) * 1000,
        "cpu_p99_ms": percentile(cpu, 99) * 1000,
        "n": len(ordered),
    }


def _timed(
    database: Database, calls: Iterator[tuple[Callable[..., Any], tuple[Any, ...]]]
) -> tuple[dict[str, float | int], list[Any]]:
    """Each call through ``run_sync`` (this thread runs it), timed by the wall clock and by this thread's CPU."""
    samples, cpu, answers = [], [], []
    for fn, args in calls:
        began, began_cpu = time.perf_counter(), time.thread_time()
        answer = database.run_sync(fn, *args)
        samples.append(time.perf_counter() - began)
        cpu.append(time.thread_time() - began_cpu)
        answers.append(answer)
    return summary(samples, cpu), answers


def check_lookup(answer: Any, address: str, log_key: Ed25519PrivateKey) -> None:
    """What a client checks: the leaf is this address's current record, proven in a head the log signed."""
    if answer is None:
        raise AssertionError(f"no key found for {address}")
    proven = answer.current
    record = verify_key_record(parse_leaf(proven.leaf))
    head = proven.sth.head
    if not record.serves(address) or record.status != "current":
        raise AssertionError(f"the record for {address} is not its current key")
    if not verify_inclusion(
        leaf_hash(proven.leaf), proven.leaf_index, head.tree_size, proven.audit_path, head.root_hash
    ):
        raise AssertionError(f"the inclusion proof for {address} does not verify")
    if not sth.verify(head, proven.sth.signature, log_key.public_key()):
        raise AssertionError("the tree head's signature does not verify")


def measure(database: Database, log_key: Ed25519PrivateKey, entries: int, lookups: int, seed: int) -> dict[str, Any]:
    """Time lookups on a front end that did not fill the log (a fresh ``KeyLog`` with the same key)."""
    rng = random.Random(seed)
    log = KeyLog(log_key)
    directory = KeyDirectory(database, log)
    results: dict[str, Any] = {"load_average_1m": [os.getloadavg()[0]]}

    first_address = address_of(rng.randrange(entries))
    began = time.perf_counter()
    check_lookup(database.run_sync(directory.lookup_txn, first_address), first_address, log_key)
    results["first_lookup_fresh_front_end_ms"] = (time.perf_counter() - began) * 1000

    for _ in range(100):  # warm the pool's connections and the caches, as a running server has them
        database.run_sync(directory.lookup_txn, address_of(rng.randrange(entries)))

    addresses = [address_of(rng.randrange(entries)) for _ in range(lookups)]
    results["lookup"], answers = _timed(database, ((directory.lookup_txn, (a,)) for a in addresses))
    for address, answer in zip(addresses, answers, strict=True):
        check_lookup(answer, address, log_key)
    results["audit_path_length"] = statistics.median(len(a.current.audit_path) for a in answers)

    unknown = [f"nobody{i}@{DOMAIN}" for i in range(max(1, lookups // 4))]
    results["lookup_unknown"], answers = _timed(database, ((directory.lookup_txn, (a,)) for a in unknown))
    if any(answer is not None for answer in answers):
        raise AssertionError("an unknown address was answered")

    hashes = [address_hash(address_of(rng.randrange(entries))) for _ in range(lookups)]
    results["index_read"], answers = _timed(database, ((keys_of_address_txn, (h,)) for h in hashes))
    if not all(len(found) == 1 for found in answers):
        raise AssertionError("an address did not have exactly its one key")

    indexes = [rng.randrange(entries) for _ in range(lookups)]
    results["leaf_and_proof"], answers = _timed(database, ((log.prove_txn, ([i],)) for i in indexes))
    if not all(len(proven) == 1 for proven in answers):
        raise AssertionError("a leaf was not proven")

    tree = MerkleTree()
    for (hashed,) in database.run_sync(
        lambda conn: list(conn.execute(select(key_log.c.leaf_hash).order_by(key_log.c.leaf_index)))
    ):
        tree.append_leaf_hash(bytes(hashed))
    proof_samples, proof_cpu = [], []
    for index in indexes:
        began, began_cpu = time.perf_counter(), time.thread_time()
        tree.inclusion(index)
        proof_samples.append(time.perf_counter() - began)
        proof_cpu.append(time.thread_time() - began_cpu)
    results["in_memory_proof"] = summary(proof_samples, proof_cpu)
    results["load_average_1m"].append(os.getloadavg()[0])
    return results


# -- backends ---------------------------------------------------------------------------------------


@contextmanager
def sqlite_database() -> Iterator[Database]:
    with tempfile.TemporaryDirectory(prefix="mv-bench-keylog-") as directory:
        database = Database.open(sqlite_url(directory))
        try:
            yield database
        finally:
            database.close()


@contextmanager
def postgres_database() -> Iterator[Database]:
    url = create_postgres_database("mv_bench_keylog")
    try:
        database = Database.open(url)
        try:
            yield database
        finally:
            database.close()
    finally:
        drop_postgres_database(url)


def run_backend(
    backend: str, opened: Any, records: Sequence[KeyRecord], lookups: int, batch: int, seed: int, log: Any
) -> dict[str, Any]:
    log_key = Ed25519PrivateKey.generate()
    with opened() as database:
        log(f"{backend}: publishing {len(records):,} records ...")
        fill_s = fill(database, KeyLog(log_key), records, batch)
        size = database.run_sync(lambda conn: conn.execute(text("SELECT count(*) FROM key_log_heads")).scalar_one())
        log(f"{backend}: filled in {fill_s:.1f} s ({size:,} signed heads); timing {lookups:,} lookups ...")
        result = measure(database, log_key, len(records), lookups, seed)
    result.update({"backend": backend, "entries": len(records), "signed_heads": int(size), "fill_s": fill_s})
    return result


# -- reporting --------------------------------------------------------------------------------------

ROWS = (
    ("lookup", "lookup with proof (published address)"),
    ("lookup_unknown", "lookup (unknown address)"),
    ("index_read", "index read alone"),
    ("leaf_and_proof", "leaf + proof alone (prove_txn)"),
    ("in_memory_proof", "in-memory proof alone"),
)


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "| backend | what | median ms | p95 ms | p99 ms | CPU median / p99 ms | n |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for run in results["backends"]:
        for key, label in ROWS:
            s = run[key]
            figures = f"{s['median_ms']:.3f} | {s['p95_ms']:.3f} | {s['p99_ms']:.3f}"
            figures += f" | {s['cpu_median_ms']:.3f} / {s['cpu_p99_ms']:.3f}"
            lines.append(f"| {run['backend']} | {label} | {figures} | {s['n']:,} |")
    lines.append("")
    lines.append("| backend | entries | signed heads | fill s | first lookup of a fresh front end ms | audit path |")
    lines.append("|---|---:|---:|---:|---:|---:|")
    for run in results["backends"]:
        lines.append(
            f"| {run['backend']} | {run['entries']:,} | {run['signed_heads']:,} | {run['fill_s']:.1f} "
            f"| {run['first_lookup_fresh_front_end_ms']:.1f} | {run['audit_path_length']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment(postgres: str | None) -> dict[str, Any]:
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor() or "unknown CPU",
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count() or 0,
        "versions": {
            "Python": platform.python_version(),
            "cryptography": _version("cryptography"),
            "SQLAlchemy": _version("sqlalchemy"),
            "SQLite": sqlite3.sqlite_version,
            "psycopg": _version("psycopg"),
            "PostgreSQL": postgres or "not reachable",
        },
        "commit": commit or None,
    }


def _postgres_version() -> str | None:
    if postgres_unavailable_reason() is not None:
        return None
    import psycopg

    admin = make_url(postgres_admin_url()).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, connect_timeout=3) as c:
        row = c.execute("SHOW server_version").fetchone()
    return str(row[0]).split()[0] if row else None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.keylog", description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000, help="log entries (signed key records)")
    parser.add_argument("--lookups", type=int, default=2_000, help="timed lookups per backend")
    parser.add_argument("--keys", type=int, default=50, help="RSA-2048 keys generated and reused")
    parser.add_argument("--batch", type=int, default=1_000, help="publications per transaction while filling")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes signing records")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--seed", type=int, default=9162)
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    if args.entries < 1 or args.lookups < 1 or args.keys < 1 or args.batch < 1:
        parser.error("every count must be at least 1")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.perf_counter()
    log(f"signing {args.entries:,} key records over {args.keys} RSA-2048 keys on {args.workers} processes ...")
    records = make_records(args.entries, args.keys, args.workers)
    signing_s = time.perf_counter() - started
    log(f"signed in {signing_s:.1f} s")

    pg_problem = "skipped (--no-postgres)" if args.no_postgres else postgres_unavailable_reason()
    runs = [run_backend("sqlite", sqlite_database, records, args.lookups, args.batch, args.seed, log)]
    if pg_problem is None:
        runs.append(run_backend("postgresql", postgres_database, records, args.lookups, args.batch, args.seed, log))
    else:
        log(f"postgresql: {pg_problem}")

    worst_p99 = max(run["lookup"]["p99_ms"] for run in runs)
    today = datetime.date.today().isoformat()
    results: dict[str, Any] = {
        "benchmark": "keylog",
        "date": today,
        "environment": environment(None if pg_problem else _postgres_version()),
        "settings": {
            "entries": args.entries,
            "lookups": args.lookups,
            "rsa_keys": args.keys,
            "batch": args.batch,
            "seed": args.seed,
        },
        "postgresql": "measured" if pg_problem is None else pg_problem,
        "signing_s": signing_s,
        "backends": runs,
        "goal": {"lookup_p99_ms_below": GOAL_MS, "worst_p99_ms": worst_p99, "met": worst_p99 < GOAL_MS},
        "elapsed_s": time.perf_counter() - started,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / f"keylog-{today}.json"
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(markdown(results))
    verdict = "met" if results["goal"]["met"] else "MISSED"
    print(f"goal: lookup p99 < {GOAL_MS:g} ms on every backend: {verdict} (worst p99 {worst_p99:.2f} ms)")
    print(f"results: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
