"""RCPT for an account that moved to another appliance (docs/moving.md): ``551 5.1.6`` naming the new address
(RFC 5321 §3.4), nothing accepted for it, and never anything but a plain printable address in the reply."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from twisted.internet.testing import MemoryReactorClock

from mailiverse.contracts import Recipient
from mailiverse.testing import MemoryInbox
from tests.support.smtp_memory import GREETING, Session, make_factory


@dataclasses.dataclass
class MovedInbox(MemoryInbox):
    """A MemoryInbox whose accounts in ``moved`` moved to the address given there."""

    moved: dict[str, str] = dataclasses.field(default_factory=dict)

    async def resolve(self, address: str, mail_from: str | None = None) -> Recipient | None:
        found = await super().resolve(address, mail_from)
        if found is None or found.user not in self.moved:
            return found
        return dataclasses.replace(found, moved_to=self.moved[found.user])


def _session(tmp_path: Path, moved: dict[str, str]) -> Session:
    inbox = MovedInbox(users={"alice": "alice", "bob": "bob", "eve": "eve"}, moved=moved)
    session = Session(make_factory(inbox, MemoryReactorClock(), tmp_path))
    session.send(GREETING + b"MAIL FROM:<s@remote.org>\r\n")
    return session


def test_a_moved_account_answers_551_with_its_new_address(tmp_path: Path) -> None:
    """Every spelling of the moved address gets 551 5.1.6 and the new address; others are accepted as before;
    a transaction whose only recipient moved stores nothing."""
    session = _session(tmp_path, {"alice": "alice@new.example"})
    expected = [b"551 5.1.6 User not local; please try <alice@new.example>"]
    assert session.send(b"RCPT TO:<alice@example.com>\r\n") == expected
    assert session.send(b"RCPT TO:<ALICE@Example.COM>\r\n") == expected
    assert session.send(b"DATA\r\n") == [b"554 5.5.1 No valid recipients"]
    assert session.send(b"RCPT TO:<bob@example.com>\r\n") == [b"250 2.1.5 Recipient ok"]


def test_a_new_address_that_is_not_plain_is_never_quoted(tmp_path: Path) -> None:
    """Should a stored new address hold a line break or a non-ASCII character, the reply names no address:
    nothing can be injected into the SMTP session."""
    session = _session(tmp_path, {"alice": "x@y.example\r\n250 ok", "eve": "ève@new.example"})
    for rcpt in (b"RCPT TO:<alice@example.com>\r\n", b"RCPT TO:<eve@example.com>\r\n"):
        assert session.send(rcpt) == [b"551 5.1.6 User not local; please try"]
