"""SMTP ingest: the appliance and the baselines, point by point, driven by the same client in the same run.

For each message size a fresh appliance is started (so its store starts empty and the disk stays
bounded); the baselines run for the whole matrix. At each (size, connections) point every server is
measured back to back, so they share the machine's state of the moment. For every point the server's
peak RSS (reset before the point) and CPU seconds, of the main process and of its children (the delivery
workers) apart, are read from /proc. After each size the appliance's store is counted: every 250 it gave
must be a committed message. The peer a user would pick instead (Postfix into Dovecot with ``mail_crypt``,
bench/peer_mta.py) is started fresh for each point where its packages are installed, and counted by the
rate at which its queue drains into the encrypted maildir.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import peer_mta, procmem, servers, smtpload
from bench.messages import label, make_message
from mailiverse.store.db import Database
from mailiverse.store.objects import count_objects_txn
from mailiverse.store.users import get_user_txn

BASELINES = ("twisted-discard", "aiosmtpd", "smtp-sink", peer_mta.NAME)


@dataclass(frozen=True)
class IngestPlan:
    """Which points to measure and for how long."""

    points: tuple[tuple[int, tuple[int, ...]], ...]
    duration_s: float
    warmup_s: float
    reply_timeout_s: float
    baselines: tuple[str, ...] = BASELINES


def _start_baselines(workdir: Path, names: tuple[str, ...], log: Callable[[str], None]) -> list[servers.Server]:
    starters: dict[str, Callable[[Path], servers.Server | None]] = {
        "twisted-discard": servers.start_discard,
        "aiosmtpd": servers.start_aiosmtpd,
        "smtp-sink": servers.start_smtp_sink,
    }
    started = []
    for name in names:
        if name == peer_mta.NAME:  # started per point by measure_peer
            continue
        server = starters[name](workdir / name)
        if server is None:
            log(f"  {name}: not installed, skipped")
        else:
            started.append(server)
    return started


def _stored_messages(db_url: str) -> int:
    database = Database.open(db_url, migrate=False, threads=1)
    try:
        # A command-line tool may block; a reactor runs in this process only under pytest-twisted.
        with database.blocking_allowed():
            user = database.run_sync(get_user_txn, servers.USER)
            return 0 if user is None else database.run_sync(count_objects_txn, user.id, "Mail/In/")
    finally:
        database.close()


def measure_point(server: servers.Server, message: bytes, connections: int, plan: IngestPlan) -> dict[str, Any]:
    """One server at one point: the client's figures plus the server's peak RSS and CPU."""
    exact_peak = procmem.reset_tree_peak(server.pid)
    cpu_before = procmem.cpu_snapshot(server.pid)
    load = smtpload.Load(
        "127.0.0.1",
        server.port,
        server.starttls,
        message,
        connections,
        duration_s=plan.duration_s,
        warmup_s=plan.warmup_s,
        reply_timeout_s=plan.reply_timeout_s,
    )
    samples = smtpload.run(load)
    summary = samples.summary()
    # The appliance's delivery workers are its child processes: their CPU is part of the server's.
    cpu_main, cpu_workers = procmem.cpu_split(cpu_before, procmem.cpu_snapshot(server.pid))
    cpu = cpu_main + cpu_workers
    accepted = int(summary["messages_total"])  # type: ignore[arg-type]

    def per_message_ms(seconds: float) -> float:
        return (seconds * 1000 / accepted) if accepted else float("nan")

    return {
        "server": server.name,
        "starttls": server.starttls,
        "size": len(message),
        "connections": connections,
        **summary,
        "server_peak_rss_mb": procmem.peak_rss_bytes(server.pid) / 1e6,
        # The appliance with its delivery workers (each worker's own peak, summed).
        "server_tree_peak_rss_mb": procmem.tree_peak_rss_bytes(server.pid) / 1e6,
        "peak_rss_since_point": exact_peak,
        "server_cpu_s": round(cpu, 3),
        "server_cpu_main_s": round(cpu_main, 3),
        "server_cpu_workers_s": round(cpu_workers, 3),
        "server_cpu_ms_per_msg": per_message_ms(cpu),
        "server_cpu_main_ms_per_msg": per_message_ms(cpu_main),
        "server_cpu_workers_ms_per_msg": per_message_ms(cpu_workers),
        "alive": server.alive(),
    }


def measure_peer(message: bytes, connections: int, plan: IngestPlan, log: Callable[[str], None]) -> dict[str, Any]:
    """The peer at one point, on a fresh instance: drained messages/s, and what the client saw."""
    result = peer_mta.measure(message, connections, plan.duration_s, plan.warmup_s, plan.reply_timeout_s)
    log(
        f"  {label(len(message)):>6} x{connections:<3} {peer_mta.NAME:16} {result['msgs_per_s']:8.1f} msg/s drained"
        f" ({result['accepted_msgs_per_s']:.1f} accepted)  p50 {result['p50_ms']:8.1f} ms"
        f"  p99 {result['p99_ms']:8.1f} ms  cpu/msg {result['server_cpu_ms_per_msg']:7.2f} ms"
        f"  errors {result['errors']}"
    )
    sys.stdout.flush()
    return result


def run(plan: IngestPlan, workdir: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every point of the plan for the appliance and each installed baseline."""
    points: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    baselines = _start_baselines(workdir / "baselines", plan.baselines, log)
    peer = peer_mta.NAME in plan.baselines
    if peer and (problem := peer_mta.unavailable()):
        log(f"  {peer_mta.NAME}: {problem}, skipped")
        peer = False
    try:
        for size, connection_counts in plan.points:
            message = make_message(size)
            app_dir = workdir / f"appliance-{size}"
            appliance = servers.start_appliance(app_dir)
            accepted = 0
            try:
                for connections in connection_counts:
                    for server in [appliance, *baselines]:
                        if not server.alive():
                            raise servers.ServerFailed(f"{server.name} died during the benchmark")
                        result = measure_point(server, message, connections, plan)
                        points.append(result)
                        if server is appliance:
                            accepted += int(result["messages_total"])
                        log(
                            f"  {label(size):>6} x{connections:<3} {server.name:16} {result['msgs_per_s']:8.1f} msg/s"
                            f"  p50 {result['p50_ms']:8.1f} ms  p99 {result['p99_ms']:8.1f} ms"
                            f"  rss {result['server_peak_rss_mb']:6.1f} MB"
                            f"  cpu/msg main {result['server_cpu_main_ms_per_msg']:7.2f} ms"
                            f" workers {result['server_cpu_workers_ms_per_msg']:7.2f} ms"
                            f"  errors {result['errors']}"
                        )
                        sys.stdout.flush()
                    if peer:
                        points.append(measure_peer(message, connections, plan, log))
            finally:
                appliance.stop()
            assert appliance.db_url is not None
            stored = _stored_messages(appliance.db_url)
            # Every 250 must be a committed message. More may be stored than acknowledged: a client that gave
            # up waiting (its reply timeout) does not stop a delivery already under way.
            checks.append({"size": size, "accepted": accepted, "stored": stored, "ok": stored >= accepted})
            if stored < accepted:
                log(f"  WARNING: appliance answered 250 for {accepted} messages of {label(size)} but stored {stored}")
            with contextlib.suppress(OSError):
                shutil.rmtree(app_dir)
    finally:
        for server in baselines:
            server.stop()
    names = [s.name for s in baselines] + ([peer_mta.NAME] if peer else [])
    return {"points": points, "store_checks": checks, "baselines": names}


def ratios(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each point: the appliance's messages/s over each baseline's (the peer's: drained messages/s)."""
    by_key = {(p["server"], p["size"], p["connections"]): p for p in points}
    rows = []
    for p in points:
        if p["server"] != "appliance":
            continue
        row: dict[str, Any] = {"size": p["size"], "connections": p["connections"]}
        for name in BASELINES:
            base = by_key.get((name, p["size"], p["connections"]))
            if base and base["msgs_per_s"] > 0:
                row[name] = p["msgs_per_s"] / base["msgs_per_s"]
        rows.append(row)
    return rows
