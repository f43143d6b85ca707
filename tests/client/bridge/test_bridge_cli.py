"""``mailiverse-client bridge`` as a real subprocess against a real ``twistd mailiverse`` (issue 23).

It logs in, prints the ready block (the local password goes to a 0600 ``--password-file``, not stdout), listens on
127.0.0.1 only, makes its certificate in the default ``--cert-dir`` under ``$HOME`` and writes nothing else;
``swaks`` (a mail client no one here wrote) sends through its SMTP ports with AUTH, STARTTLS and implicit TLS,
verifying the certificate, and the mail arrives at bob and in alice's Sent; IMAP (when the build has it) logs in
with the same local password and lists the INBOX. SIGTERM ends it cleanly. Bad options are refused before the
login with a line naming the option.
"""

from __future__ import annotations

import imaplib
import importlib.util
import os
import select
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mailiverse.client import Client, HttpsTransport
from mailiverse.client.bridge.service import Listener, listener
from mailiverse.client.errors import UsageError
from tests.support.e2e import Device
from tests.support.harness import BIN, DOMAIN, Appliance, stop_process

PASSWORDS = {"alice": "alice's long bridge password", "bob": "bob's long bridge password"}
ALICE, BOB = f"alice@{DOMAIN}", f"bob@{DOMAIN}"
SWAKS = shutil.which("swaks")
HAS_IMAP = importlib.util.find_spec("mailiverse.client.bridge.imap") is not None
READY_TIMEOUT = 120


@dataclass
class Running:
    """A started bridge and what its ready block said."""

    process: subprocess.Popen[bytes]
    lines: list[str]
    block: dict[str, str] = field(default_factory=dict)

    def ports(self, protocol: str) -> dict[str, int]:
        """``{"STARTTLS": port, "TLS": port}`` from a line like ``127.0.0.1:1025 (STARTTLS), 127.0.0.1:1465 (TLS)``."""
        found = {}
        for part in self.block[protocol].split(", "):
            address, _, how = part.partition(" (")
            host, _, port = address.rpartition(":")
            assert host == "127.0.0.1", self.block
            found[how.rstrip(")")] = int(port)
        return found


