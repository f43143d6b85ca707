"""The bridge's SMTP submission server on real sockets, against the real web app over HTTPS (``served``), driven by
Python's ``smtplib`` and a raw socket.

AUTH is needed before MAIL, a wrong local password is refused after a delay and a run of them locks AUTH for a
while; STARTTLS and implicit TLS present the generated certificate, which the client verifies; a message handed
over arrives at another user (byte for byte, sealed on the device) and in the sender's Sent folder; a sender or
From that is not the user's, a recipient that does not exist and a message too large are each refused with the
right code; bare LF, over-long lines and garbage get clear replies and the session goes on.
"""

from __future__ import annotations

import base64
import secrets
import smtplib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import reactor

from mailiverse.client import Client
from mailiverse.client.bridge.localauth import LocalLogin, Throttle, new_local_password
from mailiverse.client.bridge.service import serialized
from mailiverse.client.bridge.smtp import MAX_COMMAND_LINE, SubmissionFactory, implicit_tls_factory
from mailiverse.client.bridge.submit import Submitter
from mailiverse.client.bridge.tls import BridgeCertificate, ensure_certificate, server_context
from mailiverse.client.transport import HttpsTransport
from mailiverse.store import accounts as repo
from tests.support.client import PASSWORD, Served, in_thread

ALICE, BOB = "alice@example.org", "bob@example.org"
FAILURE_DELAY, LOCKOUT = 0.3, 1.5


@dataclass
class Bridge:
    """The SMTP ports (STARTTLS and implicit TLS) of alice's bridge, and bob to read what arrives."""

    served: Served
    alice: Client
    bob: Client
    password: str
    certificate: BridgeCertificate
    starttls_port: int
    implicit_port: int
    small_port: int

    def tls(self) -> ssl.SSLContext:
        """A client context that trusts only the bridge's certificate, and checks its name."""
        return ssl.create_default_context(cafile=str(self.certificate.cert_path))

    def session(self, *, implicit: bool = False, host: str = "127.0.0.1", port: int | None = None) -> smtplib.SMTP:
        if implicit:
            return smtplib.SMTP_SSL(host, self.implicit_port, context=self.tls(), timeout=30)
        return smtplib.SMTP(host, port or self.starttls_port, timeout=30)

    def logged_in(self, *, port: int | None = None) -> smtplib.SMTP:
        smtp = self.session(port=port)
        smtp.starttls(context=self.tls())
        smtp.login("alice", self.password)
        return smtp


async def _account(served: Served, name: str) -> Client:
    client = Client(serialized(HttpsTransport(served.url, ca_file=str(served.ca_file))), name)
    invite = None
    if not await served.api.accounts.signup_open():
        invite, _ = await served.api.database.transact(repo.create_invite_txn)
    await in_thread(client.signup, PASSWORD, invite)
    await in_thread(client.login, PASSWORD)
    return client


@pytest_twisted.async_yield_fixture
async def bridge(served: Served, tmp_path: Path) -> AsyncIterator[Bridge]:
    alice = await _account(served, "alice")
    bob = await _account(served, "bob")
    certificate = ensure_certificate(tmp_path / "bridge-certs")
    tls = server_context(certificate)
    password = new_local_password()
    throttle = Throttle(reactor, failure_delay=FAILURE_DELAY, max_failures=4, lockout=LOCKOUT)
    login = LocalLogin("alice", password, throttle, addresses=alice.addresses)
    submitter = Submitter(alice)

    def factory(**options: Any) -> SubmissionFactory:
        return SubmissionFactory(submitter, login, tls=tls, reactor=reactor, **options)

    tcp: Any = reactor
    ports = [
        tcp.listenTCP(0, factory(implicit_tls=False), interface="127.0.0.1"),
        tcp.listenTCP(0, implicit_tls_factory(factory(implicit_tls=True), tls), interface="127.0.0.1"),
        tcp.listenTCP(0, factory(implicit_tls=False, max_message_size=64 * 1024), interface="127.0.0.1"),
    ]
    try:
        yield Bridge(served, alice, bob, password, certificate, *(int(p.getHost().port) for p in ports))
    finally:
        for port in ports:
            await port.stopListening()
        alice.close()
        bob.close()


def message(subject: str, *, sender: str = ALICE, to: str = BOB, body: str = "Hello from the bridge.") -> bytes:
    return (
        f"From: Alice <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@example.org>\r\nDate: Sun, 07 Dec 2025 10:00:00 +0000\r\n"
        f"\r\n{body}\r\n"
    ).encode()


