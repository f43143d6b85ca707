"""`upgrade-legacy` and `import-mailiverse` against the real web app and legacy KeyServer on 127.0.0.1
(TLS, WebSocket, TCP).

Legacy accounts are made with the independent legacy client of ``tests/support/legacy_client.py``
(which shares no framing or SRP code with the server or with ``mailiverse.client.legacy``).
"""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet import reactor, ssl

from mailiverse.client.errors import UsageError
from mailiverse.client.legacy import KeyServerAddress, WebSocketLineChannel, parse_host_port
from mailiverse.compat.blocks import decrypt_key_block
from mailiverse.config import DataDir, LegacyOptions
from mailiverse.crypto.kdf import derive_keys, parse_kdf_text
from mailiverse.legacy.serverkeys import load_server_key
from mailiverse.legacy.service import build_legacy
from mailiverse.spool import SpooledMessage
from mailiverse.store.db import Database
from mailiverse.store.objects import read_object_txn
from mailiverse.store.users import get_user_txn
from mailiverse.submission import Submission
from mailiverse.testing import issue_test_certificate
from mailiverse.testing_db import sqlite_url
from mailiverse.tls import TLSContexts, ensure_self_signed
from tests.support import legacy_client as lc
from tests.support.client import CliResult, in_thread, run_cli
from tests.support.legacy import seed_server_keys
from tests.support.webapi import Api, make_api

LEGACY_PASSWORD = "the original Mailiverse password"
USER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SPKI = USER_KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
PKCS8 = USER_KEY.private_bytes(
    serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)


@dataclass
class Both:
    """The modern app with ``/Mailiverse/`` mounted on https://localhost, plus the KeyServer/MailServer ports."""

    api: Api
    delivery: Any
    https: int
    http: int
    key_tls: int
    key_plain: int
    mail_plain: int
    ca_file: Path
    cert_file: Path
    mail_auth: rsa.RSAPublicKey

    @property
    def url(self) -> str:
        return f"https://localhost:{self.https}"

    def argv(self, user: str, *command: str) -> list[str]:
        return ["--server", self.url, "--user", user, "--ca", str(self.ca_file), *command]

    def fingerprint(self) -> str:
        certificate = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
        return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


@pytest.fixture
def both(tmp_path: Path) -> Iterator[Both]:
    """One database behind the modern API and the legacy protocol, served for real on 127.0.0.1."""
    database = Database.open(sqlite_url(tmp_path))
    api, delivery = make_api(database, tmp_path)
    data_dir = DataDir(tmp_path / "data")
    data_dir.create()
    seed_server_keys(data_dir)
    tls = TLSContexts(self_signed=ensure_self_signed(data_dir.tls_dir, "mail.example.org"), ca=None)
    options = LegacyOptions(enabled=True, domains=("example.org",), hostname="mail.example.org")
    parts = build_legacy(
        options,
        database=database,
        tls_contexts=tls,
        data_dir=data_dir,
        reactor=reactor,
        submission=Submission(delivery, options.domains),
        open_signup=True,
    )
    api.app.legacy_resource = parts.web_resource
    issued = issue_test_certificate(tmp_path / "certs", ["localhost"])
    context = ssl.DefaultOpenSSLContextFactory(str(issued.key_path), str(issued.cert_path))
    key_factory = parts.services[1].factory.wrappedFactory  # type: ignore[attr-defined]
    mail_factory = parts.services[2].factory.wrappedFactory  # type: ignore[attr-defined]
    ports = [
        reactor.listenSSL(0, api.app.site(), context, interface="127.0.0.1"),  # type: ignore[attr-defined]
        reactor.listenTCP(0, api.app.site(), interface="127.0.0.1"),  # type: ignore[attr-defined]
        reactor.listenSSL(0, key_factory, context, interface="127.0.0.1"),  # type: ignore[attr-defined]
        reactor.listenTCP(0, key_factory, interface="127.0.0.1"),  # type: ignore[attr-defined]
        reactor.listenTCP(0, mail_factory, interface="127.0.0.1"),  # type: ignore[attr-defined]
    ]
    try:
        yield Both(
            api,
            delivery,
            *[int(p.getHost().port) for p in ports],
            ca_file=issued.ca_cert_path,
            cert_file=issued.cert_path,
            mail_auth=load_server_key(data_dir, "mail-auth").public_key(),
        )
    finally:
        for port in ports:
            pytest_twisted.blockon(port.stopListening())
        delivery.stop()
        database.close()