@dataclass
class World:
    app: Appliance
    device: Device

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILIVERSE_")}
        home = self.device.home
        env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), XDG_CONFIG_HOME=str(home / ".config"))
        return env

    def argv(self, user: str, *command: str) -> list[str]:
        return [
            str(BIN / "mailiverse-client"),
            *("--server", self.device.url, "--user", user, "--ca", str(self.device.ca)),
            *command,
        ]

    def start(self, *options: str, user: str = "alice") -> Running:
        env = dict(self.environment(), MAILIVERSE_PASSWORD=PASSWORDS[user])
        process = subprocess.Popen(
            self.argv(user, "bridge", *options),
            cwd=self.device.home,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdout is not None
        running = Running(process, [])
        deadline = time.monotonic() + READY_TIMEOUT
        buffered = b""
        while time.monotonic() < deadline and not any(line.startswith("certificate  ") for line in running.lines):
            ready, _, _ = select.select([process.stdout], [], [], 1.0)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break
            buffered += chunk
            *complete, rest = buffered.split(b"\n")
            running.lines += [line.decode() for line in complete]
            buffered = rest
        if not any(line.startswith("certificate  ") for line in running.lines):
            stop_process(process)
            errors = process.stderr.read().decode() if process.stderr else ""
            raise AssertionError(f"the bridge did not get ready: {running.lines} {errors}")
        for line in running.lines[1:]:
            key, _, value = line.partition("  ")
            running.block[key] = value
        return running

    def login(self, user: str) -> Client:
        client = Client(HttpsTransport(self.device.url, ca_file=str(self.device.ca)), user)
        client.login(PASSWORDS[user], upgrade=False)
        return client


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("bridge-cli")
    app = Appliance(root / "appliance", extra_args=["--workers", "1"])
    try:
        app.start()
        home = root / "device"
        home.mkdir()
        world = World(app, Device(home, app))
        assert world.device.cli("alice", "signup", password=PASSWORDS["alice"]).returncode == 0
        invite = app.admin("invite", "create").stdout.decode().strip()
        done = world.device.cli("bob", "signup", "--invite", invite, password=PASSWORDS["bob"])
        assert done.returncode == 0, done.stderr
        yield world
    finally:
        app.stop()


def _listening_addresses(port: int) -> set[str]:
    """The local addresses (hex, as /proc/net/tcp* writes them) on which something listens on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            address, _, hex_port = fields[1].partition(":")
            if int(hex_port, 16) == port and fields[3] == "0A":
                found.add(address)
    return found


def _arrived(client: Client, folder: str, subject: str) -> bytes:
    for _ in range(100):
        for info in client.list_messages(folder):
            if info.subject == subject:
                return client.read_message(info.id)
        time.sleep(0.2)
    raise AssertionError(f"{subject!r} is not in {folder}")


def _swaks(port: int, password: str, cert: str, subject: str, *, implicit: bool) -> subprocess.CompletedProcess[str]:
    assert SWAKS is not None
    tls = ["--tls-on-connect"] if implicit else ["--tls"]
    argv = [
        SWAKS,
        *("--server", "127.0.0.1", "--port", str(port), *tls, "--tls-verify", "--tls-ca-path", cert),
        *("--auth", "PLAIN", "--auth-user", "alice", "--auth-password", password),
        *("--from", ALICE, "--to", BOB, "--header", f"Subject: {subject}", "--body", f"{subject}, sent by swaks."),
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


@pytest.mark.integration
def test_bridge_serves_swaks_and_stops_cleanly(world: World, tmp_path: Path) -> None:
    """The ready block, a 0600 password file, loopback-only ports, the default certificate under $HOME; swaks
    sends over STARTTLS and implicit TLS with AUTH and the mail arrives at bob and in alice's Sent; IMAP logs in
    with the local password (when built); SIGTERM ends the bridge with status 0."""
    if SWAKS is None and not os.environ.get("CI"):
        pytest.skip("swaks is not installed (Debian package swaks)")
    password_file = tmp_path / "bridge.pw"
    imap = ["--imap", "tcp:0", "--imaps", "tcp:0"] if HAS_IMAP else ["--imap", "none", "--imaps", "none"]
    running = world.start(*imap, "--smtp", "tcp:0", "--smtps", "tcp:0", "--password-file", str(password_file))
    try:
        assert running.lines[0] == "bridge ready for alice"
        assert [line.partition("  ")[0] for line in running.lines[1:]] == [
            "IMAP",
            "SMTP",
            "user",
            "password",
            "certificate",
        ]
        assert running.block["user"] == "alice"
        assert running.block["password"] == f"in {password_file}"
        assert password_file.stat().st_mode & 0o777 == 0o600
        password = password_file.read_text().strip()
        assert len(password) == 24 and password not in "\n".join(running.lines)
        cert = Path(running.block["certificate"])
        assert cert == world.device.home / ".config" / "mailiverse" / "bridge" / "bridge.crt"
        assert cert.stat().st_mode & 0o777 == 0o644
        assert (cert.parent / "bridge.key").stat().st_mode & 0o777 == 0o600
        smtp = running.ports("SMTP")
        ports = list(smtp.values()) + (list(running.ports("IMAP").values()) if HAS_IMAP else [])
        for port in ports:
            assert _listening_addresses(port) == {"0100007F"}, port

        sent = [_swaks(smtp["STARTTLS"], password, str(cert), "swaks over STARTTLS", implicit=False)]
        sent.append(_swaks(smtp["TLS"], password, str(cert), "swaks over TLS", implicit=True))
        for done in sent:
            assert done.returncode == 0, done.stdout + done.stderr
            assert "<~  235 2.7.0" in done.stdout and "<~  250 2.0.0 Message accepted" in done.stdout

        bob, alice = world.login("bob"), world.login("alice")
        try:
            for subject in ("swaks over STARTTLS", "swaks over TLS"):
                arrived = _arrived(bob, "Inbox", subject)
                assert f"{subject}, sent by swaks.".encode() in arrived
                assert _arrived(alice, "Sent", subject) == arrived
        finally:
            bob.close()
            alice.close()

        if HAS_IMAP:
            context = ssl.create_default_context(cafile=str(cert))
            with imaplib.IMAP4("127.0.0.1", running.ports("IMAP")["STARTTLS"], timeout=60) as session:
                session.starttls(context)
                assert session.login("alice", password)[0] == "OK"
                status, listed = session.list()
                assert status == "OK" and any(b"INBOX" in line for line in listed if isinstance(line, bytes))
                assert session.select("INBOX")[0] == "OK"
    finally:
        running.process.send_signal(signal.SIGTERM)
        exit_status = running.process.wait(60)
        errors = running.process.stderr.read().decode() if running.process.stderr else ""
        for stream in (running.process.stdout, running.process.stderr):
            if stream is not None:
                stream.close()
    assert exit_status == 0, errors
    assert "Traceback" not in errors
    written = sorted(str(p.relative_to(world.device.home)) for p in world.device.home.rglob("*") if p.is_file())
    assert written == [".config/mailiverse/bridge/bridge.crt", ".config/mailiverse/bridge/bridge.key"]


@pytest.mark.integration
def test_bad_options_are_refused_before_login(world: World) -> None:
    """Every port off, an endpoint that is not tcp:, a bad --cache-size and --keyring (not installed here) each exit
    2 with one line naming the option; none of them opens a port or asks for a password."""
    cases: dict[tuple[str, ...], str] = {
        ("--imap", "none", "--imaps", "none", "--smtp", "none", "--smtps", "none"): "every port is off",
        ("--smtp", "ssl:1465"): "--smtp ssl:1465",
        ("--cache-size", "lots"): "--cache-size",
        ("--poll", "0"): "--poll",
    }
    if importlib.util.find_spec("keyring") is None:
        cases[("--keyring",)] = "--keyring needs"
    for options, expected in cases.items():
        done = subprocess.run(
            world.argv("alice", "bridge", *options),
            capture_output=True,
            text=True,
            timeout=60,
            env=world.environment(),
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 2, (options, done.stdout, done.stderr)
        assert expected in done.stderr and done.stdout == "", (options, done.stderr)


def test_endpoints_bind_loopback_unless_told_otherwise() -> None:
    """A bare tcp:PORT binds --listen (127.0.0.1 by default); an interface= or a --listen that is not loopback is
    marked exposed (the bridge warns); none switches a port off."""
    assert listener("smtp", "tcp:1025", "127.0.0.1") == Listener(
        "smtp", "tcp:1025:interface=127.0.0.1", "127.0.0.1", False
    )
    assert listener("imap", "tcp:1143:interface=\\:\\:1", "127.0.0.1") == Listener(
        "imap", "tcp:1143:interface=\\:\\:1", "::1", False
    )
    assert listener("imaps", "tcp:port=1993", "0.0.0.0") == Listener(
        "imaps", "tcp:1993:interface=0.0.0.0", "0.0.0.0", True
    )
    assert listener("smtps", "none", "127.0.0.1") is None
    for bad in ("unix:/tmp/x", "tcp:99999", "tcp:25:interface=example.org", "tcp:25:sslmethod=x"):
        with pytest.raises(UsageError):
            listener("smtp", bad, "127.0.0.1")
