"""Turn one run's results into the goals check, markdown tables, PNG plots and the section of docs/performance.md."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from bench.ingest import BASELINES, ratios
from bench.messages import label
from bench.peer_mta import NAME as PEER

GOAL_RATIO = 0.5
GOAL_P99_MS = 100.0
GOAL_RSS_MB = 120.0
#: Issue 17: the appliance with its delivery workers.
GOAL_TREE_RSS_MB = 200.0
#: Issue 17: large messages against the discard baseline, at these points.
LARGE_POINTS = ((1_000_000, 10), (10_000_000, 1))
GOAL_GROWTH = 2.0
GOAL_LIST_MS = 10.0
GOAL_LOGIN_MS = 5.0
GOAL_SIZE = 5_000
GOAL_CONNECTIONS = 100
#: Footnote marks of the ingest table's baseline columns.
_MARKS = {"smtp-sink": "*", PEER: "†"}


def _cpu_cell(point: dict[str, Any]) -> str:
    """Server CPU per message, split into the main process and the delivery workers where the point has both."""
    total = _fmt(point["server_cpu_ms_per_msg"], 2)
    if "server_cpu_workers_ms_per_msg" not in point:  # results from before the split
        return total
    main, workers = _fmt(point["server_cpu_main_ms_per_msg"], 2), _fmt(point["server_cpu_workers_ms_per_msg"], 2)
    return f"{total} ({main} + {workers})"


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal of issue 7 with the measured figure and whether it is met (None: not measured in this run)."""
    rows: list[dict[str, Any]] = []
    points = results.get("ingest", {}).get("points", [])
    at = {(p["server"], p["size"], p["connections"]): p for p in points}
    app = at.get(("appliance", GOAL_SIZE, GOAL_CONNECTIONS))
    base = at.get(("twisted-discard", GOAL_SIZE, GOAL_CONNECTIONS))
    ratio = app["msgs_per_s"] / base["msgs_per_s"] if app and base and base["msgs_per_s"] else None
    rows.append(
        {
            "goal": "5 KB x100: messages/s vs the Twisted discard baseline",
            "target": f">= {GOAL_RATIO}",
            "measured": None if ratio is None else f"{ratio:.2f}",
            "ok": None if ratio is None else ratio >= GOAL_RATIO,
        }
    )
    for size, connections in LARGE_POINTS:
        large, large_base = at.get(("appliance", size, connections)), at.get(("twisted-discard", size, connections))
        large_ratio = (
            large["msgs_per_s"] / large_base["msgs_per_s"]
            if large and large_base and large_base["msgs_per_s"]
            else None
        )
        rows.append(
            {
                "goal": f"{size // 1_000_000} MB x{connections}: messages/s vs the Twisted discard baseline",
                "target": f">= {GOAL_RATIO}",
                "measured": None if large_ratio is None else f"{large_ratio:.2f}",
                "ok": None if large_ratio is None else large_ratio >= GOAL_RATIO,
            }
        )
    peer = at.get((PEER, GOAL_SIZE, GOAL_CONNECTIONS))
    ahead, versus = None, None
    if app and peer and peer["msgs_per_s"]:
        ahead = app["msgs_per_s"] / peer["msgs_per_s"]
        versus = f"{ahead:.2f} ({app['msgs_per_s']:.1f} vs {peer['msgs_per_s']:.1f} msg/s)"
    rows.append(
        {
            "goal": "5 KB x100: ahead of Postfix→Dovecot (mail_crypt), drained msg/s",
            "target": "> 1",
            "measured": versus,
            "ok": None if ahead is None else ahead > 1,
        }
    )
    rows.append(
        {
            "goal": "5 KB x100: p99 end-of-DATA to 250",
            "target": f"< {GOAL_P99_MS:g} ms",
            "measured": None if not app else f"{app['p99_ms']:.1f} ms",
            "ok": None if not app else app["p99_ms"] < GOAL_P99_MS,
        }
    )
    rows.append(
        {
            "goal": "5 KB x100: server peak RSS (main process)",
            "target": f"< {GOAL_RSS_MB:g} MB",
            "measured": None if not app else f"{app['server_peak_rss_mb']:.1f} MB",
            "ok": None if not app else app["server_peak_rss_mb"] < GOAL_RSS_MB,
        }
    )
    tree = None if not app else app.get("server_tree_peak_rss_mb")
    rows.append(
        {
            "goal": "5 KB x100: peak RSS of the appliance and its delivery workers",
            "target": f"< {GOAL_TREE_RSS_MB:g} MB",
            "measured": None if tree is None else f"{tree:.1f} MB",
            "ok": None if tree is None else tree < GOAL_TREE_RSS_MB,
        }
    )
    big = [m for m in results.get("memory", []) if m["size"] >= 50_000_000]
    rows.append(
        {
            "goal": "one 50 MB message: peak RSS growth",
            "target": f"< {GOAL_GROWTH:g} x size",
            "measured": f"{big[0]['growth_ratio']:.2f} x ({big[0]['growth_mb']:.0f} MB)" if big else None,
            "ok": big[0]["growth_ratio"] < GOAL_GROWTH if big else None,
        }
    )
    for backend in ("sqlite", "postgresql"):
        listed = [r for r in results.get("listing", []) if r["backend"] == backend and "skipped" not in r]
        largest = max(listed, key=lambda r: r["objects"], default=None)
        if largest is None:
            rows.append(
                {
                    "goal": f"newest 50 of 1,000,000 ({backend})",
                    "target": f"< {GOAL_LIST_MS:g} ms",
                    "measured": None,
                    "ok": None,
                }
            )
            continue
        value = largest["newest50_inbox"]["p50_ms"]
        full = largest["objects"] >= 1_000_000
        rows.append(
            {
                "goal": f"newest 50 of 1,000,000 ({backend})",
                "target": f"< {GOAL_LIST_MS:g} ms",
                "measured": f"{value:.2f} ms (p50)" + ("" if full else f" at {largest['objects']:,} objects only"),
                "ok": (value < GOAL_LIST_MS) if full else None,
            }
        )
    login = results.get("login")
    rows.append(
        {
            "goal": "one SRP login, server time",
            "target": f"< {GOAL_LOGIN_MS:g} ms",
            "measured": None if not login else f"{login['total_median_ms']:.2f} ms (median)",
            "ok": None if not login else login["total_median_ms"] < GOAL_LOGIN_MS,
        }
    )
    return rows


