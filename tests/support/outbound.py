"""Shared pieces of the outbound tests: a message with a canary, an Outbound builder, a DKIM key lookup."""

from __future__ import annotations

from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import Clock

from mailiverse.outbound.dkim import DkimSigner, dkim_dns_record, dkim_record_name
from mailiverse.outbound.queue import Outbound, QueuePolicy
from mailiverse.outbound.queuekey import QueueCipher, load_or_create_queue_key
from mailiverse.outbound.transport import Transport
from mailiverse.store.db import Database
from mailiverse.testing import MemoryInbox

START_S = 1_700_000_000.0
SELECTOR = "mv2024"
CANARY = b"canary-7f3a9c1e-plaintext-must-not-hit-the-database"


def message(subject: str = "hello", to: str = "bob@remote.test") -> bytes:
    """A plain message from alice@example.com whose body holds the canary and a line starting with a dot."""
    return (
        b"From: Alice <alice@example.com>\r\n"
        b"To: " + to.encode() + b"\r\n"
        b"Subject: " + subject.encode() + b"\r\n"
        b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
        b"Message-ID: <" + subject.encode() + b"@example.com>\r\n"
        b"Bcc: secret-bcc@remote.test\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n"
        b"\r\n"
        b"Hello Bob,\r\n"
        b".a line that starts with a dot\r\n"
        b"" + CANARY + b"\r\n"
    )


def inbox() -> MemoryInbox:
    """A local delivery that knows alice at example.com."""
    return MemoryInbox(users={"alice": "alice"}, domains=("example.com",))


def clock() -> Clock:
    """A clock at a realistic time."""
    c = Clock()
    c.advance(START_S)
    return c


def make_outbound(
    database: Database,
    data_dir: Path,
    transport: Transport | None,
    local: MemoryInbox,
    tick: Clock,
    **policy: Any,
) -> Outbound:
    """An Outbound over ``database`` with the data dir's queue and DKIM keys."""
    keys = data_dir / "keys"
    return Outbound(
        database,
        cipher=QueueCipher(load_or_create_queue_key(keys)),
        transport=transport,
        local_delivery=local,
        hostname="mx.example.com",
        local_domains=["example.com"],
        reactor=reactor,
        clock=tick,
        signer=DkimSigner(keys, SELECTOR, ("example.com",)),
        policy=QueuePolicy(**policy),
    )


def dns_for(data_dir: Path) -> Any:
    """A dkimpy ``dnsfunc`` answering the example.com DKIM record from the data dir's key."""
    name = dkim_record_name("example.com", SELECTOR) + "."
    record = dkim_dns_record("example.com", SELECTOR, keys_dir=data_dir / "keys").encode()

    def lookup(query: bytes, timeout: int = 5) -> bytes | None:
        return record if query.decode().lower().rstrip(".") == name.rstrip(".") else None

    return lookup


def parse(data: bytes) -> Message:
    """Parse a message with the standard library."""
    return message_from_bytes(data)
