"""Talk SMTP to a running appliance: one raw client that can send anything, and the well-behaved sends.

``SmtpSession`` is the one line-level client of the hostile-SMTP tests (tests/integration and
tests/reliability): it writes whatever bytes a test gives it and checks that every reply line is a
proper SMTP reply.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
from email.message import EmailMessage

from tests.support.harness import DOMAIN, Appliance, tls_context

#: A syntactically proper SMTP reply line: three digits 2xx-5xx, then space or hyphen (or nothing).
REPLY_LINE = re.compile(rb"^[2-5][0-9][0-9](?:[ -]|$)")
_MAX_REPLY_LINES = 100
_MAX_REPLY_BYTES = 1 << 20


class SmtpSession:
    """A raw SMTP client over a socket that checks every reply line is a proper SMTP code."""

    def __init__(self, port: int, *, source: str = "127.0.0.1", timeout: float = 30) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout, source_address=(source, 0)
        )
        self.buffer = b""
        self.replies: list[bytes] = []

    def reply(self) -> tuple[int, bytes]:
        lines: list[bytes] = []
        while len(lines) < _MAX_REPLY_LINES:
            while b"\r\n" not in self.buffer:
                if len(self.buffer) > _MAX_REPLY_BYTES:
                    raise AssertionError("reply line without CRLF")
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError(f"closed after {lines!r}")
                self.buffer += data
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            assert REPLY_LINE.match(line), f"improper SMTP reply line {line!r}"
            lines.append(line)
            if line[3:4] != b"-":
                self.replies.append(line)
                return int(line[:3]), b"\n".join(lines)
        raise AssertionError("reply longer than 100 lines")

    def command(self, data: bytes) -> tuple[int, bytes]:
        self.sock.sendall(data)
        return self.reply()

    def hello(self) -> None:
        assert self.reply()[0] == 220
        assert self.command(b"EHLO client.test\r\n")[0] == 250

    def starttls(self, app: Appliance) -> None:
        self.hello()
        assert self.command(b"STARTTLS\r\n")[0] == 220
        self.sock = tls_context(app).wrap_socket(self.sock, server_hostname=f"mail.{DOMAIN}")
        assert self.command(b"EHLO client.test\r\n")[0] == 250

    def envelope(self, rcpts: list[str], sender: str = "bob@remote.test") -> None:
        assert self.command(f"MAIL FROM:<{sender}>\r\n".encode())[0] == 250
        for rcpt in rcpts:
            assert self.command(f"RCPT TO:<{rcpt}>\r\n".encode())[0] == 250
        assert self.command(b"DATA\r\n")[0] == 354

    def send_data(self, body: bytes) -> tuple[int, bytes]:
        """Send a message body already in CRLF form (dot-stuffed here) and the end-of-data line."""
        stuffed = re.sub(rb"(?m)^\.", b"..", body)
        if not stuffed.endswith(b"\r\n"):
            stuffed += b"\r\n"
        self.sock.sendall(stuffed)
        return self.command(b".\r\n")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def served(app: Appliance, source: str = "127.0.0.2") -> bool:
    """True if a fresh client (from another loopback address) gets a 220 greeting and an EHLO reply."""
    s = SmtpSession(app.smtp_port, source=source, timeout=15)
    try:
        s.hello()
        return s.command(b"QUIT\r\n")[0] == 221
    finally:
        s.close()


def make_message(subject: str, body: str, to: str = f"alice@{DOMAIN}") -> bytes:
    """A plain text message from bob@remote.test in CRLF form, with a fixed Message-ID and Date."""
    msg = EmailMessage()
    msg["From"] = "Bob Example <bob@remote.test>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = "<it-1@remote.test>"
    msg["Date"] = "Sat, 21 Nov 2026 10:00:00 +0000"
    msg.set_content(body)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def send_starttls(app: Appliance, rcpts: list[str], data: bytes) -> dict[str, tuple[int, bytes]]:
    """Send ``data`` from bob@remote.test with smtplib over STARTTLS; smtplib's refused-recipients dict."""
    with smtplib.SMTP("127.0.0.1", app.smtp_port, local_hostname="client.test", timeout=30) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls")
        smtp.starttls(context=tls_context(app))
        smtp.ehlo()
        return smtp.sendmail("bob@remote.test", rcpts, data)