def _complete_environment(key_id: str, secret: str) -> dict[str, str]:
    server = {
        "version": "2.0",
        "handler": "MV",
        "smtpPassword": "1234567890",
        "RSA-PublicKey": lc.b64(SPKI),
        "MV/AccessKeyId": key_id,
        "MV/SecretKey": secret,
    }
    env = {"version": "2.0"}
    for k, v in server.items():
        env["server/" + k] = v
        env["client/" + k] = v
    env["client/RSA-PrivateKey"] = lc.b64(PKCS8)
    return env


async def _legacy_op(both: Both, role: str, user: str, name: str, value: dict[str, Any], vk: bytes) -> Any:
    lines = await lc.TcpLines.connect(reactor, both.key_plain if role == "key" else both.mail_plain, False)
    try:
        key = await lc.login(lines, user, vk)
        return await lc.operation(lines, key, name, value)
    finally:
        lines.close()


async def _legacy_signup(both: Both, name: str = "alice") -> str:
    """Sign up as the original client does: StoreEnable, the encrypted create packet, the server and key blocks."""
    address = f"{name}@example.org"
    vk, ck = lc.password_keys(LEGACY_PASSWORD)
    response = await treq.get(f"http://127.0.0.1:{both.http}/Mailiverse/StoreEnable?email={address}&captcha=null")
    assert response.code == 200
    first, second = (await response.content()).decode().split("&")
    key_id, secret = first[len("AccessKeyId!") :], second[len("SecretKey!") :]
    lines = await lc.TcpLines.connect(reactor, both.mail_plain, False)
    await lines.send(lc.signup_line(both.mail_auth, address, vk))
    answer = await lines.recv()
    assert answer is not None and lc.unpacket(lc.text_of(answer))[1]["succeeded"] is True
    lines.close()
    env = _complete_environment(key_id, secret)
    server_env = {k[len("server/") :]: v for k, v in env.items() if k.startswith("server/")}
    block = lc.environment_text(server_env).encode()
    assert await _legacy_op(both, "mail", address, "Put", {"block": lc.b64(block)}, vk) == {"block": lc.b64(block)}
    key_block = lc.aes_seal(ck, zlib.compress(lc.environment_text(env).encode()))
    assert await _legacy_op(both, "key", address, "Put", {"block": lc.b64(key_block)}, vk) is not None
    return address


async def _deliver(both: Both, address: str, subject: str) -> bytes:
    raw = (
        f"From: Bob <bob@remote.test>\r\nTo: {address}\r\nSubject: {subject}\r\n"
        "Date: Tue, 02 Jan 2024 03:04:05 +0000\r\n\r\nHello from before the upgrade\r\n"
    ).encode()
    recipient = await both.delivery.resolve(address)
    assert recipient is not None
    await both.delivery.deliver(SpooledMessage(size=len(raw), memory=raw), "bob@remote.test", [recipient])
    return raw


async def _legacy_login_refused(both: Both, address: str) -> bool:
    vk, _ = lc.password_keys(LEGACY_PASSWORD)
    try:
        await _legacy_op(both, "key", address, "Get", {}, vk)
    except lc.LoginFailed:
        return True
    return False


# -- upgrade-legacy --------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_upgrade_over_websocket_keeps_keys_and_mail(both: Both) -> None:
    """Over wss://…/Mailiverse/KeyServer the account moves to the modern login; `ls`/`read` show its v1 mail;
    legacy login ends."""
    address = await _legacy_signup(both)
    raw = await _deliver(both, address, "Before the upgrade")
    upgraded = await run_cli(both.argv(address, "upgrade-legacy"), password=LEGACY_PASSWORD)
    assert upgraded.status == 0, upgraded.stderr
    assert upgraded.stdout.startswith("upgraded alice to the modern login")
    assert hashlib.sha256(SPKI).hexdigest()[:16] in upgraded.stdout
    assert await _legacy_login_refused(both, address)
    login = await run_cli(both.argv("alice", "login"), password=LEGACY_PASSWORD)
    assert login.status == 0, login.stderr
    listing = await run_cli(both.argv("alice", "ls"), password=LEGACY_PASSWORD)
    [row] = [line.split("\t") for line in listing.stdout.splitlines()]
    assert row[3] == "Before the upgrade" and row[1] == "2024-01-02T03:04:05Z"
    read = await run_cli(both.argv("alice", "read", row[0]), password=LEGACY_PASSWORD)
    assert read.status == 0 and "Hello from before the upgrade" in read.stdout
    user = await both.api.database.run(get_user_txn, "alice")
    assert user is not None and user.envelope_format == "v1"
    stored = await both.api.database.run(read_object_txn, user.id, f"Mail/In/{row[0]}")
    assert lc.raw_inflate(lc.rsa_aes_open(USER_KEY, stored)) == raw
    # The key block now also names the keys the modern client reads; every original entry is kept. The
    # modern login moved the account to its own Argon2id description (docs/auth.md), so the block is
    # wrapped under that key now, no longer under the fixed-salt CryptoKey.
    assert user.kdf is not None and parse_kdf_text(user.kdf).is_argon2id
    environment = decrypt_key_block(derive_keys(LEGACY_PASSWORD, parse_kdf_text(user.kdf))[0], user.key_block)
    assert environment["RSA-PrivateKey"] == lc.b64(PKCS8) == environment["client/RSA-PrivateKey"]
    assert environment["server/MV/AccessKeyId"] and environment["RSA-PublicKey"] == lc.b64(SPKI)


