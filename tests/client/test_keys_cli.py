"""``mailiverse-client keys verify|rotate``, ``log audit``, ``group ...`` and ``mailiverse-admin domain policy``
against a real ``twistd mailiverse`` (issue 20).

Sign-up publishes the account's signed key record; ``keys verify`` checks another user's key (signature,
inclusion in the signed head, consistency with the last head this user saw) and prints its id and
fingerprint; mail sealed before a rotation and after it both open; the superseded record stays in the
history; ``log audit`` replays every entry and head. Then the attacks of someone controlling the server's
database: a tampered record, a key swapped behind the API's back (also refused by ``send``) and a forked log
signed with the real log key are each a KEY ALARM. Groups: two members read the group's mail; after a removal
the removed member's real keys open nothing new and no group private key is on the server in the clear. The
organisation policy: the officer reads a copy of mail to a member, every client shows the policy, and going
back to personal is a second, forward entry.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, delete, insert, select, update
from sqlalchemy.engine import Connection, Engine

from mailiverse.client import Client, HttpsTransport, groups
from mailiverse.crypto.errors import CryptoError
from mailiverse.crypto.formats import open_mail_object
from mailiverse.crypto.keys import generate_private_key, private_key_der
from mailiverse.delivery.pipeline import ORGANISATION_POLICY_TTL
from mailiverse.keylog.records import address_hash, canonical_json, key_record_fields, sign_key_record
from mailiverse.store.keylog import KeyLog, load_log_key
from mailiverse.store.schema import key_bindings, key_log, key_log_heads, key_records
from tests.support.e2e import Device
from tests.support.harness import DOMAIN, Appliance
from tests.support.smtp import SmtpSession

PASSWORDS = {"alice": "alice's long directory password", "bob": "bob's long directory password"}
ALICE, BOB = f"alice@{DOMAIN}", f"bob@{DOMAIN}"


@dataclass
class World:
    app: Appliance
    device: Device

    def cli(self, *command: str, user: str = "alice", stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
        return self.device.cli(user, *command, password=PASSWORDS[user], stdin=stdin)

    def ok(self, *command: str, user: str = "alice", stdin: bytes = b"") -> str:
        done = self.cli(*command, user=user, stdin=stdin)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        assert "KEY ALARM" not in done.stderr, done.stderr
        return done.stdout

    def fields(self, *command: str, user: str = "alice") -> dict[str, str]:
        return dict(line.split(": ", 1) for line in self.ok(*command, user=user).splitlines())

    def deliver(self, subject: str, to: str = ALICE) -> None:
        message = (
            f"From: Carol <carol@remote.test>\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '-')}@remote.test>\r\n\r\nThis is {subject}.\r\n"
        ).encode()
        session = SmtpSession(self.app.smtp_port, timeout=60)
        try:
            session.hello()
            session.envelope([to], sender="carol@remote.test")
            code, reply = session.send_data(message)
            assert code == 250, reply
        finally:
            session.close()

    def read_subject(self, subject: str, user: str = "alice") -> str:
        rows = {row[3]: row for row in (line.split("\t") for line in self.ok("ls", user=user).splitlines())}
        return self.ok("read", rows[subject][0], user=user)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("keys")
    app = Appliance(root / "appliance", extra_args=["--workers", "1"])
    try:
        app.start()
        home = root / "device"
        home.mkdir()
        world = World(app, Device(home, app))
        world.ok("signup")
        world.ok("signup", "--invite", app.admin("invite", "create").stdout.decode().strip(), user="bob")
        yield world
    finally:
        app.stop()


@pytest.mark.integration
def test_verify_rotate_history_and_audit(world: World) -> None:
    """keys verify prints a verified record; rotation keeps old mail readable and the old record in history."""
    seen = world.fields("keys", "verify", BOB)
    assert seen["address"] == BOB
    assert len(seen["key_id"]) == 36 and len(seen["fingerprint"]) == 64
    assert seen["status"].startswith("current (personal, RSA-2048")
    assert seen["proof"].startswith("verified in tree of ") and seen["history"] == "-"

    world.deliver("before rotation")
    before = world.fields("keys", "verify", ALICE)
    rotated = world.ok("keys", "rotate")
    assert rotated.startswith(f"rotated {before['key_id']} -> "), rotated
    world.deliver("after rotation")
    assert "This is before rotation." in world.read_subject("before rotation")
    assert "This is after rotation." in world.read_subject("after rotation")

    after = world.fields("keys", "verify", ALICE, user="bob")
    assert after["key_id"] != before["key_id"] and after["fingerprint"] != before["fingerprint"]
    assert after["history"] == f"{before['key_id']} (superseded)"
    # Bob's view of alice's key agrees with alice's own.
    assert world.fields("keys", "verify", ALICE)["key_id"] == after["key_id"]

    audit = world.fields("log", "audit", user="bob")
    assert audit["audit"] == "ok"
    # alice's first key, bob's, then the rotation's two records (old superseded, new)
    assert int(audit["entries"]) == int(audit["keys"]) == 4 and int(audit["heads"]) == 3


@contextmanager
def appliance_db(world: World) -> Iterator[Engine]:
    """The running appliance's SQLite database, opened as someone with access to the server's disk."""
    engine = create_engine(f"sqlite:///{world.app.data_dir / 'mailiverse.sqlite3'}", connect_args={"timeout": 30})
    try:
        yield engine
    finally:
        engine.dispose()


def _bob_current(conn: Connection) -> tuple[str, int]:
    raw = base64.b64decode(address_hash(BOB))
    row = conn.execute(
        select(key_records.c.key_id, key_records.c.leaf_index)
        .select_from(key_bindings.join(key_records, key_bindings.c.key_id == key_records.c.key_id))
        .where(key_bindings.c.address_hash == raw, key_records.c.status == "current")
    ).one()
    return str(row.key_id), int(row.leaf_index)


def _forged_record() -> dict[str, object]:
    """A key record for bob's address, correctly signed by an attacker's own key."""
    attacker = generate_private_key(2048)
    return sign_key_record(
        key_record_fields(attacker.public_key(), [BOB], created_ms=int(time.time() * 1000)), attacker
    )


def _alarm(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "KEY ALARM" in done.stderr, done.stderr
    return done.stderr


@pytest.mark.integration
def test_tampering_forks_and_swaps_are_each_alarms(world: World) -> None:
    """Three attacks by someone controlling the server's database (and, for the fork, its log key); after each
    the database is put back and the clients agree with it again."""
    assert world.fields("keys", "verify", BOB)["status"].startswith("current")  # alice saw the log as it was
    with appliance_db(world) as engine:
        with engine.begin() as conn:
            log_rows = [dict(r._mapping) for r in conn.execute(select(key_log))]
            head_rows = [dict(r._mapping) for r in conn.execute(select(key_log_heads))]
            record_rows = [dict(r._mapping) for r in conn.execute(select(key_records))]
            binding_rows = [dict(r._mapping) for r in conn.execute(select(key_bindings))]
            bob_key, bob_leaf = _bob_current(conn)
            bob_user = next(r["user_id"] for r in record_rows if r["key_id"] == bob_key)

        def restore() -> None:
            with engine.begin() as conn:
                for table in (key_bindings, key_records, key_log_heads, key_log):
                    conn.execute(delete(table))
                conn.execute(insert(key_log), log_rows)
                conn.execute(insert(key_log_heads), head_rows)
                conn.execute(insert(key_records), record_rows)
                conn.execute(insert(key_bindings), binding_rows)

        # 1. A tampered record: bob's leaf rewritten to carry another key, signature and proof left as they were.
        forged = _forged_record()
        with engine.begin() as conn:
            original = next(r["leaf"] for r in log_rows if r["leaf_index"] == bob_leaf)
            document = json.loads(original)
            document["public_key"] = forged["public_key"]
            conn.execute(update(key_log).where(key_log.c.leaf_index == bob_leaf).values(leaf=canonical_json(document)))
        assert "signature does not verify" in _alarm(world.cli("keys", "verify", BOB))
        restore()
        assert world.fields("keys", "verify", BOB)["key_id"] == bob_key

        # 2. A key swapped in the database behind the API's back: the forged record takes bob's place in the
        # index and in the leaf (its own signature is valid), but the log's signed head was over the real leaf.
        with engine.begin() as conn:
            conn.execute(update(key_log).where(key_log.c.leaf_index == bob_leaf).values(leaf=canonical_json(forged)))
            conn.execute(delete(key_bindings).where(key_bindings.c.key_id == bob_key))
            conn.execute(update(key_records).where(key_records.c.key_id == bob_key).values(key_id=forged["key_id"]))
            conn.execute(
                insert(key_bindings).values(address_hash=base64.b64decode(address_hash(BOB)), key_id=forged["key_id"])
            )
        assert "inclusion proof" in _alarm(world.cli("keys", "verify", BOB))
        sent = world.cli("send", "--to", BOB, "--subject", "to a swapped key", stdin=b"secret\n")
        assert sent.returncode == 1 and "not sent: KEY ALARM" in sent.stderr, sent.stderr
        restore()

        # 3. A forked log: the server (with its log key) rebuilds the log from scratch with the forged key for
        # bob in it and signs heads over it. Each head verifies on its own; alice's last head is not in it.
        log_key = load_log_key(world.app.data_dir / "keys" / "log.key.pem")
        with engine.begin() as conn:
            for table in (key_bindings, key_records, key_log_heads, key_log):
                conn.execute(delete(table))
            fork = KeyLog(log_key)
            fork.append_txn(conn, [canonical_json(forged)], int(time.time() * 1000))
            conn.execute(
                insert(key_records).values(
                    key_id=forged["key_id"], user_id=bob_user, group_id=None, kind="personal", status="current",
                    leaf_index=0, created_ms=0,
                )
            )  # fmt: skip
            conn.execute(
                insert(key_bindings).values(address_hash=base64.b64decode(address_hash(BOB)), key_id=forged["key_id"])
            )
        forked = _alarm(world.cli("keys", "verify", BOB))
        assert "*** KEY ALARM *** the log no longer has the" in forked and "forked" in forked, forked
        assert "published your key" not in forked, forked
        restore()
    assert world.fields("keys", "verify", BOB)["key_id"] == bob_key
    assert world.fields("log", "audit")["audit"] == "ok"


def _login(world: World, user: str) -> Client:
    ca = world.app.data_dir / "tls" / "self-signed.crt"
    client = Client(HttpsTransport(f"https://127.0.0.1:{world.app.web_port}", ca_file=str(ca)), user)
    client.login(PASSWORDS[user], upgrade=False)
    return client


@pytest.mark.integration
def test_group_members_read_and_a_removed_member_reads_nothing_new(world: World) -> None:
    """alice makes sales@, adds bob: both read mail to the group; after bob's removal the group has a new key,
    the new mail does not open with any key bob holds, his access to the group's store is gone, and the
    server's database and log never held a group private key in the clear."""
    SALES = f"sales@{DOMAIN}"
    assert world.ok("group", "new", SALES).startswith(f"made group {SALES}: key ")
    assert world.ok("group", "add", SALES, BOB) == f"{BOB} added to {SALES}: members alice, bob\n"
    listed = world.ok("group", "list", user="bob").split("\t")
    assert listed[0] == SALES and listed[2] == "alice,bob\n"
    assert world.fields("keys", "verify", SALES, user="bob")["status"].startswith("current (group, RSA-2048")

    world.deliver("for the team", to=SALES)
    for user in ("alice", "bob"):
        rows = world.ok("group", "ls", SALES, user=user).splitlines()
        assert len(rows) == 1 and rows[0].split("\t")[3] == "for the team", rows
        assert "This is for the team." in world.ok("group", "read", SALES, rows[0].split("\t")[0], user=user)
    alice = _login(world, "alice")
    bob = _login(world, "bob")
    try:
        old_group_keys = groups.open_group(bob, SALES).private_keys
        removed = world.ok("group", "remove", SALES, BOB)
        assert removed.startswith(f"{BOB} removed from {SALES}: new key ") and removed.endswith("members alice\n")
        world.deliver("after bob left", to=SALES)
        rows = {r.split("\t")[3]: r.split("\t")[0] for r in world.ok("group", "ls", SALES).splitlines()}
        assert set(rows) == {"for the team", "after bob left"}
        assert "This is after bob left." in world.ok("group", "read", SALES, rows["after bob left"])
        assert "This is for the team." in world.ok("group", "read", SALES, rows["for the team"])
        # bob: no access any more, and his real keys (his own, and the group key he had) open nothing new
        denied = world.cli("group", "ls", SALES, user="bob")
        assert denied.returncode == 1 and "not_found" in denied.stderr, denied.stderr
        view = groups.reader(alice, SALES)
        newest = view.resolve_message(rows["after bob left"])
        blob = view.get_object(newest)
        for key in (bob.private_key, *old_group_keys):
            with pytest.raises(CryptoError):
                open_mail_object(key, blob)
        history = world.fields("keys", "verify", SALES)["history"]
        assert history.endswith("(superseded)")

        # the group's private keys exist on the server only wrapped
        current_keys = groups.open_group(alice, SALES).private_keys
        secrets = [private_key_der(k) for k in (*old_group_keys, *current_keys)]
        stored = b"".join(p.read_bytes() for p in world.app.data_dir.glob("mailiverse.sqlite3*"))
        for secret in secrets:
            for form in (secret, base64.b64encode(secret), secret[-100:-60]):  # the last: in the CRT values
                assert form not in stored
                assert form.decode("latin-1") not in world.app.log()
    finally:
        alice.close()
        bob.close()


