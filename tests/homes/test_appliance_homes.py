"""``twistd mailiverse --metabase --home``, end to end, on real PostgreSQL: accounts spread over two homes, mail over
SMTP with TLS to each, ``mailiverse-admin homes`` and ``homes --users``, ``user move-home`` under a steady trickle of
mail (0 lost, counts and hashes equal), and one home stopped (its accounts get 451, the other home's do not)."""

from __future__ import annotations

import re
import smtplib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.homes.conftest import HomeUrls, set_reachable
from tests.support.harness import DOMAIN, Appliance, stored, tls_context
from tests.support.smtp import make_message

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture
def app(home_urls: HomeUrls, tmp_path: Path) -> Iterator[Appliance]:
    appliance = Appliance(tmp_path / "appliance", extra_args=home_urls.options())
    appliance.start()
    try:
        yield appliance
    finally:
        appliance.stop()


def _homes(app: Appliance, *args: str) -> list[list[str]]:
    return [line.split("\t") for line in app.admin("homes", *args).stdout.decode().splitlines() if line]


def _send(app: Appliance, rcpts: list[str], subject: str) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", app.smtp_port, local_hostname="client.test", timeout=30) as smtp:
        smtp.starttls(context=tls_context(app))
        return smtp.sendmail("bob@remote.test", rcpts, make_message(subject, f"{subject}\n", to=", ".join(rcpts)))


def test_accounts_spread_over_both_homes_and_mail_reaches_each(app: Appliance) -> None:
    for name in ("alice", "bob", "carol", "dave"):
        app.add_user(name, "v2")
    lines = _homes(app)
    assert [line[0] for line in lines] == ["home1", "home2"]
    assert [int(line[1]) for line in lines] == [2, 2]
    assert all(line[-1].startswith("up") for line in lines)
    users = {line[0]: line[1] for line in _homes(app, "--users")}
    assert sorted(users) == ["alice", "bob", "carol", "dave"]
    assert sorted(users.values()) == ["home1", "home1", "home2", "home2"]

    rcpts = [f"{name}@{DOMAIN}" for name in users]
    assert _send(app, rcpts, "to everyone") == {}
    for name in users:
        assert len(stored(app, name, "Mail/In/")) == 1, name
    after = _homes(app)
    assert all(int(line[2].split()[0]) == 4 for line in after), after  # 2 accounts x (original + twin)
    # A one-database backup would miss the homes: refused, saying what to do instead.
    backup = app.admin("backup", str(app.workdir / "backup.tar"), check=False)
    assert backup.returncode == 1 and b"pg_dump" in backup.stderr


def test_move_home_under_a_trickle_of_mail_loses_nothing(app: Appliance) -> None:
    app.add_user("alice", "v2")
    app.add_user("bob", "v2")
    source = {line[0]: line[1] for line in _homes(app, "--users")}["alice"]
    target = "home2" if source == "home1" else "home1"
    for i in range(20):
        assert _send(app, [f"alice@{DOMAIN}"], f"before {i}") == {}

    acknowledged: list[str] = []
    held: list[int] = []
    stop = threading.Event()

    def trickle() -> None:
        i = 0
        while not stop.is_set():
            subject = f"during {i}"
            try:
                _send(app, [f"alice@{DOMAIN}"], subject)
                acknowledged.append(subject)
                i += 1
            except smtplib.SMTPResponseException as error:
                assert 400 <= error.smtp_code < 500, error  # held for the flip: the sender tries again
                held.append(error.smtp_code)
            except smtplib.SMTPRecipientsRefused as error:
                codes = [code for code, _ in error.recipients.values()]
                assert all(400 <= code < 500 for code in codes), error
                held.extend(codes)
            time.sleep(0.05)

    sender = threading.Thread(target=trickle)
    sender.start()
    try:
        time.sleep(1)
        moved = app.admin("user", "move-home", "alice", target).stdout.decode()
        time.sleep(1)
    finally:
        stop.set()
        sender.join(60)
    assert len(acknowledged) >= 10, "the trickle did not run through the move"
    summary = re.search(
        r"moved alice from (\S+) to (\S+): (\d+) object\(s\), (\d+) bytes, sha256 ([0-9a-f]{64})", moved
    )
    assert summary is not None, moved
    assert summary.group(1, 2) == (source, target)
    assert {line[0]: line[1] for line in _homes(app, "--users")}["alice"] == target
    originals = stored(app, "alice", "Mail/In/")
    assert len(originals) == 20 + len(acknowledged), (len(originals), len(acknowledged), held)
    assert len(stored(app, "alice", "Mail/In_Json/")) == len(originals)
    counts = {line[0]: int(line[2].split()[0]) for line in _homes(app)}
    assert counts[source] == 0, counts  # only bob's (none) are left there
    assert counts[target] == 2 * len(originals)


def test_a_stopped_home_gives_451_to_its_accounts_only(app: Appliance, home_urls: HomeUrls) -> None:
    for name in ("alice", "bob"):
        app.add_user(name, "v2")
    homes = {line[0]: line[1] for line in _homes(app, "--users")}
    down = "alice" if homes["alice"] == "home2" else "bob"
    up = "bob" if down == "alice" else "alice"
    set_reachable(home_urls.homes[homes[down]], False)
    try:
        refused = _send(app, [f"{up}@{DOMAIN}", f"{down}@{DOMAIN}"], "while a home is down")
        assert list(refused) == [f"{down}@{DOMAIN}"]
        code, _text = refused[f"{down}@{DOMAIN}"]
        assert code == 451
        assert len(stored(app, up, "Mail/In/")) == 1
        health = {line[0]: line[-1] for line in _homes(app)}
        assert health[homes[down]].startswith("down") and health[homes[up]].startswith("up"), health
    finally:
        set_reachable(home_urls.homes[homes[down]], True)
    # The sender tries again later, as senders do after a 451: the mail arrives.
    deadline = time.monotonic() + 30
    while True:
        try:
            refused = _send(app, [f"{down}@{DOMAIN}"], "while a home is down")
        except smtplib.SMTPRecipientsRefused as error:
            refused = error.recipients
            assert all(code == 451 for code, _ in refused.values()), refused
        if not refused or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert refused == {}
    assert len(stored(app, down, "Mail/In/")) == 1
