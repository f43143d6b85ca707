"""The LMTP receiver (RFC 2033) on real sockets, TCP on 127.0.0.1 and a unix socket: LHLO, one reply per
recipient after DATA, the ESMTP receiver's limits and framing, and where the judgement's envelope comes from.

The server runs in the test's reactor over a ``MemoryInbox``; the client is a raw blocking socket in a thread.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from mailiverse.config import ConfigError
from mailiverse.contracts import Envelope, ISpooled, MessageRejected, Recipient
from mailiverse.smtp.limits import SmtpLimits
from mailiverse.smtp.lmtp import lmtp_server_factory, relay_client
from mailiverse.smtp.lmtp_endpoint import lmtp_endpoint
from mailiverse.testing import MemoryInbox

MESSAGE = b"From: bob@remote.test\r\nTo: alice@example.com\r\nSubject: lmtp\r\n\r\nHello over LMTP.\r\n"
POSTFIX_RECEIVED = (
    b"Received: from mail.remote.test (mail.remote.test [192.0.2.7])\r\n"
    b"\tby mx.example.com (Postfix) with ESMTPS id 4Xyz\r\n"
    b"\tfor <alice@example.com>; Sat, 21 Nov 2026 10:00:00 +0000 (UTC)\r\n"
)


class LmtpClient:
    """A raw LMTP client over a blocking socket: sends any bytes, reads replies as (code, last line)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(20)
        self.buffer = b""

    def reply(self) -> tuple[int, bytes]:
        lines = []
        while True:
            while b"\r\n" not in self.buffer:
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError(f"closed after {lines!r}")
                self.buffer += data
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            lines.append(line)
            if line[3:4] != b"-":
                return int(line[:3]), b"\n".join(lines)

    def command(self, data: bytes) -> tuple[int, bytes]:
        self.sock.sendall(data)
        return self.reply()

    def codes(self, count: int) -> list[int]:
        return [self.reply()[0] for _ in range(count)]

    def transaction(self, rcpts: list[str], body: bytes = MESSAGE) -> tuple[list[int], list[tuple[int, bytes]]]:
        """MAIL, the RCPTs, and (when one was accepted) DATA: the RCPT codes, then each reply after the dot."""
        assert self.command(b"MAIL FROM:<bob@remote.test>\r\n")[0] == 250
        codes = [self.command(f"RCPT TO:<{rcpt}>\r\n".encode())[0] for rcpt in rcpts]
        if 250 not in codes:
            return codes, []
        assert self.command(b"DATA\r\n")[0] == 354
        self.sock.sendall(body + b".\r\n")
        return codes, [self.reply() for _ in range(codes.count(250))]


@dataclass
class Listener:
    inbox: MemoryInbox
    port: Any
    connect: Callable[[], socket.socket]

    def session(self) -> LmtpClient:
        client = LmtpClient(self.connect())
        code, greeting = client.reply()
        assert code == 220 and b"LMTP" in greeting, greeting
        return client

    def greeted(self) -> LmtpClient:
        client = self.session()
        assert client.command(b"LHLO mx.example.com\r\n")[0] == 250
        return client


def _factory(inbox: MemoryInbox, tmp_path: Path, limits: SmtpLimits) -> Any:
    spool = tmp_path / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    return lmtp_server_factory(
        inbox, hostname="mail.example.com", domains=["example.com"], limits=limits, spool_dir=spool
    )


def tcp_listener(inbox: MemoryInbox, tmp_path: Path, limits: SmtpLimits | None = None) -> Listener:
    port = reactor.listenTCP(0, _factory(inbox, tmp_path, limits or SmtpLimits()), interface="127.0.0.1")  # type: ignore[attr-defined]
    number = port.getHost().port
    return Listener(inbox, port, lambda: socket.create_connection(("127.0.0.1", number)))


def _inbox(**kwargs: Any) -> MemoryInbox:
    return MemoryInbox(users={"alice": "alice", "bob": "bob", "carol": "carol"}, domains=["example.com"], **kwargs)


async def _run(listener: Listener, client_side: Callable[[], Any]) -> Any:
    try:
        return await deferToThread(client_side)
    finally:
        await listener.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_lhlo_greets_and_ehlo_helo_starttls_are_refused(tmp_path: Path) -> None:
    """LHLO lists SIZE, 8BITMIME, ENHANCEDSTATUSCODES and PIPELINING, not STARTTLS; EHLO and HELO get 500."""
    listener = tcp_listener(_inbox(), tmp_path)

    def client_side() -> tuple[Any, ...]:
        client = listener.session()
        ehlo = client.command(b"EHLO mx.example.com\r\n")
        helo = client.command(b"HELO mx.example.com\r\n")
        mail_first = client.command(b"MAIL FROM:<bob@remote.test>\r\n")
        lhlo = client.command(b"LHLO mx.example.com\r\n")
        starttls = client.command(b"STARTTLS\r\n")
        return ehlo, helo, mail_first, lhlo, starttls

    ehlo, helo, mail_first, lhlo, starttls = await _run(listener, client_side)
    assert ehlo[0] == helo[0] == 500 and b"LHLO" in ehlo[1]
    assert mail_first[0] == 503
    assert lhlo[0] == 250
    assert all(word in lhlo[1] for word in (b"SIZE 52428800", b"8BITMIME", b"ENHANCEDSTATUSCODES", b"PIPELINING"))
    assert b"STARTTLS" not in lhlo[1]
    assert starttls[0] == 502


