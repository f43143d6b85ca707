"""alice's bridge as ``service.run`` wires it (``log_in``, ``plan``, ``mount_imap``, the SMTP factory), on real
loopback ports against the app of the ``served`` fixture, with every request it sends to the appliance recorded.

TLS is left out (the local ports are plain loopback, where the bridge allows AUTH): these tests are about what
the bridge asks of the appliance and what it keeps on disk, not about the local ports' TLS (test_imap, test_smtp).
"""

from __future__ import annotations

import argparse
import imaplib
import io
import smtplib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet import reactor

from mailiverse.client import Client
from mailiverse.client.bridge import service
from mailiverse.client.bridge.localauth import LocalLogin, Throttle, new_local_password
from mailiverse.client.bridge.smtp import smtp_factory
from mailiverse.client.bridge.submit import Submitter
from mailiverse.client.transport import RecordingTransport
from mailiverse.store import accounts as repo
from tests.support.client import PASSWORD, Served, in_thread

ALICE, BOB = "alice@example.org", "bob@example.org"


@dataclass
class Console:
    """What ``service.log_in`` reads: the password in the environment, stderr kept for the test."""

    args: argparse.Namespace
    environ: dict[str, str]
    stdout: io.StringIO = field(default_factory=io.StringIO)
    stderr: io.StringIO = field(default_factory=io.StringIO)

    def password(self) -> str:
        return self.environ["MAILIVERSE_PASSWORD"]


@dataclass
class LiveBridge:
    client: Client
    recording: RecordingTransport
    console: Console
    local_password: str
    imap_port: int
    smtp_port: int
    ports: list[Any]

    def imap(self) -> imaplib.IMAP4:
        session = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=60)
        session.login("alice", self.local_password)
        return session

    def smtp(self) -> smtplib.SMTP:
        session = smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=60)
        session.login("alice", self.local_password)
        return session

    def requests(self, method: str, prefix: str) -> list[str]:
        """The paths of the requests sent so far with ``method`` whose path starts with ``prefix``."""
        return [r.path for r in self.recording.sent if r.method == method and r.path.startswith(prefix)]

    async def stop(self) -> None:
        for port in self.ports:
            await port.stopListening()
        self.client.close()


async def account(served: Served, name: str) -> Client:
    """A new account ``name`` (the first signs up freely, the others with an invite), logged in."""
    client, _ = served.client(name)
    invite = None
    if not await served.api.accounts.signup_open():
        invite, _ = await served.api.database.transact(repo.create_invite_txn)
    await in_thread(client.signup, PASSWORD, invite)
    await in_thread(client.login, PASSWORD)
    return client


async def start_bridge(served: Served, tmp_path: Path, *options: str) -> LiveBridge:
    """alice's bridge with ``options`` (``--cache DIR``, ``--cache-size N``), logged in and listening."""
    parser = argparse.ArgumentParser()
    service.add_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["bridge", "--imap", "tcp:0", "--imaps", "none", "--smtp", "tcp:0", "--smtps", "none"]
        + ["--cert-dir", str(tmp_path / "certs"), *options]
    )
    args.server = served.url
    recording = served.transport()
    client = Client(service.serialized(recording), "alice")
    console = Console(args, {"MAILIVERSE_PASSWORD": PASSWORD})
    checked = service.plan(args)
    await in_thread(service.log_in, console, client)
    local_password = new_local_password()
    login = LocalLogin(client.user, local_password, Throttle(reactor), addresses=client.addresses)
    imap, _ = service.mount_imap(client, login, local_password, checked, None, reactor)
    smtp = smtp_factory(Submitter(client), login, tls=None, implicit_tls=False, reactor=reactor)
    tcp: Any = reactor
    ports = [tcp.listenTCP(0, factory, interface="127.0.0.1") for factory in (imap, smtp)]
    imap_port, smtp_port = (int(port.getHost().port) for port in ports)
    return LiveBridge(client, recording, console, local_password, imap_port, smtp_port, ports)


def message(subject: str, body: str) -> bytes:
    return (
        f"From: Alice <{ALICE}>\r\nTo: {BOB}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@example.org>\r\nDate: Sun, 07 Dec 2025 10:00:00 +0000\r\n"
        f"\r\n{body}\r\n"
    ).encode()