@pytest_twisted.ensureDeferred
async def test_upgrade_over_tls_keyserver_port_with_fingerprint(both: Both) -> None:
    """--legacy-keyserver HOST:PORT speaks TLS to the KeyServer port, pinned by --fingerprint like HTTPS."""
    address = await _legacy_signup(both)
    argv = ["--server", both.url, "--user", address, "--fingerprint", both.fingerprint()]
    result = await run_cli(
        [*argv, "upgrade-legacy", "--legacy-keyserver", f"localhost:{both.key_tls}"], password=LEGACY_PASSWORD
    )
    assert result.status == 0, result.stderr
    assert await _legacy_login_refused(both, address)
    assert (await run_cli(both.argv("alice", "login"), password=LEGACY_PASSWORD)).status == 0


@pytest_twisted.ensureDeferred
async def test_upgrade_over_plain_keyserver_port(both: Both) -> None:
    """--legacy-plain reaches a plain KeyServer port (as behind a TLS-terminating proxy)."""
    address = await _legacy_signup(both)
    result = await run_cli(
        both.argv(address, "upgrade-legacy", "--legacy-keyserver", f"127.0.0.1:{both.key_plain}", "--legacy-plain"),
        password=LEGACY_PASSWORD,
    )
    assert result.status == 0, result.stderr
    assert (await run_cli(both.argv("alice", "login"), password=LEGACY_PASSWORD)).status == 0


@pytest_twisted.ensureDeferred
async def test_wrong_password_changes_nothing(both: Both) -> None:
    """A wrong password is exit 3 with one line; the account stays legacy and its legacy login still works."""
    address = await _legacy_signup(both)
    result = await run_cli(both.argv(address, "upgrade-legacy"), password="not the password")
    assert result.status == 3 and result.stderr.count("\n") == 1
    assert "not the password" not in result.stderr + result.stdout
    assert not await _legacy_login_refused(both, address)
    modern = await run_cli(both.argv("alice", "login"), password=LEGACY_PASSWORD)
    assert modern.status == 3


@pytest_twisted.ensureDeferred
async def test_second_upgrade_is_refused(both: Both) -> None:
    """Once upgraded, the legacy login (and so another upgrade) is refused like a wrong password."""
    address = await _legacy_signup(both)
    assert (await run_cli(both.argv(address, "upgrade-legacy"), password=LEGACY_PASSWORD)).status == 0
    again = await run_cli(both.argv(address, "upgrade-legacy"), password=LEGACY_PASSWORD)
    assert again.status == 3


@pytest_twisted.ensureDeferred
async def test_wrong_fingerprint_stops_before_login(both: Both) -> None:
    """A KeyServer whose certificate does not match --fingerprint is exit 4 and the account is untouched."""
    address = await _legacy_signup(both)
    argv = ["--server", both.url, "--user", address, "--fingerprint", "00" * 32, "upgrade-legacy"]
    assert (await run_cli(argv, password=LEGACY_PASSWORD)).status == 4
    tcp = [*argv, "--legacy-keyserver", f"localhost:{both.key_tls}"]
    assert (await run_cli(tcp, password=LEGACY_PASSWORD)).status == 4
    assert not await _legacy_login_refused(both, address)


@pytest_twisted.ensureDeferred
async def test_modern_account_cannot_be_upgraded(both: Both) -> None:
    """A modern account has no legacy login: upgrade-legacy is exit 3 and its login is unaffected."""
    assert (await run_cli(both.argv("carol", "signup"), password="carol's password")).status == 0
    result = await run_cli(both.argv("carol@example.org", "upgrade-legacy"), password="carol's password")
    assert result.status == 3
    assert (await run_cli(both.argv("carol", "login"), password="carol's password")).status == 0


