"""Homes (issue 22): SMTP ingest through one front end and through two sharing a metabase, and listing at 1,000,000
objects in one home against a small account in another.

Run from the repository root: ``.venv/bin/python -m bench.homes [--messages 3000] [--connections 40]
[--objects 1000000]`` (not part of ``make bench``; about five minutes on two cores).

* **Ingest**: a metabase and two homes, three databases on the shared PostgreSQL server
  (``mailiverse.testing_db``; ``MAILIVERSE_TEST_PG`` overrides it); four accounts (``mailiverse-admin user add``,
  two in each home); two ``twistd mailiverse --metabase --home --home`` front ends on 127.0.0.1, the second
  with a copy of the first's data directory (its keys), each with the same receipt-time checks as ``make
  bench``'s appliance (bench/servers.py). The same total concurrency is measured against one front end and
  against both (connections alternate between them): each connection says EHLO, STARTTLS, EHLO, then MAIL,
  RCPT (the four accounts in turn, so both homes), DATA (each message made distinct by an ``X-Bench-Ticket``
  header: the appliance keeps a message it stored before only once) until the run's count is reached; latency
  is from the final ``.`` to the 250, throughput is the messages after the warm-up over the time they took.
  The configurations alternate for ``--rounds`` rounds. Every 250 is then checked against the homes'
  object counts (``mailiverse-admin homes``: an original and its twin per delivery).
* **Listing**: a fresh metabase and two homes; account ``big`` in home1 filled *directly in SQL* with
  ``--objects`` object rows (``INSERT ... SELECT generate_series``; half ``Mail/In/``, half their
  ``Mail/In_Json/`` twins, one 32-byte chunk each reading "synthetic ciphertext": these are not sealed
  messages, only rows shaped like them), account ``small`` in home2 with ``--small`` rows the same way; then
  ``list_objects_txn(prefix="Mail/In/", newest_first=True, limit=100)`` (what ``GET /api/store?prefix=Mail/In/
  &order=newest&limit=100`` runs) is timed for the first page and deep pages (continuing after a
  ``NewestCursor``): through the router, ``Homes.run_for`` (map lookup, cached after the first call, then the
  home's reader thread) with the reactor running, and directly (``Database.run_sync``, no thread hop).

Writes ``bench/results/homes-<date>.json``, ``docs/performance/homes-*.png`` and the generated part of the
"Homes" section of docs/performance.md (``--no-document`` leaves the document alone).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import Connection, select, text

from bench import machine, procmem, report, servers, smtpload
from bench.messages import SENDER, make_message
from mailiverse.crypto.keys import generate_private_key, public_key_der
from mailiverse.store.db import Database
from mailiverse.store.homes import ACTIVE, Homes, add_copy_txn, set_home_txn
from mailiverse.store.objects import NewestCursor, ObjectInfo, list_objects_txn
from mailiverse.store.schema import users
from mailiverse.store.users import add_user_txn
from mailiverse.testing_db import create_postgres_database, drop_postgres_database, postgres_unavailable_reason

ROOT = Path(__file__).resolve().parents[1]
ACCOUNTS = ("alice", "bob", "carol", "dave")
PAGE = 100
START_MS = 1_700_000_000_000
#: What every synthetic chunk holds: 32 bytes that say what they are.
SYNTHETIC_CHUNK = "synthetic ciphertext ..........."
_PER_CONNECTION = 50
#: The length of the header that makes each message distinct (``X-Bench-Ticket: 00000001``).
_TICKET = 26


# -- ingest: the load client -------------------------------------------------------------------------


@dataclass
class Tally:
    """Messages handed out to connections (warm-up first), and when each 250 came back."""

    warmup: int
    total: int
    #: the first ticket's number in the message header (runs after the first continue the numbering)
    base: int = 0
    issued: int = 0
    done: list[tuple[float, float]] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def take(self) -> int | None:
        if self.issued >= self.total:
            return None
        self.issued += 1
        return self.issued - 1

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def summary(self) -> dict[str, Any]:
        """Throughput of the messages after the warm-up over the time they took; their latency percentiles."""
        ordered = sorted(self.done)
        if len(ordered) <= self.warmup + 1:
            return {"messages": 0, "msgs_per_s": 0.0, "p50_ms": float("nan"), "p99_ms": float("nan")}
        began = ordered[self.warmup - 1][0] if self.warmup else ordered[0][0]
        measured = ordered[self.warmup :]
        span = measured[-1][0] - began
        latencies = sorted(latency for _, latency in measured)
        return {
            "messages": len(measured),
            "accepted_total": len(ordered),
            "window_s": round(span, 3),
            "msgs_per_s": len(measured) / span if span > 0 else 0.0,
            "p50_ms": smtpload.percentile(latencies, 50) * 1000,
            "p99_ms": smtpload.percentile(latencies, 99) * 1000,
            "mean_ms": statistics.fmean(latencies) * 1000,
            "errors": dict(self.errors),
        }


async def _session(
    port: int, source: str, recipients: list[str], message: bytes, tally: Tally, tls: ssl.SSLContext, timeout: float
) -> bool:
    """One connection, STARTTLS, up to _PER_CONNECTION messages; False when the tally has none left."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0), limit=64 * 1024), timeout
    )
    # bench.smtpload's reply reader and command step: the same client protocol as every other ingest figure.
    command = smtpload._command
    try:
        code, _ = await smtpload._reply(reader, timeout)
        if code != 220:
            raise smtpload.SmtpFailure(f"greeting {code}")
        await command(reader, writer, b"EHLO client.bench.test", 250, timeout)
        await command(reader, writer, b"STARTTLS", 220, timeout)
        await writer.start_tls(tls, server_hostname="mail.example.org")
        await command(reader, writer, b"EHLO client.bench.test", 250, timeout)
        for _ in range(_PER_CONNECTION):
            ticket = tally.take()
            if ticket is None:
                return False
            rcpt = recipients[ticket % len(recipients)]
            await command(reader, writer, f"MAIL FROM:<{SENDER}> SIZE={len(message) + _TICKET}".encode(), 250, timeout)
            await command(reader, writer, f"RCPT TO:<{rcpt}>".encode(), 250, timeout)
            await command(reader, writer, b"DATA", 354, timeout)
            # Each message distinct: the appliance keeps a message it has stored before once (store/receipts.py).
            writer.write(b"X-Bench-Ticket: %08d\r\n" % (tally.base + ticket) + message)
            await asyncio.wait_for(writer.drain(), timeout)
            writer.write(b".\r\n")
            sent = time.monotonic()
            code, _ = await smtpload._reply(reader, timeout)
            done = time.monotonic()
            if code != 250:
                tally.error(f"DATA {code}")
                continue
            tally.done.append((done, done - sent))
        with contextlib.suppress(Exception):
            await command(reader, writer, b"QUIT", 221, 5)
        return True
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 5)


