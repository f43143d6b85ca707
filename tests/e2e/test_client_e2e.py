"""Issue 4 end to end: the CLI and client library against a real ``twistd mailiverse``
with SMTP, a real smarthost and DKIM."""

from __future__ import annotations

import base64
import hashlib
import json
import mailbox
import smtplib
import ssl
from email.message import EmailMessage
from typing import Any

import dkim
import pytest
import srp._pysrp as srp_reference
from cryptography.hazmat.primitives import serialization

from mailiverse.client import ApiError, AuthenticationFailed, Client, HttpsTransport, RecordingTransport
from mailiverse.client.api import PasswordKeys
from mailiverse.crypto.keys import private_key_der
from tests.support.e2e import RELAY_USER, Device, Smarthost

pytestmark = pytest.mark.integration
ALICE_PW = "alice's long e2e password"
BOB_PW = "bob's long e2e password"
N, G = srp_reference.get_ng(srp_reference.NG_2048, None, None)


def _one_line(result: Any) -> None:
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("mailiverse-client: ")


def _ls(device: Device, user: str, password: str, folder: str = "Inbox") -> list[list[str]]:
    result = device.cli(user, "ls", "--folder", folder, password=password)
    assert result.returncode == 0, result.stderr
    return [line.split("\t") for line in result.stdout.splitlines()]


def _invite(device: Device) -> str:
    return device.appliance.admin("invite", "create").stdout.decode().strip()


@pytest.fixture(scope="module")
def people(device: Device) -> dict[str, Any]:
    """Alice signs up freely (first account); Bob is refused without an invite, then signs up with one."""
    alice = device.cli("alice", "signup", password=ALICE_PW)
    bob_closed = device.cli("bob", "signup", password=BOB_PW)
    bob = device.cli("bob", "signup", "--invite", _invite(device), password=BOB_PW)
    return {"alice": alice, "bob_closed": bob_closed, "bob": bob}


def _library(device: Device, user: str) -> tuple[Client, RecordingTransport]:
    transport = RecordingTransport(HttpsTransport(device.url, ca_file=str(device.ca)))
    return Client(transport, user), transport


def test_two_users_sign_up_with_the_cli(people: dict[str, Any]) -> None:
    """The first account needs no invite, the second is refused without one and admitted with an admin invite."""
    assert people["alice"].returncode == 0 and "alice@example.org" in people["alice"].stdout
    assert people["bob_closed"].returncode == 1 and "signup_closed" in people["bob_closed"].stderr
    _one_line(people["bob_closed"])
    assert people["bob"].returncode == 0, people["bob"].stderr


def test_smtp_mail_is_listed_and_read(device: Device, people: dict[str, Any]) -> None:
    """A message sent over SMTP with STARTTLS to Alice shows in `ls` (ID, date, sender, subject)
    and `read` decrypts it."""
    message = EmailMessage()
    message["From"] = "Carol Remote <carol@remote.test>"
    message["To"] = "alice@example.org"
    message["Subject"] = "Over SMTP"
    message["Date"] = "Tue, 02 Jan 2024 03:04:05 +0000"
    message.set_content("Delivered by smtplib with STARTTLS.\n")
    context = ssl.create_default_context(cafile=str(device.ca))
    with smtplib.SMTP("127.0.0.1", device.appliance.smtp_port, local_hostname="client.test", timeout=30) as smtp:
        smtp.starttls(context=context)
        smtp.send_message(message)
    rows = _ls(device, "alice", ALICE_PW)
    row = next(r for r in rows if r[3] == "Over SMTP")
    assert row[1] == "2024-01-02T03:04:05Z"
    assert "carol@remote.test" in row[2]
    shown = device.cli("alice", "read", row[0], password=ALICE_PW)
    assert shown.returncode == 0
    assert "Subject: Over SMTP" in shown.stdout and "Delivered by smtplib with STARTTLS." in shown.stdout


