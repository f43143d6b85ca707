"""The outbound queue end to end against a real STARTTLS+AUTH SMTP server on 127.0.0.1, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import dkim
import pytest
import pytest_twisted
from sqlalchemy import select
from twisted.internet import defer, reactor

from mailiverse.dns import Resolver
from mailiverse.outbound.errors import SubmissionRejected
from mailiverse.outbound.transport import DirectTransport, SmarthostTransport
from mailiverse.store import Database
from mailiverse.store import outbound as repo
from mailiverse.store.schema import outbound_messages, outbound_recipients
from tests.support.dnsserver import NEVER_ANSWERS, SERVFAIL, DnsServer
from tests.support.outbound import CANARY, clock, dns_for, inbox, make_outbound, message, parse
from tests.support.smarthost import SmtpTestServer, start_server

USER, PASSWORD = "relay-user", "relay-Pa55word"


def smarthost(server: SmtpTestServer, password: str = PASSWORD) -> SmarthostTransport:
    return SmarthostTransport(
        reactor=reactor,
        host="localhost",
        port=server.number,
        helo="mx.example.com",
        username=USER,
        password=password,
        ca_file=server.ca_cert,
        timeout_s=10,
    )


@pytest.fixture
def server(tmp_path: Path) -> SmtpTestServer:
    """A smarthost requiring STARTTLS and AUTH (user relay-user)."""
    return start_server(tmp_path / "pki", users={USER: PASSWORD})


async def _stop(server: SmtpTestServer) -> None:
    await server.stop()


def _rows(database: Database) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    def read(conn):  # type: ignore[no-untyped-def]
        messages = [dict(r) for r in conn.execute(select(outbound_messages)).mappings()]
        recipients = [dict(r) for r in conn.execute(select(outbound_recipients)).mappings()]
        return messages, recipients

    with database.blocking_allowed():
        return database.run_sync(read)


@pytest_twisted.ensureDeferred
async def test_smarthost_delivery_is_tls_authenticated_and_dkim_signed(
    database: Database, data_dir: Path, server: SmtpTestServer
) -> None:
    """A queued message reaches the smarthost over STARTTLS after AUTH, DKIM-verifies, keeps its dot line,
    loses Bcc, and leaves the queue."""
    tick = clock()
    outbound = make_outbound(database, data_dir, smarthost(server), inbox(), tick)
    try:
        queue_id = await outbound.submit(
            user="alice",
            mail_from="alice@example.com",
            recipients=["bob@remote.test", "carol@other.test"],
            message=message(),
        )
        handled = await outbound.run_pending()
    finally:
        await _stop(server)
    assert handled == 2
    assert sorted(r.recipient for r in server.state.received) == ["bob@remote.test", "carol@other.test"]
    assert server.state.connections == 1  # one transaction for both domains via the smarthost
    for received in server.state.received:
        assert received.tls and received.authenticated_as == USER
        assert received.mail_from == "alice@example.com"
        assert dkim.verify(received.data, dnsfunc=dns_for(data_dir))
        assert b"\r\n.a line that starts with a dot\r\n" in received.data
        assert b"secret-bcc" not in received.data
        assert CANARY in received.data
    assert server.state.auth_attempts and all(tls for _, tls in server.state.auth_attempts)
    assert await outbound.status(queue_id) is None
    assert _rows(database) == ([], [])


@pytest_twisted.ensureDeferred
async def test_queued_body_is_encrypted_at_rest(database: Database, data_dir: Path, database_url: str) -> None:
    """While queued, the database holds neither the canary nor the Bcc header: only AES-GCM ciphertext."""
    closed = start_server(data_dir / "pki", tls=True, users={USER: PASSWORD})
    outbound = make_outbound(database, data_dir, smarthost(closed), inbox(), clock())
    await closed.stop()
    await outbound.submit(
        user="alice", mail_from="alice@example.com", recipients=["bob@remote.test"], message=message()
    )
    messages, recipients = _rows(database)
    [row] = messages
    body = bytes(row["body"])  # type: ignore[arg-type]
    assert CANARY not in body and b"secret-bcc" not in body and b"Subject" not in body
    assert body.startswith(b"MVQ1")
    assert [r["address"] for r in recipients] == ["bob@remote.test"]
    if database.dialect_name == "sqlite":
        path = Path(database_url.removeprefix("sqlite:///"))
        for candidate in path.parent.iterdir():
            assert CANARY not in candidate.read_bytes()


@pytest_twisted.ensureDeferred
async def test_temporary_failure_backs_off_then_succeeds(
    database: Database, data_dir: Path, server: SmtpTestServer
) -> None:
    """A 451 at RCPT leaves the recipient pending with one attempt and a 60 s back-off;
    after the clock moves on it is delivered."""
    tick = clock()
    server.state.rcpt_replies["bob@remote.test"] = [(451, "4.3.0 try again later")]
    outbound = make_outbound(database, data_dir, smarthost(server), inbox(), tick, retry_schedule_s=(60, 300))
    try:
        queue_id = await outbound.submit(
            user="alice", mail_from="alice@example.com", recipients=["bob@remote.test"], message=message()
        )
        await outbound.run_pending()
        [state] = await outbound.status(queue_id) or []
        assert (state.status, state.attempts) == ("pending", 1)
        assert state.next_attempt_ms == int(tick.seconds() * 1000) + 60_000
        assert state.last_error is not None and state.last_error.startswith("451")
        assert server.state.received == []
        tick.advance(59)
        assert await outbound.run_pending() == 0
        tick.advance(1)
        assert await outbound.run_pending() == 1
    finally:
        await _stop(server)
    [received] = server.state.received
    assert received.recipient == "bob@remote.test"
    assert await outbound.status(queue_id) is None


@pytest_twisted.ensureDeferred
async def test_permanent_failure_bounces_to_the_sender(
    database: Database, data_dir: Path, server: SmtpTestServer
) -> None:
    """A 550 for one recipient sends the other's copy and delivers an RFC 3464 report to the sender's local mailbox."""
    local = inbox()
    server.state.rcpt_replies["nobody@remote.test"] = [(550, "5.1.1 no such user here")]
    outbound = make_outbound(database, data_dir, smarthost(server), local, clock())
    try:
        queue_id = await outbound.submit(
            user="alice",
            mail_from="alice@example.com",
            recipients=["bob@remote.test", "nobody@remote.test"],
            message=message(),
        )
        await outbound.run_pending()
    finally:
        await _stop(server)
    assert [r.recipient for r in server.state.received] == ["bob@remote.test"]
    [bounce] = local.delivered
    assert bounce.mail_from == ""
    assert [r.user for r in bounce.recipients] == ["alice"]
    report = parse(bounce.data)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    assert report["To"] == "<alice@example.com>"
    human, status, headers = report.get_payload()  # type: ignore[misc]
    assert "nobody@remote.test" in human.get_payload()
    assert status.get_content_type() == "message/delivery-status"
    fields = status.as_string()
    assert "Final-Recipient: rfc822; nobody@remote.test" in fields
    assert "Action: failed" in fields and "Status: 5.1.1" in fields
    assert "Diagnostic-Code: smtp; 550 5.1.1 no such user here" in fields
    assert "bob@remote.test" not in fields
    assert headers.get_content_type() == "text/rfc822-headers"
    assert "Subject: hello" in headers.get_payload()
    assert await outbound.status(queue_id) is None


@pytest_twisted.ensureDeferred
async def test_gives_up_after_max_age_and_bounces(database: Database, data_dir: Path) -> None:
    """A smarthost that never answers is retried on schedule; past the maximum age the sender gets a 5.4.7 report."""
    local = inbox()
    gone = start_server(data_dir / "pki", users={USER: PASSWORD})
    await gone.stop()  # the port now refuses connections
    tick = clock()
    outbound = make_outbound(database, data_dir, smarthost(gone), local, tick, retry_schedule_s=(600,), max_age_s=1800)
    queue_id = await outbound.submit(
        user="alice", mail_from="alice@example.com", recipients=["bob@remote.test"], message=message()
    )
    attempts = 0
    while await outbound.status(queue_id) is not None:
        attempts += await outbound.run_pending()
        tick.advance(600)
        assert attempts < 10
    assert attempts == 4  # at 0, 10, 20 and 30 minutes
    [bounce] = local.delivered
    fields = parse(bounce.data).get_payload()[1].as_string()  # type: ignore[index]
    assert "Status: 5.4.7" in fields and "gave up after 4 attempts" in fields


@pytest_twisted.ensureDeferred
async def test_wrong_smarthost_password_is_retried_not_bounced(
    database: Database, data_dir: Path, server: SmtpTestServer
) -> None:
    """A 535 from the smarthost is the operator's problem: the recipient stays pending and no bounce is sent."""
    local = inbox()
    outbound = make_outbound(database, data_dir, smarthost(server, password="wrong"), local, clock())
    try:
        queue_id = await outbound.submit(
            user="alice", mail_from="alice@example.com", recipients=["bob@remote.test"], message=message()
        )
        await outbound.run_pending()
    finally:
        await _stop(server)
    [state] = await outbound.status(queue_id) or []
    assert state.status == "pending" and state.attempts == 1
    assert local.delivered == [] and server.state.received == []
    assert "wrong" not in (state.last_error or "") and PASSWORD not in (state.last_error or "")


