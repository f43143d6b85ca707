"""``make bench``: run a benchmark profile (``BENCH=quick|full``, default quick), save and print the results.

Writes ``bench/results/<profile>-<date>.json``, PNG plots under ``docs/performance/`` and the profile's
section of ``docs/performance.md``, then prints the markdown tables.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import breakdown, ingest, listing, memory, report
from bench.messages import make_message
from bench.srp_login import measure as measure_login

ROOT = Path(__file__).resolve().parents[1]
SIZES = (5_000, 75_000, 1_000_000, 10_000_000)
CONNECTIONS = (1, 10, 100)


@dataclass(frozen=True)
class Profile:
    """Everything a run measures, and how long it may take for each part."""

    name: str
    ingest: ingest.IngestPlan
    breakdown_sizes: tuple[int, ...]
    breakdown_budget_s: float
    breakdown_max_reps: int
    listing_counts: tuple[int, ...]
    listing_reps: int
    postgres: bool
    memory_sizes: tuple[int, ...]
    login_rounds: int


PROFILES = {
    # The smoke test's profile: seconds, not minutes.
    "tiny": Profile(
        "tiny",
        ingest.IngestPlan(
            ((5_000, (1, 2)),), duration_s=0.6, warmup_s=0.2, reply_timeout_s=30, baselines=("twisted-discard",)
        ),
        breakdown_sizes=(5_000,),
        breakdown_budget_s=0.1,
        breakdown_max_reps=3,
        listing_counts=(1_000,),
        listing_reps=5,
        postgres=False,
        memory_sizes=(),
        login_rounds=3,
    ),
    # make bench: under 5 minutes on two cores; 1 MB and 10 MB only at the connection counts that finish fast.
    "quick": Profile(
        "quick",
        ingest.IngestPlan(
            ((5_000, CONNECTIONS), (75_000, CONNECTIONS), (1_000_000, (1, 10)), (10_000_000, (1,))),
            duration_s=3.0,
            warmup_s=1.0,
            reply_timeout_s=60,
        ),
        breakdown_sizes=SIZES,
        breakdown_budget_s=1.5,
        breakdown_max_reps=50,
        listing_counts=(100_000,),
        listing_reps=50,
        postgres=True,
        memory_sizes=(10_000_000, 50_000_000),
        login_rounds=30,
    ),
    # BENCH=full: every point for 60 s, 1,000,000-object listings; about an hour.
    "full": Profile(
        "full",
        ingest.IngestPlan(
            tuple((size, CONNECTIONS) for size in SIZES), duration_s=60.0, warmup_s=5.0, reply_timeout_s=300
        ),
        breakdown_sizes=SIZES,
        breakdown_budget_s=15.0,
        breakdown_max_reps=500,
        listing_counts=(100_000, 1_000_000),
        listing_reps=500,
        postgres=True,
        memory_sizes=(10_000_000, 50_000_000),
        login_rounds=200,
    ),
}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _command_output(cmd: list[str]) -> str | None:
    if shutil.which(cmd[0]) is None and not Path(cmd[0]).exists():
        return None
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict[str, Any]:
    """The machine and the versions, for the record."""
    import ssl

    cpu_model = platform.processor() or "unknown CPU"
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    mem_kb = next((int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal:")), 0)
    versions = {
        "Python": platform.python_version(),
        "Twisted": _version("twisted"),
        "cryptography": _version("cryptography"),
        "OpenSSL": ssl.OPENSSL_VERSION.split()[1],
        "SQLAlchemy": _version("sqlalchemy"),
        "SQLite": sqlite3.sqlite_version,
        "psycopg": _version("psycopg"),
        "aiosmtpd": _version("aiosmtpd"),
    }
    pg = _postgres_version()
    if pg:
        versions["PostgreSQL"] = pg
    postfix = _command_output(["postconf", "-dh", "mail_version"])
    versions["Postfix"] = postfix or "not installed"
    dovecot = _command_output(["dovecot", "--version"])
    versions["Dovecot"] = dovecot.split()[0] if dovecot else "not installed"
    commit = _command_output(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    return {
        "cpu_model": cpu_model,
        "cores": os.cpu_count() or 0,
        "memory_gb": mem_kb / 1024 / 1024,
        "kernel": platform.release(),
        "versions": versions,
        "commit": commit,
    }


def _postgres_version() -> str | None:
    if listing.postgres_available():
        return None
    import psycopg

    with psycopg.connect(listing.PG_ADMIN_URL, connect_timeout=3) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]).split()[0] if row else None


def run_profile(
    profile: Profile, *, results_dir: Path, document: Path, plots_dir: Path, log: Any = print
) -> dict[str, Any]:
    """Run every part of ``profile``; write the JSON, plots and document section; return the results."""
    started = time.monotonic()
    today = datetime.date.today().isoformat()
    results_dir.mkdir(parents=True, exist_ok=True)
    results_file = results_dir / f"{profile.name}-{today}.json"
    try:
        shown_file = str(results_file.relative_to(ROOT))
    except ValueError:
        shown_file = str(results_file)
    results: dict[str, Any] = {
        "profile": profile.name,
        "date": today,
        "environment": environment(),
        "settings": {**asdict(profile.ingest), "profile": asdict(profile)},
        "results_file": shown_file,
    }
    results["settings"]["duration_s"] = profile.ingest.duration_s
    results["settings"]["warmup_s"] = profile.ingest.warmup_s
    with tempfile.TemporaryDirectory(prefix="mailiverse-bench-") as scratch:
        work = Path(scratch)
        log(f"[{profile.name}] SMTP ingest")
        results["ingest"] = ingest.run(profile.ingest, work / "ingest", log)
        log(f"[{profile.name}] delivery cost breakdown")
        pg_problem = listing.postgres_available() if profile.postgres else "not requested"
        messages = [make_message(size) for size in profile.breakdown_sizes]
        if pg_problem:
            results["breakdown"] = breakdown.run(
                messages, work / "breakdown", profile.breakdown_budget_s, profile.breakdown_max_reps
            )
        else:
            with listing.postgres_database() as url:
                results["breakdown"] = breakdown.run(
                    messages, work / "breakdown", profile.breakdown_budget_s, profile.breakdown_max_reps, url
                )
        log(f"[{profile.name}] listing and fetching")
        results["listing"] = listing.run(
            list(profile.listing_counts), work / "listing", profile.listing_reps, profile.postgres
        )
        log(f"[{profile.name}] SRP login")
        steps = measure_login(profile.login_rounds)
        results["login"] = {
            "rounds": profile.login_rounds,
            "steps": {name: _median_p90(values) for name, values in steps.items()},
        }
        results["login"]["total_median_ms"] = results["login"]["steps"]["total (real)"]["median_ms"]
        if profile.memory_sizes:
            log(f"[{profile.name}] memory for large messages")
            results["memory"] = memory.run(work / "memory", list(profile.memory_sizes))
    results["goals"] = report.goals(results)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results_file.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    written = report.plots(results, plots_dir, profile.name)
    links = [os.path.relpath(path, document.parent) for path in written]
    section = report.markdown(results, links)
    report.update_document(document, profile.name, section)
    results["markdown"] = section
    return results


def _median_p90(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": ordered[len(ordered) // 2] * 1000
        if len(ordered) % 2
        else (ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2 * 1000,
        "p90_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))] * 1000,
    }


def main() -> int:
    name = os.environ.get("BENCH", "quick")
    if name not in PROFILES:
        print(f"BENCH must be one of {', '.join(PROFILES)}, not {name!r}", file=sys.stderr)
        return 2
    results = run_profile(
        PROFILES[name],
        results_dir=ROOT / "bench" / "results",
        document=ROOT / "docs" / "performance.md",
        plots_dir=ROOT / "docs" / "performance",
    )
    print()
    print(results["markdown"])
    print(f"[{name}] finished in {results['elapsed_s']:.0f} s; results in {results['results_file']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
