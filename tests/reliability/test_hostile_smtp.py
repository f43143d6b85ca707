"""Hostile SMTP against the real twistd: every reply is a proper code, the service stays up, memory stays bounded."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization

from tests.support.appliance_state import add_users, count_objects_of, read_store, rss_kib
from tests.support.harness import DOMAIN, Appliance, tls_context
from tests.support.independent import open_mail
from tests.support.smtp import SmtpSession, served

pytestmark = pytest.mark.integration

SMUGGLING_SEQUENCES = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\n"]
#: growth of the server's resident memory allowed across one hostile test
RSS_GROWTH_LIMIT_KIB = 256 * 1024
#: connections each of the 50 flood threads opens in turn
FLOOD_CONNECTIONS = 10 if os.environ.get("LONG") else 4
ALICE = f"alice@{DOMAIN}"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    """One appliance for the whole module, with a v2 user alice and a user victim."""
    appliance = Appliance(tmp_path_factory.mktemp("hostile") / "app")
    appliance.start()
    appliance.keys = {"alice": appliance.add_user("alice", "v2"), "victim": appliance.add_user("victim", "v1")}  # type: ignore[attr-defined]
    try:
        yield appliance
    finally:
        appliance.stop()


@pytest.fixture
def guard(app: Appliance) -> Iterator[dict[str, int]]:
    """Around each test: the process is alive, memory growth is bounded, and others are still served."""
    assert app.process is not None
    before = rss_kib(app.process.pid)
    figures = {"rss_before_kib": before}
    yield figures
    assert app.process.poll() is None, f"twistd died:\n{app.log()[-3000:]}"
    after = rss_kib(app.process.pid)
    figures["rss_after_kib"] = after
    assert after - before < RSS_GROWTH_LIMIT_KIB, f"memory grew from {before} to {after} KiB"
    assert served(app)
    print(f"rss {before} -> {after} KiB")


def _twins(app: Appliance, user: str = "alice") -> dict[str, dict]:
    key = app.keys[user]  # type: ignore[attr-defined]
    return {p: json.loads(open_mail(key, b)) for p, b in read_store(app, user, "Mail/In_Json/").items()}


def _deliver(app: Appliance, data: bytes, rcpts: list[str] | None = None) -> tuple[int, bytes]:
    s = SmtpSession(app.smtp_port, timeout=120)
    try:
        s.hello()
        s.envelope(rcpts or [ALICE])
        return s.send_data(data)
    finally:
        s.close()


@pytest.mark.parametrize("sequence", SMUGGLING_SEQUENCES, ids=repr)
def test_smuggling_end_of_data_never_splits_a_message(app: Appliance, guard: dict, sequence: bytes) -> None:
    """Each of the five fake end-of-data sequences gets 554 and neither half is stored; the session stays usable."""
    before = set(read_store(app, "victim"))
    s = SmtpSession(app.smtp_port)
    try:
        s.starttls(app)
        s.envelope([ALICE])
        smuggled = (
            b"Subject: first\r\n\r\nbody"
            + sequence
            + f"MAIL FROM:<admin@{DOMAIN}>\r\nRCPT TO:<victim@{DOMAIN}>\r\nDATA\r\n".encode()
            + b"Subject: smuggled\r\n\r\nevil\r\n.\r\n"
        )
        code, text = s.command(smuggled)
        assert code == 554 and b"5.6.0" in text
        assert s.command(b"RSET\r\n")[0] == 250
        assert s.command(b"QUIT\r\n")[0] == 221
    finally:
        s.close()
    assert set(read_store(app, "victim")) == before
    assert not any("smuggled" in json.dumps(t) for t in _twins(app).values())


def test_starttls_with_pipelined_commands(app: Appliance, guard: dict) -> None:
    """MAIL and RCPT pipelined behind STARTTLS in clear text are discarded, not run inside TLS."""
    s = SmtpSession(app.smtp_port)
    try:
        s.hello()
        code, _ = s.command(f"STARTTLS\r\nMAIL FROM:<evil@remote.test>\r\nRCPT TO:<{ALICE}>\r\nDATA\r\n".encode())
        assert code == 220
        s.sock = tls_context(app).wrap_socket(s.sock, server_hostname=f"mail.{DOMAIN}")
        assert s.command(f"RCPT TO:<{ALICE}>\r\n".encode())[0] == 503
        assert s.command(b"MAIL FROM:<bob@remote.test>\r\n")[0] == 503  # EHLO again first
        assert s.command(b"EHLO client.test\r\n")[0] == 250
        assert s.command(b"MAIL FROM:<bob@remote.test>\r\n")[0] == 250
    finally:
        s.close()


def test_five_megabyte_line_in_command_and_data(app: Appliance, guard: dict) -> None:
    """A 5 MB line is refused with 500 as a command and 552 in DATA, without buffering it."""
    line = b"A" * (5 * 1024 * 1024)
    s = SmtpSession(app.smtp_port, timeout=120)
    try:
        s.hello()
        code, text = s.command(b"EHLO " + line + b"\r\n")
        assert code == 500 and b"5.5.2" in text
        s.envelope([ALICE])
        code, text = s.command(b"Subject: long\r\n\r\n" + line + b"\r\n.\r\n")
        assert code == 552 and b"5.5.2" in text
        assert s.command(b"NOOP\r\n")[0] == 250
    finally:
        s.close()


def _nested(depth: int) -> bytes:
    head = b"".join(
        b'--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n' % (i, i + 1) for i in range(depth)
    )
    tail = b"".join(b"\r\n--b%d--\r\n" % i for i in reversed(range(depth + 1)))
    return (
        b'Subject: deep\r\nContent-Type: multipart/mixed; boundary="b0"\r\n\r\n'
        + head
        + b"--b%d\r\nContent-Type: text/plain\r\n\r\ninnermost\r\n" % depth
        + tail
    )


def test_ten_thousand_deep_multipart(app: Appliance, guard: dict) -> None:
    """10,000 nested multiparts are accepted, stored encrypted, and the twin reports the depth limit in time."""
    before = set(_twins(app))
    started = time.monotonic()
    code, _ = _deliver(app, _nested(10_000))
    assert code == 250
    assert time.monotonic() - started < 60
    new = [t for p, t in _twins(app).items() if p not in before]
    assert len(new) == 1
    assert "depth" in json.dumps(new[0]) or new[0]["content"] is not None


def test_hundred_thousand_parts(app: Appliance, guard: dict) -> None:
    """100,000 sibling parts are accepted and converted within the part limit, never crashing the worker."""
    before = set(_twins(app))
    parts = b"".join(b"--p\r\nContent-Type: text/plain\r\n\r\n%d\r\n" % i for i in range(100_000))
    data = b'Subject: many\r\nContent-Type: multipart/mixed; boundary="p"\r\n\r\n' + parts + b"--p--\r\n"
    code, _ = _deliver(app, data)
    assert code == 250
    new = [t for p, t in _twins(app).items() if p not in before]
    assert len(new) == 1 and "part count limit" in json.dumps(new[0])


def test_ten_thousand_headers(app: Appliance, guard: dict) -> None:
    """10,000 header lines are accepted; the twin is either complete or the header-count limit document."""
    before = set(_twins(app))
    data = b"".join(b"X-H%d: v\r\n" % i for i in range(10_000)) + b"Subject: headers\r\n\r\nbody\r\n"
    code, _ = _deliver(app, data)
    assert code == 250
    new = [t for p, t in _twins(app).items() if p not in before]
    assert len(new) == 1 and "header" in json.dumps(new[0]).lower()


@pytest.mark.parametrize("bad", [b"\r", b"\n", b"\0"], ids=["CR", "LF", "NUL"])
def test_headers_with_cr_lf_nul(app: Appliance, guard: dict, bad: bytes) -> None:
    """Bare CR or LF inside a header is refused with 554; NUL is stored as data and the twin stays valid JSON."""
    before = set(_twins(app))
    code, text = _deliver(app, b"Subject: a" + bad + b"Bcc: injected@remote.test\r\nX-Y: z\r\n\r\nbody\r\n")
    new = [t for p, t in _twins(app).items() if p not in before]
    if bad in (b"\r", b"\n"):
        assert code == 554 and b"5.6.0" in text
        assert new == []
    else:
        assert code == 250
        assert len(new) == 1 and "Bcc" not in [h[0] for h in new[0]["content"].get("headers", [])]


def test_invalid_utf8_and_eight_bit_without_8bitmime(app: Appliance, guard: dict) -> None:
    """8-bit and invalid UTF-8 bytes without BODY=8BITMIME are accepted as data; the twin is valid JSON."""
    before = set(_twins(app))
    s = SmtpSession(app.smtp_port)
    try:
        assert s.reply()[0] == 220
        assert s.command(b"HELO client.test\r\n")[0] == 250  # plain SMTP: no 8BITMIME at all
        assert s.command(b"MAIL FROM:<bob@remote.test>\r\n")[0] == 250
        assert s.command(f"RCPT TO:<{ALICE}>\r\n".encode())[0] == 250
        assert s.command(b"DATA\r\n")[0] == 354
        code, _ = s.send_data(b"Subject: \xff\xfe\xc3\x28 \xe2\x82\r\n\r\nbody \x80\x81\xc0\xaf \xed\xa0\x80\r\n")
        assert code == 250
    finally:
        s.close()
    new = [t for p, t in _twins(app).items() if p not in before]
    assert len(new) == 1
    json.dumps(new[0], ensure_ascii=False).encode("utf-8")  # strict: no lone surrogates


def test_thousand_recipients(app: Appliance, guard: dict) -> None:
    """Of 1,000 RCPTs over 150 users the first 100 are accepted, the rest get 452 4.5.3; each user gets one copy."""
    key = app.keys["alice"]  # type: ignore[attr-defined]
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    names = [f"many{i}" for i in range(150)]
    add_users(app, names, der)
    s = SmtpSession(app.smtp_port, timeout=60)
    try:
        s.hello()
        assert s.command(b"MAIL FROM:<bob@remote.test>\r\n")[0] == 250
        s.sock.sendall(b"".join(f"RCPT TO:<{names[i % 150]}@{DOMAIN}>\r\n".encode() for i in range(1000)))
        replies = [s.reply() for _ in range(1000)]
        assert [c for c, _ in replies[:100]] == [250] * 100
        assert {c for c, _ in replies[100:]} == {452} and b"4.5.3" in replies[-1][1]
        assert s.command(b"DATA\r\n")[0] == 354
        assert s.send_data(b"Subject: many rcpts\r\n\r\nbody\r\n")[0] == 250
    finally:
        s.close()
    counts = count_objects_of(app, names)
    assert [counts[n] for n in names[:100]] == [1] * 100
    assert [counts[n] for n in names[100:]] == [0] * 50


def test_thousand_copies_of_one_recipient(app: Appliance, guard: dict) -> None:
    """1,000 pipelined RCPTs naming one user are all accepted and the message is stored for that user once."""
    before = set(_twins(app))
    s = SmtpSession(app.smtp_port, timeout=60)
    try:
        s.hello()
        assert s.command(b"MAIL FROM:<bob@remote.test>\r\n")[0] == 250
        s.sock.sendall(f"RCPT TO:<{ALICE}>\r\n".encode() * 1000)
        assert {s.reply()[0] for _ in range(1000)} == {250}
        assert s.command(b"DATA\r\n")[0] == 354
        assert s.send_data(b"Subject: one rcpt many times\r\n\r\nbody\r\n")[0] == 250
    finally:
        s.close()
    assert len([p for p in _twins(app) if p not in before]) == 1


def _idle_connections(app: Appliance, count: int, interval: float, duration: float) -> dict[str, int]:
    """Open ``count`` connections from 127.0.0.1 that trickle a byte every ``interval`` seconds."""
    socks: list[socket.socket] = []
    outcome = {"greeted": 0, "refused_421": 0, "closed": 0}
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", app.smtp_port), timeout=10)
            socks.append(s)
        for s in socks:
            try:
                first = s.recv(512)
            except OSError:
                first = b""
            assert first == b"" or first[:3] in (b"220", b"421"), first
            if first.startswith(b"421"):
                outcome["refused_421"] += 1
            elif first.startswith(b"220"):
                outcome["greeted"] += 1
            else:
                outcome["closed"] += 1
        deadline = time.monotonic() + duration
        rounds = 0
        while time.monotonic() < deadline and rounds < 1000:
            rounds += 1
            for s in socks:
                try:
                    s.send(b"N")
                except OSError:
                    pass
            assert served(app), "a fresh client was not served while idle connections were held"
            time.sleep(interval)
        return outcome
    finally:
        for s in socks:
            s.close()


def test_thousand_idle_connections_trickling(app: Appliance, guard: dict) -> None:
    """1,000 connections from one address trickling bytes: at most 10 admitted, the rest 421, others served."""
    outcome = _idle_connections(app, 1000, interval=1.0, duration=3.0)
    print(outcome)
    assert outcome["greeted"] <= 10
    assert outcome["refused_421"] + outcome["closed"] >= 990


@pytest.mark.slow
def test_thousand_idle_connections_a_byte_a_minute(app: Appliance, guard: dict) -> None:
    """The long run: 1,000 connections send a byte a minute for three minutes; others are served throughout."""
    outcome = _idle_connections(app, 1000, interval=60.0, duration=180.0)
    print(outcome)
    assert outcome["greeted"] <= 10


def test_flood_from_one_address(app: Appliance, guard: dict) -> None:
    """50 parallel senders from one address (4 or 10 connections each): excess connections get 421,
    replies stay proper, others are served."""
    codes: list[int] = []
    lock = threading.Lock()

    def flood(n: int) -> None:
        for _ in range(FLOOD_CONNECTIONS):
            try:
                s = SmtpSession(app.smtp_port, timeout=30)
            except OSError:
                continue
            try:
                code, _ = s.reply()
                with lock:
                    codes.append(code)
                if code != 220:
                    continue
                assert s.command(b"EHLO flood.test\r\n")[0] == 250
                for _ in range(3):
                    s.envelope([ALICE])
                    code, _ = s.send_data(b"Subject: flood %d\r\n\r\nflood\r\n" % n)
                    with lock:
                        codes.append(code)
            except (OSError, ConnectionError):
                pass
            finally:
                s.close()

    threads = [threading.Thread(target=flood, args=(i,), daemon=True) for i in range(50)]
    for t in threads:
        t.start()
    assert served(app)
    for t in threads:
        t.join(300)
        assert not t.is_alive()
    assert 421 in codes and 250 in codes
    assert set(codes) <= {220, 250, 421, 451}
    print({c: codes.count(c) for c in set(codes)})


def test_thousand_messages_on_one_connection(app: Appliance, guard: dict) -> None:
    """A client that keeps sending on one connection is closed with 421 after the per-connection message limit."""
    s = SmtpSession(app.smtp_port, timeout=60)
    accepted = 0
    try:
        s.hello()
        for _ in range(1000):
            code, _ = s.command(b"MAIL FROM:<bob@remote.test>\r\n")
            if code == 421:
                break
            assert code == 250
            assert s.command(f"RCPT TO:<{ALICE}>\r\n".encode())[0] == 250
            assert s.command(b"DATA\r\n")[0] == 354
            assert s.send_data(b"Subject: one conn\r\n\r\nx\r\n")[0] == 250
            accepted += 1
    finally:
        s.close()
    assert accepted == 100