def answer(smtp: smtplib.SMTP, command: str) -> tuple[int, str]:
    code, text = smtp.docmd(command)
    return code, text.decode()


def text_of(reply: bytes | str) -> str:
    return reply.decode() if isinstance(reply, bytes) else reply


def plain(password: str) -> str:
    """An AUTH PLAIN response for alice."""
    return base64.b64encode(f"\0alice\0{password}".encode()).decode()


async def run(function: Callable[[], Any]) -> Any:
    return await in_thread(function)


async def _arrived(client: Client, folder: str, subject: str) -> bytes:
    for _ in range(50):
        for info in await in_thread(client.list_messages, folder):
            if info.subject == subject:
                raw: bytes = await in_thread(client.read_message, info.id)
                return raw
        await in_thread(time.sleep, 0.1)
    raise AssertionError(f"{subject!r} is not in {folder}")


@pytest_twisted.ensureDeferred
async def test_mail_needs_auth_and_auth_is_offered(bridge: Bridge) -> None:
    """EHLO offers SIZE, STARTTLS and AUTH PLAIN LOGIN; MAIL before AUTH is 530 5.7.0."""

    def talk() -> tuple[Any, ...]:
        with bridge.session() as smtp:
            smtp.ehlo("client.test")
            features = dict(smtp.esmtp_features)
            return features, answer(smtp, f"MAIL FROM:<{ALICE}>")

    features, refused = await run(talk)
    assert features["size"] == str(50 * 1024 * 1024)
    assert "starttls" in features and features["auth"].split() == ["PLAIN", "LOGIN"]
    assert refused[0] == 530 and refused[1].startswith("5.7.0")


@pytest_twisted.ensureDeferred
async def test_wrong_password_is_refused_slowly_then_locked(bridge: Bridge) -> None:
    """A wrong password is 535 5.7.8 after the delay; a run of them locks AUTH (454 4.7.0, even for the right
    password) until the lockout passes; then the right one works again."""

    def talk() -> dict[str, Any]:
        seen: dict[str, Any] = {"refusals": [], "delays": []}
        for _ in range(2):
            with bridge.session() as smtp:
                smtp.ehlo("client.test")
                for _ in range(2):
                    started = time.monotonic()
                    seen["refusals"].append(answer(smtp, "AUTH PLAIN " + plain("not " + bridge.password)))
                    seen["delays"].append(time.monotonic() - started)
        with bridge.session() as smtp:
            smtp.ehlo("client.test")
            seen["locked"] = answer(smtp, "AUTH PLAIN " + plain(bridge.password))
        time.sleep(LOCKOUT + 0.2)
        with bridge.session() as smtp:
            smtp.ehlo("client.test")
            seen["after"] = smtp.login("alice", bridge.password)
        return seen

    seen = await run(talk)
    assert len(seen["refusals"]) == 4
    assert all(code == 535 and text.startswith("5.7.8") for code, text in seen["refusals"])
    assert min(seen["delays"]) >= FAILURE_DELAY
    assert seen["locked"][0] == 454 and seen["locked"][1].startswith("4.7.0"), seen["locked"]
    assert seen["after"][0] == 235


@pytest_twisted.ensureDeferred
async def test_three_failures_close_the_session(bridge: Bridge) -> None:
    """AUTH LOGIN with a wrong password three times in one session: 535 each, then 421 and the connection closes."""

    def talk() -> list[tuple[int, str]]:
        replies = []
        with bridge.session() as smtp:
            smtp.ehlo("client.test")
            for _ in range(3):
                code, text = smtp.docmd("AUTH LOGIN " + base64.b64encode(b"alice").decode())
                assert code == 334, text
                replies.append(answer(smtp, base64.b64encode(b"a wrong guess").decode()))
            replies.append(smtp.getreply())  # type: ignore[arg-type]
        return replies

    replies = await run(talk)
    assert [code for code, _ in replies[:3]] == [535, 535, 535]
    assert replies[3][0] in (421, -1)


