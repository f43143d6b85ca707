"""One CLI flow against a real ``twistd mailiverse`` on PostgreSQL
(skipped without PG, but never when ``CI`` is set)."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.support.e2e import Device, Smarthost, start_appliance

pytestmark = [pytest.mark.integration, pytest.mark.postgres]
PASSWORD = "postgres flow password, long enough"


@pytest.fixture
def pg_device(tmp_path: Path, smarthost: Smarthost, postgres_url: str) -> Iterator[Device]:
    """An appliance whose database is a fresh PostgreSQL database."""
    appliance = start_appliance(tmp_path, smarthost, db_url=postgres_url)
    home = tmp_path / "device"
    home.mkdir()
    try:
        yield Device(home, appliance)
    finally:
        appliance.stop()


def test_signup_receive_send_and_read_on_postgresql(pg_device: Device) -> None:
    """On PostgreSQL: CLI sign-ups (free, then invite), SMTP delivery, a local send, ls and read all work."""
    assert pg_device.cli("alice", "signup", password=PASSWORD).returncode == 0
    code = pg_device.appliance.admin("invite", "create").stdout.decode().strip()
    assert pg_device.cli("bob", "signup", "--invite", code, password=PASSWORD).returncode == 0
    message = EmailMessage()
    message["From"] = "someone@remote.test"
    message["To"] = "alice@example.org"
    message["Subject"] = "PG inbound"
    message.set_content("stored in PostgreSQL\n")
    with smtplib.SMTP("127.0.0.1", pg_device.appliance.smtp_port, local_hostname="client.test", timeout=30) as smtp:
        smtp.starttls(context=ssl.create_default_context(cafile=str(pg_device.ca)))
        smtp.send_message(message)
    sent = pg_device.cli(
        "bob",
        "send",
        "--to",
        "alice@example.org",
        "--subject",
        "PG local",
        password=PASSWORD,
        stdin=b"bob to alice on PG\n",
    )
    assert sent.returncode == 0, sent.stderr
    listing = pg_device.cli("alice", "ls", password=PASSWORD)
    assert listing.returncode == 0, listing.stderr
    rows = {line.split("\t")[3]: line.split("\t")[0] for line in listing.stdout.splitlines()}
    assert set(rows) == {"PG inbound", "PG local"}
    assert "stored in PostgreSQL" in pg_device.cli("alice", "read", rows["PG inbound"], password=PASSWORD).stdout
    assert "bob to alice on PG" in pg_device.cli("alice", "read", rows["PG local"], password=PASSWORD).stdout
    wrong = pg_device.cli("alice", "login", password="wrong")
    assert wrong.returncode == 3 and wrong.stderr.count("\n") == 1
