"""The password KDF of modern accounts against the real web app over real HTTPS: per-account Argon2id
(docs/auth.md, "The password KDF"), and the upgrade of accounts made with the old fixed-salt PBKDF2 rule."""

from __future__ import annotations

import base64
import email
import email.policy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage

import pytest
import pytest_twisted

from mailiverse.client import AuthenticationFailed, Client, RecordingTransport, Response, Transport
from mailiverse.client.api import PasswordKeys
from mailiverse.compat.blocks import decrypt_key_block
from mailiverse.crypto.errors import DecryptionError
from mailiverse.crypto.kdf import (
    DEFAULT_ITERATIONS,
    DEFAULT_MEMORY_KIB,
    PBKDF2_RULE,
    KdfParams,
    parse_kdf,
    parse_kdf_text,
)
from mailiverse.crypto.pbkdf import crypto_key
from mailiverse.store import accounts as repo
from mailiverse.store.users import User, get_user_txn
from tests.support.client import PASSWORD, Served, in_thread
from tests.support.oldkdf import login_kdf, pbkdf2_signup

NEW_PASSWORD = "a different and also long client password"


async def _invite(served: Served) -> str | None:
    if await served.api.accounts.signup_open():
        return None
    invite, _ = await served.api.database.transact(repo.create_invite_txn)
    return str(invite)


async def _signed_up(served: Served, name: str) -> Client:
    client, _ = served.client(name)
    await in_thread(client.signup, PASSWORD, await _invite(served))
    await in_thread(client.login, PASSWORD)
    return client


async def _user(served: Served, name: str) -> User:
    user = await served.api.database.run(get_user_txn, name)
    assert user is not None
    return user


def _key_block(client: Client) -> bytes:
    return base64.b64decode(client._account()["key_block"])


@pytest_twisted.ensureDeferred
async def test_same_password_gets_different_salts_and_wrapping_keys(served: Served) -> None:
    """Two accounts with one password get their own KDF salt, so their key-block keys differ (no shared table)."""
    clients = [await _signed_up(served, name) for name in ("alice", "bob")]
    transport = served.transport()
    described = [(await in_thread(login_kdf, transport, name)) for name in ("alice", "bob")]
    assert described[0]["kdf"] == described[1]["kdf"] == "argon2id"
    assert described[0]["salt"] != described[1]["salt"]
    assert len(base64.b64decode(described[0]["salt"])) == 16
    keys = [PasswordKeys.derive(PASSWORD, parse_kdf(d)) for d in described]
    assert keys[0].crypto != keys[1].crypto and keys[0].verification != keys[1].verification
    blocks = [await in_thread(_key_block, c) for c in clients]
    for key, block in zip(keys, blocks, strict=True):
        assert set(decrypt_key_block(key.crypto, block)) >= {"RSA-PrivateKey", "RSA-PublicKey"}
    with pytest.raises(DecryptionError):
        decrypt_key_block(crypto_key(PASSWORD), blocks[0])
    for client in clients:
        client.close()


@pytest_twisted.ensureDeferred
async def test_signup_and_login_use_argon2id(served: Served) -> None:
    """Sign-up sends an Argon2id description of today's strength (no password, no key), the server keeps it
    and hands it back at login start, and a login with it needs no upgrade."""
    client, transport = served.client("alice")
    await in_thread(client.signup, PASSWORD)
    assert [(r.method, r.path) for r in transport.sent] == [("GET", "/api/signup"), ("POST", "/api/signup")]
    signup = json.loads(transport.sent[1].body or b"{}")
    assert signup["kdf"]["kdf"] == "argon2id"
    assert (signup["kdf"]["m"], signup["kdf"]["t"], signup["kdf"]["p"]) == (DEFAULT_MEMORY_KIB, DEFAULT_ITERATIONS, 1)
    assert DEFAULT_MEMORY_KIB >= 64 * 1024
    stored = (await _user(served, "alice")).kdf
    assert stored is not None and parse_kdf_text(stored) == parse_kdf(signup["kdf"])
    await in_thread(client.login, PASSWORD)
    assert client.kdf == parse_kdf(signup["kdf"]) and client.kdf_upgrade_error is None
    assert [r.path for r in transport.sent[2:]] == ["/api/login/start", "/api/login/finish", "/api/account"]
    client.close()


