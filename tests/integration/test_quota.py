"""Storage quotas on a real twistd: 452 4.2.2 at RCPT and at the end of DATA, and ``mailiverse-admin user quota``.

A refused message is never lost: the client keeps it (452 is temporary), and once the operator
raises the quota the same message, sent again, is stored intact.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailiverse.config import format_size
from tests.support.harness import DOMAIN, Appliance, stored
from tests.support.independent import open_mail
from tests.support.smtp import SmtpSession, make_message

pytestmark = pytest.mark.integration

ALICE = f"alice@{DOMAIN}"
BOB = f"bob@{DOMAIN}"


def _quota_line(app: Appliance, *args: str) -> str:
    return app.admin("user", "quota", "alice", *args).stdout.decode().strip()


def _used(app: Appliance) -> int:
    match = re.search(r"\t(\d+) bytes used", _quota_line(app))
    assert match, _quota_line(app)
    return int(match.group(1))


def _send(session: SmtpSession, rcpts: list[str], body: bytes) -> tuple[list[int], int]:
    """One transaction: the RCPT reply codes, then the reply to the end of DATA (0 when no RCPT was accepted)."""
    assert session.command(b"MAIL FROM:<bob@remote.test>\r\n")[0] == 250
    codes = []
    for rcpt in rcpts:
        code, text = session.command(f"RCPT TO:<{rcpt}>\r\n".encode())
        codes.append(code)
        if code == 452:
            assert b"4.2.2" in text, text
    if 250 not in codes:
        assert session.command(b"RSET\r\n")[0] == 250
        return codes, 0
    assert session.command(b"DATA\r\n")[0] == 354
    code, text = session.send_data(body)
    if code == 452:
        assert b"4.2.2" in text, text
    return codes, code


def _delivered(app: Appliance, key: object, user: str) -> list[bytes]:
    paths = stored(app, user, "Mail/In/")
    return [open_mail(key, app.admin("store", "cat", user, path).stdout) for path in paths]  # type: ignore[arg-type]


def test_over_quota_mail_gets_452_and_is_stored_once_the_quota_is_raised(tmp_path: Path) -> None:
    """Full mailbox: 452 4.2.2 at RCPT (others still get the mail); would-be-full: 452 at DATA for the whole
    message; after ``user quota alice default`` the same messages sent again are stored intact."""
    app = Appliance(tmp_path / "appliance", extra_args=["--default-quota", "1MiB"])
    app.start()
    try:
        alice_key = app.add_user("alice", "v2")
        bob_key = app.add_user("bob", "v2")
        assert "quota 1 MiB (appliance default)" in _quota_line(app)
        first = make_message("first", "fills the mailbox\n", to=ALICE)
        second = make_message("second", "refused at RCPT for alice\n", to=f"{ALICE}, {BOB}")
        third = make_message("third", "refused at DATA\n" * 50, to=f"{ALICE}, {BOB}")
        session = SmtpSession(app.smtp_port)
        try:
            session.hello()
            assert _send(session, [ALICE], first) == ([250], 250)
            used = _used(app)
            assert used > len(first)
            # Exactly full: RCPT refuses alice with a temporary error; bob still gets the message.
            assert _quota_line(app, str(used)).endswith(f"quota {format_size(used)}")
            assert _send(session, [ALICE, BOB], second) == ([452, 250], 250)
            # Room for a little, not for the next message: the whole message gets 452 at the end of DATA.
            _quota_line(app, str(used + 100))
            assert _send(session, [ALICE, BOB], third) == ([250, 250], 452)
            assert _used(app) == used
            assert len(stored(app, "bob", "Mail/In/")) == 1
            # The operator gives alice her room back; the client's retries now succeed.
            assert "quota 1 MiB (appliance default)" in _quota_line(app, "default")
            assert _send(session, [ALICE, BOB], third) == ([250, 250], 250)
            assert _send(session, [ALICE], second) == ([250], 250)
        finally:
            session.close()
        for_alice = _delivered(app, alice_key, "alice")
        assert len(for_alice) == 3
        assert all(any(message.endswith(sent) for message in for_alice) for sent in (first, second, third))
        for_bob = _delivered(app, bob_key, "bob")
        assert len(for_bob) == 2
        assert all(any(message.endswith(sent) for message in for_bob) for sent in (second, third))
        assert _used(app) > used
    finally:
        app.stop()


def test_admin_user_quota_shows_sets_and_resets(appliance: Appliance) -> None:
    """``user quota NAME`` shows usage and quota; SIZE sets it (10GiB, 512KiB, bytes); ``default`` resets it."""
    appliance.add_user("alice")
    assert _quota_line(appliance) == "alice\t0 bytes used\tquota 10 GiB (appliance default)"
    assert _quota_line(appliance, "512KiB") == "alice\t0 bytes used\tquota 512 KiB"
    assert _quota_line(appliance, "2gib") == "alice\t0 bytes used\tquota 2 GiB"
    assert _quota_line(appliance, "1000") == "alice\t0 bytes used\tquota 1000 bytes"
    assert _quota_line(appliance) == "alice\t0 bytes used\tquota 1000 bytes"
    assert _quota_line(appliance, "default") == "alice\t0 bytes used\tquota 10 GiB (appliance default)"
    for wrong in ("ten", "-5", "5XB", "1.5GiB"):
        refused = appliance.admin("user", "quota", "alice", wrong, check=False)
        assert refused.returncode == 1 and b"SIZE" in refused.stderr, refused.stderr
    missing = appliance.admin("user", "quota", "nobody", check=False)
    assert missing.returncode == 1 and b"no user" in missing.stderr