async def _drive(ports: list[int], connections: int, recipients: list[str], message: bytes, tally: Tally) -> None:
    tls = smtpload.client_tls_context()

    async def connection(index: int) -> None:
        port = ports[index % len(ports)]
        source = f"127.0.0.{2 + index % 250}"
        for _ in range(tally.total + 1):  # each pass sends a message or records an error
            try:
                if not await _session(port, source, recipients, message, tally, tls, 120.0):
                    return
            except (TimeoutError, OSError, smtpload.SmtpFailure, ssl.SSLError) as e:
                tally.error(str(e) if isinstance(e, smtpload.SmtpFailure) else type(e).__name__)
                if tally.issued >= tally.total:
                    return
                await asyncio.sleep(0.05)

    await asyncio.wait_for(asyncio.gather(*(connection(i) for i in range(connections))), 1800)


# -- ingest: the front ends --------------------------------------------------------------------------


def _start_front_end(workdir: Path, data_dir: Path, options: list[str]) -> servers.Server:
    """``twistd -n mailiverse`` with ``options`` (the metabase and homes) and the bench's DNS and checks."""
    smtp, smtps, web = servers.free_port(), servers.free_port(), servers.free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    dns = servers.start_bench_dns(workdir / "dns")
    cmd = [
        str(servers.BIN / "twistd"),
        "-n",
        "--pidfile=",
        f"--logfile={workdir / 'twistd.log'}",
        "mailiverse",
        "--data-dir",
        str(data_dir),
        "--domain",
        servers.DOMAIN,
        "--hostname",
        f"mail.{servers.DOMAIN}",
        "--smtp",
        f"tcp:{smtp}",
        "--smtps",
        f"tcp:{smtps}",
        "--web",
        f"tcp:{web}",
        "--dns-server",
        f"127.0.0.1:{dns.port}",
        "--dnsbl",
        "bl.bench.test",
        *options,
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    with open(workdir / "stdout.log", "ab") as out:
        process = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = servers.Server(workdir.name, smtp, True, process, workdir, helpers=[dns])
    try:
        servers.wait_for_banner(smtp, process, 90, workdir / "twistd.log")
    except BaseException:
        server.stop()
        raise
    return server


def _admin(data_dir: Path, *args: str) -> str:
    result = subprocess.run(
        [str(servers.BIN / "mailiverse-admin"), "--data-dir", str(data_dir), *args],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return result.stdout.decode()


def _inbox_counts(data_dir: Path) -> dict[str, int]:
    """Each account's stored messages (``mailiverse-admin store ls NAME Mail/In/``)."""
    return {
        name: sum(1 for line in _admin(data_dir, "store", "ls", name, "Mail/In/").splitlines() if line)
        for name in ACCOUNTS
    }


@contextlib.contextmanager
def _databases(*prefixes: str) -> Iterator[list[str]]:
    urls: list[str] = []
    try:
        for prefix in prefixes:
            urls.append(create_postgres_database(prefix))
        yield urls
    finally:
        for url in urls:
            drop_postgres_database(url)


def run_ingest(args: argparse.Namespace, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """One front end against two, alternating, ``args.rounds`` times each."""
    message = make_message(args.size - _TICKET)
    with _databases("mv_bench_meta", "mv_bench_home1", "mv_bench_home2") as (meta, home1, home2):
        options = ["--metabase", meta, "--home", f"home1={home1}", "--home", f"home2={home2}"]
        first_data, second_data = work / "first" / "data", work / "second" / "data"
        first = _start_front_end(work / "first", first_data, options)
        try:
            for name in ACCOUNTS:
                key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
                pub = work / f"{name}.pub.pem"
                pub.write_bytes(
                    key.public_key().public_bytes(
                        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                    )
                )
                _admin(first_data, "user", "add", name, "--public-key", str(pub))
        finally:
            first.stop()
        placement = dict(line.split("\t")[:2] for line in _admin(first_data, "homes", "--users").splitlines() if line)
        shutil.copytree(first_data, second_data)  # the second front end gets the first's keys
        front_ends = [_start_front_end(work / "first", first_data, options)]
        try:
            front_ends.append(_start_front_end(work / "second", second_data, options))
            recipients = [f"{name}@{servers.DOMAIN}" for name in ACCOUNTS]
            runs: list[dict[str, Any]] = []
            accepted = 0
            for round_number in range(args.rounds):
                for count in (1, 2):
                    used = front_ends[:count]
                    cpu_before = [procmem.tree_cpu_seconds(f.pid) for f in used]
                    per_run = args.warmup + args.messages
                    tally = Tally(args.warmup, per_run, base=len(runs) * per_run)
                    asyncio.run(_drive([f.port for f in used], args.connections, recipients, message, tally))
                    cpu = sum(procmem.tree_cpu_seconds(f.pid) for f in used) - sum(cpu_before)
                    summary = tally.summary()
                    accepted += len(tally.done)
                    summary.update(
                        front_ends=count,
                        round=round_number + 1,
                        connections=args.connections,
                        front_end_cpu_ms_per_msg=cpu * 1000 / len(tally.done) if tally.done else float("nan"),
                    )
                    runs.append(summary)
                    log(
                        f"  round {round_number + 1}, {count} front end(s): {summary['msgs_per_s']:7.1f} msg/s"
                        f"  p50 {summary['p50_ms']:7.1f} ms  p99 {summary['p99_ms']:7.1f} ms"
                        f"  cpu/msg {summary['front_end_cpu_ms_per_msg']:6.2f} ms  errors {summary['errors']}"
                    )
            if not all(f.alive() for f in front_ends):
                raise servers.ServerFailed("a front end died during the benchmark")
            stored = _inbox_counts(first_data)
        finally:
            for front_end in front_ends:
                front_end.stop()
    # Every 250 is a stored message. More may be stored than acknowledged: a client that gave up waiting does
    # not stop a delivery already under way.
    check = {"accepted": accepted, "stored": stored, "placement": placement, "ok": sum(stored.values()) >= accepted}
    if not check["ok"]:
        log(f"  WARNING: {accepted} messages got 250 but the accounts hold {sum(stored.values())}")
    return {
        "size": len(message) + _TICKET,
        "connections": args.connections,
        "messages": args.messages,
        "warmup": args.warmup,
        "placement": placement,
        "runs": runs,
        "store_check": check,
    }


# -- listing -----------------------------------------------------------------------------------------

_FILL_OBJECTS = text(
    """
    INSERT INTO objects (user_id, path, version, created_ms, modified_ms, size)
    SELECT :user_id,
           CASE WHEN g % 2 = 0 THEN 'Mail/In/' ELSE 'Mail/In_Json/' END || (:start + g / 2) || '_' || (g / 2),
           1, :start + g / 2, :start + g / 2, 32
    FROM generate_series(0, :count - 1) AS g
    """
)
_FILL_CHUNKS = text(
    """
    INSERT INTO object_chunks (object_id, seq, data)
    SELECT id, 0, convert_to(:chunk, 'UTF8') FROM objects WHERE user_id = :user_id
    """
)


def fill_synthetic_txn(conn: Connection, user_id: int, count: int) -> None:
    """``count`` synthetic object rows for ``user_id``: originals and twins, one per millisecond, oldest first."""
    conn.execute(_FILL_OBJECTS, {"user_id": user_id, "start": START_MS, "count": count})
    conn.execute(_FILL_CHUNKS, {"user_id": user_id, "chunk": SYNTHETIC_CHUNK})
    conn.execute(
        text("UPDATE users SET used_bytes = (SELECT sum(size) FROM objects WHERE user_id = :u) WHERE id = :u"),
        {"u": user_id},
    )


def _cursor_at_txn(conn: Connection, user_id: int, depth: int) -> NewestCursor:
    """The cursor after the ``depth`` newest inbox objects (where the page at that depth continues)."""
    row = conn.execute(
        text(
            "SELECT modified_ms, path FROM objects WHERE user_id = :u AND path LIKE 'Mail/In/%' "
            "ORDER BY modified_ms DESC, path DESC OFFSET :d LIMIT 1"
        ),
        {"u": user_id, "d": depth - 1},
    ).one()
    return NewestCursor(int(row[0]), str(row[1]))


def _account(meta: Database, home_name: str, home: Database, name: str) -> int:
    """An account in the metabase, its copy in ``home`` and its map entry (as ``Homes.place`` writes them)."""
    user = meta.transact_sync(add_user_txn, name, public_key_der(generate_private_key().public_key()), "v1")
    row = dict(meta.run_sync(lambda conn: conn.execute(select(users).where(users.c.id == user.id)).mappings().one()))
    home.transact_sync(add_copy_txn, row, ACTIVE)
    meta.transact_sync(set_home_txn, user.id, home_name, ACTIVE)
    return user.id


def _vacuum(database: Database) -> None:
    # As autovacuum would have done on a live home of this size.
    with database.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("VACUUM ANALYZE objects")
        conn.exec_driver_sql("VACUUM ANALYZE object_chunks")


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": smtpload.percentile(ordered, 99) * 1000,
        "reps": len(ordered),
    }


def _check_page(page: list[ObjectInfo], expected_first_ms: int) -> None:
    if len(page) != PAGE or page[0].modified_ms != expected_first_ms or not page[0].path.startswith("Mail/In/"):
        raise RuntimeError("the newest-first listing did not return the expected page")


def run_listing(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    """Fill two homes, then time the inbox's newest 100 at several depths, through the router and directly."""
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    sizes = {"big": ("home1", args.objects), "small": ("home2", args.small)}
    with _databases("mv_bench_meta", "mv_bench_home1", "mv_bench_home2") as (meta_url, url1, url2):
        meta = Database.open(meta_url, migrate=True)
        homes_db = {"home1": Database.open(url1, migrate=True), "home2": Database.open(url2, migrate=True)}
        router = Homes(meta, homes_db)
        cases: list[tuple[str, str, int, NewestCursor | None, int]] = []
        result: dict[str, Any] = {"objects": {}, "fill_s": {}, "cases": []}
        try:
            with meta.blocking_allowed(), homes_db["home1"].blocking_allowed(), homes_db["home2"].blocking_allowed():
                for account, (home_name, count) in sizes.items():
                    home = homes_db[home_name]
                    user_id = _account(meta, home_name, home, account)
                    began = time.monotonic()
                    home.transact_sync(fill_synthetic_txn, user_id, count)
                    _vacuum(home)
                    result["fill_s"][account] = round(time.monotonic() - began, 1)
                    result["objects"][account] = {"home": home_name, "objects": count}
                    log(f"  {account}: {count:,} synthetic objects in {home_name} in {result['fill_s'][account]} s")
                    inbox = (count + 1) // 2
                    newest_ms = START_MS + inbox - 1
                    depths = [0, min(inbox // 2, 250_000), inbox - PAGE] if inbox > 2 * PAGE else [0]
                    for depth in sorted(set(depths)):
                        cursor = home.run_sync(_cursor_at_txn, user_id, depth) if depth else None
                        page = home.run_sync(
                            list_objects_txn, user_id, "Mail/In/", limit=PAGE, newest_first=True, after=cursor
                        )
                        _check_page(page, newest_ms - depth)
                        cases.append((account, home_name, user_id, cursor, depth))
                direct = {}
                for account, home_name, user_id, cursor, depth in cases:
                    samples = []
                    for _ in range(args.reps):
                        began = time.perf_counter()
                        homes_db[home_name].run_sync(
                            list_objects_txn, user_id, "Mail/In/", limit=PAGE, newest_first=True, after=cursor
                        )
                        samples.append(time.perf_counter() - began)
                    direct[(account, depth)] = _stats(samples)

            async def routed() -> dict[tuple[str, int], dict[str, float]]:
                timings = {}
                for account, _home, user_id, cursor, depth in cases:
                    await router.run_for(
                        user_id, list_objects_txn, user_id, "Mail/In/", limit=PAGE, newest_first=True, after=cursor
                    )
                    samples = []
                    for _ in range(args.reps):
                        began = time.perf_counter()
                        await router.run_for(
                            user_id, list_objects_txn, user_id, "Mail/In/", limit=PAGE, newest_first=True, after=cursor
                        )
                        samples.append(time.perf_counter() - began)
                    timings[(account, depth)] = _stats(samples)
                return timings

            outcome: list[Any] = []

            def finish(value: Any) -> None:
                outcome.append(value)
                reactor.stop()  # type: ignore[attr-defined]

            reactor.callWhenRunning(  # type: ignore[attr-defined]
                lambda: Deferred.fromCoroutine(routed()).addBoth(finish)
            )
            reactor.run()  # type: ignore[attr-defined]
            if not outcome or not isinstance(outcome[0], dict):
                raise RuntimeError(f"the routed listing failed: {outcome}")
            for account, home_name, _user_id, _cursor, depth in cases:
                result["cases"].append(
                    {
                        "account": account,
                        "home": home_name,
                        "objects": sizes[account][1],
                        "depth": depth,
                        "router": outcome[0][(account, depth)],
                        "direct": direct[(account, depth)],
                    }
                )
        finally:
            router.close()
            meta.close()
    return result


# -- the record --------------------------------------------------------------------------------------


def markdown(results: dict[str, Any], plot_links: list[str]) -> str:
    """The generated part of docs/performance.md's "Homes" section: the settings and the two tables."""
    env = results["environment"]
    lines = [
        f"Measured {results['date']} (commit {env['commit']}, {env['cores']} cores {env['cpu_model']}, "
        f"PostgreSQL {env['postgresql']}, load average {env['load_average']}); "
        f"results: `{results['results_file']}`.",
        "",
    ]
    ingest = results.get("ingest")
    if ingest:
        lines += [
            f"#### Ingest over SMTP with STARTTLS ({ingest['size']:,}-byte messages, {ingest['connections']} "
            f"connections in all, {ingest['messages']:,} measured after {ingest['warmup']} warm-up per run)",
            "",
            "| front ends | round | messages/s | p50 ms | p99 ms | front-end CPU ms/msg | errors |",
            "|---:|---:|---:|---:|---:|---:|---|",
        ]
        for run in ingest["runs"]:
            lines.append(
                f"| {run['front_ends']} | {run['round']} | {run['msgs_per_s']:.1f} | {run['p50_ms']:.1f} | "
                f"{run['p99_ms']:.1f} | {run['front_end_cpu_ms_per_msg']:.2f} | {sum(run['errors'].values())} |"
            )
        check = ingest["store_check"]
        lines += [
            "",
            f"Store check: {check['accepted']:,} messages got 250; the accounts' inboxes hold "
            + ", ".join(f"{name} ({check['placement'][name]}) {n:,}" for name, n in check["stored"].items())
            + f": {'ok' if check['ok'] else '**missing mail**'}.",
            "",
        ]
    listing = results.get("listing")
    if listing:
        lines += [
            "#### Newest 100 of `Mail/In/` per home (`list_objects_txn`; p50 / p99 ms)",
            "",
            "| account | home | objects | page after | router (`Homes.run_for`) | direct (`run_sync`) |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for case in listing["cases"]:
            router, direct = case["router"], case["direct"]
            lines.append(
                f"| {case['account']} | {case['home']} | {case['objects']:,} | {case['depth']:,} | "
                f"{router['p50_ms']:.2f} / {router['p99_ms']:.2f} | {direct['p50_ms']:.2f} / {direct['p99_ms']:.2f} |"
            )
        fills = ", ".join(f"{name} {seconds} s" for name, seconds in listing["fill_s"].items())
        lines += ["", f"Fill (synthetic rows, `generate_series`, with VACUUM ANALYZE): {fills}.", ""]
    lines += [f"![{Path(link).stem}]({link})" for link in plot_links]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], directory: Path) -> list[Path]:
    """One PNG: ingest messages/s and p99 by front ends, and listing p50/p99 by account and depth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ingest, listing = results.get("ingest"), results.get("listing")
    if not ingest and not listing:
        return []
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    if ingest:
        ax = axes[0]
        for count, colour in ((1, "tab:blue"), (2, "tab:orange")):
            runs = [r for r in ingest["runs"] if r["front_ends"] == count]
            ax.scatter([r["p99_ms"] for r in runs], [r["msgs_per_s"] for r in runs], color=colour, s=40)
            for r in runs:
                ax.annotate(f"{count} FE r{r['round']}", (r["p99_ms"], r["msgs_per_s"]), fontsize=7)
        ax.set_xlabel("p99 ms (end of DATA to 250)")
        ax.set_ylabel("messages/s")
        ax.set_title(f"Ingest, {ingest['connections']} connections")
        ax.grid(True, alpha=0.3)
    if listing:
        ax = axes[1]
        cases = listing["cases"]
        names = [f"{c['account']}\n@{c['depth']:,}" for c in cases]
        positions = range(len(cases))
        ax.bar([p - 0.2 for p in positions], [c["router"]["p50_ms"] for c in cases], width=0.4, label="p50")
        ax.bar([p + 0.2 for p in positions], [c["router"]["p99_ms"] for c in cases], width=0.4, label="p99")
        ax.set_xticks(list(positions), names, fontsize=7)
        ax.set_ylabel("ms (Homes.run_for)")
        ax.set_title("Newest 100 of Mail/In/, by account and depth")
        ax.legend(fontsize=7)
        ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "homes.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [path]


def environment() -> dict[str, Any]:
    import psycopg

    from mailiverse.testing_db import postgres_admin_url

    with psycopg.connect(postgres_admin_url().replace("+psycopg", ""), connect_timeout=3) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return {**machine.basics(), "postgresql": str(row[0]).split()[0] if row else "unknown"}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.homes", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3_000, help="measured messages per ingest run")
    parser.add_argument("--warmup", type=int, default=300, help="messages per run before the measurement")
    parser.add_argument("--connections", type=int, default=40, help="SMTP connections in all")
    parser.add_argument("--size", type=int, default=5_000, help="message size in bytes")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each configuration, alternating")
    parser.add_argument("--objects", type=int, default=1_000_000, help="synthetic objects of the big account")
    parser.add_argument("--small", type=int, default=1_000, help="synthetic objects of the small account")
    parser.add_argument("--reps", type=int, default=300, help="timed listings per case")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-listing", action="store_true")
    parser.add_argument("--no-document", action="store_true", help="do not touch docs/performance.md")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    if min(args.messages, args.connections, args.rounds, args.objects, args.small, args.reps) < 1 or args.warmup < 0:
        parser.error("every count must be at least 1 (--warmup at least 0)")
    problem = postgres_unavailable_reason()
    if problem:
        print(f"homes benchmark needs PostgreSQL: {problem}", file=sys.stderr)
        return 1

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.monotonic()
    path, results = machine.results_header("homes", args, args.results, environment())
    if not args.skip_ingest:
        log("ingest: one front end against two, sharing a metabase and two homes")
        with tempfile.TemporaryDirectory(prefix="mv-bench-homes-") as scratch:
            results["ingest"] = run_ingest(args, Path(scratch), log)
    if not args.skip_listing:
        log(f"listing: {args.objects:,} objects in home1 against {args.small:,} in home2")
        results["listing"] = run_listing(args, log)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    args.results.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    document = ROOT / "docs" / "performance.md"
    written = plot(results, ROOT / "docs" / "performance")
    section = markdown(results, [os.path.relpath(p, document.parent) for p in written])
    if not args.no_document:
        report.update_document(document, "homes", section)
    print(section)
    print(f"results: {results['results_file']} ({results['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
