"""``mailiverse-client send`` seals on the device (docs/e2e.md), against a real ``twistd mailiverse``.

alice writes to bob: the message goes end to end, bob's ``read`` says it is signed by alice (verified), alice's
Sent copy reads the same, and the appliance was handed no plaintext. ``--no-e2e`` goes the old way. A recipient
with no key makes ordinary mail after a note (``--require-e2e`` refuses); a tampered key record is a KEY ALARM
that refuses to send either way. A third user who seals a message whose From says alice reads as not verified.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, select, update

from mailiverse.client import Client, HttpsTransport, RecordingTransport, e2e, keys
from mailiverse.delivery.pipeline import ORGANISATION_POLICY_TTL
from mailiverse.keylog.records import canonical_json
from mailiverse.mime.compose import Composed
from mailiverse.store.schema import key_log
from tests.support.e2e import Device
from tests.support.harness import DOMAIN, Appliance

PASSWORDS = {
    "alice": "alice's long end-to-end password",
    "bob": "bob's long end-to-end password",
    "mallory": "mallory's long end-to-end password",
}
ALICE, BOB, MALLORY = f"alice@{DOMAIN}", f"bob@{DOMAIN}", f"mallory@{DOMAIN}"
#: What mallory sends bob in alice's name: alice's key id, her own key id, then signed as herself.
SUBJECTS = ("alice's key id", "mallory's key id", "signed by mallory")
VERIFIED = f"End-to-end encrypted · signed by {ALICE} (verified)"


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

    def rows(self, folder: str = "Inbox", user: str = "bob") -> dict[str, list[str]]:
        lines = self.ok("ls", "--folder", folder, user=user).splitlines()
        return {row[3]: row for row in (line.split("\t") for line in lines)}

    def login(self, user: str) -> tuple[Client, RecordingTransport]:
        transport = RecordingTransport(HttpsTransport(self.device.url, ca_file=str(self.device.ca)))
        client = Client(transport, user)
        client.login(PASSWORDS[user], upgrade=False)
        return client, transport


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("e2e-send")
    app = Appliance(root / "appliance", extra_args=["--workers", "1"])
    try:
        app.start()
        home = root / "device"
        home.mkdir()
        world = World(app, Device(home, app))
        world.ok("signup")
        for user in ("bob", "mallory"):
            world.ok("signup", "--invite", app.admin("invite", "create").stdout.decode().strip(), user=user)
        yield world
    finally:
        app.stop()


@pytest.mark.integration
def test_send_goes_end_to_end_and_both_copies_read_as_signed(world: World) -> None:
    """alice's message to bob is sealed on her device: bob reads it with the verified line first, and so does
    alice in her Sent folder."""
    done = world.cli("send", "--to", BOB, "--subject", "sealed here", stdin=b"Only bob can read this.\n")
    assert done.returncode == 0, done.stderr
    assert "not end to end" not in done.stderr and "KEY ALARM" not in done.stderr, done.stderr
    assert done.stdout.startswith("sent ") and done.stdout.endswith(f"delivered to {BOB}; end-to-end encrypted\n")
    sent_id = done.stdout.split()[1].rstrip(":")  # the Sent copy's ID (its own key base)

    row = world.rows()["sealed here"]
    assert row[0] != sent_id and row[2] == ALICE and len(row) == 4
    shown = world.ok("read", row[0], user="bob").splitlines()
    assert shown[0] == VERIFIED, shown
    assert f"From: {ALICE}" in shown and "Only bob can read this." in shown

    sent = world.rows("Sent", user="alice")["sealed here"]
    assert sent[0] == sent_id
    mine = world.ok("read", f"Mail/Sent/{sent[0]}").splitlines()
    assert mine[0] == VERIFIED and "Only bob can read this." in mine
    raw = world.ok("read", "--raw", row[0], user="bob")
    assert raw.startswith("From: ") and "End-to-end" not in raw  # --raw is the message bytes alone


@pytest.mark.integration
def test_the_appliance_is_handed_no_plaintext(world: World) -> None:
    """Through the library, every request of an end-to-end send carries neither the subject nor the body, in
    any encoding; only the sealed copies and the recipients' addresses."""
    client, transport = world.login("alice")
    try:
        subject, body = "a subject only bob sees", "a body only bob reads, whole"
        result = e2e.send(client, [BOB], subject, body)
        assert result.end_to_end and result.local == [BOB] and result.sent_path.startswith("Mail/Sent/")
        sealed = [r for r in transport.sent if r.path == "/api/send/sealed"]
        assert len(sealed) == 1 and not any(r.path == "/api/send" for r in transport.sent)
        for request in transport.sent:
            seen = (request.body or b"") + request.path.encode()
            for secret in (subject.encode(), body.encode()):
                for form in (secret, base64.b64encode(secret), secret[5:20]):
                    assert form not in seen, request.path
        request_body = json.loads(sealed[0].body or b"{}")
        assert [e["to"] for e in request_body["envelopes"]] == [BOB]
        assert set(request_body["sent"]) == {"key_id", "original", "twin", "key_base"}
        assert request_body["sent"]["key_base"] != request_body["key_base"]
    finally:
        client.logout()
        client.close()
    assert world.rows()[subject][2] == ALICE


