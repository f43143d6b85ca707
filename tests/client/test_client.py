"""The client library against the real web app over real HTTPS:
sign-up, login, mail, password change, export, sessions, pinning."""

from __future__ import annotations

import base64
import hashlib
import json
import mailbox
from pathlib import Path

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mailiverse.client import (
    ApiError,
    AuthenticationFailed,
    Client,
    HttpsTransport,
    RecordingTransport,
    Response,
    ServerIdentityError,
    export_maildir,
)
from mailiverse.client.api import PasswordKeys
from mailiverse.crypto.keys import private_key_der, public_key_der
from mailiverse.store import accounts as repo
from mailiverse.testing import issue_test_certificate
from tests.support.client import PASSWORD, Served, in_thread


async def _signed_in(served: Served, name: str, password: str = PASSWORD) -> tuple[Client, RecordingTransport]:
    """Sign ``name`` up (with an invite unless it is the first account) and log in."""
    client, transport = served.client(name)
    invite = None
    if not await served.api.accounts.signup_open():
        invite, _ = await served.api.database.transact(repo.create_invite_txn)
    await in_thread(client.signup, password, invite)
    await in_thread(client.login, password)
    return client, transport


@pytest_twisted.ensureDeferred
async def test_signup_then_login_unlocks_the_private_key(served: Served) -> None:
    """Sign-up sends a fresh key pair; login decrypts a private key whose public half the server holds."""
    client, transport = await _signed_in(served, "Alice")
    try:
        assert client.user == "alice"
        assert client.addresses[0] == "alice@example.org"
        account = await in_thread(client._account)
        public = base64.b64decode(account["public_key"])
        assert public_key_der(client.private_key) == public
        assert [(r.method, r.path) for r in transport.sent[:4]] == [
            ("GET", "/api/signup"),
            ("POST", "/api/signup"),
            ("POST", "/api/login/start"),
            ("POST", "/api/login/finish"),
        ]
    finally:
        client.close()


@pytest_twisted.ensureDeferred
async def test_wrong_password_is_authentication_failed(served: Served) -> None:
    """A wrong password raises AuthenticationFailed and leaves the client without a session."""
    client, _ = await _signed_in(served, "alice")
    other, _ = served.client("alice")
    try:
        with pytest.raises(AuthenticationFailed):
            await in_thread(other.login, "not " + PASSWORD)
        assert not other.logged_in
        unknown, _ = served.client("nobody")
        with pytest.raises(AuthenticationFailed):
            await in_thread(unknown.login, PASSWORD)
    finally:
        client.close()
        other.close()


@pytest_twisted.ensureDeferred
async def test_secrets_never_reach_the_server(served: Served) -> None:
    """No request body of sign-up, logins (one wrong), listing, sending and passwd holds the passwords,
    keys or private key."""
    new_password = "the replacement password, also long"
    client, transport = await _signed_in(served, "alice")
    try:
        with pytest.raises(AuthenticationFailed):
            await in_thread(Client(transport, "alice").login, "wrong " + PASSWORD)
        await in_thread(client.send, ["alice@example.org"], "note", "body text")
        await in_thread(client.list_messages, "Inbox")
        private = private_key_der(client.private_key)
        first_kdf = client.kdf
        await in_thread(client.change_password, PASSWORD, new_password)
        secrets = [private, private[40:100]]
        for password, kdf in ((PASSWORD, first_kdf), (new_password, client.kdf)):
            assert kdf is not None and kdf.is_argon2id
            for keys in (PasswordKeys.derive(password), PasswordKeys.derive(password, kdf)):
                secrets += [password.encode(), keys.crypto, keys.verification]
        forms = {f for s in secrets for f in (s, base64.b64encode(s), base64.urlsafe_b64encode(s), s.hex().encode())}
        everything = [r.body or b"" for r in transport.sent] + [r.path.encode() for r in transport.sent]
        everything += [str(r.headers).encode() for r in transport.sent]
        assert len(transport.bodies) >= 7
        for sent in everything:
            for form in forms:
                assert form not in sent
    finally:
        client.close()


