"""Tests that the public MemoryInbox fake honours IInbox, and that SmtpLimits rejects nonsense."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from zope.interface.verify import verifyObject

from mailiverse.contracts import IInbox, Recipient
from mailiverse.smtp.limits import SmtpLimits
from mailiverse.spool import SpoolWriter
from mailiverse.testing import DeliveryFailed, MemoryInbox


def test_memory_inbox_provides_iinbox() -> None:
    """MemoryInbox fully provides IInbox."""
    assert verifyObject(IInbox, MemoryInbox())


@pytest_twisted.ensureDeferred
async def test_memory_inbox_resolves_and_records(tmp_path: Path) -> None:
    """resolve() is case-insensitive on the local part and domain; deliver() keeps a copy or fails on demand."""
    inbox = MemoryInbox(users={"Alice": "alice"}, domains=["Example.COM"])
    recipient = await Deferred.fromCoroutine(inbox.resolve("ALICE@example.com"))
    assert recipient == Recipient("alice@example.com", "alice")
    assert await Deferred.fromCoroutine(inbox.resolve("alice@other.org")) is None
    writer = SpoolWriter(tmp_path)
    writer.write(b"hello\r\n")
    with writer.finish() as message:
        await Deferred.fromCoroutine(inbox.deliver(message, "a@b", [recipient]))
        inbox.fail = True
        with pytest.raises(DeliveryFailed):
            await Deferred.fromCoroutine(inbox.deliver(message, "a@b", [recipient]))
    assert [d.data for d in inbox.delivered] == [b"hello\r\n"]


def test_limits_must_be_positive() -> None:
    """A zero or negative limit is a configuration error naming the field."""
    with pytest.raises(ValueError, match="max_recipients"):
        SmtpLimits(max_recipients=0)
