"""The legacy upgrade path end to end: real ``twistd mailiverse --legacy``,
the independent legacy client, SMTP, and the CLI.

An original-protocol account is made with ``tests/support/legacy_client.py``, receives v1 mail over SMTP,
is moved with ``mailiverse-client upgrade-legacy`` (over WebSocket, and over the TLS KeyServer port), and
then reads that mail with the modern ``login``/``ls``/``read`` while the legacy login is refused.  A dump
made with ``mailiverse-admin store dump`` is imported with ``import-mailiverse`` and read back byte for
byte with ``mailiverse-admin store cat``.
"""

from __future__ import annotations

import smtplib
import ssl
import urllib.request
import zlib
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet import reactor

from mailiverse.config import DataDir
from mailiverse.legacy.serverkeys import load_server_key
from tests.support import legacy_client as lc
from tests.support.e2e import Device
from tests.support.harness import Appliance, free_port

pytestmark = pytest.mark.integration
PASSWORD = "an original Mailiverse password, e2e"


@pytest.fixture(scope="module")
def legacy_device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Device, int, int]]:
    """A real appliance with --legacy (TLS KeyServer and MailServer ports) and an empty device directory."""
    root = tmp_path_factory.mktemp("legacy-e2e")
    keyserver, mailserver = free_port(), free_port()
    appliance = Appliance(
        root / "appliance",
        extra_args=[
            "--legacy",
            "--open-signup",
            "--legacy-keyserver",
            f"tcp:{keyserver}",
            "--legacy-mailserver",
            f"tcp:{mailserver}",
        ],
    )
    appliance.start()
    home = root / "device"
    home.mkdir()
    try:
        yield Device(home, appliance), keyserver, mailserver
    finally:
        appliance.stop()


class LegacyUser:
    """One account made and used the way an original client does, over the appliance's TLS ports."""

    def __init__(self, device: Device, keyserver: int, mailserver: int, name: str) -> None:
        self.device = device
        self.keyserver = keyserver
        self.mailserver = mailserver
        self.address = f"{name}@example.org"
        self.vk, self.ck = lc.password_keys(PASSWORD)
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    async def op(self, port: int, name: str, value: dict[str, Any]) -> Any:
        lines = await lc.TcpLines.connect(reactor, port, True)
        try:
            key = await lc.login(lines, self.address, self.vk)
            return await lc.operation(lines, key, name, value)
        finally:
            lines.close()

    def store_enable(self) -> tuple[str, str]:
        context = ssl.create_default_context(cafile=str(self.device.ca))
        url = f"{self.device.url}/Mailiverse/StoreEnable?email={self.address}&captcha=null"
        with urllib.request.urlopen(url, context=context, timeout=30) as response:  # noqa: S310 - https to the test appliance
            first, second = response.read().decode().split("&")
        return first[len("AccessKeyId!") :], second[len("SecretKey!") :]

    async def sign_up(self) -> None:
        key_id, secret = self.store_enable()
        mail_auth = load_server_key(DataDir(self.device.appliance.data_dir), "mail-auth").public_key()
        lines = await lc.TcpLines.connect(reactor, self.mailserver, True)
        await lines.send(lc.signup_line(mail_auth, self.address, self.vk))
        answer = await lines.recv()
        lines.close()
        assert answer is not None and lc.unpacket(lc.text_of(answer))[1]["succeeded"] is True
        spki = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        pkcs8 = self.key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        server = {
            "version": "2.0",
            "handler": "MV",
            "smtpPassword": "987654321",
            "RSA-PublicKey": lc.b64(spki),
            "MV/AccessKeyId": key_id,
            "MV/SecretKey": secret,
        }
        block = lc.environment_text(server).encode()
        assert await self.op(self.mailserver, "Put", {"block": lc.b64(block)}) == {"block": lc.b64(block)}
        complete = {"version": "2.0"}
        for k, v in server.items():
            complete["server/" + k] = v
            complete["client/" + k] = v
        complete["client/RSA-PrivateKey"] = lc.b64(pkcs8)
        key_block = lc.aes_seal(self.ck, zlib.compress(lc.environment_text(complete).encode()))
        assert await self.op(self.keyserver, "Put", {"block": lc.b64(key_block)}) is not None

    async def legacy_refused(self) -> bool:
        try:
            await self.op(self.keyserver, "Get", {})
        except lc.LoginFailed:
            return True
        return False