@pytest_twisted.ensureDeferred
async def test_one_reply_per_recipient_in_rcpt_order(tmp_path: Path) -> None:
    """Three recipients, one unknown (550 5.1.1 at RCPT): after the dot one 250 for each accepted one, in order,
    and the message is stored once for both, with an LMTP trace field."""
    inbox = _inbox()
    listener = tcp_listener(inbox, tmp_path)

    def client_side() -> tuple[Any, ...]:
        client = listener.greeted()
        assert client.command(b"MAIL FROM:<bob@remote.test>\r\n")[0] == 250
        unknown = client.command(b"RCPT TO:<nobody@example.com>\r\n")
        alice = client.command(b"RCPT TO:<alice@example.com>\r\n")[0]
        bob = client.command(b"RCPT TO:<BOB@example.com>\r\n")[0]
        assert client.command(b"DATA\r\n")[0] == 354
        client.sock.sendall(MESSAGE + b".\r\n")
        return unknown, alice, bob, [client.reply() for _ in range(2)]

    unknown, alice, bob, replies = await _run(listener, client_side)
    assert unknown[0] == 550 and b"5.1.1" in unknown[1]
    assert (alice, bob) == (250, 250)
    assert [code for code, _ in replies] == [250, 250]
    assert all(b"2.0.0" in text for _, text in replies)
    [stored] = inbox.delivered
    assert [r.user for r in stored.recipients] == ["alice", "bob"]
    assert stored.data.endswith(MESSAGE)
    assert b"with LMTP id" in stored.data and b"(mailiverse)" in stored.data


@pytest_twisted.ensureDeferred
async def test_a_full_mailbox_at_data_fails_only_its_recipient(tmp_path: Path) -> None:
    """When bob's mailbox fills between RCPT and the dot, alice and carol still get the message (250 each)
    and bob gets 452 4.2.2, in RCPT order; a mailbox already full at RCPT gets 452 there."""
    inbox = _inbox()
    listener = tcp_listener(inbox, tmp_path)

    def client_side() -> tuple[Any, ...]:
        client = listener.greeted()
        assert client.command(b"MAIL FROM:<bob@remote.test>\r\n")[0] == 250
        for rcpt in (b"alice", b"bob", b"carol"):
            assert client.command(b"RCPT TO:<%s@example.com>\r\n" % rcpt)[0] == 250
        inbox.full.add("bob")  # the server waits for our next command: nothing else reads the set now
        assert client.command(b"DATA\r\n")[0] == 354
        client.sock.sendall(MESSAGE + b".\r\n")
        after_dot = [client.reply() for _ in range(3)]
        at_rcpt = client.transaction(["bob@example.com", "alice@example.com"])
        return after_dot, at_rcpt

    after_dot, at_rcpt = await _run(listener, client_side)
    assert [code for code, _ in after_dot] == [250, 452, 250]
    assert b"4.2.2" in after_dot[1][1]
    assert at_rcpt[0] == [452, 250] and [code for code, _ in at_rcpt[1]] == [250]
    assert [[r.user for r in m.recipients] for m in inbox.delivered] == [["alice"], ["carol"], ["alice"]]
    assert all(m.data.endswith(MESSAGE) for m in inbox.delivered)


class RejectingInbox(MemoryInbox):
    """Judges every message refused, as the pipeline does for a DMARC p=reject failure."""

    async def deliver(
        self,
        message: ISpooled,
        mail_from: str,
        recipients: list[Recipient],
        folder: str = "Mail/In",
        envelope: Envelope | None = None,
    ) -> str:
        raise MessageRejected(550, "5.7.1", "Message refused by the sender domain's DMARC policy")