@pytest.mark.integration
def test_organisation_policy_is_logged_shown_and_readable_by_the_officer(world: World) -> None:
    """`mailiverse-admin domain policy` with bob as officer: mail to alice is readable by alice and, in the
    organisation's store, by bob; the policy is an entry of the log every client shows; switching back to
    personal is another entry (forward only), after which no organisation copy is made."""
    shown = world.app.admin("domain", "policy", DOMAIN).stdout.decode()
    assert shown == f"{DOMAIN}: personal (never changed)\n"
    refused = world.app.admin("domain", "policy", DOMAIN, "organisation", check=False)
    assert refused.returncode == 1 and b"names its officers" in refused.stderr
    set_out = world.app.admin("domain", "policy", DOMAIN, "organisation", "--officer", BOB).stdout.decode()
    assert set_out.startswith(f"{DOMAIN}: organisation (entry 1, log leaf ") and f"readable by {BOB}" in set_out
    time.sleep(ORGANISATION_POLICY_TTL + 0.5)  # the delivery side reads the policies again

    world.deliver("for alice, seen by the organisation")
    assert "This is for alice, seen by the organisation." in world.read_subject("for alice, seen by the organisation")
    org = f"organisation@{DOMAIN}"
    rows = world.ok("group", "ls", org, user="bob").splitlines()
    assert [r.split("\t")[3] for r in rows] == ["for alice, seen by the organisation"]
    assert "This is for alice, seen by the organisation." in world.ok(
        "group", "read", org, rows[0].split("\t")[0], user="bob"
    )
    assert world.cli("group", "ls", org).returncode == 1  # alice is not an officer

    verified = world.fields("keys", "verify", ALICE, user="bob")
    assert verified["policy"].startswith(f"organisation: mail to {DOMAIN} can also be read by {BOB}")
    login = world.cli("login")
    assert login.returncode == 0 and f"note: organisation: mail to {DOMAIN} can also be read by {BOB}" in login.stderr

    world.app.admin("domain", "policy", DOMAIN, "personal")
    assert world.app.admin("domain", "policy", DOMAIN).stdout.decode().startswith(f"{DOMAIN}: personal (entry 2,")
    assert world.fields("keys", "verify", ALICE)["policy"] == "personal (entry 2 of the log)"
    audit = world.fields("log", "audit", user="bob")
    assert audit["audit"] == "ok" and audit["policies"] == "2"
    time.sleep(ORGANISATION_POLICY_TTL + 0.5)
    world.deliver("after the policy changed back")
    assert len(world.ok("group", "ls", org, user="bob").splitlines()) == 1