def _smtp(device: Device, to: str, subject: str, body: str) -> None:
    message = EmailMessage()
    message["From"] = "Carol Remote <carol@remote.test>"
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = "Wed, 03 Jan 2024 10:11:12 +0000"
    message.set_content(body)
    context = ssl.create_default_context(cafile=str(device.ca))
    with smtplib.SMTP("127.0.0.1", device.appliance.smtp_port, local_hostname="client.test", timeout=30) as smtp:
        smtp.starttls(context=context)
        smtp.send_message(message)


def _ls(device: Device, user: str) -> list[list[str]]:
    result = device.cli(user, "ls", password=PASSWORD)
    assert result.returncode == 0, result.stderr
    return [line.split("\t") for line in result.stdout.splitlines()]


@pytest_twisted.ensureDeferred
async def test_upgrade_then_modern_client_reads_legacy_mail(legacy_device: tuple[Device, int, int]) -> None:
    """Legacy sign-up, v1 SMTP mail, `upgrade-legacy` over WebSocket; modern login/ls/read show the mail;
    legacy login refused."""
    device, keyserver, mailserver = legacy_device
    alice = LegacyUser(device, keyserver, mailserver, "alice")
    await alice.sign_up()
    _smtp(device, alice.address, "Legacy era mail", "Sent while alice was a legacy account.\n")
    stored = device.appliance.admin("store", "ls", "alice", "Mail/").stdout.decode()
    assert "Mail/In/" in stored and "Mail/In_Json/" in stored, "v1 delivery writes the message and its JSON twin"

    before = device.cli("alice", "login", password=PASSWORD)
    assert before.returncode == 3, "a legacy account has no modern login yet"
    upgraded = device.cli(alice.address, "upgrade-legacy", password=PASSWORD)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "legacy logins are now refused" in upgraded.stdout
    assert await alice.legacy_refused()

    login = device.cli("alice", "login", password=PASSWORD)
    assert login.returncode == 0 and "alice@example.org" in login.stdout, login.stderr
    row = next(r for r in _ls(device, "alice") if r[3] == "Legacy era mail")
    assert row[1] == "2024-01-03T10:11:12Z" and "carol@remote.test" in row[2]
    shown = device.cli("alice", "read", row[0], password=PASSWORD)
    assert shown.returncode == 0 and "Sent while alice was a legacy account." in shown.stdout
    again = device.cli(alice.address, "upgrade-legacy", password=PASSWORD)
    assert again.returncode == 3


@pytest_twisted.ensureDeferred
async def test_upgrade_over_the_keyserver_port_and_import_a_dump(
    legacy_device: tuple[Device, int, int], tmp_path: Path
) -> None:
    """`upgrade-legacy --legacy-keyserver` over TLS; then another account's `store dump` imports byte for byte
    (and repeats skip)."""
    device, keyserver, mailserver = legacy_device
    bob = LegacyUser(device, keyserver, mailserver, "bob")
    await bob.sign_up()
    upgraded = device.cli(
        bob.address, "upgrade-legacy", "--legacy-keyserver", f"127.0.0.1:{keyserver}", password=PASSWORD
    )
    assert upgraded.returncode == 0, upgraded.stderr
    assert await bob.legacy_refused()
    assert device.cli("bob", "login", password=PASSWORD).returncode == 0

    # Another (v1) account receives mail; its store is dumped as the original layout and imported into bob.
    device.appliance.add_user("carol", "v1")
    _smtp(device, "carol@example.org", "For carol", "Carol's original mail.\n")
    _smtp(device, "carol@example.org", "For carol again", "More.\n")
    dump = tmp_path / "dump"
    device.appliance.admin("store", "dump", "carol", "", str(dump))
    files = sorted(p for p in dump.rglob("*") if p.is_file())
    paths = ["/".join(p.relative_to(dump).parts) for p in files]
    assert sum(p.startswith("Mail/In/") for p in paths) == 2 and sum(p.startswith("Mail/In_Json/") for p in paths) == 2

    imported = device.cli("bob", "import-mailiverse", str(dump), password=PASSWORD)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.splitlines()[-1] == f"imported {len(files)}, skipped 0, failed 0"
    for file, path in zip(files, paths, strict=True):
        assert device.appliance.admin("store", "cat", "bob", path).stdout == file.read_bytes(), path
    repeat = device.cli("bob@example.org", "import-mailiverse", str(dump), password=PASSWORD)
    assert repeat.returncode == 0 and repeat.stdout.splitlines()[-1] == f"imported 0, skipped {len(files)}, failed 0"
