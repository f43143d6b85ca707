"""Start and stop the servers under test, each as its own process on 127.0.0.1: the appliance and the baselines."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailiverse.tls import ensure_self_signed

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
DOMAIN = "example.org"
USER = "alice"
SMTP_SINK = shutil.which("smtp-sink") or ("/usr/sbin/smtp-sink" if Path("/usr/sbin/smtp-sink").exists() else None)


class ServerFailed(RuntimeError):
    """A server under test did not start."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_banner(port: int, process: subprocess.Popen[bytes], timeout: float, log: Path | None = None) -> None:
    """Wait until the server on ``port`` greets with 220; raise ServerFailed if it exits or stays silent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            detail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
            raise ServerFailed(f"exited with {process.returncode}\n{detail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.settimeout(5)
                if s.recv(100).startswith(b"220"):
                    return
        except OSError:
            time.sleep(0.1)
    raise ServerFailed(f"no SMTP greeting on port {port} within {timeout}s")


@dataclass
class Server:
    """A running server under test."""

    name: str
    port: int
    starttls: bool
    process: subprocess.Popen[bytes]
    workdir: Path
    note: str = ""
    db_url: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    #: What else was started for it and is stopped with it (the appliance's DNS server).
    helpers: list[Any] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for helper in self.helpers:
            helper.stop()


def _spawn(cmd: list[str], workdir: Path, log: Path) -> subprocess.Popen[bytes]:
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)


def start_appliance(workdir: Path, db_url: str | None = None, timeout: float = 90) -> Server:
    """``twistd -n mailiverse`` on fresh ports with one user, ``alice`` (v1 envelope, as ``user add`` defaults)."""
    data = workdir / "data"
    smtp, smtps, web = free_port(), free_port(), free_port()
    log = workdir / "twistd.log"
    cmd = [
        str(BIN / "twistd"),
        "-n",
        "--pidfile=",
        f"--logfile={log}",
        "mailiverse",
        "--data-dir",
        str(data),
        "--domain",
        DOMAIN,
        "--hostname",
        f"mail.{DOMAIN}",
        "--smtp",
        f"tcp:{smtp}",
        "--smtps",
        f"tcp:{smtps}",
        "--web",
        f"tcp:{web}",
    ]
    if db_url:
        cmd += ["--db", db_url]
    dns = start_bench_dns(workdir / "dns")
    # Every receipt-time check of the field: SPF, DKIM, DMARC, ARC, the built-in spam check and a DNS
    # blocklist (which does not list the load client: one NXDOMAIN per sender, then the resolver's cache).
    cmd += ["--dns-server", f"127.0.0.1:{dns.port}", "--dnsbl", "bl.bench.test"]
    process = _spawn(cmd, workdir, workdir / "stdout.log")
    server = Server("appliance", smtp, True, process, workdir, db_url=db_url, helpers=[dns])
    try:
        wait_for_banner(smtp, process, timeout, log)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pub = workdir / f"{USER}.pub.pem"
        pub.write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        subprocess.run(
            [str(BIN / "mailiverse-admin"), "--data-dir", str(data), "user", "add", USER, "--public-key", str(pub)],
            check=True,
            capture_output=True,
            timeout=120,
        )
    except BaseException:
        server.stop()
        raise
    server.db_url = db_url or json.loads((data / "appliance.json").read_text()).get("db_url")
    return server


def start_bench_dns(directory: Path) -> Any:
    """The appliance's DNS server (the tests' twisted.names one, as a process): what a real sender publishes.

    The load client's domain and HELO name permit 127.0.0.0/8 by SPF and publish a DMARC policy, so every
    message is judged as it would be in the field (SPF pass, DMARC pass through SPF alignment), with its
    lookups answered over the worker pipe and, after the first, from the resolver's cache. The blocklist
    ``bl.bench.test`` lists nobody.
    """
    from tests.support.dnsserver import Zone, start_dns_process

    zone = Zone()
    zone.update(
        {
            "bench.test": {"TXT": ["v=spf1 ip4:127.0.0.0/8 -all"]},
            "client.bench.test": {"TXT": ["v=spf1 ip4:127.0.0.0/8 -all"]},
            "_dmarc.bench.test": {"TXT": ["v=DMARC1; p=reject"]},
        }
    )
    return start_dns_process(zone, directory)


def _baseline_cert(workdir: Path) -> tuple[Path, Path]:
    return ensure_self_signed(workdir / "cert", "mail.example.org")


def start_discard(workdir: Path, timeout: float = 30) -> Server:
    """The plain Twisted ESMTP discard server (bench/discard_server.py), with STARTTLS."""
    cert, key = _baseline_cert(workdir)
    port = free_port()
    log = workdir / "discard.log"
    process = _spawn([sys.executable, "-m", "bench.discard_server", str(port), str(cert), str(key)], workdir, log)
    server = Server("twisted-discard", port, True, process, workdir)
    try:
        wait_for_banner(port, process, timeout, log)
    except BaseException:
        server.stop()
        raise
    return server


def start_aiosmtpd(workdir: Path, timeout: float = 30) -> Server | None:
    """The aiosmtpd sink (bench/aiosmtpd_sink.py), with STARTTLS; None when aiosmtpd is not installed."""
    try:
        import aiosmtpd  # noqa: F401
    except ImportError:
        return None
    cert, key = _baseline_cert(workdir)
    port = free_port()
    log = workdir / "aiosmtpd.log"
    process = _spawn([sys.executable, "-m", "bench.aiosmtpd_sink", str(port), str(cert), str(key)], workdir, log)
    server = Server("aiosmtpd", port, True, process, workdir)
    try:
        wait_for_banner(port, process, timeout, log)
    except BaseException:
        server.stop()
        raise
    return server


def start_smtp_sink(workdir: Path, timeout: float = 30) -> Server | None:
    """Postfix's ``smtp-sink`` (no STARTTLS: it has none, so it is driven in plain SMTP); None if absent."""
    if SMTP_SINK is None:
        return None
    port = free_port()
    log = workdir / "smtp-sink.log"
    # smtp-sink refuses to run as root without dropping privileges to a named user.
    drop = ["-u", "nobody"] if os.geteuid() == 0 else []
    process = _spawn([SMTP_SINK, *drop, "-h", "sink.bench.test", f"127.0.0.1:{port}", "512"], workdir, log)
    server = Server("smtp-sink", port, False, process, workdir, note="plain SMTP: smtp-sink has no STARTTLS")
    try:
        wait_for_banner(port, process, timeout, log)
    except BaseException:
        server.stop()
        raise
    return server
