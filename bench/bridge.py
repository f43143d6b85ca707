"""The bridge (issue 23) under a real mail app: ``mbsync``'s first sync of a large mailbox through
``mailiverse-client bridge``, then an incremental sync after a few new messages.

Run from the repository root: ``.venv/bin/python -m bench.bridge [--messages 10000] [--connections 8]
[--new 10]`` (not part of ``make bench``: filling the mailbox and the first sync take minutes).

* **Fill**: a fresh ``twistd mailiverse`` on SQLite (tests/support/bridge.py starts it as the tests do), one
  account signed up with ``mailiverse-client signup``, and ``--messages`` distinct 2,000-byte messages
  (bench/messages.py, made distinct by an ``X-Bench-Ticket`` header) *delivered over SMTP with STARTTLS*
  through ``--connections`` parallel connections: every message is sealed by the appliance exactly as real
  mail is (original and JSON twin), nothing is written behind its back.
* **First sync**: ``mailiverse-client bridge`` starts (its login and ready block are timed apart), then
  ``mbsync -a`` over STARTTLS syncs every mailbox into an empty Maildir. Wall time, messages/s, and the
  bridge process's CPU seconds (user + system, from /proc) and resident set (peak and after) over the sync.
* **Incremental sync**: ``--new`` more messages are delivered, and ``mbsync -a`` runs again (the bridge's
  ``--poll`` is long, so what is timed is the sync finding them, not a poll that already did).
* Every message is checked: the Maildir's INBOX holds one file per message delivered, each ending with the
  bytes sent (LF line ends, as isync writes Maildir files).

Writes ``bench/results/bridge-<date>.json`` and the generated part of the "Bridge" section of
docs/performance.md (``--no-document`` leaves the document alone).
"""

from __future__ import annotations

import argparse
import json
import smtplib
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import machine, procmem, report
from bench.messages import make_message
from tests.support.bridge import World, start_bridge, start_world, without_tuid

ROOT = Path(__file__).resolve().parents[1]
USER = "benchuser"
#: Messages sent on one SMTP connection before the next (the appliance allows 100 per connection).
PER_CONNECTION = 90
#: mbsync's network timeout: its default (20 s), as a mail app would have it. The bridge's first SELECT of a large
#: mailbox finds every message's exact size by decrypting it once (state.py) and sends an untagged OK every 5 s
#: meanwhile (imap.py, KEEPALIVE_S), so the default is enough.
TIMEOUT_S = 20


def _ticketed(base: bytes, ticket: int) -> bytes:
    return b"X-Bench-Ticket: %08d\r\n" % ticket + base


def fill(world: World, first: int, count: int, connections: int, base: bytes) -> dict[str, Any]:
    """Deliver ``count`` distinct messages (tickets ``first``..) over ``connections`` STARTTLS connections."""
    context = ssl.create_default_context(cafile=str(world.ca))
    errors: list[str] = []
    lock = threading.Lock()
    tickets = iter(range(first, first + count))

    def sender(attempts: int = 0) -> None:
        try:
            while True:
                # a fresh connection per PER_CONNECTION messages: the appliance closes one after 100 (limits.py)
                with smtplib.SMTP(
                    "127.0.0.1", world.appliance.smtp_port, local_hostname="bench.test", timeout=120
                ) as s:
                    s.starttls(context=context)
                    for _ in range(PER_CONNECTION):
                        with lock:
                            ticket = next(tickets, None)
                        if ticket is None:
                            return
                        refused = s.sendmail("sender@bench.test", [f"{USER}@example.org"], _ticketed(base, ticket))
                        if refused:
                            errors.append(str(refused))
        except smtplib.SMTPConnectError as error:
            # the appliance's per-address connection cap counts a just-closed connection for a moment
            if error.smtp_code == 421 and attempts < 50:
                time.sleep(0.2)
                sender(attempts + 1)
            else:
                errors.append(repr(error))
        except (OSError, smtplib.SMTPException) as error:
            errors.append(repr(error))

    started = time.monotonic()
    threads = [threading.Thread(target=sender) for _ in range(min(connections, count))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    if errors:
        raise RuntimeError(f"delivery failed: {errors[:3]}")
    return {"messages": count, "connections": connections, "seconds": round(elapsed, 2), "per_s": count / elapsed}


def _mbsyncrc(directory: Path, port: int, user: str, password_file: Path, certificate: Path) -> Path:
    mail = directory / "mail"
    mail.mkdir(parents=True, exist_ok=True)
    config = directory / "mbsyncrc"
    config.write_text(
        f'IMAPAccount bridge\nHost 127.0.0.1\nPort {port}\nUser {user}\nPassCmd "cat {password_file}"\n'
        f"SSLType STARTTLS\nCertificateFile {certificate}\nPipelineDepth 16\nTimeout {TIMEOUT_S}\n\n"
        "IMAPStore remote\nAccount bridge\n\n"
        f"MaildirStore local\nPath {mail}/\nInbox {mail}/INBOX\nSubFolders Verbatim\n\n"
        "Channel bridge\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\nSyncState *\nExpunge Both\n"
    )
    return config


def timed_sync(config: Path, pid: int) -> dict[str, Any]:
    """One ``mbsync -a``: wall seconds, and the bridge's CPU seconds and resident set over it."""
    procmem.reset_peak(pid)
    cpu_before = procmem.cpu_seconds(pid)
    started = time.monotonic()
    done = subprocess.run(["mbsync", "-a", "-c", str(config)], capture_output=True, text=True, timeout=3600)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"mbsync failed ({done.returncode}): {done.stderr[-2000:]}")
    return {
        "wall_s": round(wall, 2),
        "bridge_cpu_s": round(procmem.cpu_seconds(pid) - cpu_before, 2),
        "bridge_peak_rss_mib": round(procmem.peak_rss_bytes(pid) / 2**20, 1),
        "bridge_rss_after_mib": round(procmem.rss_bytes(pid) / 2**20, 1),
    }


