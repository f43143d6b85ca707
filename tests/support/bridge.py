"""Run ``mailiverse-client bridge`` against a real appliance for tests and the benchmark: the appliance with
signed-up users, mail delivered to them over SMTP, the bridge as a subprocess on free ports (its ready block
parsed), an IMAP connection to it that trusts only its certificate, and the Debian IMAP clients that drive it.

Everything here talks to real processes over 127.0.0.1; nothing is faked.
"""

from __future__ import annotations

import imaplib
import os
import queue
import re
import shutil
import signal
import smtplib
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from tests.support.harness import BIN, DOMAIN, Appliance, free_port, stop_process

#: Account passwords of the users the bridge tests sign up (the appliance's, not the bridge's local one).
ACCOUNT_PASSWORD = "a long bridge-test account password"
READY_TIMEOUT = 120.0
#: Sign-ups the appliance takes from one address in an hour (accounts/service.py ``SignupPolicy``).
MAX_SIGNUPS = 5


def require_tool(name: str, *alternatives: str) -> str:
    """The path of a Debian client (``mbsync``, ``offlineimap``); skip the test without it, fail when ``CI`` is set."""
    import pytest

    for candidate in (name, *alternatives):
        found = shutil.which(candidate)
        if found:
            return found
    reason = f"{name} is not installed (Debian package; appliance/test-packages.txt)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set, so the real-client tests may not be skipped")
    pytest.skip(reason)
    raise AssertionError("unreachable")


@dataclass
class World:
    """A running appliance and the directory the device side (the CLI, the bridge, the clients) works in."""

    appliance: Appliance
    home: Path
    signed_up: int = 0

    @property
    def ca(self) -> Path:
        return self.appliance.data_dir / "tls" / "self-signed.crt"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.appliance.web_port}"

    def environment(self, password: str | None = ACCOUNT_PASSWORD) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILIVERSE_")}
        env.update(HOME=str(self.home), XDG_CACHE_HOME=str(self.home / ".cache"), XDG_CONFIG_HOME=str(self.home))
        if password is not None:
            env["MAILIVERSE_PASSWORD"] = password
        return env

    def client_argv(self, user: str, *command: str) -> list[str]:
        return [str(BIN / "mailiverse-client"), "--server", self.url, "--ca", str(self.ca), "--user", user, *command]

    def cli(self, user: str, *command: str, password: str = ACCOUNT_PASSWORD) -> subprocess.CompletedProcess[str]:
        """Run the installed ``mailiverse-client`` console script; fail loudly when it fails."""
        argv = self.client_argv(user, *command)
        done = subprocess.run(argv, capture_output=True, cwd=self.home, env=self.environment(password), timeout=300)
        result = subprocess.CompletedProcess(argv, done.returncode, done.stdout.decode(), done.stderr.decode())
        if result.returncode != 0:
            raise AssertionError(f"mailiverse-client {' '.join(command[:1])} failed: {result.stderr}")
        return result

    def signup(self, user: str) -> None:
        """Sign ``user`` up with the CLI: the first account freely, later ones with an operator's invite. The
        appliance allows five sign-ups an hour from one address, so a world holds at most five users."""
        if self.signed_up >= MAX_SIGNUPS:
            raise AssertionError(f"a world signs up at most {MAX_SIGNUPS} users (the appliance's per-address budget)")
        if self.signed_up:
            invite = self.appliance.admin("invite", "create").stdout.decode().strip()
            self.cli(user, "signup", "--invite", invite)
        else:
            self.cli(user, "signup")
        self.signed_up += 1

    def deliver(self, user: str, messages: list[bytes], sender: str = "bob@remote.test") -> None:
        """Hand ``messages`` to the appliance over SMTP with STARTTLS, one connection, each accepted with 250."""
        context = ssl.create_default_context(cafile=str(self.ca))
        with smtplib.SMTP("127.0.0.1", self.appliance.smtp_port, local_hostname="client.test", timeout=60) as smtp:
            smtp.starttls(context=context)
            for message in messages:
                refused = smtp.sendmail(sender, [f"{user}@{DOMAIN}"], message)
                assert not refused, refused


def start_world(workdir: Path, *extra: str) -> World:
    """An appliance on SQLite in ``workdir`` (its options plus ``extra``) and an empty device directory."""
    appliance = Appliance(workdir / "appliance", extra_args=list(extra))
    appliance.start()
    home = workdir / "device"
    home.mkdir(parents=True, exist_ok=True)
    return World(appliance, home)


def message(subject: str, body: str, number: int = 0, to: str = f"alice@{DOMAIN}") -> bytes:
    """A distinct plain-text message in CRLF form (its own Message-ID), as a mail app would send it."""
    built = EmailMessage()
    built["From"] = "Bob Example <bob@remote.test>"
    built["To"] = to
    built["Subject"] = subject
    built["Message-ID"] = f"<bridge-{number}-{time.monotonic_ns()}@remote.test>"
    built["Date"] = "Sat, 21 Nov 2026 10:00:00 +0000"
    built.set_content(body)
    return built.as_bytes(policy=built.policy.clone(linesep="\r\n"))


