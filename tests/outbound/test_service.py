"""Configuration and assembly: OutboundConfig validation, the password file,
and the worker service running the queue."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import pytest_twisted
from twisted.application.service import IService
from twisted.internet import defer, reactor, task
from twisted.logger import globalLogPublisher
from zope.interface.verify import verifyObject

from mailiverse.config import ConfigError
from mailiverse.outbound import Outbound, OutboundConfig, build_outbound
from mailiverse.outbound.service import parse_smarthost, read_password_file
from mailiverse.store import Database
from mailiverse.store import outbound as repo
from tests.support.outbound import inbox, message
from tests.support.smarthost import start_server


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("smtp.example.net", ("smtp.example.net", 587)),
        ("smtp.example.net:465", ("smtp.example.net", 465)),
        ("[2001:db8::1]:2525", ("2001:db8::1", 2525)),
    ],
)
def test_parse_smarthost(text: str, expected: tuple[str, int]) -> None:
    """host, host:port and [v6]:port are understood; the port defaults to submission (587)."""
    assert parse_smarthost(text) == expected


@pytest.mark.parametrize("bad", ["", ":25", "host:0", "host:x", "2001:db8::1", "[::1"])
def test_parse_smarthost_rejects_nonsense(bad: str) -> None:
    """Malformed smarthost values name the option."""
    with pytest.raises(ConfigError, match="--smarthost"):
        parse_smarthost(bad)


def test_password_file_must_be_private(tmp_path: Path) -> None:
    """The password is the file's first line, and a file others can read is refused."""
    path = tmp_path / "pw"
    path.write_text("s3cret\nignored\n")
    os.chmod(path, 0o600)
    assert read_password_file(path) == "s3cret"
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_password_file(path)


@pytest.mark.parametrize(
    ("config", "option"),
    [
        (OutboundConfig(mode="smarthost"), "--smarthost"),
        (OutboundConfig(mode="smarthost", smarthost="h:587"), "--smarthost-user"),
        (OutboundConfig(mode="bogus"), "--outbound"),  # type: ignore[arg-type]
        (OutboundConfig(mode="direct", dkim_selector="bad selector"), "--dkim-selector"),
    ],
)
def test_config_validation_names_the_option(config: OutboundConfig, option: str) -> None:
    """Impossible combinations fail with an error naming the option to fix."""
    with pytest.raises(ConfigError, match=option):
        config.validate()


@pytest_twisted.ensureDeferred
async def test_service_delivers_a_submission_without_waiting_for_the_poll(database: Database, data_dir: Path) -> None:
    """build_outbound gives an IService and an Outbound; once started, a submission is delivered straight away
    and the DKIM key exists."""
    server = start_server(data_dir / "pki", users={"relay": "pw"})
    password_file = data_dir / "smarthost.pw"
    password_file.write_text("pw\n")
    password_file.chmod(0o600)
    config = OutboundConfig(
        mode="smarthost",
        data_dir=data_dir,
        hostname="mx.example.com",
        local_domains=("example.com",),
        smarthost=f"localhost:{server.number}",
        smarthost_user="relay",
        smarthost_password=read_password_file(password_file),
        smarthost_ca_file=server.ca_cert,
        dkim_selector="mv",
        poll_interval_s=3600,
    )
    service, outbound = build_outbound(config, database, reactor=reactor, local_delivery=inbox())
    assert verifyObject(IService, service) and isinstance(outbound, Outbound)
    service.startService()
    try:
        await outbound.submit(
            user="alice", mail_from="alice@example.com", recipients=["bob@remote.test"], message=message()
        )
        for _ in range(200):
            if server.state.received:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        await outbound.wait_idle()
    finally:
        await defer.maybeDeferred(service.stopService)
        await server.stop()
    [received] = server.state.received
    assert received.tls and received.authenticated_as == "relay"
    assert received.data.startswith(b"DKIM-Signature:")
    assert (data_dir / "keys" / "dkim-example.com.key.pem").exists()
    assert (data_dir / "keys" / "queue.key").stat().st_mode & 0o077 == 0
    assert await database.run(repo.queue_size_txn) == 0


@pytest_twisted.ensureDeferred
async def test_off_mode_builds_an_idle_service(database: Database, data_dir: Path) -> None:
    """With outbound off the service starts and stops doing nothing and submissions are refused."""
    service, outbound = build_outbound(
        OutboundConfig(data_dir=data_dir), database, reactor=reactor, local_delivery=inbox()
    )
    service.startService()
    await defer.maybeDeferred(service.stopService)
    assert not outbound.enabled


@pytest_twisted.ensureDeferred
async def test_a_failing_pass_does_not_stop_the_worker(database_url: str, data_dir: Path) -> None:
    """When a pass fails (here: the database is gone) the error is logged and the next tick still runs."""
    clock = task.Clock()
    db = Database.open(database_url)
    config = OutboundConfig(mode="direct", data_dir=data_dir, local_domains=("example.com",), poll_interval_s=30)
    service, outbound = build_outbound(config, db, reactor=reactor, local_delivery=inbox(), clock=clock)
    db.close()
    failures: list[dict[str, object]] = []

    def observe(event: dict[str, object]) -> None:
        if "log_failure" in event:
            failures.append(event)

    globalLogPublisher.addObserver(observe)
    service.startService()
    try:
        await outbound.wait_idle()
        clock.advance(30)
        await outbound.wait_idle()
        assert service._loop is not None and service._loop.running  # type: ignore[attr-defined]
    finally:
        globalLogPublisher.removeObserver(observe)
        await defer.maybeDeferred(service.stopService)
    assert len(failures) == 2
    assert all(f["log_failure"].check(RuntimeError) for f in failures)  # type: ignore[attr-defined]
