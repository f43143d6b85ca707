"""A real twistd refuses mail from outside that claims to come from one of its own users (issue 18's spoofed local
user), whatever DNS says and whether the message is judged in a worker or in the main process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dnsserver import DnsProcess, Zone, start_dns_process
from tests.support.harness import DOMAIN, Appliance, stored
from tests.support.smtp import SmtpSession, make_message

pytestmark = pytest.mark.integration

SPOOF = (
    f"From: Alice <alice@{DOMAIN}>\r\nTo: bob@{DOMAIN}\r\nSubject: please pay this invoice\r\n"
    "Message-ID: <spoof-1@remote.test>\r\n\r\nHi Bob, it is really me.\r\n"
).encode()


@pytest.fixture
def dns(tmp_path: Path) -> Iterator[DnsProcess]:
    """A DNS server of the test's, publishing a DMARC record that would let anyone send as the local domain."""
    zone = Zone()
    zone.update({f"_dmarc.{DOMAIN}": {"TXT": ["v=DMARC1; p=none"]}, DOMAIN: {"TXT": ["v=spf1 +all"]}})
    server = start_dns_process(zone, tmp_path / "dns")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["1", "0"], ids=["workers", "no-workers"])
def appliance(request: pytest.FixtureRequest, tmp_path: Path, dns: DnsProcess) -> Iterator[Appliance]:
    """A running appliance with users alice and bob, its lookups going to the test's DNS server."""
    host, port = dns.address
    app = Appliance(tmp_path / "appliance", extra_args=["--workers", request.param, "--dns-server", f"{host}:{port}"])
    app.start()
    try:
        app.add_user("alice")
        app.add_user("bob", "v2")
        yield app
    finally:
        app.stop()


def send(app: Appliance, sender: str, rcpt: str, body: bytes) -> tuple[int, bytes]:
    session = SmtpSession(app.smtp_port, timeout=60)
    try:
        session.hello()
        session.envelope([rcpt], sender=sender)
        return session.send_data(body)
    finally:
        session.close()


def test_mail_from_outside_as_a_local_user_is_refused(appliance: Appliance) -> None:
    """``MAIL FROM:<alice@example.org>`` with ``From: alice@example.org`` to bob over the MX listener: 550 5.7.1 at
    the end of DATA and nothing stored, though the domain's SPF allows every host; mail from a remote sender
    to bob is still delivered."""
    code, reply = send(appliance, f"alice@{DOMAIN}", f"bob@{DOMAIN}", SPOOF)
    assert (code, reply[:9]) == (550, b"550 5.7.1"), reply
    assert stored(appliance, "bob", "Mail/") == []
    # The same From behind a remote envelope sender is refused too: the From is what readers see.
    assert send(appliance, "bob@remote.test", f"bob@{DOMAIN}", SPOOF)[0] == 550
    code, reply = send(appliance, "bob@remote.test", f"bob@{DOMAIN}", make_message("hello", "Hi.\n", f"bob@{DOMAIN}"))
    assert code == 250, reply
    assert len(stored(appliance, "bob", "Mail/In")) == 2
    assert "refused with 550: local-domain" in appliance.log()