@pytest_twisted.ensureDeferred
async def test_starttls_and_implicit_tls_verify_the_generated_certificate(bridge: Bridge) -> None:
    """Both TLS ports present the certificate made in --cert-dir (verified for 127.0.0.1 and localhost, TLS 1.2+),
    the key is 0600 and the certificate 0644; a second start reuses the pair."""

    def talk() -> tuple[Any, ...]:
        with bridge.session() as smtp:
            smtp.starttls(context=bridge.tls())
            starttls_version = smtp.sock.version()  # type: ignore[union-attr]
            ehlo = smtp.ehlo("client.test")
            login = smtp.login("alice", bridge.password)
        with bridge.session(implicit=True, host="localhost") as smtp:
            implicit_version = smtp.sock.version()  # type: ignore[union-attr]
            implicit_login = smtp.login(ALICE, bridge.password)
        return starttls_version, ehlo, login, implicit_version, implicit_login

    starttls_version, ehlo, login, implicit_version, implicit_login = await run(talk)
    assert starttls_version in ("TLSv1.2", "TLSv1.3") and implicit_version in ("TLSv1.2", "TLSv1.3")
    assert b"STARTTLS" not in ehlo[1]
    assert login[0] == 235 and implicit_login[0] == 235
    assert bridge.certificate.key_path.stat().st_mode & 0o777 == 0o600
    assert bridge.certificate.cert_path.stat().st_mode & 0o777 == 0o644
    assert ensure_certificate(bridge.certificate.cert_path.parent) == bridge.certificate


@pytest_twisted.ensureDeferred
async def test_a_message_arrives_byte_for_byte_and_in_sent(bridge: Bridge) -> None:
    """A message submitted with AUTH over STARTTLS is 250 only once the appliance took it (sealed on the device),
    and bob and alice's Sent read the same bytes (without its Bcc header)."""
    sent = message("Through the bridge")
    with_bcc = sent.replace(b"Subject:", b"Bcc: hidden@example.org\r\nSubject:", 1)

    def talk() -> tuple[int, str]:
        with bridge.logged_in() as smtp:
            assert answer(smtp, f"MAIL FROM:<{ALICE}> SIZE={len(with_bcc)}")[0] == 250
            assert answer(smtp, f"RCPT TO:<{BOB}>")[0] == 250
            assert answer(smtp, "DATA")[0] == 354
            smtp.send(with_bcc + b".\r\n")
            code, text = smtp.getreply()
            return code, text.decode()

    code, text = await run(talk)
    assert code == 250 and text.startswith("2.0.0") and "end to end" in text
    assert await _arrived(bridge.bob, "Inbox", "Through the bridge") == sent
    assert await _arrived(bridge.alice, "Sent", "Through the bridge") == sent


@pytest_twisted.ensureDeferred
async def test_senders_that_are_not_the_users_are_refused(bridge: Bridge) -> None:
    """MAIL FROM another user's address is 550 5.7.1; a From header naming someone else is 550 5.7.1 at the end
    of DATA; nothing reaches bob."""

    def talk() -> tuple[tuple[int, str], Any]:
        with bridge.logged_in() as smtp:
            wrong_sender = answer(smtp, f"MAIL FROM:<{BOB}>")
            try:
                smtp.sendmail(ALICE, [BOB], message("Forged From", sender=BOB))
            except smtplib.SMTPDataError as error:
                return wrong_sender, (error.smtp_code, text_of(error.smtp_error))
        raise AssertionError("the forged From was accepted")

    wrong_sender, wrong_from = await run(talk)
    assert wrong_sender[0] == 550 and wrong_sender[1].startswith("5.7.1")
    assert wrong_from[0] == 550 and wrong_from[1].startswith("5.7.1")
    assert await in_thread(bridge.bob.list_messages, "Inbox") == []


@pytest_twisted.ensureDeferred
async def test_unknown_recipient_and_bad_syntax(bridge: Bridge) -> None:
    """RCPT checks syntax only (553 5.1.3 for a bad one); a local address with no account is refused by the
    appliance at the end of DATA: 550 5.1.1."""

    def talk() -> tuple[tuple[int, str], Any]:
        with bridge.logged_in() as smtp:
            smtp.docmd(f"MAIL FROM:<{ALICE}>")
            bad = answer(smtp, "RCPT TO:<not an address>")
            smtp.rset()
            try:
                smtp.sendmail(ALICE, ["nobody@example.org"], message("Nobody", to="nobody@example.org"))
            except smtplib.SMTPDataError as error:
                return bad, (error.smtp_code, text_of(error.smtp_error))
        raise AssertionError("mail to nobody was accepted")

    bad, unknown = await run(talk)
    assert bad[0] == 553 and bad[1].startswith("5.1.3")
    assert unknown[0] == 550 and unknown[1].startswith("5.1.1"), unknown


