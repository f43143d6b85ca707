"""Two real appliances that find each other: a.example on 127.0.0.2 and b.example on 127.0.0.3 (docs/e2e.md §3).

Each is a ``twistd mailiverse`` with its own data directory and self-signed certificate, listening on the
standard ports (25 for SMTP, 443 for HTTPS) of its own loopback address, sending directly to MX hosts
(``--outbound direct``), asking a DNS server started here (``--dns-server``) that answers MX, A, TXT (SPF and
the ``_mailiverse`` announcement) for both domains, and trusting the other's certificate (``--trust-ca``).
No other switch: this is how two appliances with private certificates federate on a private network.

Their certificates and log keys are made before they start (the files they would make on first start), so
the DNS zone can announce the log keys and each can trust the other's certificate from the beginning. Tests
that use the pair hold a file lock: the addresses and ports are the same for every worker.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import smtplib
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mailiverse.store.keylog import load_log_key
from mailiverse.tls import ensure_self_signed
from tests.support.dnsserver import DnsProcess, Zone, start_dns_process
from tests.support.harness import BIN, stop_process, wait_for_greeting

LOCK_FILE = Path("/tmp/mailiverse-federation-tests.lock")


@dataclass
class Peer:
    """One appliance of the pair."""

    name: str
    address: str
    workdir: Path
    trust: list[Path] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def domain(self) -> str:
        return f"{self.name}.example"

    @property
    def hostname(self) -> str:
        return f"mx.{self.domain}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        return self.workdir / "twistd.log"

    @property
    def cert(self) -> Path:
        return self.data_dir / "tls" / "self-signed.crt"

    @property
    def url(self) -> str:
        return f"https://{self.address}"

    @property
    def fingerprint(self) -> str:
        """The SHA-256 of the certificate, which ``mailiverse-client --fingerprint`` pins (the certificate names
        the host, not the loopback address the client connects to)."""
        cert = x509.load_pem_x509_certificate(self.cert.read_bytes())
        return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()

    def prepare(self) -> str:
        """The certificate and log key the appliance would make on first start; the log key as base64."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        ensure_self_signed(self.data_dir, self.hostname, (self.domain,))
        (self.data_dir / "keys").mkdir(exist_ok=True, mode=0o700)
        key = load_log_key(self.data_dir / "keys" / "log.key.pem")
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(raw).decode("ascii")

    def command(self, dns: tuple[str, int]) -> list[str]:
        cmd = [
            str(BIN / "twistd"),
            "-n",
            "--pidfile=",
            f"--logfile={self.log_path}",
            "mailiverse",
            "--data-dir",
            str(self.data_dir),
            "--domain",
            self.domain,
            "--hostname",
            self.hostname,
            "--listen",
            self.address,
            "--smtp",
            "tcp:25",
            "--smtps",
            "none",
            "--web",
            "tcp:443",
            "--dns-server",
            f"{dns[0]}:{dns[1]}",
            "--outbound",
            "direct",
            "--open-signup",
        ]
        for path in self.trust:
            cmd += ["--trust-ca", str(path)]
        return cmd

    def start(self, dns: tuple[str, int], timeout: float = 60) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            self.command(dns), cwd=self.workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        if not wait_for_greeting(self.process, (self.address, 25), timeout, self.log):
            self.stop()
            raise RuntimeError(f"{self.domain} did not start in {timeout}s:\n{self.log()}")
        with socket.create_connection((self.address, 443), timeout=5):
            pass

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        stop_process(self.process)

    def cli(
        self, home: Path, user: str, password: str, *command: str, new_password: str | None = None, stdin: str = ""
    ) -> subprocess.CompletedProcess[str]:
        """The installed ``mailiverse-client`` on a device of its own (``home``), pinned to this peer's certificate."""
        home.mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(home),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "MAILIVERSE_PASSWORD": password,
        }
        if new_password is not None:
            env["MAILIVERSE_NEW_PASSWORD"] = new_password
        argv = [str(BIN / "mailiverse-client"), "--server", self.url, "--user", user, "--fingerprint", self.fingerprint]
        return subprocess.run(
            [*argv, *command], input=stdin, capture_output=True, text=True, cwd=home, env=env, timeout=300
        )

    def object_digests(self, user: str) -> dict[str, str]:
        """Every object of ``user`` with the SHA-256 of its bytes, read from the database itself."""
        database = self.data_dir / "mailiverse.sqlite3"
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as conn:
            row = conn.execute("SELECT id FROM users WHERE name = ?", (user,)).fetchone()
            assert row is not None
            found = {}
            for object_id, path in conn.execute("SELECT id, path FROM objects WHERE user_id = ?", (row[0],)):
                digest = hashlib.sha256()
                for (data,) in conn.execute(
                    "SELECT data FROM object_chunks WHERE object_id = ? ORDER BY seq", (object_id,)
                ):
                    digest.update(data)
                found[path] = digest.hexdigest()
        return found

    def deliver_from_outside(self, to: str, subject: str) -> None:
        """A message from outside over SMTP, as any mail server would send it."""
        message = (
            f"From: Bob <bob@remote.example>\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '-')}@remote.example>\r\n\r\nThis is {subject}.\r\n"
        )
        with smtplib.SMTP(self.address, 25, local_hostname="client.remote.example", timeout=60) as smtp:
            smtp.sendmail("bob@remote.example", [to], message.encode())

    def admin(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(BIN / "mailiverse-admin"), "--data-dir", str(self.data_dir), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


@dataclass
class Federation:
    a: Peer
    b: Peer
    dns: DnsProcess
    zone: Zone


def zone_for(peers: list[tuple[Peer, str]]) -> Zone:
    """MX, A, SPF and the ``_mailiverse`` announcement of each peer's domain."""
    records: dict[str, dict[str, object]] = {}
    for peer, log_key in peers:
        records[peer.domain] = {"MX": [[10, peer.hostname]], "TXT": ["v=spf1 ip4:127.0.0.0/8 -all"]}
        records[peer.hostname] = {"A": [peer.address]}
        records[f"_mailiverse.{peer.domain}"] = {
            "TXT": [f"v=mailiverse1; directory=https://{peer.hostname}/.well-known/mailiverse; log=ed25519:{log_key}"]
        }
    return Zone(records=records)  # type: ignore[arg-type]


@contextmanager
def federation(workdir: Path) -> Iterator[Federation]:
    """Start the pair (and its DNS server), yield it, stop it; one pair at a time on this machine."""
    LOCK_FILE.touch(exist_ok=True)
    with LOCK_FILE.open("r+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        a = Peer("a", "127.0.0.2", workdir / "a")
        b = Peer("b", "127.0.0.3", workdir / "b")
        keys = [(a, a.prepare()), (b, b.prepare())]
        a.trust, b.trust = [b.cert], [a.cert]
        zone = zone_for(keys)
        dns = start_dns_process(zone, workdir / "dns")
        try:
            a.start(dns.address)
            try:
                b.start(dns.address)
                try:
                    yield Federation(a, b, dns, zone)
                finally:
                    b.stop()
            finally:
                a.stop()
        finally:
            dns.stop()


__all__ = ["Federation", "Peer", "federation", "zone_for"]