@pytest_twisted.ensureDeferred
async def test_queue_survives_restart(
    database: Database, data_dir: Path, database_url: str, server: SmtpTestServer
) -> None:
    """A message queued by one process is delivered by a new Outbound on a newly opened database
    with the same key file."""
    first = make_outbound(database, data_dir, smarthost(server), inbox(), clock())
    await first.submit(user="alice", mail_from="alice@example.com", recipients=["bob@remote.test"], message=message())
    database.close()
    reopened = Database.open(database_url)
    try:
        second = make_outbound(reopened, data_dir, smarthost(server), inbox(), clock())
        assert second.worker_id != first.worker_id
        assert await second.run_pending() == 1
        assert await reopened.run(repo.queue_size_txn) == 0
    finally:
        reopened.close()
        await _stop(server)
    [received] = server.state.received
    assert CANARY in received.data


@pytest_twisted.ensureDeferred
async def test_two_workers_never_send_twice(
    database: Database, data_dir: Path, database_url: str, server: SmtpTestServer
) -> None:
    """Two workers (separate Database objects) draining one queue concurrently deliver each message exactly once."""
    other_db = Database.open(database_url)
    tick = clock()
    try:
        one = make_outbound(database, data_dir, smarthost(server), inbox(), tick, batch=1)
        two = make_outbound(other_db, data_dir, smarthost(server), inbox(), tick, batch=1)
        for n in range(6):
            await one.submit(
                user="alice", mail_from="alice@example.com", recipients=["bob@remote.test"], message=message(f"m{n}")
            )
        handled = await defer.gatherResults(
            [defer.Deferred.fromCoroutine(one.run_pending()), defer.Deferred.fromCoroutine(two.run_pending())]
        )
    finally:
        other_db.close()
        await _stop(server)
    assert sum(handled) == 6
    subjects = sorted(parse(r.data)["Subject"] for r in server.state.received)
    assert subjects == [f"m{n}" for n in range(6)]


