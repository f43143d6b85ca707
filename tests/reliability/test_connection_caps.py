"""Connection caps of a real ``twistd``, with its default limits: HTTPS per address, the SMTP junk-command limit."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import pytest

from tests.support.harness import DOMAIN, Appliance, tls_context
from tests.support.smtp import SmtpSession, served

pytestmark = pytest.mark.integration

#: The default HTTPS connections per client address (docs/running.md).
WEB_PER_ADDRESS = 32


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    """One appliance for the module, started with the default limits."""
    appliance = Appliance(tmp_path_factory.mktemp("caps") / "app")
    appliance.start()
    try:
        yield appliance
    finally:
        appliance.stop()


def _tls(app: Appliance, context: ssl.SSLContext, source: str) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", app.web_port), timeout=15, source_address=(source, 0))
    try:
        return context.wrap_socket(raw, server_hostname=f"mail.{DOMAIN}")
    except OSError:
        raw.close()
        raise


def _health(sock: ssl.SSLSocket) -> bytes:
    sock.sendall(f"GET /api/health HTTP/1.1\r\nHost: mail.{DOMAIN}\r\n\r\n".encode())
    return sock.recv(12)


def test_https_connections_past_the_per_address_cap_are_refused(app: Appliance) -> None:
    """33 TLS connections from 127.0.0.20: 32 are served, the 33rd is closed before the handshake,
    and 127.0.0.21 still gets in."""
    context = tls_context(app)
    held = [_tls(app, context, "127.0.0.20") for _ in range(WEB_PER_ADDRESS)]
    try:
        assert {_health(s) for s in held} == {b"HTTP/1.1 200"}
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _tls(app, context, "127.0.0.20").close()
        other = _tls(app, context, "127.0.0.21")
        try:
            assert _health(other) == b"HTTP/1.1 200"
        finally:
            other.close()
    finally:
        for sock in held:
            sock.close()


def test_smtp_noop_loop_is_closed(app: Appliance) -> None:
    """A client that only sends NOOP gets 100 answers, then 421 4.7.0 and the close; others are served."""
    session = SmtpSession(app.smtp_port, source="127.0.0.22", timeout=15)
    try:
        session.hello()
        assert {session.command(b"NOOP\r\n")[0] for _ in range(100)} == {250}
        assert session.command(b"NOOP\r\n") == (421, b"421 4.7.0 Too many commands without mail, closing connection")
        assert session.sock.recv(512) == b""
    finally:
        session.close()
    assert served(app, "127.0.0.23")
