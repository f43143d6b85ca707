"""Unit tests of the ESMTP receiver over in-memory transports: protocol, limits and hardening."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.testing import (
    MemoryReactorClock,
)

from mailiverse.contracts import MessageRefused, Recipient
from mailiverse.testing import MemoryInbox
from mailiverse.tls import TLSContexts, ensure_self_signed
from tests.support.smtp_memory import GREETING, Session, make_factory


@pytest.fixture
def inbox() -> MemoryInbox:
    users = {"alice": "alice", "bob": "bob"} | {f"u{i}": f"u{i}" for i in range(120)}
    return MemoryInbox(users=users, domains=["example.com", "bücher.example"])


@pytest.fixture
def clock() -> MemoryReactorClock:
    return MemoryReactorClock()


@pytest.fixture(scope="module")
def tls_contexts(tmp_path_factory: pytest.TempPathFactory) -> TLSContexts:
    return TLSContexts(ensure_self_signed(tmp_path_factory.mktemp("tls"), "mx.example.com"))


@pytest.fixture
def factory(inbox: MemoryInbox, clock: MemoryReactorClock, tmp_path: Path) -> Any:
    return make_factory(inbox, clock, tmp_path)


def transaction(rcpts: list[bytes], body: bytes, sender: bytes = b"<sender@remote.org>") -> bytes:
    rcpt_lines = b"".join(b"RCPT TO:" + r + b"\r\n" for r in rcpts)
    return b"MAIL FROM:" + sender + b"\r\n" + rcpt_lines + b"DATA\r\n" + body + b"\r\n.\r\n"


def codes(lines: list[bytes]) -> list[bytes]:
    return [line[:3] for line in lines]


def test_greeting_and_extensions(factory: Any) -> None:
    """The server greets with 220 and advertises SIZE, 8BITMIME, ENHANCEDSTATUSCODES, PIPELINING
    but no AUTH or STARTTLS without TLS."""
    session = Session(factory)
    assert session.replies() == [b"220 mx.example.com ESMTP mailiverse"]
    lines = session.send(GREETING)
    assert b"250-SIZE 52428800" in lines
    for extension in (b"8BITMIME", b"ENHANCEDSTATUSCODES", b"PIPELINING"):
        assert any(line[4:] == extension for line in lines)
    assert not any(b"AUTH" in line or b"STARTTLS" in line for line in lines)


def test_message_delivered_with_trace_header(factory: Any, inbox: MemoryInbox) -> None:
    """A message is dot-unstuffed, gets a Received header on top, and 250 comes after deliver()."""
    session = Session(factory)
    session.send(GREETING)
    lines = session.send(transaction([b"<alice@example.com>"], b"Subject: t\r\n\r\n..dot\r\nend"))
    assert lines[-1].startswith(b"250 2.0.0 Ok: queued as ")
    queue_id = lines[-1].rsplit(b" ", 1)[1].decode()
    [delivered] = inbox.delivered
    assert delivered.mail_from == "sender@remote.org"
    assert delivered.recipients == (Recipient("alice@example.com", "alice"),)
    header, _, rest = delivered.data.partition(b"\r\nSubject: t")
    assert rest == b"\r\n\r\n.dot\r\nend\r\n"
    assert header.startswith(b"Received: from client.example.org ([203.0.113.5])\r\n\tby mx.example.com (mailiverse)")
    assert f"with ESMTP id {queue_id}".encode() in header
    assert b"for <alice@example.com>; Thu, 01 Jan 1970 00:00:00 +0000" in header


def test_trace_header_hides_recipients_of_multi_recipient_message(factory: Any, inbox: MemoryInbox) -> None:
    """With several recipients the Received header names none (it would leak Bcc)."""
    session = Session(factory)
    session.send(GREETING)
    session.send(transaction([b"<alice@example.com>", b"<bob@example.com>"], b"Subject: t\r\n\r\nx"))
    [delivered] = inbox.delivered
    assert len(delivered.recipients) == 2
    assert b"alice" not in delivered.data and b"bob@" not in delivered.data


def test_recipient_rules(factory: Any, inbox: MemoryInbox) -> None:
    """Unknown users get 550 5.1.1, foreign domains 550 5.7.1, and local parts and IDNA domains
    match case-insensitively."""
    session = Session(factory)
    session.send(GREETING + b"MAIL FROM:<s@remote.org>\r\n")
    assert session.send(b"RCPT TO:<nobody@example.com>\r\n") == [b"550 5.1.1 No such user here"]
    assert session.send(b"RCPT TO:<alice@elsewhere.org>\r\n") == [b"550 5.7.1 Relaying denied"]
    assert session.send(b"RCPT TO:<alice@[192.0.2.1]>\r\n") == [b"550 5.7.1 Relaying denied"]
    assert session.send(b"RCPT TO:<ALICE@EXAMPLE.COM>\r\n") == [b"250 2.1.5 Recipient ok"]
    assert session.send(b"RCPT TO:<Bob@XN--BCHER-KVA.example>\r\n") == [b"250 2.1.5 Recipient ok"]
    assert inbox.resolved[-2:] == ["alice@example.com", "bob@xn--bcher-kva.example"]


def test_unknown_recipient_only_transaction_refuses_data(factory: Any, inbox: MemoryInbox) -> None:
    """DATA without any accepted recipient is refused and nothing is delivered."""
    session = Session(factory)
    lines = session.send(GREETING + transaction([b"<nobody@example.com>"], b"x"))
    assert b"554 5.5.1 No valid recipients" in lines
    assert inbox.delivered == []


def test_delivery_failure_gives_451(factory: Any, inbox: MemoryInbox) -> None:
    """When the inbox fails to store the message the client gets 451 4.3.0, never 250."""
    inbox.fail = True
    session = Session(factory)
    lines = session.send(GREETING + transaction([b"<alice@example.com>"], b"Subject: x\r\n\r\ny"))
    assert lines[-1].startswith(b"451 4.3.0")
    assert not any(line.startswith(b"250 2.0.0 Ok: queued") for line in lines)


def test_a_message_the_inbox_refuses_for_good_gives_554(factory: Any, inbox: MemoryInbox) -> None:
    """When the inbox refuses the message itself (it kept killing delivery workers) the client gets 554 5.6.0."""

    async def refuse(*args: Any, **kwargs: Any) -> str:
        raise MessageRefused("this message made the delivery workers fail repeatedly")

    inbox.deliver = refuse  # type: ignore[method-assign]
    session = Session(factory)
    lines = session.send(GREETING + transaction([b"<alice@example.com>"], b"Subject: x\r\n\r\ny"))
    assert lines[-1].startswith(b"554 5.6.0")
    assert not any(line.startswith(b"250 2.0.0 Ok: queued") for line in lines)


def test_full_mailbox_gives_452_at_rcpt_and_at_data(factory: Any, inbox: MemoryInbox) -> None:
    """A recipient already full gets 452 4.2.2 at RCPT while the others are accepted; a message that would
    fill an accepted recipient's mailbox gets 452 4.2.2 at the end of DATA and is stored for nobody."""
    inbox.full = {"alice"}
    session = Session(factory)
    session.send(GREETING + b"MAIL FROM:<s@remote.org>\r\n")
    assert session.send(b"RCPT TO:<alice@example.com>\r\n") == [b"452 4.2.2 Mailbox full, try again later"]
    assert session.send(b"RCPT TO:<bob@example.com>\r\n") == [b"250 2.1.5 Recipient ok"]
    assert session.send(b"DATA\r\nSubject: x\r\n\r\ny\r\n.\r\n")[-1].startswith(b"250 2.0.0 Ok: queued")
    assert [[r.user for r in d.recipients] for d in inbox.delivered] == [["bob"]]
    inbox.full = set()
    session.send(b"MAIL FROM:<s@remote.org>\r\nRCPT TO:<bob@example.com>\r\nRCPT TO:<alice@example.com>\r\n")
    inbox.full = {"alice"}  # the message takes her past her quota
    lines = session.send(b"DATA\r\nSubject: x\r\n\r\ny\r\n.\r\n")
    assert lines[-1] == b"452 4.2.2 Mailbox full for a recipient; try again later"
    assert len(inbox.delivered) == 1
    inbox.full = set()
    lines = session.send(transaction([b"<bob@example.com>", b"<alice@example.com>"], b"Subject: x\r\n\r\ny"))
    assert lines[-1].startswith(b"250 2.0.0 Ok: queued")
    assert len(inbox.delivered) == 2