@pytest_twisted.ensureDeferred
async def test_a_message_wide_refusal_or_local_error_is_given_to_each_recipient(tmp_path: Path) -> None:
    """A judgement refusing the message gives every recipient its 550 5.7.1; an inbox failure every one 451 4.3.0."""
    rejecting = tcp_listener(
        RejectingInbox(users={"alice": "alice", "bob": "bob"}, domains=["example.com"]), tmp_path / "a"
    )
    failing = tcp_listener(_inbox(fail=True), tmp_path / "b")

    def client_side(listener: Listener) -> Callable[[], Any]:
        return lambda: listener.greeted().transaction(["alice@example.com", "bob@example.com"])

    refused = await _run(rejecting, client_side(rejecting))
    failed = await _run(failing, client_side(failing))
    assert [(code, b"5.7.1" in text) for code, text in refused[1]] == [(550, True), (550, True)]
    assert [(code, b"4.3.0" in text) for code, text in failed[1]] == [(451, True), (451, True)]


@pytest_twisted.ensureDeferred
async def test_hostile_framing_gets_one_refusal_per_recipient(tmp_path: Path) -> None:
    """A bare LF in the data (554 5.6.0), a line over 1000 octets (552 5.5.2) and a message over the size limit
    (552 5.3.4) are each refused once per recipient; nothing is stored, and the session goes on."""
    inbox = _inbox()
    listener = tcp_listener(inbox, tmp_path, SmtpLimits(max_message_size=4096))

    def client_side() -> list[Any]:
        client = listener.greeted()
        rcpts = ["alice@example.com", "bob@example.com"]
        bodies = [
            b"Subject: smuggle\r\n\r\nfirst\n.\nMAIL FROM:<evil@remote.test>\r\n",
            b"Subject: long\r\n\r\n" + b"x" * 1200 + b"\r\n",
            b"Subject: big\r\n\r\n" + b"y" * 900 + b"\r\n" + (b"z" * 900 + b"\r\n") * 5,
        ]
        outcomes = [client.transaction(rcpts, body)[1] for body in bodies]
        outcomes.append(client.transaction(rcpts)[1])  # the session still works
        return outcomes

    smuggled, long_line, too_big, fine = await _run(listener, client_side)
    assert [(c, b"5.6.0" in t) for c, t in smuggled] == [(554, True)] * 2
    assert [(c, b"5.5.2" in t) for c, t in long_line] == [(552, True)] * 2
    assert [(c, b"5.3.4" in t) for c, t in too_big] == [(552, True)] * 2
    assert [c for c, _ in fine] == [250, 250]
    [stored] = inbox.delivered
    assert stored.data.endswith(MESSAGE) and b"evil" not in stored.data


@pytest_twisted.ensureDeferred
async def test_limits_and_ordering_hold_under_pipelining(tmp_path: Path) -> None:
    """Everything sent in one write (LHLO to QUIT, with DATA before any RCPT and one recipient too many) is answered
    in order: 503 for DATA without MAIL, 452 4.5.3 past max_recipients, one reply per accepted recipient, 221."""
    inbox = _inbox()
    listener = tcp_listener(inbox, tmp_path, SmtpLimits(max_recipients=2))

    def client_side() -> list[int]:
        client = listener.session()
        burst = (
            b"LHLO mx.example.com\r\nDATA\r\nMAIL FROM:<bob@remote.test>\r\n"
            b"RCPT TO:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\nRCPT TO:<carol@example.com>\r\n"
            b"DATA\r\n" + MESSAGE + b".\r\nMAIL FROM:<bob@remote.test>\r\nDATA\r\nQUIT\r\n"
        )
        client.sock.sendall(burst)
        return client.codes(11)

    codes = await _run(listener, client_side)
    assert codes == [250, 503, 250, 250, 250, 452, 354, 250, 250, 250, 554]
    [stored] = inbox.delivered
    assert [r.user for r in stored.recipients] == ["alice", "bob"]


