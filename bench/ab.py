"""A/B two source trees on one machine: the appliance of each, driven alternately by the same client.

Run: ``python -m bench.ab OTHER_TREE [--size 5000] [--connections 100] [--seconds 10] [--rounds 2]``.
``OTHER_TREE`` is a checkout of another commit (``git worktree add /tmp/before REV``); this file is
copied into it, so the older tree needs none of its own. Each round starts a fresh appliance from each
tree in turn (this tree first in odd rounds, the other first in even ones) and measures one point;
the table shows messages/s, p50/p99 and server CPU per message (main + workers) per round. On a shared
machine, only such alternating runs tell a change from noise (docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def measure_here(size: int, connections: int, seconds: float) -> dict[str, Any]:
    """One point against a fresh appliance of the tree this module is in."""
    from bench import ingest, servers
    from bench.messages import make_message

    plan = ingest.IngestPlan(((size, (connections,)),), duration_s=seconds, warmup_s=2.0, reply_timeout_s=60)
    with tempfile.TemporaryDirectory(prefix="mailiverse-ab-") as scratch:
        server = servers.start_appliance(Path(scratch) / "appliance")
        try:
            return ingest.measure_point(server, make_message(size), connections, plan)
        finally:
            server.stop()


def _run_in(tree: Path, args: argparse.Namespace) -> dict[str, Any]:
    target = tree / "bench" / "ab.py"
    if tree != ROOT:
        shutil.copyfile(__file__, target)
    command = [sys.executable, "-m", "bench.ab", "--here", "--size", str(args.size)]
    command += ["--connections", str(args.connections), "--seconds", str(args.seconds)]
    done = subprocess.run(command, cwd=tree, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", nargs="?", type=Path)
    parser.add_argument("--size", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--here", action="store_true", help="measure this tree once and print JSON (internal)")
    args = parser.parse_args()
    if args.here:
        print(json.dumps(measure_here(args.size, args.connections, args.seconds)))
        return 0
    if args.other is None:
        parser.error("name the other tree")
    trees = {"this": ROOT, "other": args.other.resolve()}
    print("| round | tree | msg/s | p50 ms | p99 ms | CPU ms/msg (main + workers) |")
    print("|---:|---|---:|---:|---:|---|")
    for round_number in range(1, args.rounds + 1):
        order = ["this", "other"] if round_number % 2 else ["other", "this"]
        for name in order:
            point = _run_in(trees[name], args)
            split = ""
            if "server_cpu_main_ms_per_msg" in point:  # trees before the split report the total only
                split = f" ({point['server_cpu_main_ms_per_msg']:.2f} + {point['server_cpu_workers_ms_per_msg']:.2f})"
            print(
                f"| {round_number} | {name} | {point['msgs_per_s']:.0f} "
                f"| {point['p50_ms']:.0f} | {point['p99_ms']:.0f} "
                f"| {point['server_cpu_ms_per_msg']:.2f}{split} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