def test_starttls_injection_discarded(
    inbox: MemoryInbox,
    clock: MemoryReactorClock,
    tmp_path: Path,
    tls_contexts: TLSContexts,
) -> None:
    """Commands pipelined in clear text behind STARTTLS are neither answered nor acted on, and the session restarts."""
    session = Session(make_factory(inbox, clock, tmp_path, tls_contexts), tls_capable=True)
    session.replies()
    assert b"250 STARTTLS" in session.send(GREETING)
    lines = session.send(b"STARTTLS\r\nRSET\r\nMAIL FROM:<evil@x>\r\n")
    assert lines == [b"220 2.0.0 Ready to start TLS"]
    assert session.transport.tls_context is not None
    # after the handshake, the old EHLO and the injected MAIL are forgotten
    assert session.send(b"RCPT TO:<alice@example.com>\r\n") == [b"503 5.5.1 Send MAIL first"]
    assert session.send(b"MAIL FROM:<a@b.org>\r\n") == [b"503 5.5.1 Send EHLO or HELO first"]
    lines = session.send(GREETING)
    assert not any(b"STARTTLS" in line for line in lines)
    assert session.send(b"STARTTLS\r\n") == [b"503 5.5.1 TLS already active"]


@pytest.mark.parametrize(
    "sequence",
    [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\n"],
    ids=["LF.LF", "CR.CR", "LF.CRLF", "CRLF.LF", "CR.LF"],
)
def test_smuggling_sequences_do_not_end_data(factory: Any, inbox: MemoryInbox, sequence: bytes) -> None:
    """A non-CRLF end-of-data look-alike neither ends the message nor starts a second one;
    the whole message is refused."""
    session = Session(factory)
    session.send(GREETING)
    smuggled = (
        b"Subject: first\r\n\r\nhello"
        + sequence
        + b"MAIL FROM:<evil@attacker.org>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
        + b"Subject: smuggled\r\n\r\nforged"
    )
    lines = session.send(transaction([b"<alice@example.com>"], smuggled))
    assert lines[-1].startswith(b"554 5.6.0")
    assert codes(lines).count(b"354") == 1
    assert inbox.delivered == []
    # the session goes on normally after the rejected message
    lines = session.send(transaction([b"<alice@example.com>"], b"Subject: ok\r\n\r\nfine"))
    assert lines[-1].startswith(b"250 2.0.0")
    assert len(inbox.delivered) == 1 and b"smuggled" not in inbox.delivered[0].data


def test_bare_lf_in_command_refused(factory: Any) -> None:
    """A command ending in a bare LF is not executed; commands must end with CRLF."""
    session = Session(factory)
    session.replies()
    lines = session.send(b"EHLO a.example\nMAIL FROM:<x@y>\r\n")
    assert lines == [b"500 5.5.2 Bare CR or LF in a command; commands end with CRLF"]


def test_declared_size_too_big(factory: Any) -> None:
    """MAIL FROM with SIZE above the limit gets 552 5.3.4; at the limit it is accepted."""
    session = Session(factory)
    session.send(GREETING)
    assert session.send(b"MAIL FROM:<a@b.org> SIZE=52428801\r\n") == [
        b"552 5.3.4 Message size exceeds fixed maximum message size"
    ]
    assert session.send(b"MAIL FROM:<a@b.org> SIZE=52428800 BODY=8BITMIME\r\n") == [b"250 2.1.0 Sender ok"]


def test_actual_size_too_big(inbox: MemoryInbox, clock: MemoryReactorClock, tmp_path: Path) -> None:
    """A message that grows past the limit during DATA is answered 552 5.3.4 at its end and not delivered."""
    session = Session(make_factory(inbox, clock, tmp_path, max_message_size=10_000, spool_memory_limit=2048))
    session.send(GREETING + b"MAIL FROM:<a@b.org>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n")
    for _ in range(200):
        assert session.send(b"y" * 98 + b"\r\n") == []
    lines = session.send(b".\r\n")
    assert lines == [b"552 5.3.4 Message size exceeds fixed maximum message size"]
    assert inbox.delivered == []
    assert list((tmp_path / "spool").iterdir()) == []


def test_large_message_spills_and_arrives_intact(inbox: MemoryInbox, clock: MemoryReactorClock, tmp_path: Path) -> None:
    """A message larger than the in-memory spool limit is delivered byte for byte."""
    session = Session(make_factory(inbox, clock, tmp_path, spool_memory_limit=4096))
    body = b"".join(b"line %05d of the body\r\n" % i for i in range(3000))
    session.send(GREETING)
    lines = session.send(transaction([b"<alice@example.com>"], b"Subject: big\r\n\r\n" + body[:-2]))
    assert lines[-1].startswith(b"250 2.0.0")
    assert inbox.delivered[0].data.endswith(b"Subject: big\r\n\r\n" + body)


def test_long_command_line(factory: Any) -> None:
    """A command line over 512 octets gets 500 5.5.2 and is skipped without being buffered; the next command works."""
    session = Session(factory)
    session.replies()
    assert session.send(b"NOOP " + b"a" * 600) == [b"500 5.5.2 Command line longer than 512 octets"]
    # The receiver's own input buffer (_inbuf): at most a CR whose LF may follow is kept of a line being skipped.
    assert len(session.protocol._inbuf) <= 1
    assert session.send(b"b" * 5000) == []
    assert len(session.protocol._inbuf) <= 1
    assert session.send(b"\r\nNOOP\r\n") == [b"250 2.0.0 Ok"]
    assert session.send(b"NOOP " + b"a" * 505 + b"\r\n") == [b"250 2.0.0 Ok"]


def test_long_data_line(factory: Any, inbox: MemoryInbox) -> None:
    """A message line over 1000 octets makes the message fail with 552 at its end."""
    session = Session(factory)
    session.send(GREETING)
    lines = session.send(transaction([b"<alice@example.com>"], b"Subject: x\r\n\r\n" + b"z" * 1200))
    assert lines[-1] == b"552 5.5.2 Message line longer than 1000 octets"
    assert inbox.delivered == []


def test_recipient_limit(factory: Any) -> None:
    """The 101st recipient of one transaction gets 452 4.5.3."""
    session = Session(factory)
    session.send(GREETING + b"MAIL FROM:<a@b.org>\r\n")
    lines = session.send(b"".join(b"RCPT TO:<u%d@example.com>\r\n" % i for i in range(101)))
    assert codes(lines) == [b"250"] * 100 + [b"452"]
    assert lines[-1] == b"452 4.5.3 Too many recipients"


def test_per_ip_and_global_connection_limits(inbox: MemoryInbox, clock: MemoryReactorClock, tmp_path: Path) -> None:
    """Connections over the per-IP or global limit get 421 4.7.0 and are closed; closing one frees a slot."""
    factory = make_factory(inbox, clock, tmp_path, max_connections_per_ip=2, max_connections=3)
    first, second = Session(factory), Session(factory)
    assert not second.closed
    third = Session(factory)
    assert third.replies() == [b"421 4.7.0 Too many connections, try again later"]
    assert third.closed and not first.closed
    other = Session(factory, ip="198.51.100.7")
    assert other.replies()[0].startswith(b"220")
    fourth = Session(factory, ip="198.51.100.8")
    assert fourth.replies() == [b"421 4.7.0 Too many connections, try again later"]
    first.send(b"QUIT\r\n")
    assert first.closed
    again = Session(factory)
    assert again.replies()[0].startswith(b"220")


def test_idle_timeout(factory: Any, clock: MemoryReactorClock) -> None:
    """An idle session is closed with 421 4.4.2 after the timeout, and a command that moves it on restarts the timer."""
    session = Session(factory)
    session.replies()
    clock.advance(299)
    session.send(GREETING)
    clock.advance(299)
    assert not session.closed
    clock.advance(2)
    assert session.replies() == [b"421 4.4.2 Idle timeout, closing connection"]
    assert session.closed


def test_trickling_bytes_do_not_keep_a_session_alive(factory: Any, clock: MemoryReactorClock) -> None:
    """A client sending one byte a minute, never a whole line, is closed at the idle timeout."""
    session = Session(factory)
    session.replies()
    for byte in b"NOOP":
        clock.advance(60)
        session.send(bytes([byte]))
        assert not session.closed
    clock.advance(60)
    assert session.replies() == [b"421 4.4.2 Idle timeout, closing connection"]
    assert session.closed


def test_session_length_is_capped(inbox: MemoryInbox, clock: MemoryReactorClock, tmp_path: Path) -> None:
    """Even a busy session (a message trickling in a line a minute) is closed with 421 at the session time limit."""
    session = Session(make_factory(inbox, clock, tmp_path, max_session_seconds=600))
    session.replies()
    session.send(GREETING + b"MAIL FROM:<a@b.org>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n")
    for _ in range(9):
        clock.advance(60)
        assert session.send(b"a line of the message\r\n") == []
    clock.advance(61)
    assert session.replies() == [b"421 4.4.2 Session too long, closing connection"]
    assert session.closed


def test_commands_that_move_nothing_on_do_not_restart_the_idle_timer(factory: Any, clock: MemoryReactorClock) -> None:
    """A repeated RCPT, NOOP, HELP, VRFY, RSET and a second EHLO are answered, but the idle timer keeps
    running from the last command that moved the session on, so they cannot hold a connection open."""
    session = Session(factory)
    session.replies()
    clock.advance(100)
    lines = session.send(GREETING + b"MAIL FROM:<a@b.org>\r\nRCPT TO:<alice@example.com>\r\n")
    assert lines[-1] == b"250 2.1.5 Recipient ok"  # progress at t=100: idle until t=400
    for command in (b"RCPT TO:<alice@example.com>", b"RCPT TO:<ALICE@example.com>"):
        clock.advance(50)
        assert session.send(command + b"\r\n") == [b"250 2.1.5 Recipient ok"]
    for command in (b"NOOP", b"HELP", b"VRFY alice", b"RSET", b"EHLO again.example.org"):
        clock.advance(35)
        assert session.send(command + b"\r\n")[-1][:1] == b"2"
    clock.advance(24)  # t=399
    assert not session.closed
    clock.advance(2)
    assert session.replies() == [b"421 4.4.2 Idle timeout, closing connection"]
    assert session.closed


def test_noop_loop_is_closed_after_the_junk_limit(
    inbox: MemoryInbox, clock: MemoryReactorClock, tmp_path: Path
) -> None:
    """After ``max_junk_commands`` of NOOP, RSET, HELP, VRFY or repeated EHLO/HELO the next one gets
    421 4.7.0 and the connection closes."""
    session = Session(make_factory(inbox, clock, tmp_path, max_junk_commands=5))
    session.replies()
    session.send(GREETING)
    lines = session.send(b"NOOP\r\nRSET\r\nHELP\r\nVRFY alice\r\nHELO client.example.org\r\nNOOP\r\nNOOP\r\n")
    assert codes(lines) == [b"250", b"250", b"214", b"252", b"250", b"421"]
    assert lines[-1] == b"421 4.7.0 Too many commands without mail, closing connection"
    assert session.closed


def test_junk_count_starts_over_after_a_message(inbox: MemoryInbox, clock: MemoryReactorClock, tmp_path: Path) -> None:
    """A client that sends RSET or NOOP around each of its messages is not cut off: an accepted message
    starts the count over."""
    session = Session(make_factory(inbox, clock, tmp_path, max_junk_commands=2))
    session.send(GREETING)
    for _ in range(3):
        assert codes(session.send(b"RSET\r\nNOOP\r\n")) == [b"250", b"250"]
        assert session.send(transaction([b"<alice@example.com>"], b"x"))[-1].startswith(b"250 2.0.0")
    assert codes(session.send(b"NOOP\r\nNOOP\r\nNOOP\r\n")) == [b"250", b"250", b"421"]
    assert session.closed


def test_ehlo_after_starttls_is_not_junk(
    inbox: MemoryInbox,
    clock: MemoryReactorClock,
    tmp_path: Path,
    tls_contexts: TLSContexts,
) -> None:
    """The EHLO that RFC 3207 requires after STARTTLS starts the new session: it is neither junk nor idle."""
    session = Session(make_factory(inbox, clock, tmp_path, tls_contexts, max_junk_commands=1), tls_capable=True)
    session.replies()
    session.send(GREETING)
    assert codes(session.send(b"NOOP\r\n")) == [b"250"]
    assert session.send(b"STARTTLS\r\n") == [b"220 2.0.0 Ready to start TLS"]
    clock.advance(200)
    assert codes(session.send(GREETING))[-1] == b"250"
    clock.advance(200)
    assert not session.closed
    assert codes(session.send(b"EHLO again.example.org\r\n")) == [b"421"]


def test_per_address_cap_groups_ipv6_by_slash_64(inbox: MemoryInbox, clock: MemoryReactorClock, tmp_path: Path) -> None:
    """Addresses in one IPv6 /64 (what one host or site usually gets) share the per-address connection cap."""
    factory = make_factory(inbox, clock, tmp_path, max_connections_per_ip=2)
    first = Session(factory, ip="2001:db8:5:6::1")
    second = Session(factory, ip="2001:db8:5:6:8000::2")
    assert first.replies()[0].startswith(b"220") and second.replies()[0].startswith(b"220")
    third = Session(factory, ip="2001:db8:5:6:ffff:ffff:ffff:fffe")
    assert third.replies() == [b"421 4.7.0 Too many connections, try again later"]
    assert third.closed
    elsewhere = Session(factory, ip="2001:db8:5:7::1")
    assert elsewhere.replies()[0].startswith(b"220")
    first.send(b"QUIT\r\n")
    assert Session(factory, ip="2001:db8:5:6::3").replies()[0].startswith(b"220")


def test_too_many_errors_closes(inbox: MemoryInbox, clock: MemoryReactorClock, tmp_path: Path) -> None:
    """After the error limit the server answers 421 and closes the connection."""
    session = Session(make_factory(inbox, clock, tmp_path, max_errors_per_connection=3))
    session.replies()
    lines = session.send(b"BOGUS\r\nBOGUS\r\nBOGUS\r\nNOOP\r\n")
    assert codes(lines) == [b"502", b"502", b"502", b"421"]
    assert session.closed


def test_messages_per_connection_limit(inbox: MemoryInbox, clock: MemoryReactorClock, tmp_path: Path) -> None:
    """After the per-connection message limit, the next MAIL gets 421 and the connection closes."""
    session = Session(make_factory(inbox, clock, tmp_path, max_messages_per_connection=2))
    session.send(GREETING)
    for _ in range(2):
        assert session.send(transaction([b"<alice@example.com>"], b"x"))[-1].startswith(b"250 2.0.0")
    assert session.send(b"MAIL FROM:<a@b.org>\r\n")[0].startswith(b"421 4.7.0")
    assert session.closed


def test_mail_needs_helo_and_unknown_parameters_refused(factory: Any) -> None:
    """MAIL before EHLO gets 503, and an unknown MAIL or RCPT parameter gets 555."""
    session = Session(factory)
    session.replies()
    assert session.send(b"MAIL FROM:<a@b.org>\r\n") == [b"503 5.5.1 Send EHLO or HELO first"]
    session.send(GREETING)
    assert session.send(b"MAIL FROM:<a@b.org> SMTPUTF8\r\n") == [b"555 5.5.4 Unsupported MAIL parameter"]
    assert session.send(b"MAIL FROM:<>\r\n") == [b"250 2.1.0 Sender ok"]
    assert session.send(b"RCPT TO:<alice@example.com> NOTIFY=NEVER\r\n") == [b"555 5.5.4 Unsupported RCPT parameter"]
    assert session.send(b"AUTH PLAIN AAAA\r\n") == [b"502 5.5.1 Command not implemented"]


class SlowInbox(MemoryInbox):
    """A MemoryInbox whose lookups wait until the test fires them."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.pending: list[Deferred[None]] = []

    async def resolve(self, address: str, mail_from: str | None = None) -> Recipient | None:
        gate: Deferred[None] = Deferred()
        self.pending.append(gate)
        await gate
        return await super().resolve(address)


def test_pipelined_replies_stay_in_order(clock: MemoryReactorClock, tmp_path: Path) -> None:
    """With slow recipient lookups, pipelined commands wait and their replies come out in order."""
    slow = SlowInbox(users={"alice": "alice", "bob": "bob"})
    session = Session(make_factory(slow, clock, tmp_path))
    session.send(GREETING)
    lines = session.send(
        b"MAIL FROM:<a@b.org>\r\nRCPT TO:<alice@example.com>\r\nRCPT TO:<nobody@example.com>\r\n"
        b"RCPT TO:<bob@example.com>\r\nDATA\r\nhello\r\n.\r\n"
    )
    assert lines == [b"250 2.1.0 Sender ok"]
    for expected in (b"250 2.1.5", b"550 5.1.1", b"250 2.1.5"):
        slow.pending.pop(0).callback(None)
        replies = session.replies()
        assert replies[0].startswith(expected)
    assert codes(replies) == [b"250", b"354", b"250"]
    assert [r.user for r in slow.delivered[0].recipients] == ["alice", "bob"]