@pytest_twisted.ensureDeferred
async def test_websocket_client_speaks_rfc6455(both: Both) -> None:
    """The WebSocket channel completes the handshake and gets the salt packet for a hello (one frame per line)."""
    from mailiverse.client.errors import AuthenticationFailed
    from mailiverse.client.legacy import legacy_login

    await _legacy_signup(both)
    address = KeyServerAddress(both.url, ca_file=str(both.ca_file))

    def wrong_login() -> str:
        channel = address.connect()
        assert isinstance(channel, WebSocketLineChannel)
        try:
            legacy_login(channel, "alice@example.org", b"\x01" * 32)
        except AuthenticationFailed as error:
            return str(error)
        finally:
            channel.close()
        return "no error"

    assert "wrong user name or password" in await in_thread(wrong_login)


def test_host_port_and_option_checks() -> None:
    """HOST:PORT parsing, and --legacy-plain only with a TCP KeyServer."""
    assert parse_host_port("mail.example.org:7000") == ("mail.example.org", 7000)
    assert parse_host_port("[::1]:7000") == ("::1", 7000)
    for bad in ("mail.example.org", ":7000", "host:0", "host:99999", "host:x"):
        with pytest.raises(UsageError):
            parse_host_port(bad)
    with pytest.raises(UsageError):
        KeyServerAddress("https://localhost:1", plain=True)
    with pytest.raises(UsageError):
        KeyServerAddress("http://localhost:1")


@pytest_twisted.ensureDeferred
async def test_cli_usage_errors_for_upgrade(both: Both) -> None:
    """--legacy-plain without --legacy-keyserver is a usage error (exit 2) before any password is asked."""
    result = await run_cli(both.argv("alice@example.org", "upgrade-legacy", "--legacy-plain"), password=None)
    assert result.status == 2 and "--legacy-keyserver" in result.stderr


# -- import-mailiverse -----------------------------------------------------------------------


def _dump(root: Path, objects: dict[str, bytes]) -> None:
    for path, data in objects.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


@pytest_twisted.ensureDeferred
async def test_import_uploads_bytes_unchanged_and_skips_repeats(both: Both, tmp_path: Path) -> None:
    """Every dump file becomes the same-named object with the same bytes; a second run skips them all."""
    assert (await run_cli(both.argv("dave", "signup"), password="dave's password")).status == 0
    objects = {
        "Mail/In/1390000000000_1234": os.urandom(900),
        "Mail/In_Json/1390000000000_1234": os.urandom(400) + b"\n\r\x00",
        "Mail/In_Json/checkMail.lock": base64.b64encode(os.urandom(8)),
        "Mail/Out/1390000000001_7": os.urandom(50),
        "Cache/I": base64.b64encode(os.urandom(200)),
        "Cache/M_a1b2c3d4e5f6": b"",
    }
    dump = tmp_path / "dump"
    _dump(dump, objects)
    first = await run_cli(both.argv("dave@example.org", "import-mailiverse", str(dump)), password="dave's password")
    assert first.status == 0, first.stderr
    assert first.stdout.splitlines()[-1] == f"imported {len(objects)}, skipped 0, failed 0"
    user = await both.api.database.run(get_user_txn, "dave")
    assert user is not None
    for path, data in objects.items():
        assert await both.api.database.run(read_object_txn, user.id, path) == data, path
    again = await run_cli(both.argv("dave", "import-mailiverse", str(dump)), password="dave's password")
    assert again.status == 0 and again.stdout.splitlines()[-1] == f"imported 0, skipped {len(objects)}, failed 0"


@pytest_twisted.ensureDeferred
async def test_import_never_overwrites_and_reports_failures(both: Both, tmp_path: Path) -> None:
    """Different bytes at an existing name, symlinks leaving DIR, bad names and Mail/Sent fail;
    the rest imports; exit 1."""
    assert (await run_cli(both.argv("erin", "signup"), password="erin's password")).status == 0
    dump = tmp_path / "dump"
    _dump(dump, {"Cache/I": b"first index", "Mail/In/1_1": b"mail one"})
    assert (await run_cli(both.argv("erin", "import-mailiverse", str(dump)), password="erin's password")).status == 0
    secret = tmp_path / "outside-secret"
    secret.write_bytes(b"must never be uploaded")
    _dump(
        dump,
        {"Cache/I": b"another index", "Mail/In/2_2": b"mail two", "Mail/Sent/3_3": b"sent", "Cache/bad\\name": b"x"},
    )
    (dump / "Cache" / "leak").symlink_to(secret)
    (dump / "Mail" / "In" / "alias").symlink_to(dump / "Mail" / "In" / "2_2")
    (dump / "Escape").symlink_to(tmp_path, target_is_directory=True)
    result = await run_cli(both.argv("erin", "import-mailiverse", str(dump)), password="erin's password")
    assert result.status == 1 and result.stderr.count("\n") == 1
    assert result.stdout.splitlines()[-1] == "imported 2, skipped 1, failed 5"
    failed = {line.split(":")[0].removeprefix("failed ") for line in result.stdout.splitlines()[:-1]}
    assert failed == {"Cache/I", "Cache/leak", "Mail/Sent/3_3", "Cache/bad\\name", "Escape"}
    user = await both.api.database.run(get_user_txn, "erin")
    assert user is not None
    assert await both.api.database.run(read_object_txn, user.id, "Cache/I") == b"first index"
    assert await both.api.database.run(read_object_txn, user.id, "Mail/In/alias") == b"mail two"
    assert await both.api.database.run(read_object_txn, user.id, "Mail/In/2_2") == b"mail two"


