"""Moving house (docs/moving.md) end to end: two real appliances (a.example on 127.0.0.2 and b.example on
127.0.0.3, ports 25 and 443, ``--outbound direct`` through a DNS server started here: tests/support/federation.py)
and the real ``mailiverse-client``.

alice has mail on A from outside (before and after a key rotation, so a retired key comes along), a message
from carol and a Sent copy. ``mailiverse-client move --to B`` then:

- copies every object: each one of A's (but A's own ``Settings/keylog``) is at B under the same path with the
  same SHA-256, read straight from both databases;
- brings the keys: alice at B reads the old mail, from before and after the rotation, with ``read``;
- switches A: RCPT TO alice@a.example from a real SMTP client gets ``551 5.1.6 User not local; please try
  <alice@b.example>``; the moved record verifies in A's log (signature and inclusion proof, ``log audit``);
- forwards: carol's message to alice@a.example after the move (carol is told alice moved) reaches alice at B,
  the stored ciphertext carried as it is;
- resumes (a second ``move`` copies nothing), reports its state, and deletes A's data only when asked.
"""

from __future__ import annotations

import smtplib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailiverse.client import Client, HttpsTransport, keys
from tests.support.federation import Federation, Peer, federation

pytestmark = pytest.mark.integration
PASSWORDS = {"a": "alice's long password on a.example", "b": "alice's long password on b.example"}
CAROL = "carol's long password on a.example"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    with federation(tmp_path_factory.mktemp("moving")) as running:
        yield running