@pytest_twisted.ensureDeferred
async def test_unix_socket_listener_and_the_envelope_from_the_mta_received_field(tmp_path: Path) -> None:
    """Over a unix socket (mode 0660) the judgement's envelope takes the client address and HELO from the MTA's
    topmost Received field and the MAIL FROM from LMTP; without such a field the client is unknown ("")."""
    inbox = _inbox()
    path = tmp_path / "lmtp.sock"
    factory = _factory(inbox, tmp_path, SmtpLimits())
    port = reactor.listenUNIX(str(path), factory, mode=0o660, wantPID=True)  # type: ignore[attr-defined]

    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(path))
        return sock

    listener = Listener(inbox, port, connect)

    def client_side() -> list[Any]:
        client = listener.greeted()
        forged_below = POSTFIX_RECEIVED + b"Received: from evil (evil [198.51.100.9])\r\n\tby x; date\r\n" + MESSAGE
        return [client.transaction(["alice@example.com"], forged_below)[1], client.transaction(["bob@example.com"])[1]]

    mode = stat.S_IMODE(os.stat(path).st_mode)
    outcomes = await _run(listener, client_side)
    assert mode == 0o660
    assert [[c for c, _ in replies] for replies in outcomes] == [[250], [250]]
    relayed, unknown = inbox.delivered
    assert relayed.envelope == Envelope(
        "192.0.2.7", "mail.remote.test", "bob@remote.test", "mail.example.com", ("example.com",)
    )
    assert unknown.envelope is not None and (unknown.envelope.client_ip, unknown.envelope.helo) == ("", "")
    assert b"from mx.example.com (local socket)" in relayed.data


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (POSTFIX_RECEIVED + b"Subject: x\r\n\r\n", ("192.0.2.7", "mail.remote.test")),
        (b"Return-Path: <b@r.test>\r\n" + POSTFIX_RECEIVED + b"\r\n", ("192.0.2.7", "mail.remote.test")),
        (b"Received: from odd.name (unknown [IPv6:2001:db8::25])\r\n\tby mx; d\r\n\r\n", ("2001:db8::25", "odd.name")),
        (
            b"Received: from [192.0.2.8] (helo=exim.remote.test)\r\n\tby mx with esmtp\r\n\r\n",
            ("192.0.2.8", "exim.remote.test"),
        ),
        (b"Received: from client.test (localhost [127.0.0.1])\r\n\tby mx (Postfix)\r\n\r\n", None),
        (
            b"Received: by mx (Postfix, from userid 1000)\r\n\tid 4X; date\r\nReceived: from a (a [192.0.2.1])\r\n\r\n",
            None,
        ),
        (b"Subject: no trace\r\n\r\nReceived: from a (a [192.0.2.1])\r\n", None),
        (POSTFIX_RECEIVED[:60], None),  # the field goes on past what was kept
        (b"Received: from a\r\n (a [192.0.2.1]) by mx\r\n", None),  # may continue past the kept head
        (b"Received: from a\r\n (a [192.0.2.1]) by mx\r\nX: y\r\n", ("192.0.2.1", "a")),
        (b"Received: from bad\x01name (x [999.1.1.1])\r\n\r\n", None),
    ],
)
def test_relay_client_reads_only_the_topmost_received_field(head: bytes, expected: tuple[str, str] | None) -> None:
    """The client address and HELO come from the topmost Received field only, never from a loopback address,
    a field with no address, one further down, one in the body, or one cut off."""
    assert relay_client(head) == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("unix:/run/mailiverse/lmtp.sock", "unix:/run/mailiverse/lmtp.sock:mode=660:lockfile=1"),
        ("unix:/run/m/lmtp.sock:mode=0600:lockfile=0", "unix:/run/m/lmtp.sock:mode=600:lockfile=0"),
        ("unix:/tmp/a\\:b.sock", "unix:/tmp/a\\:b.sock:mode=660:lockfile=1"),
        ("tcp:2424", "tcp:2424:interface=127.0.0.1:backlog=50"),
        ("tcp:2424:interface=127.0.0.2", "tcp:2424:interface=127.0.0.2:backlog=50"),
    ],
)
def test_lmtp_endpoints_accepted(given: str, expected: str) -> None:
    """--lmtp takes a unix socket (mode 0660 by default, a lock file) or TCP on a loopback address."""
    assert lmtp_endpoint(given) == expected


@pytest.mark.parametrize(
    "given",
    [
        "tcp:2424:interface=0.0.0.0",
        "tcp:2424:interface=192.0.2.1",
        "tcp6:2424",
        "ssl:2424",
        "tcp:0",
        "tcp:http",
        "unix:relative.sock",
        "unix:/run/lmtp.sock:mode=666",
        "unix:/run/lmtp.sock:mode=0644",
        "unix:/run/lmtp.sock:owner=postfix",
        "2424",
        "",
    ],
)
def test_lmtp_endpoints_refused(given: str) -> None:
    """Anything reachable from other hosts, or a socket other users could write to, stops start-up with ConfigError."""
    with pytest.raises(ConfigError, match="--lmtp"):
        lmtp_endpoint(given)


def test_twistd_options_check_lmtp_endpoints(tmp_path: Path) -> None:
    """``twistd mailiverse --lmtp`` values are checked while the options are read: a public interface is refused."""
    from mailiverse.tap import Options

    base = ["--data-dir", str(tmp_path), "--domain", "example.com"]
    options = Options()
    options.parseOptions([*base, "--lmtp", "unix:/run/x.sock", "--lmtp", "tcp:2424", "--lmtp", "tcp:2424"])
    assert options["config"].lmtp_endpoints == (
        "unix:/run/x.sock:mode=660:lockfile=1",
        "tcp:2424:interface=127.0.0.1:backlog=50",
    )
    with pytest.raises(Exception, match="loopback"):
        Options().parseOptions([*base, "--lmtp", "tcp:2424:interface=0.0.0.0"])
