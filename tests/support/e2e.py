"""End to end: a real ``twistd mailiverse`` relaying through a real STARTTLS+AUTH smarthost,
and the CLI as a subprocess.

The smarthost is tests/support/smarthost.py run by ``python -m tests.e2e.smarthost_main``; the
fixtures that start both for a module are in tests/e2e/conftest.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.harness import BIN, ROOT, Appliance

RELAY_USER = "relay"
RELAY_PASSWORD = "relay secret for the e2e smarthost"


@dataclass
class Smarthost:
    """The smarthost subprocess and where it drops what it receives."""

    process: subprocess.Popen[bytes]
    port: int
    ca: Path
    directory: Path

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        if self.process.stdout:
            self.process.stdout.close()

    def received(self) -> list[dict[str, object]]:
        folder = self.directory / "received"
        files = sorted(folder.glob("*.json"), key=lambda p: int(p.stem))
        return [json.loads(p.read_text()) for p in files]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[dict[str, object]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.received()
            if len(got) >= count:
                return got
            time.sleep(0.1)
        raise AssertionError(f"the smarthost received {len(self.received())} message(s), expected {count}")


def start_smarthost(directory: Path) -> Smarthost:
    """Start ``tests.e2e.smarthost_main`` and read its port and CA."""
    directory.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.smarthost_main", str(directory), RELAY_USER, RELAY_PASSWORD],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.kill()
        raise RuntimeError("the test smarthost did not start")
    info = json.loads(line)
    return Smarthost(process, int(info["port"]), Path(info["ca"]), directory)


@dataclass
class Device:
    """Where the CLI runs: an empty HOME and working directory, so anything it writes would show."""

    home: Path
    appliance: Appliance

    @property
    def ca(self) -> Path:
        return self.appliance.data_dir / "tls" / "self-signed.crt"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.appliance.web_port}"

    def cli(
        self,
        user: str,
        *command: str,
        password: str | None,
        new_password: str | None = None,
        stdin: bytes = b"",
        pin: list[str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the installed ``mailiverse-client`` console script."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILIVERSE_")}
        env.update(
            HOME=str(self.home), XDG_CACHE_HOME=str(self.home / ".cache"), XDG_CONFIG_HOME=str(self.home / ".config")
        )
        if password is not None:
            env["MAILIVERSE_PASSWORD"] = password
        if new_password is not None:
            env["MAILIVERSE_NEW_PASSWORD"] = new_password
        trust = pin if pin is not None else ["--ca", str(self.ca)]
        argv = [str(BIN / "mailiverse-client"), "--server", self.url, "--user", user, *trust, *command]
        result = subprocess.run(argv, input=stdin, capture_output=True, cwd=self.home, env=env, timeout=120)
        return subprocess.CompletedProcess(argv, result.returncode, result.stdout.decode(), result.stderr.decode())


def start_appliance(workdir: Path, smarthost: Smarthost, *extra: str, db_url: str | None = None) -> Appliance:
    """A real appliance relaying remote mail through ``smarthost``, with ``extra`` options."""
    password_file = workdir / "relay.pw"
    workdir.mkdir(parents=True, exist_ok=True)
    password_file.write_text(RELAY_PASSWORD)
    password_file.chmod(0o600)
    appliance = Appliance(
        workdir / "appliance",
        db_url=db_url,
        extra_args=[
            "--outbound",
            "smarthost",
            "--smarthost",
            f"localhost:{smarthost.port}",
            "--smarthost-user",
            RELAY_USER,
            "--smarthost-password-file",
            str(password_file),
            "--smarthost-ca",
            str(smarthost.ca),
            *extra,
        ],
    )
    appliance.start()
    return appliance