def markdown(results: dict[str, Any], plot_links: list[str]) -> str:
    """The generated section: when, where, goals, and every table."""
    env = results["environment"]
    out = [
        f"### Profile `{results['profile']}` — {results['date']}",
        "",
        f"Machine: {env['cpu_model']}, {env['cores']} cores, {env['memory_gb']:.1f} GB RAM, Linux {env['kernel']}. "
        f"Client and servers share it; the load client is one Python process (asyncio).",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + ".",
        "",
        f"Ingest: {results['settings']['duration_s']:g} s measured per point "
        f"after {results['settings']['warmup_s']:g} s warm-up. "
        f"Results file: `{results['results_file']}`.",
        "",
        "#### Goals",
        "",
        "| goal | target | measured | |",
        "|---|---|---|---|",
    ]
    for row in results["goals"]:
        out.append(f"| {row['goal']} | {row['target']} | {_fmt(row['measured'])} | {_verdict(row['ok'])} |")
    ingest = results.get("ingest", {})
    points = ingest.get("points", [])
    if points:
        at = {(p["server"], p["size"], p["connections"]): p for p in points}
        names = [n for n in BASELINES if n in ingest.get("baselines", [])]
        out += [
            "",
            "#### SMTP ingest (appliance over STARTTLS; messages/s, latency from end of DATA to 250)",
            "",
            "| size | conns | appliance msg/s | p50 ms | p99 ms | peak RSS MB | server CPU ms/msg (main + workers) | "
            + " | ".join(f"{n}{_MARKS.get(n, '')} msg/s (ratio)" for n in names)
            + " |",
            "|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(names),
        ]
        ratio_rows = {(r["size"], r["connections"]): r for r in ratios(points)}
        for p in points:
            if p["server"] != "appliance":
                continue
            key = (p["size"], p["connections"])
            cells = []
            for n in names:
                base = at.get((n, *key))
                ratio = ratio_rows.get(key, {}).get(n)
                cells.append("–" if not base else f"{_fmt(base['msgs_per_s'])} ({_fmt(ratio, 2)})")
            errors = f" ({p['errors']} errors)" if p["errors"] else ""
            out.append(
                f"| {label(p['size'])} | {p['connections']} | {_fmt(p['msgs_per_s'])}{errors} | {_fmt(p['p50_ms'])} | "
                f"{_fmt(p['p99_ms'])} | {_fmt(p['server_peak_rss_mb'])} | {_cpu_cell(p)} | " + " | ".join(cells) + " |"
            )
        out += [
            "",
            "Ratio = appliance msg/s ÷ baseline msg/s at the same point. *smtp-sink has no STARTTLS, so it is driven "
            "in plain SMTP. †Postfix into Dovecot over LMTP with mail_crypt, counted by messages/s drained into the "
            "encrypted maildir, not accepted. Baselines' own latency and RSS (the peer's accepted rate, latency and "
            "CPU) are in the results file.",
        ]
        checks = ingest.get("store_checks", [])
        if checks:
            bad = [c for c in checks if not c["ok"]]
            extra = sum(c["stored"] - c["accepted"] for c in checks if c["stored"] > c["accepted"])
            late = f" {extra} more were committed after the client had stopped waiting for their 250." if extra else ""
            out += [
                "",
                "Store check: every 250 the appliance gave is a committed message: "
                + ("yes" if not bad else f"**no** ({bad})")
                + "."
                + late,
            ]
    if results.get("breakdown"):
        steps = list(results["breakdown"][0]["median_ms"])
        out += [
            "",
            "#### Cost of one delivery (one recipient, v1 envelope; median ms per step)",
            "",
            "| size | " + " | ".join(steps) + " | total (SQLite) |",
            "|---|" + "---:|" * (len(steps) + 1),
        ]
        for row in results["breakdown"]:
            out.append(
                f"| {label(row['size'])} | "
                + " | ".join(_fmt(row["median_ms"].get(s), 2) for s in steps)
                + f" | {_fmt(row['total_ms'], 2)} |"
            )
    if results.get("listing"):
        out += [
            "",
            "#### Listing and fetching (store call through a pooled connection; p50 / p99 ms)",
            "",
            "| backend | objects | newest 50 of Mail/In/ | newest 50 of all | next page "
            "| fetch one 75 KB object | load s |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for row in results["listing"]:
            if "skipped" in row:
                out.append(f"| {row['backend']} | {row['objects']:,} | skipped: {row['skipped']} | | | | |")
                continue
            cells = [
                f"{row[k]['p50_ms']:.2f} / {row[k]['p99_ms']:.2f}"
                for k in ("newest50_inbox", "newest50_all", "newest50_next_page", "fetch_75KB")
            ]
            out.append(f"| {row['backend']} | {row['objects']:,} | " + " | ".join(cells) + f" | {row['load_s']} |")
    if results.get("login"):
        login = results["login"]
        out += [
            "",
            "#### SRP-6a login (2048-bit group), server CPU time, ms",
            "",
            "| step | median | p90 |",
            "|---|---:|---:|",
        ]
        for name, row in login["steps"].items():
            out.append(f"| {name} | {row['median_ms']:.2f} | {row['p90_ms']:.2f} |")
    if results.get("memory"):
        out += [
            "",
            "#### Memory for one large message (fresh appliance; peak RSS growth over idle)",
            "",
            "| size | idle RSS MB | peak RSS MB | growth MB | growth ÷ size | end of DATA to 250 |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for row in results["memory"]:
            out.append(
                f"| {label(row['size'])} | {row['rss_before_mb']:.1f} | {row['peak_rss_mb']:.1f} | "
                f"{row['growth_mb']:.1f} | {row['growth_ratio']:.2f} | {row['latency_s']:.2f} s |"
            )
    if plot_links:
        out += ["", *[f"![{Path(link).stem}]({link})" for link in plot_links]]
    return "\n".join(out) + "\n"


def plots(results: dict[str, Any], directory: Path, prefix: str) -> list[Path]:
    """PNG plots of ingest throughput and p99 by connections, and of the delivery cost breakdown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    points = results.get("ingest", {}).get("points", [])
    sizes = sorted({p["size"] for p in points})
    servers_seen = [s for s in ("appliance", *BASELINES) if any(p["server"] == s for p in points)]
    for metric, title, filename in (
        ("msgs_per_s", "messages/s", "ingest-throughput"),
        ("p99_ms", "p99 latency, ms (end of DATA to 250)", "ingest-p99"),
    ):
        if not sizes:
            break
        fig, axes = plt.subplots(1, len(sizes), figsize=(4 * len(sizes), 3.6), squeeze=False)
        for ax, size in zip(axes[0], sizes, strict=True):
            for server in servers_seen:
                line = sorted(
                    (p["connections"], p[metric]) for p in points if p["server"] == server and p["size"] == size
                )
                if line:
                    ax.plot([c for c, _ in line], [v for _, v in line], marker="o", label=server)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("connections")
            ax.set_title(label(size))
            ax.grid(True, which="both", alpha=0.3)
        axes[0][0].set_ylabel(title)
        axes[0][-1].legend(fontsize=7)
        fig.suptitle(f"SMTP ingest: {title} ({prefix})")
        fig.tight_layout()
        path = directory / f"{prefix}-{filename}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    breakdown = results.get("breakdown", [])
    if breakdown:
        steps = [s for s in breakdown[0]["share"]]
        fig, ax = plt.subplots(figsize=(8.5, 3.6))
        bottoms = [0.0] * len(breakdown)
        names = [label(r["size"]) for r in breakdown]
        for step in steps:
            values = [r["share"][step] * 100 for r in breakdown]
            ax.bar(names, values, bottom=bottoms, label=step)
            bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
        for i, r in enumerate(breakdown):
            ax.text(i, 101, f"{r['total_ms']:.1f} ms", ha="center", fontsize=8)
        ax.set_ylabel("% of one delivery")
        ax.set_ylim(0, 112)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.set_title(f"Cost of one delivery by step ({prefix})")
        fig.tight_layout()
        path = directory / f"{prefix}-breakdown.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def update_document(document: Path, profile: str, section: str) -> None:
    """Replace this profile's generated section of ``document`` (between markers), or append it."""
    begin, end = f"<!-- bench:{profile}:begin -->", f"<!-- bench:{profile}:end -->"
    block = f"{begin}\n{section}{end}\n"
    text = document.read_text(encoding="utf-8") if document.exists() else "# Performance\n\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    document.parent.mkdir(parents=True, exist_ok=True)
    document.write_text(text, encoding="utf-8")


def render(results_file: Path, document: Path, plots_dir: Path) -> str:
    """Re-render a saved run (goals, plots, this profile's section of the document) without measuring again."""
    import json
    import os

    results = json.loads(results_file.read_text(encoding="utf-8"))
    for check in results.get("ingest", {}).get("store_checks", []):
        check["ok"] = check["stored"] >= check["accepted"]
    results["goals"] = goals(results)
    written = plots(results, plots_dir, results["profile"])
    section = markdown(results, [os.path.relpath(path, document.parent) for path in written])
    update_document(document, results["profile"], section)
    return section


def main(argv: list[str]) -> int:
    """``python -m bench.report bench/results/<profile>-<date>.json``: re-render docs/performance.md from it."""
    root = Path(__file__).resolve().parents[1]
    if len(argv) != 2:
        print(main.__doc__)
        return 2
    print(render(Path(argv[1]), root / "docs" / "performance.md", root / "docs" / "performance"))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv))