@pytest_twisted.ensureDeferred
async def test_oversize_is_refused(bridge: Bridge) -> None:
    """SIZE over the limit is 552 at MAIL; data over the bridge's limit is 552 5.3.4 at the end of DATA; a message
    within the bridge's limit but over the appliance's is 552 too (the appliance said 413)."""

    def talk() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        with bridge.logged_in() as smtp:
            seen["size"] = answer(smtp, f"MAIL FROM:<{ALICE}> SIZE={60 * 1024 * 1024}")
        with bridge.logged_in(port=bridge.small_port) as smtp:
            # No SIZE parameter: the bridge finds out while reading the data.
            assert answer(smtp, f"MAIL FROM:<{ALICE}>")[0] == 250
            assert answer(smtp, f"RCPT TO:<{BOB}>")[0] == 250
            assert answer(smtp, "DATA")[0] == 354
            smtp.send(message("Too big here", body="\r\n".join(["x" * 900] * 80)) + b".\r\n")
            code, text = smtp.getreply()
            seen["bridge"] = (code, text.decode())
        with bridge.logged_in() as smtp:
            # About 2 MB that hardly compresses: over the test appliance's 1 MiB even when sealed.
            big = base64.encodebytes(secrets.token_bytes(1_500_000)).decode().replace("\n", "\r\n")
            try:
                smtp.sendmail(ALICE, [BOB], message("Too big there", body=big))
            except smtplib.SMTPDataError as error:
                seen["appliance"] = (error.smtp_code, text_of(error.smtp_error))
        return seen

    seen = await run(talk)
    assert seen["size"][0] == 552 and seen["size"][1].startswith("5.3.4")
    assert seen["bridge"][0] == 552 and seen["bridge"][1].startswith("5.3.4"), seen
    assert seen["appliance"][0] == 552 and seen["appliance"][1].startswith("5.3.4"), seen
    assert await in_thread(bridge.bob.list_messages, "Inbox") == []


def _raw_exchange(port: int, lines: list[bytes]) -> list[bytes]:
    """Send each chunk on a plain socket and read one reply line after it."""
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        reader = sock.makefile("rb")
        replies.append(reader.readline())
        for chunk in lines:
            sock.sendall(chunk)
            reply = reader.readline()
            while reply[3:4] == b"-":
                reply = reader.readline()
            replies.append(reply)
    return replies


@pytest_twisted.ensureDeferred
async def test_hostile_input_gets_clear_replies(bridge: Bridge) -> None:
    """A bare LF command, a line far over the limit (sent without a line end, then with one), NUL and high bytes,
    and a message with a bare LF each get a clear 5xx reply, and the session goes on to NOOP."""
    login = base64.b64encode(f"\0alice\0{bridge.password}".encode())
    chunks = [
        b"EHLO client.test\n",
        b"A" * (MAX_COMMAND_LINE + 4096),
        b"B" * 100 + b"\r\nNOOP\r\n",
        b"\x00\xff\xfe garbage\r\n",
        b"EHLO client.test\r\n",
        b"AUTH PLAIN " + login + b"\r\n",
        f"MAIL FROM:<{ALICE}>\r\n".encode(),
        f"RCPT TO:<{BOB}>\r\n".encode(),
        b"DATA\r\n",
        message("Bare LF").replace(b"Hello", b"Hello\nthere") + b"\n.\n.\r\n",
        b"NOOP\r\n",
    ]
    replies = await in_thread(_raw_exchange, bridge.starttls_port, chunks)
    assert replies[0].startswith(b"220 ")
    assert replies[1].startswith(b"500 5.5.2") and b"CRLF" in replies[1]
    assert replies[2].startswith(b"500 5.5.2 Line too long")
    assert replies[3].startswith(b"250 2.0.0")  # the long line's tail was skipped, not taken as a command
    assert replies[4].startswith(b"500 5.5.1 Command unrecognized")
    assert [r[:3] for r in replies[5:10]] == [b"250", b"235", b"250", b"250", b"354"]
    assert replies[10].startswith(b"554 5.6.0") and b"bare CR or LF" in replies[10]
    assert replies[11].startswith(b"250 2.0.0")
    assert await in_thread(bridge.bob.list_messages, "Inbox") == []
