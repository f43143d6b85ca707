"""``--reuse-port``: two real twistd processes on one database share one SMTP port; without it the second
process stops at start-up with an error naming the port and the option."""

from __future__ import annotations

import smtplib
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.harness import DOMAIN, Appliance, tls_context
from tests.support.independent import open_mail
from tests.support.smtp import make_message

pytestmark = pytest.mark.integration

MESSAGES = 30


@dataclass
class SharedDirAppliance(Appliance):
    """An appliance process with its own log but another one's data dir (certificate, tmp/, appliance.json)."""

    shared_data_dir: Path | None = None

    @property
    def data_dir(self) -> Path:
        return self.shared_data_dir or self.workdir / "data"


def _second(first: Appliance, workdir: Path, extra_args: list[str]) -> SharedDirAppliance:
    return SharedDirAppliance(
        workdir,
        db_url=first.db_url,
        extra_args=extra_args,
        smtp_port=first.smtp_port,
        smtps_port=first.smtps_port,
        web_port=first.web_port,
        shared_data_dir=first.data_dir,
    )


def _send(app: Appliance, data: bytes) -> None:
    """One message over a fresh connection (a fresh source port, so the kernel picks a process anew)."""
    with smtplib.SMTP("127.0.0.1", app.smtp_port, local_hostname="client.test", timeout=30) as smtp:
        smtp.starttls(context=tls_context(app))
        assert smtp.sendmail("bob@remote.test", [f"alice@{DOMAIN}"], data) == {}


def _wait_listening(app: Appliance, timeout: float = 60) -> None:
    """Wait until the process says it listens on its SMTP port (the port answers already: the other process)."""
    deadline = time.monotonic() + timeout
    while f"starting on {app.smtp_port}" not in app.log():
        assert app.process is not None and app.process.poll() is None, app.log()
        assert time.monotonic() < deadline, app.log()
        time.sleep(0.1)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_two_processes_share_the_smtp_port(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    """With --reuse-port two appliances on one data dir and one database (the data dir's SQLite file, or
    PostgreSQL) listen on one port, both take mail, every message is stored once and decrypts."""
    db_url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    # At debug level each process logs every message it stores: the logs tell who took what.
    shared = ["--reuse-port", "--workers", "1", "--log-level", "debug"]
    first = Appliance(tmp_path / "first", db_url=db_url, extra_args=shared)
    first.start()
    second = _second(first, tmp_path / "second", shared)
    try:
        key = first.add_user("alice", "v2")
        second.start()
        _wait_listening(second)
        sent = [make_message(f"Shared port {i}", f"Body {i}.\n") for i in range(MESSAGES)]
        for data in sent:
            _send(first, data)
        # Each process logs every message it stored (at debug level; twistd writes every level): both took some.
        taken = [app.log().count("stored message ") for app in (first, second)]
        assert sum(taken) == MESSAGES and min(taken) > 0, taken
        out = tmp_path / "dump"
        first.admin("store", "dump", "alice", "Mail/In/", str(out))
        originals = sorted(p for p in out.rglob("*") if p.is_file())
        assert len(originals) == MESSAGES
        opened = [open_mail(key, p.read_bytes()) for p in originals]
        assert sorted(next(m for m in sent if o.endswith(m)) for o in opened) == sorted(sent)
    finally:
        second.stop()
        first.stop()


def test_without_reuse_port_the_second_process_stops(tmp_path: Path) -> None:
    """Without --reuse-port a second appliance on a held SMTP port exits at start-up, naming the port and the flag."""
    first = Appliance(tmp_path / "first", extra_args=["--workers", "0"])
    first.start()
    second = _second(first, tmp_path / "second", ["--workers", "0"])
    second.shared_data_dir = None
    try:
        try:
            second.start()  # may return at once: the first process answers on the port
        except RuntimeError as e:
            output = str(e)
        else:
            assert second.process is not None
            second.process.wait(60)
            output = second.log() + (
                second.process.stdout.read().decode(errors="replace") if second.process.stdout else ""
            )
        assert second.process is not None and second.process.returncode not in (None, 0)
        assert f"127.0.0.1:{first.smtp_port}" in output, output
        assert "in use by another process" in output and "--reuse-port" in output, output
    finally:
        second.stop()
        first.stop()