@pytest_twisted.ensureDeferred
async def test_import_needs_a_directory_and_the_password(both: Both, tmp_path: Path) -> None:
    """A missing DIR is a usage error (exit 2); a wrong password is exit 3 and nothing is uploaded."""
    assert (await run_cli(both.argv("fay", "signup"), password="fay's password")).status == 0
    missing: CliResult = await run_cli(both.argv("fay", "import-mailiverse", str(tmp_path / "nope")), password="x")
    assert missing.status == 2
    dump = tmp_path / "dump"
    _dump(dump, {"Cache/I": b"index"})
    wrong = await run_cli(both.argv("fay", "import-mailiverse", str(dump)), password="not fay's password")
    assert wrong.status == 3
    user = await both.api.database.run(get_user_txn, "fay")
    assert user is not None
    from mailiverse.store.objects import get_object_info_txn

    assert await both.api.database.run(get_object_info_txn, user.id, "Cache/I") is None


# -- the WebSocket framing, against a scripted peer ------------------------------------------


def _scripted_peer(
    frames: list[bytes], accept_ok: bool = True
) -> tuple[WebSocketLineChannel | Exception, list[bytes], Any]:
    """Run the client against a socketpair peer that answers the handshake and then sends ``frames``."""
    import socket
    import threading

    client_sock, server_sock = socket.socketpair()
    received: list[bytes] = []

    def peer() -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            request += server_sock.recv(4096)
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key")
        )
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        if not accept_ok:
            accept = base64.b64encode(b"x" * 20)
        server_sock.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + b"".join(frames)
        )
        server_sock.settimeout(2)
        try:
            while chunk := server_sock.recv(4096):
                received.append(chunk)
        except OSError:
            pass

    thread = threading.Thread(target=peer)
    thread.start()
    try:
        channel: WebSocketLineChannel | Exception = WebSocketLineChannel(
            client_sock, "localhost", 443, "/Mailiverse/KeyServer"
        )
    except Exception as error:  # noqa: BLE001 - returned for the assertion
        channel = error
    if isinstance(channel, Exception):
        client_sock.close()
    return channel, received, thread


def _frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    return bytes([(0x80 if fin else 0) | opcode, len(payload)]) + payload


def test_websocket_fragments_pings_and_close() -> None:
    """Fragmented text is joined into one line, pings are answered with masked pongs,
    and a close frame ends the stream."""
    frames = [
        _frame(0x9, b"hi"),
        _frame(0x1, b"TGluZTE", fin=False),
        _frame(0x0, b"=\n"),
        _frame(0x1, b"Mg==\n"),
        _frame(0x8, b"\x03\xe8"),
    ]
    channel, received, thread = _scripted_peer(frames)
    assert isinstance(channel, WebSocketLineChannel)
    assert channel.recv_line() == b"TGluZTE="
    assert channel.recv_line() == b"Mg=="
    assert channel.recv_line() is None
    channel.close()
    thread.join(5)
    sent = b"".join(received)
    # The pong: FIN + opcode 10, masked (client frames always are), 2-byte payload.
    assert sent[:2] == bytes([0x8A, 0x82]) and bytes(b ^ sent[2 + i % 4] for i, b in enumerate(sent[6:8])) == b"hi"


def test_websocket_refuses_binary_and_bad_handshakes() -> None:
    """A binary frame is a protocol error, and so is a handshake whose Sec-WebSocket-Accept is wrong."""
    from mailiverse.client.errors import ProtocolError

    channel, _, thread = _scripted_peer([_frame(0x2, b"\x00\x01")])
    assert isinstance(channel, WebSocketLineChannel)
    with pytest.raises(ProtocolError):
        channel.recv_line()
    channel.close()
    thread.join(5)
    refused, _, thread = _scripted_peer([], accept_ok=False)
    thread.join(5)
    assert isinstance(refused, ProtocolError)
