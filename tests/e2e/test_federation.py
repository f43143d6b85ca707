"""Issue 21 end to end: two appliances (a.example on 127.0.0.2, b.example on 127.0.0.3, ports 25 and 443, a DNS
server started here, each trusting the other's certificate with ``--trust-ca``) and the real ``mailiverse-client``.

- A user of A writes to a user of B: the message is sealed on A's device, carried over SMTP (A's outbound
  queue, MX lookup, STARTTLS verified against the trusted certificate), stored by B as it came, read by the
  user of B with the sender's signature verified; a canary in the subject and body is absent from both
  appliances' data directories (databases, spools, keys), logs, and the memory of both ``twistd`` processes and
  their workers.
- Internal mail on one appliance: the same canary test.
- A key swapped in B's database behind its API's back makes A's client refuse to send end to end.
- A recipient domain without an appliance: the client says so before sending, then sends ordinary mail.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from mailiverse.keylog.records import canonical_json, key_record_fields, sign_key_record
from tests.support import canary
from tests.support.federation import Federation, Peer, federation

pytestmark = pytest.mark.integration
PASSWORD = "a long federation password"
CANARY = "canary-5ea1ed-0n-the-device"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    with federation(tmp_path_factory.mktemp("federation")) as running:
        yield running


def cli(peer: Peer, home: Path, user: str, *command: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return peer.cli(home, user, PASSWORD, *command, stdin=stdin)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def people(pair: Federation, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Peer, Path]]:
    """alice and carol on A, bob on B, each with a device of their own; their first login publishes their keys."""
    homes = tmp_path_factory.mktemp("devices")
    people = {"alice": (pair.a, homes / "alice"), "carol": (pair.a, homes / "carol"), "bob": (pair.b, homes / "bob")}
    for user, (peer, home) in people.items():
        ok(cli(peer, home, user, "signup"))
        ok(cli(peer, home, user, "login"))
    return people


def run(
    people: dict[str, tuple[Peer, Path]], user: str, *command: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    peer, home = people[user]
    return cli(peer, home, user, *command, stdin=stdin)


def wait_for_mail(people: dict[str, tuple[Peer, Path]], user: str, count: int, timeout: float = 90) -> list[list[str]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = [line.split("\t") for line in ok(run(people, user, "ls")).splitlines() if line]
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(1)


def assert_nowhere(pair: Federation, secret: str) -> None:
    """The canary is in no file of either appliance (data directories, logs) nor in their processes' memory."""
    needle = secret.encode()
    # Positive controls: the scans find the canary where it is (this process sent it, in base64 too).
    assert canary.process_holds(os.getpid(), needle)
    control = pair.a.workdir.parent / "control.txt"
    control.write_bytes(base64.b64encode(b"xy" + needle))
    assert canary.files_with(control.parent, needle) == [control]
    control.unlink()
    for peer in (pair.a, pair.b):
        assert canary.files_with(peer.workdir, needle) == [], f"{peer.domain} wrote the plaintext to disk"
        assert peer.process is not None and peer.process.poll() is None
        assert canary.memory_read(peer.process.pid) > 10 * 1024 * 1024  # the scan really read the processes
        assert canary.memory_with(peer.process.pid, needle) == [], f"{peer.domain} held the plaintext in memory"


def test_mail_between_appliances_is_sealed_on_the_device(
    pair: Federation, people: dict[str, tuple[Peer, Path]]
) -> None:
    secret = f"{CANARY}-federated"
    sent = run(
        people, "alice", "send", "--to", "bob@b.example", "--subject", secret, "--require-e2e", stdin=f"{secret}\n"
    )
    assert "end-to-end encrypted" in ok(sent) and "not end-to-end" not in sent.stdout
    rows = wait_for_mail(people, "bob", 1)
    assert len(rows) == 1, f"nothing arrived at b.example:\n{pair.a.log()[-3000:]}\n{pair.b.log()[-3000:]}"
    assert secret in rows[0][3]
    shown = ok(run(people, "bob", "read", rows[0][0]))
    assert "End-to-end encrypted · signed by alice@a.example (verified)" in shown
    assert secret in shown
    sent_rows = [line.split("\t") for line in ok(run(people, "alice", "ls", "--folder", "Sent")).splitlines()]
    assert any(secret in row[3] for row in sent_rows)
    assert_nowhere(pair, secret)


def test_internal_mail_is_sealed_on_the_device(pair: Federation, people: dict[str, tuple[Peer, Path]]) -> None:
    secret = f"{CANARY}-internal"
    ok(run(people, "alice", "send", "--to", "carol@a.example", "--subject", secret, "--require-e2e", stdin=secret))
    rows = wait_for_mail(people, "carol", 1, timeout=10)
    assert len(rows) == 1 and secret in rows[0][3]
    assert "signed by alice@a.example (verified)" in ok(run(people, "carol", "read", rows[0][0]))
    assert_nowhere(pair, secret)


def test_a_domain_without_an_appliance_gets_ordinary_mail_and_the_user_is_told(
    pair: Federation, people: dict[str, tuple[Peer, Path]]
) -> None:
    """nowhere.example announces no appliance: --require-e2e refuses; without it the client says so first."""
    refused = run(people, "alice", "send", "--to", "dan@nowhere.example", "--subject", "hi", "--require-e2e", stdin="x")
    assert refused.returncode != 0 and "dan@nowhere.example" in refused.stderr
    sent = run(people, "alice", "send", "--to", "dan@nowhere.example", "--subject", "hi", stdin="x")
    assert sent.returncode == 0, sent.stderr
    assert "not end to end" in sent.stderr and "dan@nowhere.example" in sent.stderr


def test_a_key_swapped_behind_the_directory_is_refused(pair: Federation, people: dict[str, tuple[Peer, Path]]) -> None:
    """B's database gets another key for bob in the leaf the log proves (as a thief with the database could do):
    A's client checks B's answer against B's signed head, refuses to send end to end, and names the reason."""
    database = pair.b.data_dir / "mailiverse.sqlite3"
    with sqlite3.connect(database) as conn:
        (index, leaf) = conn.execute(
            "SELECT key_log.leaf_index, key_log.leaf FROM key_log JOIN key_records"
            " ON key_records.leaf_index = key_log.leaf_index JOIN users ON users.id = key_records.user_id"
            " WHERE users.name = 'bob' AND key_records.status = 'current'"
        ).fetchone()
        genuine = json.loads(bytes(leaf))
        thief = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        fields = key_record_fields(
            thief.public_key(), ["bob@b.example"], key_id=genuine["key_id"], created_ms=genuine["created_ms"]
        )
        forged = canonical_json(sign_key_record(fields, thief))  # a record that verifies on its own
        conn.execute("UPDATE key_log SET leaf = ? WHERE leaf_index = ?", (forged, index))
    try:
        refused = run(people, "alice", "send", "--to", "bob@b.example", "--subject", "swapped", stdin="x")
        assert refused.returncode != 0
        assert "bob@b.example" in refused.stderr and "key" in refused.stderr.lower()
        assert "sent" not in refused.stdout.lower()
    finally:
        with sqlite3.connect(database) as conn:
            conn.execute("UPDATE key_log SET leaf = ? WHERE leaf_index = ?", (bytes(leaf), index))