def test_send_locally_and_through_the_dkim_signing_smarthost(
    device: Device, smarthost: Smarthost, people: dict[str, Any]
) -> None:
    """Bob→Alice stays local; Alice→remote+Bob reaches the smarthost over STARTTLS+AUTH,
    DKIM-signed and verified by dkimpy."""
    local = device.cli(
        "bob",
        "send",
        "--to",
        "alice@example.org",
        "--subject",
        "Local hello",
        password=BOB_PW,
        stdin=b"Straight into Alice's inbox.\n",
    )
    assert local.returncode == 0, local.stderr
    assert "delivered to alice@example.org" in local.stdout and "queued" not in local.stdout
    row = next(r for r in _ls(device, "alice", ALICE_PW) if r[3] == "Local hello")
    assert row[2] == "bob@example.org"
    assert "Straight into Alice's inbox." in device.cli("alice", "read", row[0], password=ALICE_PW).stdout
    assert any(r[3] == "Local hello" for r in _ls(device, "bob", BOB_PW, "Sent"))

    before = len(smarthost.received())
    remote = device.cli(
        "alice",
        "send",
        "--to",
        "dave@remote.test",
        "--cc",
        "bob@example.org",
        "--subject",
        "Out into the world",
        password=ALICE_PW,
        stdin=b"Relayed via the smarthost.\n",
    )
    assert remote.returncode == 0, remote.stderr
    assert "delivered to bob@example.org" in remote.stdout and "queued for dave@remote.test" in remote.stdout
    assert any(r[3] == "Out into the world" for r in _ls(device, "bob", BOB_PW))
    got = smarthost.wait_for(before + 1)[before]
    assert (got["recipient"], got["mail_from"]) == ("dave@remote.test", "alice@example.org")
    assert got["tls"] is True and got["authenticated_as"] == RELAY_USER
    data = base64.b64decode(str(got["data"]))
    assert b"Relayed via the smarthost." in data
    pem = (device.appliance.data_dir / "keys" / "dkim-example.org.key.pem").read_bytes()
    public = serialization.load_pem_private_key(pem, password=None).public_key()
    spki = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    asked: list[bytes] = []

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        asked.append(name)
        return b"v=DKIM1; k=rsa; p=" + base64.b64encode(spki)

    assert dkim.verify(data, dnsfunc=lookup)
    assert asked and asked[0].startswith(b"mailiverse._domainkey.example.org")
    assert not dkim.verify(data.replace(b"Relayed via", b"Forged via"), dnsfunc=lookup)


def test_wrong_password_fails_cleanly(device: Device, people: dict[str, Any]) -> None:
    """A wrong password exits 3 with one line on stderr and nothing on stdout."""
    result = device.cli("alice", "login", password="definitely not it")
    assert result.returncode == 3 and result.stdout == ""
    assert result.stderr == "mailiverse-client: wrong user name or password\n"
    pinned = device.cli("alice", "login", password=ALICE_PW, pin=["--fingerprint", "ab" * 32])
    assert pinned.returncode == 4
    _one_line(pinned)
    der = ssl.PEM_cert_to_DER_cert(device.ca.read_text())
    good = device.cli("alice", "login", password=ALICE_PW, pin=["--fingerprint", hashlib.sha256(der).hexdigest()])
    assert good.returncode == 0, good.stderr


