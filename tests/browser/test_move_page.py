"""The web client's "Move to another appliance" page (docs/moving.md, "In the web client") between two real
appliances (a.example on https://127.0.0.2, b.example on https://127.0.0.3: tests/support/federation.py).

alice signs up on A with ``mailiverse-client`` and receives a message there from outside; she signs up on B. Then,
logged in on A's web client in Chromium, she moves with the page: it logs in at B (SRP, a bearer token, no
cookie: B's CORS answers), copies and verifies every object, brings her keys and switches A. Afterwards
``mailiverse-client read`` on B shows the old message, every object of A is at B with the same SHA-256 (read
from both databases), nothing is deleted on A, and RCPT TO alice@a.example at A answers 551 with the new address.

Set ``MV_SCREENSHOTS=docs/screenshots`` to refresh docs/screenshots/move-page.png.
"""

from __future__ import annotations

import os
import smtplib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import login, require_chromium
from tests.support.federation import Federation, Peer, federation

pytestmark = pytest.mark.integration
PASSWORDS = {"a": "alice's long password on a.example", "b": "alice's long password on b.example"}
KEYLOG = "Settings/keylog"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    require_chromium()
    with federation(tmp_path_factory.mktemp("move-page")) as running:
        yield running


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"
    assert "KEY ALARM" not in result.stderr, result.stderr
    return result.stdout


def stored(peer: Peer, user: str) -> dict[str, str]:
    return peer.object_digests(user)


def deliver(peer: Peer, to: str, subject: str) -> None:
    peer.deliver_from_outside(to, subject)


def rcpt(peer: Peer, address: str) -> tuple[int, bytes]:
    with smtplib.SMTP(peer.address, 25, local_hostname="client.remote.example", timeout=60) as smtp:
        smtp.ehlo()
        code, _ = smtp.mail("bob@remote.example")
        assert code == 250
        return smtp.rcpt(address)


def test_move_with_the_page(browser: Any, pair: Federation, tmp_path: Path) -> None:
    a, b = pair.a, pair.b
    old_home, new_home = tmp_path / "alice-a", tmp_path / "alice-b"
    ok(a.cli(old_home, "alice", PASSWORDS["a"], "signup"))
    deliver(a, "alice@a.example", "before the move")
    ok(b.cli(new_home, "alice", PASSWORDS["b"], "signup"))
    before = stored(a, "alice")
    assert sum(path.startswith("Mail/In/") for path in before) == 1

    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1100, "height": 1400})
    page = context.new_page()
    page.set_default_timeout(30_000)
    failures: list[str] = []
    page.on("console", lambda m: failures.append(m.text) if m.type == "error" else None)
    page.goto(a.url + "/")
    login(page, "alice", PASSWORDS["a"])
    before = stored(a, "alice")  # the web client keeps objects of its own too (its sync state): they move as well
    page.click("#account-button")
    page.click("#move-button")
    assert page.input_value("#move-user") == "alice"
    assert page.input_value("#move-grace") == "30"
    page.fill("#move-url", "http://127.0.0.3")
    page.check("#move-confirm")
    page.fill("#move-password", PASSWORDS["b"])
    page.click("#move-start")
    assert "https://" in page.inner_text("#move-status")  # refused before anything is sent
    page.fill("#move-url", b.url)
    page.fill("#move-password", "not the password at b.example")
    page.click("#move-start")
    page.wait_for_selector("#move-status.error >> text=password at the new appliance is wrong", timeout=120_000)
    assert rcpt(a, "alice@a.example")[0] == 250  # nothing switched
    page.fill("#move-password", PASSWORDS["b"])
    page.click("#move-start")
    page.wait_for_selector("#move-summary:not([hidden])", timeout=240_000)
    summary = dict(
        zip(page.locator("#move-summary dt").all_inner_texts(), page.locator("#move-summary dd").all_inner_texts())
    )
    copied = [path for path in before if path != KEYLOG]
    assert summary["Moved to"] == "alice@b.example", failures
    assert summary["Verified"] == f"{len(copied)} of {len(copied)} with equal SHA-256"
    assert summary["Copied"].startswith(f"{len(copied)} (")
    assert summary["Keys brought"] != "-" and "Forwarding until" in summary
    assert "Copying" in page.inner_text("#move-log")
    assert page.get_attribute("#move-status", "class") == "status"  # no error
    folder = os.environ.get("MV_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.locator("#move-dialog").screenshot(path=str(Path(folder) / "move-page.png"))

    # Every object is at B with an equal hash; nothing was deleted at A.
    after, kept = stored(b, "alice"), stored(a, "alice")
    for path in copied:
        assert after.get(path) == before[path], path
        assert kept.get(path) == before[path], path

    # alice at B reads the old message (sealed to her key at A, which she brought along).
    rows = [line.split("\t") for line in ok(b.cli(new_home, "alice", PASSWORDS["b"], "ls")).splitlines()]
    inbox = {row[3]: row[0] for row in rows if len(row) >= 4}
    assert "This is before the move." in ok(b.cli(new_home, "alice", PASSWORDS["b"], "read", inbox["before the move"]))

    # Running it again resumes: nothing left to copy, everything verifies.
    page.fill("#move-password", PASSWORDS["b"])
    page.click("#move-start")
    page.wait_for_selector("#move-log >> text=catching up", timeout=120_000)
    page.wait_for_selector("#move-summary:not([hidden])", timeout=120_000)
    again = dict(
        zip(page.locator("#move-summary dt").all_inner_texts(), page.locator("#move-summary dd").all_inner_texts())
    )
    assert again["Copied"].startswith("0 (") and again["Verified"] == summary["Verified"]

    # A answers mail for the old address with the new one.
    assert rcpt(a, "alice@a.example") == (551, b"5.1.6 User not local; please try <alice@b.example>")
    status = ok(a.cli(old_home, "alice", PASSWORDS["a"], "move", "--status"))
    assert "moved to: alice@b.example" in status
    context.close()
