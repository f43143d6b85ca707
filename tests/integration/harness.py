"""Start and stop a real ``twistd mailiverse`` on 127.0.0.1 for integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DOMAIN = "example.org"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
            str(BIN / "twistd"), "-n", "--pidfile=", f"--logfile={self.log_path}",
            "mailiverse",
            "--data-dir", str(self.data_dir),
            "--domain", DOMAIN,
            "--hostname", f"mail.{DOMAIN}",
            "--smtp", f"tcp:{self.smtp_port}",
            "--smtps", f"tcp:{self.smtps_port}",
            "--web", f"tcp:{self.web_port}",
        ]
        if self.db_url:
            cmd += ["--db", self.db_url]
        return cmd + self.extra_args

    def start(self, timeout: float = 60) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(self.command(), cwd=self.workdir, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                out = self.process.stdout.read().decode(errors="replace") if self.process.stdout else ""
                raise RuntimeError(f"twistd exited with {self.process.returncode}:\n{out}\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=1) as s:
                    s.settimeout(5)
                    if s.recv(100).startswith(b"220"):
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"twistd did not start in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process and self.process.stdout:
            self.process.stdout.close()

    def admin(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        cmd = [str(BIN / "mailiverse-admin"), "--data-dir", str(self.data_dir), *args]
        result = subprocess.run(cmd, capture_output=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"{cmd} failed: {result.stderr.decode(errors='replace')}")
        return result

    def add_user(self, name: str, fmt: str = "v1") -> rsa.RSAPrivateKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pub = self.workdir / f"{name}.pub.pem"
        pub.write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        self.admin("user", "add", name, "--public-key", str(pub), "--format", fmt)
        return key
