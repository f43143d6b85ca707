"""A real ``twistd mailiverse`` on 127.0.0.1 for integration tests:
start and stop it, trust its certificate, list its store."""

from __future__ import annotations

import atexit
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DOMAIN = "example.org"


#: Ports handed out by ``free_port``: below the kernel's ephemeral range (32768 up), so no outgoing
#: connection takes one between the check and the bind, and one band per pytest-xdist worker, so two
#: workers never pick the same port.
_PORT_BAND = 2000
_PORT_BASE = 12000
_NEXT_PORT = [secrets.randbelow(_PORT_BAND)]


def _worker_number() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    digits = worker[2:] if worker.startswith("gw") else ""
    return int(digits) % 8 if digits.isdigit() else 0


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that is free now (TCP, or UDP with ``socket.SOCK_DGRAM``), from this worker's band."""
    low = _PORT_BASE + _worker_number() * _PORT_BAND
    for _ in range(_PORT_BAND):
        # walk the band from a random start: a port handed out is not offered again until the band wraps,
        # so two calls before either server binds never get the same one
        _NEXT_PORT[0] = (_NEXT_PORT[0] + 1) % _PORT_BAND
        port = low + _NEXT_PORT[0]
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}..{low + _PORT_BAND}")


_SHARED_DNS: list[Any] = []


def shared_dns_server() -> tuple[str, int]:
    """One test DNS server for every appliance the session starts without a ``--dns-server`` of its own.

    Its zone is empty: every name is NXDOMAIN at once, so the receipt-time checks (SPF, DKIM, DMARC)
    find nothing published and never ask the machine's resolver, whose answers differ between machines.
    """
    if not _SHARED_DNS:
        from tests.support.dnsserver import Zone, start_dns_process

        running = start_dns_process(Zone(), Path(tempfile.mkdtemp(prefix="mailiverse-test-dns-")))
        atexit.register(running.process.kill)
        _SHARED_DNS.append(running)
    address: tuple[str, int] = _SHARED_DNS[0].address
    return address


def wait_for_greeting(
    process: subprocess.Popen[bytes], address: tuple[str, int], timeout: float, log: Callable[[], str]
) -> bool:
    """Wait until the SMTP listener at ``address`` greets with 220 (True) or ``timeout`` passes (False); a process
    that exits meanwhile raises RuntimeError with its output and ``log()``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out = process.stdout.read().decode(errors="replace") if process.stdout else ""
            raise RuntimeError(f"twistd exited with {process.returncode}:\n{out}\n{log()}")
        try:
            with socket.create_connection(address, timeout=1) as s:
                s.settimeout(5)
                if s.recv(100).startswith(b"220"):
                    return True
        except OSError:
            time.sleep(0.1)
    return False


def stop_process(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    """Stop a started server (``sig``, then SIGKILL after 30 s) and close its output pipe."""
    if process and process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    if process and process.stdout:
        process.stdout.close()


@dataclass
class Appliance:
    workdir: Path
    db_url: str | None = None
    extra_args: list[str] = field(default_factory=list)
    smtp_port: int = field(default_factory=free_port)
    smtps_port: int = field(default_factory=free_port)
    web_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        return self.workdir / "twistd.log"

    def command(self) -> list[str]:
        cmd = [
            str(BIN / "twistd"),
            "-n",
            "--pidfile=",
            f"--logfile={self.log_path}",
            "mailiverse",
            "--data-dir",
            str(self.data_dir),
            "--domain",
            DOMAIN,
            "--hostname",
            f"mail.{DOMAIN}",
            "--smtp",
            f"tcp:{self.smtp_port}",
            "--smtps",
            f"tcp:{self.smtps_port}",
            "--web",
            f"tcp:{self.web_port}",
        ]
        if self.db_url:
            cmd += ["--db", self.db_url]
        if "--dns-server" not in self.extra_args:
            address, port = shared_dns_server()
            cmd += ["--dns-server", f"{address}:{port}"]
        return cmd + self.extra_args

    def start(self, timeout: float = 60) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            self.command(), cwd=self.workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        if not wait_for_greeting(self.process, ("127.0.0.1", self.smtp_port), timeout, self.log):
            self.stop()
            raise RuntimeError(f"twistd did not start in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.process, sig)

    def admin(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        cmd = [str(BIN / "mailiverse-admin"), "--data-dir", str(self.data_dir), *args]
        result = subprocess.run(cmd, capture_output=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"{cmd} failed: {result.stderr.decode(errors='replace')}")
        return result

    def add_user(self, name: str, fmt: str = "v1") -> rsa.RSAPrivateKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pub = self.workdir / f"{name}.pub.pem"
        pub.write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        self.admin("user", "add", name, "--public-key", str(pub), "--format", fmt)
        return key


def self_signed_cert(app: Appliance) -> Path:
    """The certificate the appliance made for itself on first start."""
    certs = sorted((app.data_dir / "tls").glob("*.crt")) + sorted((app.data_dir / "tls").glob("*cert*.pem"))
    assert certs, f"no certificate in {app.data_dir / 'tls'}: {list((app.data_dir / 'tls').iterdir())}"
    return certs[0]


def tls_context(app: Appliance) -> ssl.SSLContext:
    """A client context that trusts only the appliance's own certificate and checks its name."""
    ctx = ssl.create_default_context(cafile=str(self_signed_cert(app)))
    ctx.check_hostname = True
    return ctx


def stored(app: Appliance, user: str, prefix: str) -> list[str]:
    """The paths of ``user``'s objects under ``prefix``, as ``mailiverse-admin store ls`` lists them."""
    out = app.admin("store", "ls", user, prefix).stdout.decode()
    return [line.split("\t")[0] for line in out.splitlines() if line]


def https_get(app: Appliance, path: str) -> tuple[int, bytes]:
    """GET ``path`` from the appliance's web port over HTTPS, by its certificate's name (resolved to loopback)."""
    ctx = tls_context(app)
    request = urllib.request.Request(f"https://mail.{DOMAIN}:{app.web_port}{path}")
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx))
    # Resolve the certificate's name to loopback without touching DNS.
    original = socket.getaddrinfo
    socket.getaddrinfo = lambda host, *a, **k: original("127.0.0.1" if host == f"mail.{DOMAIN}" else host, *a, **k)
    try:
        with opener.open(request, timeout=15) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    finally:
        socket.getaddrinfo = original
