"""A real ``twistd mailiverse --outbound direct --dns-server 127.0.0.1:PORT`` asking the test DNS server, run as
a process of its own: the appliance says which servers it asks, and a user's mail to a remote domain reaches the
SMTP server the domain's MX names there, at an address only that DNS server knows."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.dnsserver import DnsProcess, Zone, start_dns_process
from tests.support.e2e import Device
from tests.support.harness import Appliance

pytestmark = pytest.mark.integration
PASSWORD = "alice's long dns test password"
#: An address of the loopback network that no system resolver knows a name for.
MX_ADDRESS = f"127.53.{random.randrange(1, 255)}.{random.randrange(1, 255)}"


class Sink:
    """An SMTP server (aiosmtpd) keeping every message it receives."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 2.0.0 stored"

    def wait_for(self, count: int, timeout: float = 30.0) -> list[tuple[str, list[str], bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(self.received) >= count, f"the MX received {len(self.received)} message(s), expected {count}"
        return self.received


@pytest.fixture(scope="module")
def dns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsProcess]:
    """The test DNS server, in a process of its own, publishing remote.test's MX at MX_ADDRESS."""
    zone = Zone({"remote.test": {"MX": [[10, "mx.remote.test"]]}, "mx.remote.test": {"A": [MX_ADDRESS]}})
    server = start_dns_process(zone, tmp_path_factory.mktemp("dns"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory, dns: DnsProcess) -> Iterator[Device]:
    """An appliance sending remote mail directly, its DNS the test server; a device directory for the CLI."""
    root = tmp_path_factory.mktemp("appliance")
    appliance = Appliance(
        root / "appliance", extra_args=["--outbound", "direct", "--dns-server", f"127.0.0.1:{dns.port}"]
    )
    appliance.start()
    (root / "device").mkdir()
    try:
        yield Device(root / "device", appliance)
    finally:
        appliance.stop()


def test_the_appliance_logs_the_dns_servers_it_asks(device: Device, dns: DnsProcess) -> None:
    """At start-up the log names the --dns-server every lookup goes to."""
    assert f"DNS: lookups go to 127.0.0.1:{dns.port}" in device.appliance.log()


def test_direct_delivery_finds_the_mx_through_the_dns_server(device: Device, dns: DnsProcess) -> None:
    """Alice's mail to dave@remote.test goes to the MX host and address the test DNS server published (asked for
    remote.test's MX and mx.remote.test's address), not anywhere the system's resolvers know."""
    controller_module = pytest.importorskip("aiosmtpd.controller")
    sink = Sink()
    mx = controller_module.Controller(sink, hostname=MX_ADDRESS, port=25)
    try:
        mx.start()
    except (PermissionError, OSError) as error:
        pytest.skip(f"an MX needs port 25 on {MX_ADDRESS}, which this user cannot bind ({error})")
    try:
        signup = device.cli("alice", "signup", password=PASSWORD)
        assert signup.returncode == 0, signup.stderr
        sent = device.cli(
            "alice",
            "send",
            "--to",
            "dave@remote.test",
            "--subject",
            "Found by its MX",
            password=PASSWORD,
            stdin=b"Routed by the test's DNS server.\n",
        )
        assert sent.returncode == 0, sent.stderr
        assert "queued for dave@remote.test" in sent.stdout
        [(mail_from, recipients, data)] = sink.wait_for(1)
    finally:
        mx.stop()
    assert (mail_from, recipients) == ("alice@example.org", ["dave@remote.test"])
    assert b"Subject: Found by its MX" in data and b"Routed by the test's DNS server." in data
    asked = dns.queries()
    assert asked.count("remote.test", "MX") >= 1
    assert asked.count("mx.remote.test", "A") >= 1
    assert all(query.transport == "udp" for query in asked.queries)
