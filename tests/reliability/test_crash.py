"""Crash safety: SIGKILL the real twistd while mail flows; every message that got 250 survives and decrypts."""

from __future__ import annotations

import os
import random
import re
import signal
import smtplib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.appliance_state import read_store
from tests.support.harness import DOMAIN, Appliance, tls_context
from tests.support.independent import open_mail

pytestmark = pytest.mark.integration

QUICK_KILLS = 3
LONG_KILLS = 20
SENDERS = 6
MESSAGES_PER_CONNECTION = 4
MAX_MESSAGES_PER_SENDER = 400
MARKER = re.compile(rb"X-Crash-Marker: (m-[0-9]+-[0-9]+-[0-9]+)\r\n")
RECIPIENTS = ("alice", "bob")


@dataclass
class Ledger:
    """What the senders were told: markers acknowledged with 250, per recipient, plus attempt counts."""

    acked: dict[str, set[str]] = field(default_factory=lambda: {u: set() for u in RECIPIENTS})
    attempts: int = 0
    failures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _message(marker: str, to: list[str]) -> bytes:
    body = f"Crash test body {marker}\r\n" * random.randint(1, 200)
    return (
        f"From: bob@remote.test\r\nTo: {', '.join(to)}\r\nSubject: crash {marker}\r\n"
        f"Message-ID: <{marker}@remote.test>\r\nX-Crash-Marker: {marker}\r\n\r\n{body}"
    ).encode()


def _sender(app: Appliance, round_no: int, index: int, ledger: Ledger, stop: threading.Event) -> None:
    rng = random.Random(f"{round_no}-{index}")
    sent = 0
    while not stop.is_set() and sent < MAX_MESSAGES_PER_SENDER:
        try:
            with smtplib.SMTP("127.0.0.1", app.smtp_port, local_hostname="client.test", timeout=20) as smtp:
                if index % 2:
                    smtp.starttls(context=tls_context(app))
                smtp.ehlo()
                for _ in range(MESSAGES_PER_CONNECTION):
                    if stop.is_set() or sent >= MAX_MESSAGES_PER_SENDER:
                        break
                    marker = f"m-{round_no}-{index}-{sent}"
                    sent += 1
                    users = rng.choice([["alice"], ["bob"], ["alice", "bob"]])
                    rcpts = [f"{u}@{DOMAIN}" for u in users]
                    with ledger.lock:
                        ledger.attempts += 1
                    refused = smtp.sendmail("bob@remote.test", rcpts, _message(marker, rcpts))
                    assert refused == {}
                    with ledger.lock:  # sendmail returned: the server answered 250 to the data
                        for u in users:
                            ledger.acked[u].add(marker)
        except (OSError, smtplib.SMTPException):
            with ledger.lock:
                ledger.failures += 1
            time.sleep(0.05)


def _verify(app: Appliance, keys: dict[str, object], ledger: Ledger) -> dict[str, int]:
    """Every stored object decrypts, originals and twins pair up, and no acknowledged marker is missing."""
    figures = {"stored": 0, "duplicates": 0}
    for user, key in keys.items():
        objects = read_store(app, user)
        originals = {p.rsplit("/", 1)[1]: b for p, b in objects.items() if p.startswith("Mail/In/")}
        twins = {p.rsplit("/", 1)[1]: b for p, b in objects.items() if p.startswith("Mail/In_Json/")}
        assert set(originals) == set(twins), "an original without its twin, or the reverse"
        assert len(objects) == len(originals) + len(twins)
        seen: list[str] = []
        for name, blob in originals.items():
            plain = open_mail(key, blob)  # raises on a corrupt object
            found = MARKER.search(plain)
            assert found, f"stored original {name} carries no marker"
            seen.append(found.group(1).decode())
            assert b'"original"' in open_mail(key, twins[name])
        missing = ledger.acked[user] - set(seen)
        assert not missing, f"{len(missing)} acknowledged message(s) lost for {user}: {sorted(missing)[:5]}"
        figures["stored"] += len(seen)
        figures["duplicates"] += len(seen) - len(set(seen))
    return figures


def _crash_run(workdir: Path, kills: int, db: str | None, report: Callable[[str], None]) -> None:
    seed = int(os.environ.get("CRASH_SEED", str(random.SystemRandom().randrange(1 << 30))))
    rng = random.Random(seed)
    app = Appliance(workdir, db_url=db)
    app.start()
    try:
        keys = {"alice": app.add_user("alice", "v2"), "bob": app.add_user("bob", "v1")}
        ledger = Ledger()
        started = time.monotonic()
        for round_no in range(kills):
            stop = threading.Event()
            threads = [
                threading.Thread(target=_sender, args=(app, round_no, i, ledger, stop), daemon=True)
                for i in range(SENDERS)
            ]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.3, 2.5 if os.environ.get("LONG") else 1.2))
            app.stop(signal.SIGKILL)
            assert app.process is not None and app.process.returncode == -signal.SIGKILL
            stop.set()
            for t in threads:
                t.join(60)
                assert not t.is_alive(), "a sender hung"
            app.start()
        figures = _verify(app, keys, ledger)
        acked = sum(len(v) for v in ledger.acked.values())
        assert acked > 0, "no message was acknowledged at all"
        report(
            f"crash[{'pg' if db else 'sqlite'}] seed={seed} kills={kills} attempts={ledger.attempts} "
            f"acked_deliveries={acked} stored={figures['stored']} duplicates={figures['duplicates']} "
            f"lost=0 corrupt=0 client_errors={ledger.failures} seconds={time.monotonic() - started:.1f}"
        )
    finally:
        app.stop()


def _kills() -> int:
    return LONG_KILLS if os.environ.get("LONG") else QUICK_KILLS


def test_sigkill_loses_no_acknowledged_mail_sqlite(tmp_path: Path, record_property) -> None:
    """SIGKILL at random moments on SQLite: every 250-acknowledged message is stored whole and decrypts."""
    _crash_run(tmp_path / "app", _kills(), None, lambda s: (print(s), record_property("figures", s)))


@pytest.mark.postgres
def test_sigkill_loses_no_acknowledged_mail_postgres(tmp_path: Path, postgres_url: str, record_property) -> None:
    """SIGKILL at random moments on PostgreSQL: every 250-acknowledged message is stored whole and decrypts."""
    _crash_run(tmp_path / "app", _kills(), postgres_url, lambda s: (print(s), record_property("figures", s)))
