"""The bridge outlives its sessions (issue 23): when the appliance ends one (its 12-hour limit, or the session row
gone), the bridge logs in again by itself with the keys it kept from the password, and IMAP SELECT/FETCH and SMTP
submission go on; when that login is refused (the password was changed elsewhere), IMAP answers
``NO [UNAVAILABLE]``, SMTP ``451``, one line on stderr says to restart the bridge, and nothing retries in a loop.
Real app over real HTTPS (``served``), real IMAP and SMTP clients on loopback.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_twisted

from mailiverse.client import Client
from mailiverse.client.api import LoginRefused
from tests.client.bridge.live import ALICE, BOB, LiveBridge, account, message, start_bridge
from tests.support.client import PASSWORD, Served, in_thread

NEW_PASSWORD = "a different and equally long client password"


@pytest_twisted.async_yield_fixture
async def bridge(served: Served, tmp_path: Path) -> AsyncIterator[tuple[LiveBridge, Client]]:
    """alice's bridge, and bob (who sends her mail and reads what she sends)."""
    alice = await account(served, "alice")
    alice.close()
    bob = await account(served, "bob")
    await in_thread(bob.send, [ALICE], "Before expiry", "The first body.")
    running = await start_bridge(served, tmp_path)
    try:
        yield running, bob
    finally:
        await running.stop()
        bob.close()


def _token(running: LiveBridge) -> str:
    """The session token of the bridge's last request."""
    return running.recording.sent[-1].headers["Authorization"].removeprefix("Bearer ")


def _fetch(running: LiveBridge, subject: str) -> bytes:
    """SELECT INBOX, then FETCH the message with ``subject`` whole."""
    with running.imap() as imap:
        status, data = imap.select("INBOX")
        assert status == "OK", data
        status, found = imap.search(None, "SUBJECT", f'"{subject}"')
        assert status == "OK" and found[0], (status, found)
        number = found[0].split()[-1]
        status, fetched = imap.fetch(number, "(RFC822)")
        assert status == "OK", fetched
        part = fetched[0]
        assert isinstance(part, tuple)
        return part[1]


async def _bob_sees(bob: Client, subject: str) -> bytes:
    for info in await in_thread(bob.list_messages, "Inbox"):
        if info.subject == subject:
            raw: bytes = await in_thread(bob.read_message, info.id)
            return raw
    raise AssertionError(f"{subject!r} did not arrive")


@pytest_twisted.ensureDeferred
async def test_imap_and_smtp_go_on_after_the_session_expires(served: Served, bridge: tuple[LiveBridge, Client]) -> None:
    """After the appliance's 12-hour limit, and after the session row is deleted, SELECT, FETCH and an SMTP
    submission through the bridge succeed: one new login each time, the request sent once more, no password kept."""
    running, bob = bridge
    assert b"The first body." in await in_thread(_fetch, running, "Before expiry")
    first = _token(running)
    logins = len(running.requests("POST", "/api/login/finish"))

    served.api.time.advance(served.api.sessions.absolute_timeout + 1)
    await in_thread(bob.login, PASSWORD)  # bob's session ended too; he keeps no keys
    await in_thread(bob.send, [ALICE], "After expiry", "The second body.")
    assert b"The second body." in await in_thread(_fetch, running, "After expiry")
    assert len(running.requests("POST", "/api/login/finish")) == logins + 1
    second = _token(running)
    assert second != first
    assert await served.api.sessions.lookup(first) is None and await served.api.sessions.lookup(second) is not None

    # The session row deleted (as a logout elsewhere does): SMTP submission logs in again and the mail arrives.
    assert await served.api.sessions.revoke(second)
    with_smtp = await in_thread(running.smtp)
    try:
        refused = await in_thread(with_smtp.sendmail, ALICE, [BOB], message("Through a new session", "Third body."))
        assert refused == {}
    finally:
        await in_thread(with_smtp.quit)
    assert len(running.requests("POST", "/api/login/finish")) == logins + 2
    assert b"Third body." in await _bob_sees(bob, "Through a new session")
    # No request ever carried the password; the keys kept are not the password either.
    bodies = b"".join(running.recording.bodies)
    assert PASSWORD.encode() not in bodies
    assert PASSWORD not in repr(vars(running.client))
    assert running.console.stderr.getvalue() == ""
    # Logging out wipes the kept keys' buffers (as far as Python allows: other copies are not reachable).
    kept = running.client._kept  # noqa: SLF001 - the wipe is the point
    assert kept is not None and repr(kept) == "_KeptKeys(<secret>)"
    buffers = [kept._crypto, kept._verification]  # noqa: SLF001
    assert all(any(buffer) for buffer in buffers)
    await in_thread(running.client.logout)
    assert running.client._kept is None and all(not any(buffer) for buffer in buffers)  # noqa: SLF001


@pytest_twisted.ensureDeferred
async def test_a_password_changed_elsewhere_fails_cleanly_once(
    served: Served, bridge: tuple[LiveBridge, Client]
) -> None:
    """After the password is changed on another device, IMAP answers NO [UNAVAILABLE] and SMTP 451 4.7.0, saying
    to restart the bridge; stderr gets the one line; the appliance is asked for one login only, not one per
    command; and the bridge's kept keys are wiped."""
    running, _bob = bridge
    assert b"The first body." in await in_thread(_fetch, running, "Before expiry")
    other = Client(served.transport(), "alice")
    await in_thread(other.login, PASSWORD)
    await in_thread(other.change_password, PASSWORD, NEW_PASSWORD)  # ends the bridge's session
    other.close()
    starts = len(running.requests("POST", "/api/login/start"))
    finishes = len(running.requests("POST", "/api/login/finish"))

    def imap_after() -> list[tuple[str, bytes]]:
        answers = []
        with running.imap() as imap:
            for mailbox in ("INBOX", "Sent"):
                status, data = imap.select(mailbox)
                answers.append((status, data[0] if isinstance(data[0], bytes) else b""))
        return answers

    answers = await in_thread(imap_after)
    for status, text in answers:
        assert status == "NO" and b"[UNAVAILABLE]" in text and b"restart the bridge" in text, answers

    smtp = await in_thread(running.smtp)
    try:
        await in_thread(smtp.mail, ALICE)
        await in_thread(smtp.rcpt, BOB)
        code, text = await in_thread(smtp.data, message("After the change", "Not sent."))
    finally:
        await in_thread(smtp.quit)
    assert code == 451 and text.startswith(b"4.7.0") and b"restart the bridge" in text, (code, text)

    # One login tried (refused at once: the KDF description changed with the password), then none.
    assert len(running.requests("POST", "/api/login/start")) == starts + 1
    assert len(running.requests("POST", "/api/login/finish")) == finishes
    lines = running.console.stderr.getvalue().splitlines()
    assert len(lines) == 1 and "the appliance refused the login: restart the bridge" in lines[0], lines
    assert not re.search(r"@|Before expiry", lines[0])
    assert running.client._kept is None and not running.client.logged_in  # noqa: SLF001 - the wipe is the point
    try:
        await in_thread(running.client.request_json, "GET", "/api/account")
    except LoginRefused as error:
        assert error.code == "login_refused"
    else:
        raise AssertionError("a refused bridge sent a request")
    assert len(running.requests("POST", "/api/login/start")) == starts + 1