@pytest_twisted.ensureDeferred
async def test_direct_delivery_uses_mx_in_preference_order(
    database: Database, data_dir: Path, dns_server: DnsServer
) -> None:
    """Direct mode, its names looked up on a real DNS server, skips a preferred MX without an address, reaches
    the next over opportunistic STARTTLS, one transaction per domain."""
    mx = start_server(data_dir / "pki", tls=True)
    dns_server.zone.update(
        {
            "remote.test": {"MX": [[20, "mx.remote.test"], [10, "unreachable.remote.test"]]},
            "other.test": {"MX": [[5, "mx.remote.test"]]},
            "mx.remote.test": {"A": ["127.0.0.1"]},
        }
    )
    resolver = Resolver([dns_server.address], reactor=reactor)
    transport = DirectTransport(reactor=reactor, resolver=resolver, helo="mx.example.com", port=mx.number, timeout_s=10)
    outbound = make_outbound(database, data_dir, transport, inbox(), clock())
    try:
        await outbound.submit(
            user="alice",
            mail_from="alice@example.com",
            recipients=["bob@remote.test", "carol@other.test"],
            message=message(),
        )
        await outbound.run_pending()
    finally:
        await mx.stop()
    assert sorted(r.recipient for r in mx.state.received) == ["bob@remote.test", "carol@other.test"]
    assert all(r.tls for r in mx.state.received)
    assert mx.state.connections == 2
    assert all(dkim.verify(r.data, dnsfunc=dns_for(data_dir)) for r in mx.state.received)


