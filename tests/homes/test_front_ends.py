"""Two front ends (two ``twistd mailiverse`` processes with the same --metabase and --home settings) under SMTP load:
100 connections spread over both, one front end SIGKILLed mid-load and started again. Every message a sender got
250 for is stored, and none twice (a sender retrying after the kill finds its message kept once)."""

from __future__ import annotations

import email
import shutil
import signal
import smtplib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.homes.conftest import HomeUrls
from tests.support.harness import DOMAIN, Appliance, tls_context
from tests.support.independent import open_mail
from tests.support.smtp import make_message

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

USERS = ("alice", "bob", "carol", "dave")
CONNECTIONS = 100
PER_CONNECTION = 3


@pytest.fixture
def front_ends(home_urls: HomeUrls, tmp_path: Path) -> Iterator[tuple[Appliance, Appliance]]:
    first = Appliance(tmp_path / "first", extra_args=home_urls.options())
    first.start()
    # The second front end gets the first one's keys (its data dir), as an operator copies them (docs/homes.md).
    second = Appliance(tmp_path / "second", extra_args=home_urls.options())
    first.stop()
    shutil.copytree(first.data_dir, second.data_dir)
    first.start()
    second.start()
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


def _deliver(app: Appliance, rcpt: str, data: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", app.smtp_port, local_hostname="client.test", timeout=30) as smtp:
        smtp.starttls(context=tls_context(app))
        refused = smtp.sendmail("bob@remote.test", [rcpt], data)
        assert refused == {}


def test_a_front_end_killed_mid_load_loses_and_duplicates_nothing(front_ends: tuple[Appliance, Appliance]) -> None:
    first, second = front_ends
    keys: dict[str, rsa.RSAPrivateKey] = {name: first.add_user(name, "v2") for name in USERS}
    acknowledged: dict[str, str] = {}
    failures: list[str] = []
    lock = threading.Lock()

    def sender(index: int) -> None:
        apps = (first, second) if index % 2 else (second, first)
        for n in range(PER_CONNECTION):
            subject = f"load {index}-{n}"
            rcpt = USERS[(index + n) % len(USERS)]
            data = make_message(subject, f"{subject}\n", to=f"{rcpt}@{DOMAIN}")
            deadline = time.monotonic() + 120
            attempt = 0
            while True:
                try:
                    # A sender tries the other MX when one does not answer, and comes back later.
                    _deliver(apps[attempt % 2], f"{rcpt}@{DOMAIN}", data)
                    break
                except smtplib.SMTPResponseException as error:
                    if error.smtp_code >= 500:
                        with lock:
                            failures.append(f"{subject}: {error.smtp_code}")
                        return
                except (OSError, smtplib.SMTPException):
                    pass  # the front end died under us: the message may or may not have been kept
                attempt += 1
                if time.monotonic() > deadline:
                    with lock:
                        failures.append(f"{subject}: never acknowledged")
                    return
                time.sleep(0.2)
            with lock:
                acknowledged[subject] = rcpt

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    while len(acknowledged) < CONNECTIONS * PER_CONNECTION // 4:
        time.sleep(0.05)
    second.stop(signal.SIGKILL)
    killed_at = len(acknowledged)
    second.start()
    for thread in threads:
        thread.join(300)
    assert not failures, failures
    assert len(acknowledged) == CONNECTIONS * PER_CONNECTION
    assert killed_at < CONNECTIONS * PER_CONNECTION

    for name, key in keys.items():
        dump = first.workdir / f"dump-{name}"
        first.admin("store", "dump", name, "Mail/In/", str(dump))
        subjects = [
            email.message_from_bytes(open_mail(key, path.read_bytes()))["Subject"]
            for path in sorted((dump / "Mail" / "In").iterdir())
        ]
        expected = sorted(s for s, rcpt in acknowledged.items() if rcpt == name)
        assert sorted(subjects) == expected, (name, len(subjects), len(expected))