def _forged_proof(user: str, salt: bytes, a_pub: int, b_pub: int) -> bytes:
    """The M an attacker can compute when A ≡ 0 (mod N) forces S = 0 (docs/auth.md formulas)."""

    def h(*parts: bytes) -> bytes:
        return hashlib.sha256(b"".join(parts)).digest()

    def minimal(value: int) -> bytes:
        return value.to_bytes((value.bit_length() + 7) // 8, "big")

    hn_xor_hg = bytes(a ^ b for a, b in zip(h(minimal(N)), h(G.to_bytes(256, "big")), strict=True))
    key = h(minimal(0))
    return h(hn_xor_hg, h(user.encode()), salt, minimal(a_pub), minimal(b_pub), key)


@pytest.mark.parametrize("multiple", [0, 1, 2])
def test_a_congruent_to_zero_is_rejected(device: Device, people: dict[str, Any], multiple: int) -> None:
    """A in {0, N, 2N} with the proof an attacker could forge is refused: 401 auth_failed and no HAMK."""
    transport = HttpsTransport(device.url, ca_file=str(device.ca))
    headers = {"Content-Type": "application/json"}
    try:
        start = transport.request("POST", "/api/login/start", json.dumps({"user": "bob"}).encode(), headers)
        assert start.status == 200
        challenge = json.loads(start.body)
        salt, b_pub = base64.b64decode(challenge["salt"]), int.from_bytes(base64.b64decode(challenge["B"]), "big")
        a_pub = multiple * N
        a_bytes = a_pub.to_bytes(max(1, (a_pub.bit_length() + 7) // 8), "big")
        body = {
            "handle": challenge["handle"],
            "A": base64.b64encode(a_bytes.rjust(256, b"\0") if len(a_bytes) <= 256 else a_bytes).decode(),
            "M": base64.b64encode(_forged_proof("bob", salt, a_pub, b_pub)).decode(),
        }
        finish = transport.request("POST", "/api/login/finish", json.dumps(body).encode(), headers)
        assert finish.status == 401
        answer = json.loads(finish.body)
        assert answer["error"] == "auth_failed" and "HAMK" not in answer and "token" not in answer
    finally:
        transport.close()


def test_logged_out_and_revoked_sessions_are_refused(device: Device, people: dict[str, Any]) -> None:
    """After logout, or after another session changed the password, an old bearer token gets 401 unauthenticated."""
    client, transport = _library(device, "bob")
    client.login(BOB_PW)
    token = client._token
    client.logout()
    stale = Client(transport, "bob")
    stale._token = token
    with pytest.raises(ApiError) as refused:
        stale.list_objects("Mail/")
    assert (refused.value.status, refused.value.code) == (401, "unauthenticated")
    first, _ = _library(device, "bob")
    second, _ = _library(device, "bob")
    first.login(BOB_PW)
    second.login(BOB_PW)
    second.change_password(BOB_PW, BOB_PW + " v2")
    with pytest.raises(ApiError) as revoked:
        first.list_objects("Mail/")
    assert revoked.value.code == "unauthenticated"
    second.change_password(BOB_PW + " v2", BOB_PW)
    for each in (client, first, second, stale):
        each.close()


def test_one_user_never_reaches_another_users_objects(device: Device, people: dict[str, Any]) -> None:
    """Bob lists only his own objects and cannot fetch, overwrite or delete Alice's, however the path is spelled."""
    alice, _ = _library(device, "alice")
    bob, bob_transport = _library(device, "bob")
    alice.login(ALICE_PW)
    bob.login(BOB_PW)
    try:
        alice.put_object("Cache/secret", b"alice client data")
        mine = [o.path for o in alice.iter_objects("Mail/In/")]
        assert mine
        bobs = {o.path for o in bob.iter_objects("")}
        target = mine[0]
        for path in (target, "Cache/secret"):
            if path in bobs:
                continue
            with pytest.raises(ApiError) as missing:
                bob.get_object(path)
            assert missing.value.code == "not_found"
        for sneaky in ("../alice/" + target, "%2e%2e/alice/" + target, "..%2Falice%2F" + target):
            answer = bob_transport.request(
                "GET", "/api/store/" + sneaky, None, {"Authorization": f"Bearer {bob._token}"}
            )
            assert answer.status in (400, 404) and b"alice client data" not in answer.body
        assert bob.put_object("Cache/secret", b"bob's own") == 1
        assert alice.get_object("Cache/secret") == b"alice client data"
        assert all(o.path != "Cache/secret" or o.size == len(b"bob's own") for o in bob.iter_objects("Cache/"))
    finally:
        alice.logout()
        bob.logout()


def test_password_and_private_key_never_reach_the_server(device: Device, people: dict[str, Any]) -> None:
    """Every request body of a sign-up, a wrong and a right login, a listing and a passwd
    holds no password, key or private key."""
    client, transport = _library(device, "erin")
    client.signup("erin's first password", invite=_invite(device))
    with pytest.raises(AuthenticationFailed):
        Client(transport, "erin").login("erin's wrong password")
    client.login("erin's first password")
    client.list_messages("Inbox")
    private = private_key_der(client.private_key)
    first_kdf = client.kdf
    client.change_password("erin's first password", "erin's second password")
    client.logout()
    secrets = [private, private[48:112]]
    for password, kdf in (("erin's first password", first_kdf), ("erin's second password", client.kdf)):
        assert kdf is not None and kdf.is_argon2id
        for keys in (PasswordKeys.derive(password), PasswordKeys.derive(password, kdf)):
            secrets += [password.encode(), keys.crypto, keys.verification]
    forms = {f for s in secrets for f in (s, base64.b64encode(s), base64.urlsafe_b64encode(s), s.hex().encode())}
    assert len(transport.bodies) >= 7
    for request in transport.sent:
        for sent in (request.body or b"", request.path.encode(), json.dumps(dict(request.headers)).encode()):
            for form in forms:
                assert form not in sent
    client.close()


def test_passwd_export_and_nothing_kept_on_the_device(device: Device, people: dict[str, Any]) -> None:
    """passwd switches the password; export writes a Maildir mailbox.Maildir reads;
    the device dir holds nothing else."""
    new = ALICE_PW + " (changed)"
    changed = device.cli("alice", "passwd", password=ALICE_PW, new_password=new)
    assert changed.returncode == 0, changed.stderr
    assert device.cli("alice", "login", password=ALICE_PW).returncode == 3
    assert device.cli("alice", "login", password=new).returncode == 0
    inbox = _ls(device, "alice", new)
    sent = _ls(device, "alice", new, "Sent")
    exported = device.cli("alice", "export", "Maildir", password=new)
    assert exported.returncode == 0, exported.stderr
    box = mailbox.Maildir(device.home / "Maildir", create=False)
    assert sorted(m["Subject"] for m in box) == sorted(r[3] for r in inbox)
    assert sorted(m["Subject"] for m in box.get_folder("Sent")) == sorted(r[3] for r in sent)
    assert [p.name for p in device.home.iterdir()] == ["Maildir"]