@pytest_twisted.ensureDeferred
async def test_send_list_and_read_between_users(served: Served) -> None:
    """Alice sends to Bob; Bob's listing shows it (from its decrypted twin) and reading it decrypts the body locally."""
    alice, _ = await _signed_in(served, "alice")
    bob, _ = await _signed_in(served, "bob")
    try:
        result = await in_thread(alice.send, ["bob@example.org"], "Lunch?", "Noon at the usual place.\n")
        assert result.local == ["bob@example.org"] and result.remote == []
        listing = await in_thread(bob.list_messages, "Inbox")
        assert len(listing) == 1
        info = listing[0]
        assert (info.subject, info.sender) == ("Lunch?", "alice@example.org")
        assert info.date_ms is not None
        raw = await in_thread(bob.read_message, info.id)
        assert b"Noon at the usual place." in raw
        sent = await in_thread(alice.list_messages, "Sent")
        assert [m.id for m in sent] == [result.sent_path.rsplit("/", 1)[1]]
        assert await in_thread(alice.list_messages, "Inbox") == []
    finally:
        alice.close()
        bob.close()


@pytest_twisted.ensureDeferred
async def test_one_user_cannot_reach_another_users_message(served: Served) -> None:
    """Bob cannot list or fetch Alice's mail by ID or path; he sees only his own store."""
    alice, _ = await _signed_in(served, "alice")
    bob, _ = await _signed_in(served, "bob")
    try:
        await in_thread(alice.send, ["alice@example.org"], "private", "for alice only")
        [info] = await in_thread(alice.list_messages, "Inbox")
        assert await in_thread(bob.list_messages, "Inbox") == []
        with pytest.raises(Exception) as raised:
            await in_thread(bob.read_message, info.id)
        assert "no message" in str(raised.value)
        with pytest.raises(ApiError) as missing:
            await in_thread(bob.get_object, info.path)
        assert missing.value.code == "not_found"
    finally:
        alice.close()
        bob.close()


@pytest_twisted.ensureDeferred
async def test_change_password_rekeys_and_keeps_the_private_key(served: Served) -> None:
    """After passwd the old password fails, the new one logs in and unlocks the very same private key."""
    new_password = "a different long password"
    client, _ = await _signed_in(served, "alice")
    before = private_key_der(client.private_key)
    await in_thread(client.change_password, PASSWORD, new_password)
    assert await in_thread(client.list_objects, "Mail/")  # the new session works
    client.close()
    again, _ = served.client("alice")
    try:
        with pytest.raises(AuthenticationFailed):
            await in_thread(again.login, PASSWORD)
        await in_thread(again.login, new_password)
        assert private_key_der(again.private_key) == before
    finally:
        again.close()


@pytest_twisted.ensureDeferred
async def test_logout_and_expiry_end_the_session(served: Served) -> None:
    """A logged-out token and an idle-expired token are both refused as unauthenticated."""
    client, transport = await _signed_in(served, "alice")
    token = client._token
    await in_thread(client.logout)
    stale = Client(transport, "alice")
    stale._token = token
    with pytest.raises(ApiError) as refused:
        await in_thread(stale.list_objects)
    assert refused.value.status == 401 and refused.value.code == "unauthenticated"
    await in_thread(client.login, PASSWORD)
    served.api.time.advance(2 * 3600)
    with pytest.raises(ApiError) as expired:
        await in_thread(client.list_objects)
    assert expired.value.code == "unauthenticated"
    client.close()


@pytest_twisted.ensureDeferred
async def test_export_writes_a_maildir_python_reads(served: Served, tmp_path: Path) -> None:
    """Export puts Inbox at the Maildir root and Sent in .Sent; a second export adds nothing."""
    client, _ = await _signed_in(served, "alice")
    try:
        await in_thread(client.send, ["alice@example.org"], "to myself", "exported body\n")
        target = tmp_path / "Maildir"
        result = await in_thread(export_maildir, client, target)
        assert result.written == {"Inbox": 1, "Sent": 1}
        box = mailbox.Maildir(target, create=False)
        [message] = list(box)
        assert message["Subject"] == "to myself"
        assert b"exported body" in message.as_bytes()
        [sent] = list(box.get_folder("Sent"))
        assert sent["To"] == "alice@example.org"
        assert (target.stat().st_mode & 0o777) == 0o700
        again = await in_thread(export_maildir, client, target)
        assert again.total == 0 and again.skipped == 2
    finally:
        client.close()