@pytest.mark.integration
def test_no_e2e_goes_the_old_way(world: World) -> None:
    """``--no-e2e`` lets the appliance seal the message: it says so, and bob's read shows no end-to-end line."""
    done = world.cli(
        "send", "--no-e2e", "--to", BOB, "--subject", "sealed there", stdin=b"The appliance sealed this.\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(f"delivered to {BOB}; not end-to-end encrypted\n"), done.stdout
    shown = world.ok("read", world.rows()["sealed there"][0], user="bob")
    assert "End-to-end" not in shown and "The appliance sealed this." in shown


@pytest.mark.integration
def test_a_recipient_without_a_key_makes_ordinary_mail_or_a_refusal(world: World) -> None:
    """An address with no key is said on stderr before the message goes the old way (here refused: there is no
    such user); ``--require-e2e`` refuses before sending anything."""
    ghost = f"ghost@{DOMAIN}"
    auto = world.cli("send", "--to", ghost, "--subject", "to nobody", stdin=b"x\n")
    assert auto.returncode == 1 and auto.stdout == "", auto
    notes = auto.stderr.splitlines()
    assert notes[0] == (
        f"mailiverse-client: not end to end: {ghost} (no key in this appliance's directory); sent as ordinary mail"
    )
    assert "unknown_recipient" in notes[-1]

    required = world.cli(
        "send", "--require-e2e", "--to", BOB, "--cc", ghost, "--subject", "must be sealed", stdin=b"x\n"
    )
    assert required.returncode == 1 and required.stdout == "", required
    assert required.stderr == (
        f"mailiverse-client: not sent: {ghost} cannot be written to end to end (no key in this appliance's "
        "directory), and --require-e2e refuses ordinary mail\n"
    )
    assert "must be sealed" not in world.rows()


@pytest.mark.integration
def test_a_tampered_key_record_refuses_to_send(world: World) -> None:
    """Bob's record rewritten in the database to carry another key: ``send`` refuses with a KEY ALARM naming bob,
    end to end or not, and nothing reaches him; with the record put back, sending works again."""
    bob_key_id = _key_id(world)
    engine = create_engine(f"sqlite:///{world.app.data_dir / 'mailiverse.sqlite3'}", connect_args={"timeout": 30})
    try:
        with engine.begin() as conn:
            rows = conn.execute(select(key_log.c.leaf_index, key_log.c.leaf)).all()
            index, original = next((i, leaf) for i, leaf in rows if json.loads(leaf)["key_id"] == bob_key_id)
            document = json.loads(original)
            other = next(json.loads(leaf) for i, leaf in rows if i != index and "public_key" in json.loads(leaf))
            document["public_key"] = other["public_key"]
            conn.execute(update(key_log).where(key_log.c.leaf_index == index).values(leaf=canonical_json(document)))
        for extra in ((), ("--no-e2e",)):
            refused = world.cli("send", *extra, "--to", BOB, "--subject", "to a tampered key", stdin=b"secret\n")
            assert refused.returncode == 1 and refused.stdout == "", refused
            assert f"mailiverse-client: not sent: KEY ALARM for {BOB}: " in refused.stderr, refused.stderr
            assert "signature does not verify" in refused.stderr
        with engine.begin() as conn:
            conn.execute(update(key_log).where(key_log.c.leaf_index == index).values(leaf=original))
    finally:
        engine.dispose()
    assert "to a tampered key" not in world.rows()
    assert world.ok("send", "--to", BOB, "--subject", "after repair", stdin=b"ok\n").endswith("end-to-end encrypted\n")


def _key_id(world: World) -> str:
    return dict(line.split(": ", 1) for line in world.ok("keys", "verify", BOB).splitlines())["key_id"]


@pytest.mark.integration
def test_a_message_sealed_by_someone_else_in_alices_name_is_not_verified(world: World) -> None:
    """mallory, a user of the same appliance, seals to bob a message whose From says alice (the appliance cannot
    see inside): signed with her own key it reads "signature not verified", whichever signer it names."""
    client, _transport = world.login("mallory")
    try:
        state = keys.load_state(client)
        bob = keys.lookup(client, BOB, state)
        own = keys.lookup(client, MALLORY, state).record.key_id
        alice = keys.lookup(client, ALICE, state).record.key_id
        for subject, signer, key_id in zip(SUBJECTS, (ALICE, ALICE, MALLORY), (alice, own, own), strict=True):
            composed = Composed(to=(BOB,), subject=subject, text="Trust me.\n", from_address=ALICE)
            now_ms = int(time.time() * 1000)
            raw = e2e.compose_message(composed, default_from=ALICE, now_ms=now_ms)
            member = e2e.signature_member(raw, signer, key_id, client.private_key)
            outgoing = e2e.Outgoing(raw, e2e.new_key_base(now_ms), now_ms, member)
            client.send_sealed(outgoing.key_base, [outgoing.seal(bob.record, delivered_to=BOB, to=BOB)])
    finally:
        client.logout()
        client.close()
    rows = world.rows()
    lines = {subject: world.ok("read", rows[subject][0], user="bob").splitlines() for subject in SUBJECTS}
    not_verified = "End-to-end encrypted · signature not verified: "
    assert lines["alice's key id"][0] == f"{not_verified}the signature does not verify with the key of {ALICE}"
    assert lines["mallory's key id"][0] == f"{not_verified}the directory has no key {own} for {ALICE}"
    assert lines["signed by mallory"][0] == f"{not_verified}signed by {MALLORY}, but the message is from {ALICE}"
    assert all(f"From: {ALICE}" in shown for shown in lines.values())


@pytest.mark.integration
def test_a_domain_without_an_appliance_is_ordinary_mail(world: World) -> None:
    """A recipient whose domain announces no mailiverse appliance (no ``_mailiverse`` record) cannot be written
    to end to end: ``--require-e2e`` refuses, naming the domain."""
    required = world.cli("send", "--require-e2e", "--to", "carol@remote.test", "--subject", "far", stdin=b"x\n")
    assert required.returncode == 1 and required.stdout == "", required
    assert required.stderr == (
        "mailiverse-client: not sent: carol@remote.test cannot be written to end to end (remote.test has no "
        "mailiverse appliance), and --require-e2e refuses ordinary mail\n"
    )


@pytest.mark.integration
def test_under_the_organisation_policy_the_officer_reads_a_signed_copy(world: World) -> None:
    """With the domain under the ``organisation`` policy (bob its officer; last in this module: a policy only
    moves forward), alice's end-to-end message to mallory also carries a copy sealed to the organisation key the
    policy names: mallory reads hers, and bob reads the organisation's, both signed by alice (verified)."""
    world.app.admin("domain", "policy", DOMAIN, "organisation", "--officer", BOB)
    time.sleep(ORGANISATION_POLICY_TTL + 0.5)  # the appliance reads the policies again
    client, transport = world.login("alice")
    try:
        result = e2e.send(client, [MALLORY], "for the organisation too", "Seen by the officer.\n")
    finally:
        client.logout()
        client.close()
    assert result.end_to_end and result.local == [MALLORY]
    [request] = [r for r in transport.sent if r.path == "/api/send/sealed"]
    envelopes = json.loads(request.body or b"{}")["envelopes"]
    assert [e.get("to") or e.get("organisation") for e in envelopes] == [MALLORY, DOMAIN]

    row = world.rows(user="mallory")["for the organisation too"]
    assert world.ok("read", row[0], user="mallory").splitlines()[0] == VERIFIED
    organisation = f"organisation@{DOMAIN}"
    [copy] = world.ok("group", "ls", organisation, user="bob").splitlines()
    shown = world.ok("group", "read", organisation, copy.split("\t")[0], user="bob").splitlines()
    assert shown[0] == VERIFIED and "Seen by the officer." in shown
