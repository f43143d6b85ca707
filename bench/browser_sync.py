"""The web client's sync in Debian's Chromium (issue 24): a fresh device's first page and whole list, an incremental
sync after 10 new messages, and a warm login, by mailbox size and envelope format.

Run from the repository root: ``.venv/bin/python -m bench.browser_sync [--sizes 1000,10000,50000] [--v1 10000]``
(not part of ``make bench``: sealing and storing 50,000 messages and syncing them take minutes).

* **Mailbox**: a fresh ``twistd mailiverse`` on SQLite (tests/support/harness.py, as the tests start it); one
  account per case signed up in the browser; its inbox filled straight into the store (tests/support/mailbox.py):
  per message an original and a JSON twin, sealed to the account's key exactly as delivery seals them ("v2": RSA-OAEP
  and AES-GCM; "v1": RSA PKCS#1 v1.5 and AES-CBC, as the original Mailiverse).
* **Fresh device**: a new browser context (no cookies, nothing cached) logs in. *First page* is the time from the
  click to the newest messages in the list (the login itself included: Argon2id, SRP, opening the key block);
  *synced* to the end of the sync (every message opened, the encrypted index written).
* **Incremental**: 10 more messages are stored; "check for new mail" is pressed and timed to the end of that sync.
* **Warm login**: log out and in again: from the click to the newest message in the list, and the client's own
  figure for the step from the cached index to the list (``mailiverseTiming().warm``).

Writes ``bench/results/browser-sync-<date>.json``, ``docs/performance/browser-sync.png`` and the generated part of
the "Browser sync" section of docs/performance.md (``--no-document`` leaves the document alone).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import machine, report

ROOT = Path(__file__).resolve().parents[1]
GOALS = {"v2_first_s": 2.0, "v2_synced_s": 10.0, "v1_synced_s": 30.0, "incremental_s": 1.0, "warm_s": 0.5}


def run_case(browser: Any, app: Any, count: int, envelope: str, log: Any) -> dict[str, Any]:
    from tests.support.browser import new_page, signup
    from tests.support.mailbox import logout, seed, timed_check, timed_login, timed_warm_login

    name = f"b{envelope}n{count}"
    page = new_page(browser, app)
    signup(page, name)
    logout(page)
    started = time.monotonic()
    seeded = seed(app, name, count, envelope=envelope)
    log(f"{name}: {count} messages sealed and stored in {time.monotonic() - started:.0f} s")
    page.context.close()
    page = new_page(browser, app)
    cold = timed_login(page, name, timeout=1800.0)
    rows = page.locator("#list .row").count()
    phases = page.evaluate("mailiverseTiming()").get("phases") or {}
    log(f"{name}: phases {json.dumps({k: round(v) for k, v in phases.items()})}")
    newest = seeded[-1].subject
    assert page.locator("#list .row").first.inner_text().count(newest) == 1
    log(
        f"{name}: first page {cold['first_s']:.2f} s, synced {cold['synced_s']:.2f} s (login {cold['login_ms']:.0f} ms)"
    )
    seed(app, name, 10, start=count)
    incremental = timed_check(page)
    newest = f"Message number {count + 9}"
    page.locator("#list .row", has_text=newest).first.wait_for()
    warm = timed_warm_login(page, name, newest)
    warm_client = page.evaluate("mailiverseTiming()")
    log(
        f"{name}: incremental {incremental:.2f} s, warm login {warm:.2f} s (cache to list {warm_client['warm']:.0f} ms)"
    )
    page.context.close()
    return {
        "messages": count,
        "envelope": envelope,
        "first_s": round(cold["first_s"], 3),
        "synced_s": round(cold["synced_s"], 3),
        "login_ms": round(cold["login_ms"]),
        "visible_rows": rows,
        "phases_ms": {k: round(v) for k, v in phases.items()},
        "incremental_s": round(incremental, 3),
        "warm_login_s": round(warm, 3),
        "warm_cache_to_list_ms": round(warm_client["warm"]),
        "warm_login_ms": round(warm_client["login"]),
    }


def goals(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for case in cases:
        if case["messages"] != 10_000:
            continue
        if case["envelope"] == "v2":
            out.append(
                {
                    "goal": "v2, 10,000, first page visible",
                    "limit": "< 2 s",
                    "value": case["first_s"],
                    "ok": case["first_s"] < GOALS["v2_first_s"],
                }
            )
            out.append(
                {
                    "goal": "v2, 10,000, whole list synced",
                    "limit": "< 10 s",
                    "value": case["synced_s"],
                    "ok": case["synced_s"] < GOALS["v2_synced_s"],
                }
            )
        else:
            out.append(
                {
                    "goal": "v1, 10,000, whole list synced",
                    "limit": "< 30 s",
                    "value": case["synced_s"],
                    "ok": case["synced_s"] < GOALS["v1_synced_s"],
                }
            )
        out.append(
            {
                "goal": f"{case['envelope']}, incremental after 10 new",
                "limit": "< 1 s",
                "value": case["incremental_s"],
                "ok": case["incremental_s"] < GOALS["incremental_s"],
            }
        )
        out.append(
            {
                "goal": f"{case['envelope']}, warm login: cached index to inbox",
                "limit": "< 0.5 s",
                "value": case["warm_cache_to_list_ms"] / 1000,
                "ok": case["warm_cache_to_list_ms"] / 1000 < GOALS["warm_s"],
            }
        )
    return out


def markdown(results: dict[str, Any], plot_links: list[str]) -> str:
    env = results["machine"]
    lines = [
        f"Run {results['date']} on {env['cpu_model']} ({env['cores']} cores), Chromium {results['chromium']}, "
        f"commit {env['commit']}, load average before {env['load_average']}. "
        "Times are from the login click (first page, synced) or the button (incremental); the login itself "
        "(Argon2id, SRP, key block) is in them.",
        "",
        "| mailbox | envelope | first page (s) | whole list synced (s) | login part (ms) | incremental, 10 new (s) "
        "| warm login to inbox (s) | warm: cached index to list (ms) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in results["cases"]:
        lines.append(
            f"| {c['messages']:,} | {c['envelope']} | {c['first_s']:.2f} | {c['synced_s']:.2f} | {c['login_ms']} "
            f"| {c['incremental_s']:.2f} | {c['warm_login_s']:.2f} | {c['warm_cache_to_list_ms']} |"
        )
    lines += ["", "| goal | limit | measured | |", "|---|---|---:|---|"]
    for g in results["goals"]:
        lines.append(f"| {g['goal']} | {g['limit']} | {g['value']:.2f} s | {'met' if g['ok'] else '**missed**'} |")
    lines += ["", *[f"![{Path(link).stem}]({link})" for link in plot_links]]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], directory: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for envelope, marker in (("v2", "o"), ("v1", "s")):
        cases = sorted((c for c in results["cases"] if c["envelope"] == envelope), key=lambda c: c["messages"])
        if not cases:
            continue
        sizes = [c["messages"] for c in cases]
        ax.plot(sizes, [c["synced_s"] for c in cases], marker=marker, label=f"{envelope}: whole list synced")
        ax.plot(sizes, [c["first_s"] for c in cases], marker=marker, linestyle="--", label=f"{envelope}: first page")
    ax.set_xscale("log")
    ax.set_xlabel("messages in the mailbox")
    ax.set_ylabel("seconds from the login click")
    ax.set_title("Fresh device: web client sync in Chromium")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "browser-sync.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [path]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.browser_sync", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000", help="v2 mailbox sizes, comma-separated")
    parser.add_argument("--v1", default="10000", help="v1 mailbox sizes, comma-separated ('' for none)")
    parser.add_argument("--no-document", action="store_true", help="leave docs/performance.md alone")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from tests.support.browser import CHROMIUM, CHROMIUM_ARGS
    from tests.support.harness import Appliance

    def log(line: str) -> None:
        print(line, flush=True)

    plan = [(int(n), "v2") for n in args.sizes.split(",") if n] + [(int(n), "v1") for n in args.v1.split(",") if n]
    results: dict[str, Any] = {"date": datetime.date.today().isoformat(), "machine": machine.basics(), "cases": []}
    with tempfile.TemporaryDirectory(prefix="mv-bench-sync-") as work, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        results["chromium"] = browser.version
        app = Appliance(Path(work) / "appliance", extra_args=["--open-signup"])
        app.start()
        try:
            for count, envelope in plan:
                results["cases"].append(run_case(browser, app, count, envelope, log))
        finally:
            app.stop()
            browser.close()
    results["goals"] = goals(results["cases"])
    out = ROOT / "bench" / "results" / f"browser-sync-{results['date']}.json"
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    log(f"wrote {out.relative_to(ROOT)}")
    if not args.no_document:
        plots = plot(results, ROOT / "docs" / "performance")
        links = [f"performance/{p.name}" for p in plots]
        report.update_document(ROOT / "docs" / "performance.md", "browser-sync", markdown(results, links))
    for g in results["goals"]:
        log(f"{g['goal']}: {g['value']:.2f} s ({'met' if g['ok'] else 'MISSED'}, {g['limit']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