def cli(
    peer: Peer, home: Path, user: str, password: str, *command: str, new_password: str | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return peer.cli(home, user, password, *command, new_password=new_password, stdin=stdin)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"
    assert "KEY ALARM" not in result.stderr, result.stderr
    return result.stdout


def fields(text: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


def stored(peer: Peer, user: str) -> dict[str, str]:
    return peer.object_digests(user)


def deliver(peer: Peer, to: str, subject: str) -> None:
    peer.deliver_from_outside(to, subject)


def listing(peer: Peer, home: Path, password: str, folder: str = "Inbox") -> dict[str, str]:
    """``ls``: subject to message ID."""
    rows = [line.split("\t") for line in ok(cli(peer, home, "alice", password, "ls", "--folder", folder)).splitlines()]
    return {row[3]: row[0] for row in rows if len(row) >= 4}


def rcpt(peer: Peer, address: str) -> tuple[int, bytes]:
    with smtplib.SMTP(peer.address, 25, local_hostname="client.remote.example", timeout=60) as smtp:
        smtp.ehlo()
        code, _ = smtp.mail("bob@remote.example")
        assert code == 250
        return smtp.rcpt(address)


def test_moving_house(pair: Federation, tmp_path: Path) -> None:
    a, b = pair.a, pair.b
    old_home, new_home, carol_home = tmp_path / "alice-a", tmp_path / "alice-b", tmp_path / "carol"
    ok(cli(a, old_home, "alice", PASSWORDS["a"], "signup"))
    ok(cli(a, carol_home, "carol", CAROL, "signup"))
    ok(cli(b, new_home, "alice", PASSWORDS["b"], "signup"))
    ok(cli(b, new_home, "alice", PASSWORDS["b"], "login"))

    # alice's life on A: mail from outside, a key rotation, more mail, a message from carol, one she sent.
    deliver(a, "alice@a.example", "before rotation")
    ok(cli(a, old_home, "alice", PASSWORDS["a"], "keys", "rotate"))
    deliver(a, "alice@a.example", "after rotation")
    ok(cli(a, carol_home, "carol", CAROL, "send", "--to", "alice@a.example", "--subject", "from carol", stdin="Hi!"))
    ok(
        cli(
            a, old_home, "alice", PASSWORDS["a"], "send", "--to", "carol@a.example", "--subject", "to carol", stdin="Yo"
        )
    )
    before = stored(a, "alice")
    assert sum(path.startswith("Mail/In/") for path in before) == 3 and any(p.startswith("Mail/Sent/") for p in before)

    # The move.
    moved = cli(
        a, old_home, "alice", PASSWORDS["a"],
        "move", "--to", b.url, "--to-fingerprint", b.fingerprint, "--grace-days", "30", "--yes",
        new_password=PASSWORDS["b"],
    )  # fmt: skip
    summary = fields(ok(moved))
    assert summary["moved to"] == "alice@b.example"
    copied = [path for path in before if path != keys.STATE_PATH]
    assert summary["verified"] == f"{len(copied)} of {len(copied)} with equal SHA-256"
    assert summary["copied"].startswith(f"{len(copied)} (")
    assert len(summary["keys brought"].split(", ")) == 2  # the current key and the one retired by the rotation
    assert "forwarding until" in summary and "copying" in moved.stderr

    # Every object arrived with an equal hash (read from both databases, not through the API).
    after = stored(b, "alice")
    for path in copied:
        assert after.get(path) == before[path], path
    kept = stored(a, "alice")
    assert {path: kept[path] for path in copied} == {path: before[path] for path in copied}  # nothing deleted

    # alice at B reads the old mail: sealed to her old current key and to the key the rotation retired.
    inbox = listing(b, new_home, PASSWORDS["b"])
    for subject in ("before rotation", "after rotation"):
        assert f"This is {subject}." in ok(cli(b, new_home, "alice", PASSWORDS["b"], "read", inbox[subject]))
    assert "Hi!" in ok(cli(b, new_home, "alice", PASSWORDS["b"], "read", inbox["from carol"]))
    assert "to carol" in listing(b, new_home, PASSWORDS["b"], "Sent")

    # Mail from outside to the old address: 551 with the new address (RFC 5321 §3.4), for every spelling.
    for address in ("alice@a.example", "ALICE@a.example"):
        assert rcpt(a, address) == (551, b"5.1.6 User not local; please try <alice@b.example>")
    assert rcpt(a, "carol@a.example")[0] == 250

    # The moved record: signed by alice's key, proven in A's log; the whole log still audits.
    carol = Client(HttpsTransport(a.url, fingerprint=a.fingerprint), "carol")
    carol.login(CAROL)
    try:
        found = keys.lookup(carol, "alice@a.example")
        assert found.moved_to == "alice@b.example" and found.moved is not None
        assert found.moved.key_id == found.record.key_id
    finally:
        carol.logout()
        carol.close()
    audit = fields(ok(cli(a, carol_home, "carol", CAROL, "log", "audit")))
    assert audit["audit"] == "ok"

    # During the grace period mail that reaches the old account is forwarded, as stored, to the new one.
    sent = cli(a, carol_home, "carol", CAROL, "send", "--to", "alice@a.example", "--subject", "after the move",
               stdin="Still writing to your old address.\n")  # fmt: skip
    ok(sent)
    assert "alice@a.example has moved to alice@b.example" in sent.stderr
    deadline = time.monotonic() + 120
    while "after the move" not in (inbox := listing(b, new_home, PASSWORDS["b"])):
        assert time.monotonic() < deadline, f"nothing forwarded:\n{a.log()[-4000:]}\n{b.log()[-4000:]}"
        time.sleep(2)
    shown = ok(cli(b, new_home, "alice", PASSWORDS["b"], "read", inbox["after the move"]))
    assert "Still writing to your old address." in shown
    old_side = stored(a, "alice")
    forwarded = [p for p in old_side if p.startswith("Mail/In/") and p not in before]
    assert len(forwarded) == 1 and stored(b, "alice")[forwarded[0]] == old_side[forwarded[0]]

    # A second run resumes: nothing left to copy, everything verifies; the state is shown; deletion on request.
    again = fields(ok(cli(
        a, old_home, "alice", PASSWORDS["a"],
        "move", "--to", b.url, "--to-fingerprint", b.fingerprint, "--yes", new_password=PASSWORDS["b"],
    )))  # fmt: skip
    assert again["copied"].startswith("0 (") and again["moved to"] == "alice@b.example"
    status = fields(ok(cli(a, old_home, "alice", PASSWORDS["a"], "move", "--status")))
    assert status["moved"] == "yes" and status["moved to"] == "alice@b.example"
    refused = cli(a, old_home, "alice", PASSWORDS["a"], "move", "--finish-delete")
    assert refused.returncode == 2 and "--yes" in refused.stderr and stored(a, "alice") == old_side
    deleted = fields(ok(cli(a, old_home, "alice", PASSWORDS["a"], "move", "--finish-delete", "--yes")))
    assert deleted["deleted"].startswith(f"{len(old_side)} ")
    assert stored(a, "alice") == {} or set(stored(a, "alice")) <= {keys.STATE_PATH}
    assert rcpt(a, "alice@a.example")[0] == 551
    assert "after the move" in listing(b, new_home, PASSWORDS["b"])