@pytest_twisted.ensureDeferred
async def test_direct_delivery_to_null_mx_bounces(database: Database, data_dir: Path, dns_server: DnsServer) -> None:
    """A domain publishing a null MX (RFC 7505) fails permanently at once and the sender gets a report."""
    local = inbox()
    dns_server.zone.update({"nomail.test": {"MX": [[0, ""]]}})
    resolver = Resolver([dns_server.address], reactor=reactor)
    transport = DirectTransport(reactor=reactor, resolver=resolver, helo="mx.example.com", port=1, timeout_s=5)
    outbound = make_outbound(database, data_dir, transport, local, clock())
    await outbound.submit(user="alice", mail_from="alice@example.com", recipients=["x@nomail.test"], message=message())
    await outbound.run_pending()
    [bounce] = local.delivered
    assert "Final-Recipient: rfc822; x@nomail.test" in bounce.data.decode()
    assert await database.run(repo.queue_size_txn) == 0


@pytest_twisted.ensureDeferred
async def test_direct_delivery_without_an_answer_from_dns_is_retried_not_bounced(
    database: Database, data_dir: Path, dns_server: DnsServer
) -> None:
    """An MX lookup that gets SERVFAIL, or no reply within the timeout, keeps the recipient queued with a 451 and
    a back-off: nothing is bounced, nothing is lost."""
    local = inbox()
    resolver = Resolver([dns_server.address], reactor=reactor, timeout=0.5)
    transport = DirectTransport(reactor=reactor, resolver=resolver, helo="mx.example.com", port=1, timeout_s=5)
    outbound = make_outbound(database, data_dir, transport, local, clock())
    for domain in (SERVFAIL, NEVER_ANSWERS):
        queue_id = await outbound.submit(
            user="alice", mail_from="alice@example.com", recipients=[f"x@{domain}"], message=message()
        )
        await outbound.run_pending()
        [state] = await outbound.status(queue_id) or []
        assert (state.status, state.attempts) == ("pending", 1)
        assert state.last_error is not None
        assert state.last_error.startswith(f"451 {domain}: DNS lookup failed: MX {domain}: ")
        assert dns_server.log.count(domain, "MX") >= 1
    assert local.delivered == []
    assert await database.run(repo.queue_size_txn) == 2


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"recipients": ["bob@example.com"]}, "local_recipient"),
        ({"recipients": ["bob@remote.test\r\nRCPT TO:<x@y.z>"]}, "invalid_recipient"),
        ({"recipients": []}, "invalid_recipient"),
        ({"recipients": [f"r{n}@remote.test" for n in range(101)]}, "too_many_recipients"),
        ({"mail_from": "alice@elsewhere.test"}, "invalid_sender"),
        ({"mail_from": "alice@example.com>"}, "invalid_sender"),
        ({"message": b"no header section here\r\n"}, "invalid_message"),
        ({"message": b"Subject: no from\r\n\r\nbody\r\n"}, "invalid_message"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_submit_rejects_bad_input(
    database: Database, data_dir: Path, kwargs: dict[str, object], code: str
) -> None:
    """Bad senders, recipients and messages are refused with a stable code and nothing is queued."""
    outbound = make_outbound(
        database, data_dir, DirectTransport(reactor, Resolver(reactor=reactor), "mx.example.com"), inbox(), clock()
    )
    arguments: dict[str, object] = {
        "user": "alice",
        "mail_from": "alice@example.com",
        "recipients": ["bob@remote.test"],
        "message": message(),
    }
    arguments.update(kwargs)
    with pytest.raises(SubmissionRejected) as caught:
        await outbound.submit(**arguments)  # type: ignore[arg-type]
    assert caught.value.code == code
    assert await database.run(repo.queue_size_txn) == 0


@pytest_twisted.ensureDeferred
async def test_oversized_message_and_disabled_outbound_are_refused(database: Database, data_dir: Path) -> None:
    """Messages over the size limit, and any submission when outbound mail is off, are refused."""
    limited = make_outbound(
        database,
        data_dir,
        DirectTransport(reactor, Resolver(reactor=reactor), "h.example.com"),
        inbox(),
        clock(),
        max_message_size=200,
    )
    with pytest.raises(SubmissionRejected) as caught:
        await limited.submit(
            user="alice", mail_from="alice@example.com", recipients=["bob@remote.test"], message=message()
        )
    assert caught.value.code == "message_too_large"
    off = make_outbound(database, data_dir, None, inbox(), clock())
    with pytest.raises(SubmissionRejected) as caught:
        await off.submit(user="alice", mail_from="alice@example.com", recipients=["bob@remote.test"], message=message())
    assert caught.value.code == "outbound_disabled"
    assert await off.run_once() == 0