def check_maildir(inbox: Path, base: bytes, expected: int) -> int:
    """The number of Maildir files that end with a delivered message's bytes; fails unless it is ``expected``."""
    files = [p for sub in ("cur", "new") for p in (inbox / sub).iterdir() if p.is_file()]
    body = base.replace(b"\r\n", b"\n")
    good = sum(1 for p in files if without_tuid(p.read_bytes()).endswith(body))
    if len(files) != expected or good != expected:
        raise RuntimeError(f"Maildir INBOX has {len(files)} files, {good} ending with a delivered message; {expected}")
    return good


def run(args: argparse.Namespace, work: Path, log: Any) -> dict[str, Any]:
    world = start_world(work / "world")
    try:
        world.signup(USER)
        base = make_message(args.size, seed=23)
        log(f"fill: {args.messages:,} messages over {args.connections} SMTP connections")
        filled = fill(world, 0, args.messages, args.connections, base)
        log(f"  {filled['seconds']:.0f} s, {filled['per_s']:.0f} msg/s")
        started = time.monotonic()
        bridge = start_bridge(world, USER, work / "bridge", poll=args.poll)
        ready_s = time.monotonic() - started
        try:
            config = _mbsyncrc(work / "device", bridge.imap_port, bridge.user, bridge.password_file, bridge.certificate)
            log("first sync")
            first = timed_sync(config, bridge.pid)
            log(f"  {first}")
            first["messages"] = check_maildir(work / "device" / "mail" / "INBOX", base, args.messages)
            first["messages_per_s"] = round(first["messages"] / first["wall_s"], 1)
            log(f"  {first}")
            fill(world, args.messages, args.new, 1, base)
            log("incremental sync")
            incremental = timed_sync(config, bridge.pid)
            incremental["messages"] = (
                check_maildir(work / "device" / "mail" / "INBOX", base, args.messages + args.new) - args.messages
            )
            log(f"  {incremental}")
            again = timed_sync(config, bridge.pid)
            log(f"  no change: {again}")
        finally:
            bridge.stop()
        return {
            "fill": filled,
            "bridge_ready_s": round(ready_s, 2),
            "first_sync": first,
            "incremental_sync": incremental,
            "unchanged_sync": again,
        }
    finally:
        world.appliance.stop()


def markdown(results: dict[str, Any]) -> str:
    env, r, s = results["environment"], results["results"], results["settings"]
    first, inc, same = r["first_sync"], r["incremental_sync"], r["unchanged_sync"]
    rows = [
        ("first sync", s["messages"], first),
        (f"incremental (+{s['new']})", inc["messages"], inc),
        ("nothing new", 0, same),
    ]
    lines = [
        f"Measured {results['date']} (commit {env['commit']}, {env['cores']} cores {env['cpu_model']}, "
        f"{env['mbsync']}, load average {env['load_average']}); results: `{results['results_file']}`.",
        "",
        f"Mailbox of {s['messages']:,} messages of {s['size']:,} bytes, delivered over SMTP with STARTTLS through "
        f"{s['connections']} connections in {r['fill']['seconds']:.0f} s ({r['fill']['per_s']:.0f} msg/s); "
        f"the bridge logged in and was ready in {r['bridge_ready_s']:.1f} s.",
        "",
        "| `mbsync -a` | messages | wall s | messages/s | bridge CPU s | bridge peak RSS MiB | RSS after MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, count, point in rows:
        rate = f"{count / point['wall_s']:.1f}" if count else "–"
        lines.append(
            f"| {name} | {count:,} | {point['wall_s']:.2f} | {rate} | {point['bridge_cpu_s']:.1f} | "
            f"{point['bridge_peak_rss_mib']:.0f} | {point['bridge_rss_after_mib']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def environment() -> dict[str, Any]:
    version = subprocess.run(["mbsync", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return {**machine.basics(), "mbsync": version}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bridge", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000, help="messages in the mailbox before the first sync")
    parser.add_argument("--new", type=int, default=10, help="messages delivered before the incremental sync")
    parser.add_argument("--connections", type=int, default=8, help="SMTP connections filling the mailbox")
    parser.add_argument("--size", type=int, default=2_000, help="message size in bytes")
    parser.add_argument("--poll", type=float, default=600.0, help="the bridge's --poll (long: the sync finds mail)")
    parser.add_argument("--no-document", action="store_true", help="do not touch docs/performance.md")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    if min(args.messages, args.new, args.connections) < 1 or args.size < 512:
        parser.error("counts must be at least 1 and --size at least 512")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.monotonic()
    path, results = machine.results_header("bridge", args, args.results, environment())
    with tempfile.TemporaryDirectory(prefix="mv-bench-bridge-") as scratch:
        results["results"] = run(args, Path(scratch), log)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    args.results.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    section = markdown(results)
    if not args.no_document:
        report.update_document(ROOT / "docs" / "performance.md", "bridge", section)
    print(section)
    print(f"results: {results['results_file']} ({results['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
