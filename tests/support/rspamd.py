"""A real rspamd for tests (Debian's ``rspamd``): its controller on 127.0.0.1, its own configuration, Bayes
statistics in a private ``redis-server``, and its DNS asked of the test's server only (no network).

The configuration is Debian's stock one (``/etc/rspamd``) with the test's directory as ``LOCAL_CONFDIR``,
``DBDIR``, ``RUNDIR`` and ``LOGDIR``: only the controller worker runs (it serves ``/checkv2`` and the
learning commands), secure_ip 127.0.0.1 needs no password, and the Bayes classifier learns from one
message (``min_learns = 1``). ``start_rspamd`` waits for ``/ping`` (the first start compiles its
regular expressions: about ten seconds).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.harness import free_port

_MAIN_CONFIG = """\
.include "$CONFDIR/common.conf"
options {{
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    dns {{ nameserver = ["{dns}"]; timeout = 1s; retransmits = 1; }}
}}
logging {{
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    level = "info";
}}
worker "controller" {{
    bind_socket = "127.0.0.1:{port}";
    count = 1;
    secure_ip = "127.0.0.1";
    password = "";
    enable_password = "";
}}
"""
_LOCAL = {
    "redis.conf": 'servers = "127.0.0.1:{redis}";\n',
    "classifier-bayes.conf": (
        'backend = "redis";\nservers = "127.0.0.1:{redis}";\nmin_learns = 1;\nautolearn = false;\n'
    ),
    # No fuzzy storage or URL reputation of anyone else's: nothing leaves 127.0.0.1.
    "fuzzy_check.conf": "enabled = false;\n",
}


@dataclass
class RspamdProcess:
    url: str
    directory: Path
    rspamd: subprocess.Popen[bytes]
    redis: subprocess.Popen[bytes]

    def stat(self) -> dict[str, object]:
        with urllib.request.urlopen(f"{self.url}/stat", timeout=10) as reply:  # noqa: S310 - 127.0.0.1 only
            value = json.loads(reply.read())
        assert isinstance(value, dict)
        return value

    def learned(self) -> int:
        """How many messages rspamd has learned from (spam and ham)."""
        return int(self.stat()["learned"])  # type: ignore[call-overload]

    def log(self) -> str:
        path = self.directory / "rspamd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for process in (self.rspamd, self.redis):
            process.terminate()
        for process in (self.rspamd, self.redis):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def require_rspamd() -> None:
    """Skip unless Debian's rspamd and redis-server are installed (``make test`` installs them as root)."""
    missing = [tool for tool in ("rspamd", "redis-server") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {' and '.join(missing)} (appliance/test-packages.txt; make sysdeps as root)")


#: Rules a test can trigger by a word in the Subject, one per rspamd action the appliance applies:
#: ``MV-TEST-ADD-HEADER`` (score 7: "add header"), ``MV-TEST-GREYLIST`` (4.5: "greylist"; the greylisting
#: module itself is off, so the action is the score's) and ``MV-TEST-SOFT-REJECT`` (forced "soft reject").
TEST_RULES = {
    "multimap.conf": "".join(
        f'{rule} {{{{ type = "header"; header = "Subject"; regexp = true; map = "{{directory}}/{name}"; '
        f"score = {score}; }}}}\n"
        for rule, name, score in (
            ("MV_TEST_ADD_HEADER", "add-header.map", 7.0),
            ("MV_TEST_GREYLIST", "greylist.map", 4.5),
            ("MV_TEST_SOFT", "soft.map", 0.1),
        )
    ),
    "force_actions.conf": """\
rules {{ MV_TEST_SOFT_REJECT {{ action = "soft reject"; expression = "MV_TEST_SOFT"; message = "later"; }} }}
""",
    "greylist.conf": "enabled = false;\n",
}
_TEST_MAPS = {
    "add-header.map": "/MV-TEST-ADD-HEADER/\n",
    "greylist.map": "/MV-TEST-GREYLIST/\n",
    "soft.map": "/MV-TEST-SOFT-REJECT/\n",
}


def start_rspamd(
    directory: Path, dns: tuple[str, int], *, test_rules: bool = False, timeout: float = 90
) -> RspamdProcess:
    """rspamd on a free port of 127.0.0.1 asking ``dns``; with ``test_rules`` the ``TEST_RULES`` too."""
    require_rspamd()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "local.d").mkdir(exist_ok=True)
    port, redis_port = free_port(), free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    (directory / "rspamd.conf").write_text(_MAIN_CONFIG.format(dns=f"{dns[0]}:{dns[1]}", port=port))
    for name, text in _LOCAL.items():
        (directory / "local.d" / name).write_text(text.format(redis=redis_port))
    if test_rules:
        for name, text in TEST_RULES.items():
            (directory / "local.d" / name).write_text(text.format(directory=directory))
        for name, text in _TEST_MAPS.items():
            (directory / name).write_text(text)
    command = ["rspamd", "-f", "-c", str(directory / "rspamd.conf")]
    if os.geteuid() == 0:
        command += ["-u", "root", "-g", "root", "-i"]
    for var in ("LOCAL_CONFDIR", "DBDIR", "RUNDIR", "LOGDIR"):
        command.append(f"--var={var}={directory}")
    process = subprocess.Popen(command, cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    started = RspamdProcess(f"http://127.0.0.1:{port}", directory, process, redis)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            started.stop()
            raise RuntimeError(f"rspamd exited at start:\n{started.log()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{started.url}/ping", timeout=2) as reply:  # noqa: S310
                if reply.read().strip() == b"pong":
                    return started
        except OSError:
            time.sleep(0.3)
    started.stop()
    raise RuntimeError(f"rspamd did not answer /ping within {timeout} s:\n{started.log()[-3000:]}")
