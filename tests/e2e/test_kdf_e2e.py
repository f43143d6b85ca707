"""The password KDF end to end (docs/auth.md, "The password KDF"): ``mailiverse-client`` against a real
``twistd mailiverse`` signs up and logs in with Argon2id, and moves an account made the old way (fixed-salt
PBKDF2) to Argon2id at its next login, its mail still readable."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

import pytest

from mailiverse.client import Client, HttpsTransport
from mailiverse.crypto.kdf import parse_kdf
from tests.support.e2e import Device
from tests.support.oldkdf import login_kdf, pbkdf2_signup

pytestmark = pytest.mark.integration
KIM_PW = "kim's long argon2id password"
OLD_PW = "the old account's long password"


def _transport(device: Device) -> HttpsTransport:
    return HttpsTransport(device.url, ca_file=str(device.ca))


def _invite(device: Device) -> str:
    return device.appliance.admin("invite", "create").stdout.decode().strip()


def _smtp(device: Device, to: str, subject: str, body: str) -> None:
    message = EmailMessage()
    message["From"] = "Carol Remote <carol@remote.test>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    context = ssl.create_default_context(cafile=str(device.ca))
    with smtplib.SMTP("127.0.0.1", device.appliance.smtp_port, local_hostname="client.test", timeout=30) as smtp:
        smtp.starttls(context=context)
        smtp.send_message(message)


def test_cli_signs_up_and_logs_in_with_argon2id(device: Device) -> None:
    """`signup` makes a per-account Argon2id description the server then hands out; `login` uses it."""
    signed = device.cli("kim", "signup", password=KIM_PW)
    assert signed.returncode == 0, signed.stderr
    described = parse_kdf(login_kdf(_transport(device), "kim"))
    assert described.is_argon2id and not described.needs_upgrade() and len(described.salt) == 16
    logged = device.cli("kim", "login", password=KIM_PW)
    assert logged.returncode == 0, logged.stderr
    assert parse_kdf(login_kdf(_transport(device), "kim")) == described
    assert device.cli("kim", "login", password="not " + KIM_PW).returncode == 3


def test_cli_login_moves_a_pbkdf2_account_to_argon2id(device: Device) -> None:
    """An account made with the old fixed-salt rule gets mail, `ls` logs in (old way) and re-keys it to
    Argon2id; `read` then opens that mail with the new keys, and the library's next login needs no upgrade."""
    transport = _transport(device)
    pbkdf2_signup(transport, "olga", OLD_PW, _invite(device))
    assert login_kdf(transport, "olga") == {"kdf": "pbkdf2-sha256"}
    _smtp(device, "olga@example.org", "Sealed before the upgrade", "Still readable afterwards.\n")

    listed = device.cli("olga", "ls", password=OLD_PW)
    assert listed.returncode == 0, listed.stderr
    [row] = [line.split("\t") for line in listed.stdout.splitlines()]
    assert row[3] == "Sealed before the upgrade"
    described = parse_kdf(login_kdf(transport, "olga"))
    assert described.is_argon2id and not described.needs_upgrade()

    shown = device.cli("olga", "read", row[0], password=OLD_PW)
    assert shown.returncode == 0, shown.stderr
    assert "Still readable afterwards." in shown.stdout
    client = Client(_transport(device), "olga")
    client.login(OLD_PW)
    assert client.kdf == described and client.kdf_upgrade_error is None
    client.close()
    assert parse_kdf(login_kdf(transport, "olga")) == described
