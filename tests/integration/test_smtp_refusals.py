"""Hostile SMTP refused by a fresh twistd, seen through ``mailiverse-admin``: nothing smuggled or injected is stored.

Unlike the shared-appliance suite of tests/reliability/test_hostile_smtp.py, each test here starts
its own appliance (one with ``--max-message-size``) and looks only through the admin command.
"""

from __future__ import annotations

import pytest

from tests.support.harness import DOMAIN, Appliance, stored, tls_context
from tests.support.smtp import SmtpSession

pytestmark = pytest.mark.integration

SMUGGLING_SEQUENCES = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\n"]


@pytest.mark.parametrize("sequence", SMUGGLING_SEQUENCES, ids=repr)
def test_smuggled_second_message_is_never_stored(appliance: Appliance, sequence: bytes) -> None:
    """A fake end-of-data followed by a second transaction is refused whole; nothing reaches the store."""
    appliance.add_user("alice")
    appliance.add_user("victim")
    s = SmtpSession(appliance.smtp_port, timeout=15)
    try:
        s.starttls(appliance)
        assert s.command(b"MAIL FROM:<bob@remote.test>\r\n")[0] == 250
        assert s.command(f"RCPT TO:<alice@{DOMAIN}>\r\n".encode())[0] == 250
        assert s.command(b"DATA\r\n")[0] == 354
        smuggled = (
            b"Subject: first\r\n\r\nbody"
            + sequence
            + b"MAIL FROM:<admin@"
            + DOMAIN.encode()
            + b">\r\nRCPT TO:<victim@"
            + DOMAIN.encode()
            + b">\r\n"
            + b"DATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n"
        )
        code, _ = s.command(smuggled)
        assert code == 554
        code, _ = s.command(b"QUIT\r\n")
        assert code == 221
    finally:
        s.close()
    assert stored(appliance, "victim", "Mail/") == []
    assert stored(appliance, "alice", "Mail/") == []


def test_commands_pipelined_behind_starttls_are_dropped(appliance: Appliance) -> None:
    """Commands sent in the same packet as STARTTLS are discarded, not run inside the TLS session."""
    appliance.add_user("alice")
    s = SmtpSession(appliance.smtp_port, timeout=15)
    try:
        assert s.reply()[0] == 220
        assert s.command(b"EHLO client.test\r\n")[0] == 250
        injected = f"STARTTLS\r\nMAIL FROM:<evil@remote.test>\r\nRCPT TO:<alice@{DOMAIN}>\r\n".encode()
        assert s.command(injected)[0] == 220
        s.sock = tls_context(appliance).wrap_socket(s.sock, server_hostname=f"mail.{DOMAIN}")
        # Had the injected MAIL survived, RCPT would be accepted without a new MAIL.
        code, _ = s.command(f"RCPT TO:<alice@{DOMAIN}>\r\n".encode())
        assert code == 503
        assert s.command(b"EHLO client.test\r\n")[0] == 250
        assert s.command(b"MAIL FROM:<bob@remote.test>\r\n")[0] == 250
    finally:
        s.close()


def test_oversized_message_is_refused_and_service_stays_up(tmp_path) -> None:
    """A message over --max-message-size gets 552 and the next client is still served."""
    app = Appliance(tmp_path / "appliance", extra_args=["--max-message-size", "65536"])
    app.start()
    try:
        app.add_user("alice")
        s = SmtpSession(app.smtp_port, timeout=15)
        try:
            s.starttls(app)
            code, text = s.command(b"MAIL FROM:<bob@remote.test> SIZE=100000\r\n")
            assert code == 552 and b"5.3.4" in text
            assert s.command(b"MAIL FROM:<bob@remote.test>\r\n")[0] == 250
            assert s.command(f"RCPT TO:<alice@{DOMAIN}>\r\n".encode())[0] == 250
            assert s.command(b"DATA\r\n")[0] == 354
            line = b"x" * 998 + b"\r\n"
            s.sock.sendall(b"Subject: big\r\n\r\n" + line * 100)
            code, _ = s.command(b".\r\n")
            assert code == 552
        finally:
            s.close()
        s = SmtpSession(app.smtp_port, timeout=15)
        try:
            s.starttls(app)
        finally:
            s.close()
        assert stored(app, "alice", "Mail/") == []
    finally:
        app.stop()