@pytest_twisted.ensureDeferred
async def test_pbkdf2_account_is_upgraded_at_next_login_and_mail_stays_readable(served: Served) -> None:
    """An account made the old way (fixed-salt PBKDF2) logs in the old way, is moved to Argon2id at once
    (new verifier, key block re-wrapped, same key pair), the next login uses Argon2id and its mail still opens."""
    transport = served.transport()
    await in_thread(pbkdf2_signup, transport, "olga", PASSWORD)
    assert (await _user(served, "olga")).kdf is None
    assert await in_thread(login_kdf, transport, "olga") == {"kdf": "pbkdf2-sha256"}
    old, _ = served.client("olga")
    await in_thread(old.login, PASSWORD, upgrade=False)
    await in_thread(old.send, ["olga@example.org"], "before the upgrade", "sealed to the same key")
    public_before = (await _user(served, "olga")).public_key
    old.close()

    client, sent = served.client("olga")
    await in_thread(client.login, PASSWORD)
    assert client.kdf_upgrade_error is None
    assert [r.path for r in sent.sent] == [
        "/api/login/start",
        "/api/login/finish",
        "/api/account",
        "/api/login/start",
        "/api/account/password",
    ]
    upgraded = await _user(served, "olga")
    assert upgraded.kdf is not None and upgraded.public_key == public_before
    described = parse_kdf_text(upgraded.kdf)
    assert described.is_argon2id and not described.needs_upgrade()
    assert await in_thread(login_kdf, transport, "olga") == described.to_json()
    with pytest.raises(DecryptionError):
        decrypt_key_block(crypto_key(PASSWORD), upgraded.key_block or b"")
    (message,) = await in_thread(client.list_messages, "Inbox")
    assert message.subject == "before the upgrade"
    client.close()

    again, sent_again = served.client("olga")
    await in_thread(again.login, PASSWORD)
    assert again.kdf == described
    assert "/api/account/password" not in [r.path for r in sent_again.sent]
    raw = await in_thread(again.read_message, message.id)
    body = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(body, EmailMessage) and body.get_content().strip() == "sealed to the same key"
    with pytest.raises(AuthenticationFailed):
        await in_thread(Client(served.transport(), "olga").login, "not " + PASSWORD)
    again.close()


@pytest_twisted.ensureDeferred
async def test_password_change_takes_a_fresh_argon2id_salt(served: Served) -> None:
    """A password change sends a new description with a new salt; the old password stops working."""
    client = await _signed_up(served, "alice")
    before = client.kdf
    await in_thread(client.change_password, PASSWORD, NEW_PASSWORD)
    after = client.kdf
    assert isinstance(before, KdfParams) and isinstance(after, KdfParams)
    assert after.is_argon2id and after.salt != before.salt
    stored = (await _user(served, "alice")).kdf
    assert stored is not None and parse_kdf_text(stored) == after
    client.close()
    with pytest.raises(AuthenticationFailed):
        await in_thread(Client(served.transport(), "alice").login, PASSWORD)
    fresh, _ = served.client("alice")
    await in_thread(fresh.login, NEW_PASSWORD)
    assert fresh.kdf == after
    fresh.close()


@dataclass
class ServerBeforeArgon2id:
    """A transport to the real app that hides the KDF fields, as a server from before Argon2id answers."""

    inner: Transport

    def request(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]) -> Response:
        response = self.inner.request(method, path, body, headers)
        if path not in ("/api/signup", "/api/login/start") or response.status != 200:
            return response
        answer = json.loads(response.body)
        answer.pop("kdfs", None)
        answer.pop("kdf", None)
        return Response(response.status, response.headers, json.dumps(answer).encode())

    def close(self) -> None:
        self.inner.close()


@pytest_twisted.ensureDeferred
async def test_a_server_from_before_argon2id_gets_the_rule_it_knows(served: Served) -> None:
    """Against a server that announces no KDF, the client signs up, logs in and changes the password with the
    PBKDF2 rule and never attempts the upgrade (the server could not describe the new keys)."""
    transport = RecordingTransport(ServerBeforeArgon2id(served.transport()))
    client = Client(transport, "alice")
    await in_thread(client.signup, PASSWORD)
    assert "kdf" not in json.loads(transport.sent[1].body or b"{}")
    await in_thread(client.login, PASSWORD)
    await in_thread(client.change_password, PASSWORD, NEW_PASSWORD)
    assert client.kdf == PBKDF2_RULE
    assert [r.path for r in transport.sent].count("/api/account/password") == 1
    assert (await _user(served, "alice")).kdf is None
    changed = json.loads(next(r.body for r in transport.sent if r.path == "/api/account/password") or b"{}")
    assert "kdf" not in changed
    client.close()
    again = Client(ServerBeforeArgon2id(served.transport()), "alice")
    await in_thread(again.login, NEW_PASSWORD)
    again.close()
