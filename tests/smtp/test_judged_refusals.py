"""The SMTP receiver hands the inbox how each message arrived (for judging) and answers a judged refusal with the
inbox's reply: 550 5.7.1 for good, 451 4.7.0 for now, nothing queued, the session going on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock

from mailiverse.contracts import Envelope, MessageRejected
from mailiverse.testing import MemoryInbox
from tests.support.smtp_memory import GREETING, Session, make_factory

MESSAGE = b"From: alice@example.com\r\nSubject: hi\r\n\r\nhello\r\n.\r\n"


@pytest.fixture
def inbox() -> MemoryInbox:
    return MemoryInbox(users={"alice": "alice", "bob": "bob"}, domains=["example.com", "bücher.example"])


@pytest.fixture
def factory(inbox: MemoryInbox, tmp_path: Path) -> Any:
    return make_factory(inbox, MemoryReactorClock(), tmp_path)


def test_the_inbox_gets_the_envelope_of_each_message(factory: Any, inbox: MemoryInbox) -> None:
    """Client address, HELO name, MAIL FROM, the host name (authserv-id) and the served domains (A-labels) go
    with the message."""
    session = Session(factory, ip="2001:db8::7")
    session.send(GREETING + b"MAIL FROM:<bob@remote.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n")
    assert session.send(MESSAGE)[-1].startswith(b"250 2.0.0")
    [delivered] = inbox.delivered
    assert delivered.envelope == Envelope(
        client_ip="2001:db8::7",
        helo="client.example.org",
        mail_from="bob@remote.test",
        authserv_id="mx.example.com",
        local_domains=("example.com", "xn--bcher-kva.example"),
    )


@pytest.mark.parametrize(
    ("refusal", "reply"),
    [
        (MessageRejected(550, "5.7.1", "Refused by policy"), b"550 5.7.1 Refused by policy"),
        (MessageRejected(451, "4.7.0", "Try later"), b"451 4.7.0 Try later"),
    ],
)
def test_a_judged_refusal_is_the_reply_to_the_final_dot(
    factory: Any, inbox: MemoryInbox, refusal: MessageRejected, reply: bytes
) -> None:
    """The inbox's MessageRejected becomes the reply to DATA; nothing is queued and the next message is taken."""
    deliver = inbox.deliver

    async def refuse(*args: Any, **kwargs: Any) -> str:
        raise refusal

    inbox.deliver = refuse  # type: ignore[method-assign]
    session = Session(factory)
    session.send(GREETING + b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n")
    lines = session.send(MESSAGE)
    assert lines[-1] == reply
    assert not any(line.startswith(b"250 2.0.0 Ok: queued") for line in lines)
    inbox.deliver = deliver  # type: ignore[method-assign]
    session.send(b"MAIL FROM:<carol@remote.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n")
    assert session.send(MESSAGE)[-1].startswith(b"250 2.0.0 Ok: queued")