@dataclass
class Bridge:
    """One ``mailiverse-client bridge`` subprocess, its ports and what its ready block said."""

    process: subprocess.Popen[bytes]
    user: str
    imap_port: int
    imaps_port: int
    smtp_port: int
    smtps_port: int
    password_file: Path
    certificate: Path
    ready: list[str]
    log_path: Path
    _lines: queue.Queue[bytes | None] = field(default_factory=queue.Queue, repr=False)

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()

    def tls_context(self) -> ssl.SSLContext:
        """A client context that trusts the bridge's own certificate and nothing else."""
        return ssl.create_default_context(cafile=str(self.certificate))

    def imap(self, *, implicit: bool = False) -> imaplib.IMAP4:
        """A logged-in ``imaplib`` connection (STARTTLS on the IMAP port, or implicit TLS)."""
        connection: imaplib.IMAP4
        if implicit:
            connection = imaplib.IMAP4_SSL("127.0.0.1", self.imaps_port, ssl_context=self.tls_context(), timeout=60)
        else:
            connection = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=60)
            connection.starttls(self.tls_context())
        connection.login(self.user, self.password)
        return connection

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        stop_process(self.process, signal.SIGTERM)


def _read_lines(stream: object, lines: queue.Queue[bytes | None]) -> None:
    for line in iter(stream.readline, b""):  # type: ignore[attr-defined]
        lines.put(line)
    lines.put(None)


def start_bridge(world: World, user: str, workdir: Path, *, poll: float | None = None, imaps: bool = True) -> Bridge:
    """Start ``mailiverse-client bridge`` for ``user`` on free ports and wait for its ready block."""
    workdir.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in ("imap", "imaps", "smtp", "smtps")}
    password_file = workdir / "bridge.password"
    command = [
        "bridge",
        "--imap",
        f"tcp:{ports['imap']}",
        "--imaps",
        f"tcp:{ports['imaps']}" if imaps else "none",
        "--smtp",
        f"tcp:{ports['smtp']}",
        "--smtps",
        f"tcp:{ports['smtps']}",
        "--password-file",
        str(password_file),
        "--cert-dir",
        str(workdir / "certs"),
    ]
    if poll is not None:
        command += ["--poll", str(poll)]
    log_path = workdir / "bridge.stderr"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            world.client_argv(user, *command),
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=world.home,
            env=dict(world.environment(), PYTHONUNBUFFERED="1"),
        )
    lines: queue.Queue[bytes | None] = queue.Queue()
    threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True).start()
    ready: list[str] = []
    deadline = time.monotonic() + READY_TIMEOUT
    fields: dict[str, str] = {}
    while "certificate" not in fields:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            line = b""
        if not line:
            stop_process(process)
            why = "exited" if line is None else f"said nothing ready in {READY_TIMEOUT:.0f} s"
            raise RuntimeError(f"the bridge {why}; stdout {ready!r}; stderr:\n{log_path.read_text(errors='replace')}")
        text = line.decode(errors="replace").rstrip("\n")
        ready.append(text)
        head, _, rest = text.strip().partition(" ")
        fields[head] = rest.strip()
    assert ready[0] == f"bridge ready for {user}", ready
    assert fields.get("password", "").startswith("in "), ready
    password_path = Path(fields["password"][3:].strip())
    assert password_path == password_file, ready
    return Bridge(
        process,
        fields["user"],
        ports["imap"],
        ports["imaps"] if imaps else 0,
        ports["smtp"],
        ports["smtps"],
        password_file,
        Path(fields["certificate"]),
        ready,
        log_path,
        lines,
    )


@contextmanager
def running_bridge(world: World, user: str, workdir: Path, **options: object) -> Iterator[Bridge]:
    """A bridge for the length of a ``with`` block (stopped with SIGTERM after, whatever happens)."""
    bridge = start_bridge(world, user, workdir, **options)  # type: ignore[arg-type]
    try:
        yield bridge
    finally:
        bridge.stop()


TUID = re.compile(rb"\nX-TUID: [A-Za-z0-9+/]{12}\n\n")


def without_tuid(data: bytes) -> bytes:
    """A Maildir file mbsync fetched, without the one ``X-TUID`` header isync adds at the end of the header block
    of every message it propagates (its own crash-recovery marker); nothing else is touched."""
    head_end = data.find(b"\n\n")
    found = TUID.search(data, 0, head_end + 2)
    return data if found is None else data[: found.start()] + b"\n\n" + data[found.end() :]


def wait_until(predicate: object, timeout: float, what: str, interval: float = 0.5) -> None:
    """Poll ``predicate()`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(interval)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s")
