"""Profile the appliance under SMTP load with py-spy and say where its time goes.

Run: ``python -m bench.profile_ingest [--size 5000] [--connections 100] [--seconds 20] [--gil]``.
Starts a fresh appliance, drives it with the benchmark's client while ``py-spy record`` samples the
twistd process (all threads; with ``--gil`` only the thread holding the GIL), then prints the share
of samples by area (TLS, SMTP parsing, spool, MIME parse, twin, zlib, encryption, database, logging)
and the top functions by own time. Collapsed stacks are saved next to the results for a flame graph.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench import servers, smtpload
from bench.messages import make_message

ROOT = Path(__file__).resolve().parents[1]
#: Where a stack's time is charged: the first frame (innermost first) matching one of these.
AREAS = (
    ("fsync / SQLite commit", ("sqlite3", "do_commit", "_commit_impl", "commit (")),
    ("database (SQLAlchemy, queries)", ("sqlalchemy/",)),
    ("zlib", ("compress (", "zlib", "Deflater", "lenient.py")),
    ("encryption (RSA, AES)", ("rsaaes.py", "envelope.py", "cryptography/", "formats.py")),
    (
        "MIME parse",
        (
            "mailiverse/mime/headers.py",
            "multipart.py",
            "transfer.py",
            "addresses.py",
            "dates.py",
            "charsets.py",
            "rfc2047.py",
            "twin.py",
        ),
    ),
    ("twin JSON", ("jsonout.py",)),
    ("spool", ("spool.py",)),
    ("TLS", ("OpenSSL/", "_sslverify", "tls.py", "protocols/tls.py")),
    ("SMTP protocol", ("mailiverse/smtp/",)),
    ("logging", ("twisted/logger", "twisted/python/log")),
    ("reactor and Deferreds", ("twisted/internet/",)),
    ("thread pools", ("threadpool.py", "threading.py", "_threadworker", "queue.py")),
)


def area_of(stack: list[str]) -> str:
    """The area of one sampled stack (frames innermost first)."""
    for frame in stack:
        for name, needles in AREAS:
            if any(needle in frame for needle in needles):
                return name
    return "other"


def summarise(collapsed: Path, top: int = 25) -> str:
    """Shares by area and the top functions by own samples, from py-spy's collapsed (raw) output."""
    areas: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack_text.split(";")
        innermost_first = frames[::-1]
        total += count
        areas[area_of(innermost_first)] += count
        own[innermost_first[0]] += count
    if not total:
        return "no samples\n"
    lines = [f"{total} samples", "", "| area | share |", "|---|---:|"]
    lines += [f"| {name} | {count / total:.1%} |" for name, count in areas.most_common()]
    lines += ["", "| function (own time) | share |", "|---|---:|"]
    lines += [f"| `{name[:110]}` | {count / total:.1%} |" for name, count in own.most_common(top)]
    return "\n".join(lines) + "\n"


def merge_stacks(collapsed: Path) -> None:
    """Drop py-spy's per-thread and process frames (ids differ per run) and add up identical stacks."""
    merged: collections.Counter[str] = collections.Counter()
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("thread (", "process "))]
        merged[";".join(frames)] += int(count)
    collapsed.write_text("".join(f"{stack} {count}\n" for stack, count in merged.most_common()))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=5_000)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--gil", action="store_true", help="sample only the thread holding the GIL")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    tag = f"profile-{args.size}x{args.connections}{'-gil' if args.gil else ''}"
    collapsed = args.out / f"{tag}.collapsed.txt"
    with tempfile.TemporaryDirectory(prefix="mailiverse-profile-") as scratch:
        server = servers.start_appliance(Path(scratch) / "appliance")
        try:
            cmd = [
                py_spy,
                "record",
                "--pid",
                str(server.pid),
                "--rate",
                str(args.rate),
                "--format",
                "raw",
                "--output",
                str(collapsed),
                "--duration",
                str(int(args.seconds)),
                "--nonblocking",
                "--threads",
            ]
            if args.gil:
                cmd.append("--gil")
            load = smtpload.Load(
                "127.0.0.1",
                server.port,
                True,
                make_message(args.size),
                args.connections,
                duration_s=args.seconds + 3,
                warmup_s=1.0,
                reply_timeout_s=120,
            )
            result: dict[str, object] = {}
            client = threading.Thread(target=lambda: result.update(smtpload.run(load).summary()), daemon=True)
            client.start()
            time.sleep(1.0)
            spy = subprocess.run(cmd, capture_output=True, text=True, timeout=args.seconds + 60)
            client.join(args.seconds + 300)
        finally:
            server.stop()
    if spy.returncode != 0:
        print(spy.stderr, file=sys.stderr)
        return 1
    merge_stacks(collapsed)
    print(f"load: {result}")
    print(summarise(collapsed))
    print(f"collapsed stacks: {collapsed}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