class _ForgeHamk:
    """A transport in the middle that flips a bit of the server's HAMK."""

    def __init__(self, inner: HttpsTransport) -> None:
        self.inner = inner

    def request(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Response:
        answer = self.inner.request(method, path, body, headers)
        if path == "/api/login/finish" and answer.status == 200:
            data = json.loads(answer.body)
            hamk = bytearray(base64.b64decode(data["HAMK"]))
            hamk[0] ^= 1
            data["HAMK"] = base64.b64encode(bytes(hamk)).decode()
            return Response(answer.status, answer.headers, json.dumps(data).encode())
        return answer

    def close(self) -> None:
        self.inner.close()


@pytest_twisted.ensureDeferred
async def test_a_wrong_server_proof_is_refused(served: Served) -> None:
    """If HAMK does not verify, login fails with ServerIdentityError and no session is kept."""
    first, _ = await _signed_in(served, "alice")
    first.close()
    client = Client(_ForgeHamk(HttpsTransport(served.url, ca_file=str(served.ca_file))), "alice")
    with pytest.raises(ServerIdentityError):
        await in_thread(client.login, PASSWORD)
    assert not client.logged_in
    client.close()


@pytest_twisted.ensureDeferred
async def test_certificate_pinning(served: Served, tmp_path: Path) -> None:
    """The right SHA-256 pin connects; a wrong pin or an unrelated CA is refused before any request."""
    leaf = x509.load_pem_x509_certificates(served.cert_file.read_bytes())[0]
    der = leaf.public_bytes(serialization.Encoding.DER)
    pin = hashlib.sha256(der).hexdigest()
    with_colons = ":".join(pin[i : i + 2] for i in range(0, 64, 2)).upper()
    good = HttpsTransport(f"https://127.0.0.1:{served.port}", fingerprint=with_colons)
    answer = await in_thread(good.request, "GET", "/api/health", None, {})
    assert answer.status == 200
    good.close()
    wrong = HttpsTransport(f"https://127.0.0.1:{served.port}", fingerprint="00" * 32)
    with pytest.raises(ServerIdentityError):
        await in_thread(wrong.request, "GET", "/api/health", None, {})
    other = issue_test_certificate(tmp_path / "other", ["localhost"])
    stranger = HttpsTransport(served.url, ca_file=str(other.ca_cert_path))
    with pytest.raises(ServerIdentityError):
        await in_thread(stranger.request, "GET", "/api/health", None, {})


@pytest_twisted.ensureDeferred
async def test_a_device_token_outlasts_a_strangers_lock(served: Served) -> None:
    """The client keeps the server's device token; once strangers lock the account,
    only a device that shows it gets in."""
    client, transport = await _signed_in(served, "alice")
    try:
        device = client.device_token
        assert device is not None and len(device) == 55
        for _ in range(10):
            stranger, _ = served.client("alice")
            with pytest.raises(AuthenticationFailed):
                await in_thread(stranger.login, "a guess " + PASSWORD)
        locked, _ = served.client("alice")
        with pytest.raises(ApiError) as refused:
            await in_thread(locked.login, PASSWORD)
        assert refused.value.code == "rate_limited"
        known = Client(served.transport(), "alice", device_token=device)
        await in_thread(known.login, PASSWORD)
        assert known.logged_in and known.device_token is not None and known.device_token[:22] == device[:22]
        start = json.loads(next(r.body for r in transport.sent if r.path == "/api/login/start") or b"{}")
        assert start == {"user": "alice"}  # a client with no token sends none
        known.close()
    finally:
        client.close()
