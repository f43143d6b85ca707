"""Hostile input on the line servers, the Store API and Send gets a clean refusal and a closed connection."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.logger import globalLogPublisher

from mailiverse.legacy.service import WEAK_GROUP_WARNING, legacy_keys_text
from mailiverse.store.legacy import get_credentials_txn
from tests.support.legacy import DOMAIN, KEYS, SMTP_PASSWORD, Client, LegacyAppliance
from tests.support.legacy_client import (
    SRP,
    LoginFailed,
    Srp,
    TcpLines,
    WsLines,
    b64,
    environment_text,
    line_of,
    login,
    mv_headers,
    packet,
    send_body,
    session_line,
    signup_line,
    text_of,
    unpacket,
)


async def _closed_without_reply(lines: Any) -> bool:
    return await lines.recv() is None


async def _tcp(app: LegacyAppliance, role: str = "key") -> TcpLines:
    from twisted.internet import reactor

    return await TcpLines.connect(reactor, app.key_plain if role == "key" else app.mail_plain, False)


@pytest.mark.parametrize(
    "line",
    [
        b"%%%not-base64%%%",
        base64.b64encode(b'core.srp.SRPPackets$Packet1_ClientSendsHelo!{"user":"a","version":"2.0"}'),
        base64.b64encode(b"no class name here"),
        base64.b64encode(b"core.srp.SRPPackets$Packet1_ClientSendsHello!{not json"),
        base64.b64encode(b'core.srp.SRPPackets$Packet1_ClientSendsHello!{"user":7,"version":"2.0"}'),
        base64.b64encode(b"\xff\xfe\xfd"),
    ],
    ids=["bad-base64", "wrong-class", "no-envelope", "bad-json", "wrong-type", "not-utf8"],
)
@pytest_twisted.ensureDeferred
async def test_malformed_first_lines_close_silently(appliance: LegacyAppliance, line: bytes) -> None:
    """A malformed first packet closes the connection without any error packet."""
    lines = await _tcp(appliance)
    await lines.send(line)
    assert await _closed_without_reply(lines)


@pytest_twisted.ensureDeferred
async def test_overlong_line_is_dropped(appliance: LegacyAppliance) -> None:
    """A line longer than 50,000 characters on the KeyServer ends the connection."""
    lines = await _tcp(appliance)
    lines.send_raw(b"A" * 50_010)
    assert await _closed_without_reply(lines)


@pytest_twisted.ensureDeferred
async def test_signup_packet_is_refused_on_the_key_server(appliance: LegacyAppliance) -> None:
    """Only the MailServer takes sign-up packets; the KeyServer just closes."""
    lines = await _tcp(appliance, "key")
    await lines.send(signup_line(appliance.mail_auth_public, f"eve@{DOMAIN}", KEYS[0]))
    assert await _closed_without_reply(lines)


@pytest_twisted.ensureDeferred
async def test_garbled_signup_gets_the_generic_answer(appliance: LegacyAppliance) -> None:
    """A sign-up blob that does not decrypt gets one generic failure answer, then the close."""
    lines = await _tcp(appliance, "mail")
    await lines.send(
        line_of(packet(SRP + "PacketInit_EncryptedPacket", {"encryptedBlock": b64(b"\x01" + b"\x00" * 300)}))
    )
    name, value = unpacket(text_of(await lines.recv() or b""))
    assert name == SRP + "PacketInit_ServerResponse" and value["succeeded"] is False
    assert "decrypt" not in value["reason"].lower() and "padding" not in value["reason"].lower()
    assert await _closed_without_reply(lines)


@pytest_twisted.ensureDeferred
async def test_wrong_password_and_unknown_user_look_alike(appliance: LegacyAppliance) -> None:
    """A wrong password and an unknown name both get a salt and B, then a silent close after M1."""
    client = Client(appliance, "plain")
    await client.sign_up()
    for user, vk in ((client.address, b"\x01" * 32), (f"nobody@{DOMAIN}", KEYS[0])):
        lines = await _tcp(appliance)
        with pytest.raises(LoginFailed):
            await login(lines, user, vk)


@pytest_twisted.ensureDeferred
async def test_replayed_and_garbled_session_lines_close(appliance: LegacyAppliance) -> None:
    """After login, a line under another key or a garbled one closes the connection with no reply."""
    client = Client(appliance, "plain")
    await client.sign_up()
    for bad in (session_line(b"\x02" * 32, "core.client.messages.Get!{}"), b"Zm9vYmFy"):
        lines = await _tcp(appliance)
        await login(lines, client.address, KEYS[0])
        await lines.send(bad)
        assert await _closed_without_reply(lines)


@pytest_twisted.ensureDeferred
async def test_failed_logins_are_rate_limited(appliance: LegacyAppliance) -> None:
    """After repeated failures, a hello for that account is refused outright (no salt)."""
    client = Client(appliance, "plain")
    await client.sign_up()
    for _ in range(10):
        lines = await _tcp(appliance)
        with pytest.raises(LoginFailed):
            await login(lines, client.address, b"\x03" * 32)
    lines = await _tcp(appliance)
    await lines.send(Srp(client.address, KEYS[0]).hello())
    assert await _closed_without_reply(lines)


@pytest_twisted.ensureDeferred
async def test_binary_websocket_frame_closes(appliance: LegacyAppliance) -> None:
    """A binary frame on the WebSocket servers ends the connection."""
    from twisted.internet import reactor

    lines = await WsLines.connect(reactor, appliance.web, "/Mailiverse/KeyServer")
    lines.proto.sendMessage(b"\x00\x01", isBinary=True)
    assert await lines.recv() is None


@pytest_twisted.ensureDeferred
async def test_store_refuses_bad_signature_stale_date_and_unbound_keys(appliance: LegacyAppliance) -> None:
    """Store calls with a wrong signature, a stale X-Mv-Date or credentials no account claimed get 403."""
    client = Client(appliance, "plain")
    await client.store_enable()
    unbound = await client.store("GET", "Cache/I")
    assert unbound.code == 403
    await client.sign_up()
    ok = await client.store("PUT", "Cache/I", b"x")
    assert ok.code == 200
    stale = await client.store("GET", "Cache/I", now=time.time() - 3600)
    assert stale.code == 403
    headers = mv_headers(client.key_id, client.secret, "GET", "Cache/Other")
    forged = await treq.get(appliance.base + "StoreGet?Resource=Cache/I", headers=headers)
    assert forged.code == 403
    wrong_key = mv_headers(client.key_id, b64(b"\x00" * 32), "GET", "Cache/I")
    assert (await treq.get(appliance.base + "StoreGet?Resource=Cache/I", headers=wrong_key)).code == 403
    bad_path = await client.store("GET", "../etc/passwd")
    assert bad_path.code == 400


@pytest_twisted.ensureDeferred
async def test_store_enable_keys_for_an_existing_account_open_nothing(appliance: LegacyAppliance) -> None:
    """StoreEnable for a taken name answers like any other, but its keys open nothing; another name's keys cannot be
    bound to the account."""
    client = Client(appliance, "plain")
    await client.sign_up()
    minted = Client(appliance, "plain")
    await minted.store_enable()
    creds = await appliance.database.run(get_credentials_txn, minted.key_id)
    assert creds is not None and creds.user_id is None
    assert (await minted.store("GET", "Cache/", list=True)).code == 403
    mallory = Client(appliance, "plain", "mallory")
    await mallory.store_enable()
    creds = await appliance.database.run(get_credentials_txn, mallory.key_id)
    assert creds is not None and creds.user_id is None and creds.name == "mallory"
    hijack = dict(client.server_environment(), **{"MV/AccessKeyId": mallory.key_id})
    answer = await client.op("mail", "Put", {"block": b64(environment_text(hijack).encode())})
    assert answer is None


@pytest_twisted.ensureDeferred
async def test_send_holes_are_closed(appliance: LegacyAppliance, outbound: Any) -> None:
    """Send refuses a wrong password and a foreign From, and hands remote recipients to the outbound queue."""
    client = Client(appliance, "plain")
    await client.sign_up()
    base = {
        "user": client.address,
        "password": SMTP_PASSWORD,
        "from": client.address,
        "to": "carol@remote.test",
        "subject": "s",
        "text": "t",
        "html": "<b>h</b>",
        "messageId": "<x@y>",
    }
    wrong = await treq.put(appliance.base + "Send", data=send_body(appliance.send_public, dict(base, password="guess")))
    assert wrong.code == 403
    spoof = await treq.put(
        appliance.base + "Send", data=send_body(appliance.send_public, dict(base, **{"from": "ceo@" + DOMAIN}))
    )
    assert spoof.code == 403
    garbage = await treq.put(appliance.base + "Send", data=b"bm90IGEgYmxvYg==")
    assert garbage.code == 400
    injected = await treq.put(
        appliance.base + "Send", data=send_body(appliance.send_public, dict(base, subject="a\r\nBcc: x@evil.test"))
    )
    assert injected.code == 400
    assert outbound.submitted == []
    good = await treq.put(appliance.base + "Send", data=send_body(appliance.send_public, base))
    assert good.code == 200
    [submitted] = outbound.submitted
    assert submitted["recipients"] == ["carol@remote.test"] and submitted["mail_from"] == client.address


@pytest_twisted.ensureDeferred
async def test_send_to_remote_without_outbound_is_refused(token_appliance: LegacyAppliance) -> None:
    """Without an outbound queue, Send refuses remote recipients rather than relaying."""
    client = Client(token_appliance, "plain")
    token = await token_appliance.parts.backend.issue_captcha_token()
    await client.store_enable(token)
    sign = signup_line(token_appliance.mail_auth_public, client.address, KEYS[0], captcha=token)
    assert (await client.init(sign))["succeeded"] is True
    assert (
        await client.op("mail", "Put", {"block": b64(environment_text(client.server_environment()).encode())})
        is not None
    )
    fields = {
        "user": client.address,
        "password": SMTP_PASSWORD,
        "from": client.address,
        "to": "carol@remote.test",
        "text": "t",
        "html": "",
    }
    refused = await treq.put(token_appliance.base + "Send", data=send_body(token_appliance.send_public, fields))
    assert refused.code == 403


@pytest_twisted.ensureDeferred
async def test_token_policy_requires_a_valid_token_once(token_appliance: LegacyAppliance) -> None:
    """Under the token policy, sign-up and StoreEnable need an issued token, each usable once."""
    client = Client(token_appliance, "plain")
    assert (await client.init(signup_line(token_appliance.mail_auth_public, client.address, KEYS[0])))[
        "succeeded"
    ] is False
    assert (await treq.get(token_appliance.base + f"StoreEnable?email={client.address}&captcha=null")).code == 403
    token = await token_appliance.parts.backend.issue_captcha_token()
    assert (await client.init(signup_line(token_appliance.mail_auth_public, client.address, KEYS[0], captcha=token)))[
        "succeeded"
    ] is True
    other = Client(token_appliance, "plain", "other")
    assert (await other.init(signup_line(token_appliance.mail_auth_public, other.address, KEYS[0], captcha=token)))[
        "succeeded"
    ] is False


def test_start_up_warns_that_the_group_is_weak(appliance: LegacyAppliance) -> None:
    """Starting the legacy services logs the 257-bit warning."""
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        appliance.parts.services[0].startService()
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert any(e.get("log_format") == WEAK_GROUP_WARNING for e in seen)
    assert "257 bits" in WEAK_GROUP_WARNING


def test_keys_text_embeds_both_public_keys(appliance: LegacyAppliance) -> None:
    """``legacy keys`` prints the mail-auth and send keys as base64 SPKI under the web client's names."""
    from cryptography.hazmat.primitives import serialization

    text = legacy_keys_text(appliance.data_dir)
    entries = dict(json.loads("{" + text.strip().rstrip(",") + "}").items())
    for name, key in (
        ("mail.auth.MailServerAuthenticatorNoThread.truststore.jks.b64", appliance.mail_auth_public),
        ("mail.client.Mailer.send-truststore.jks.b64", appliance.send_public),
    ):
        der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        assert base64.b64decode(entries[name]) == der


@pytest_twisted.ensureDeferred
async def test_store_put_signature_cannot_be_replayed_with_another_body(appliance: LegacyAppliance) -> None:
    """The MV signature covers neither body nor nonce: a seen StorePut signature is refused with another body."""
    client = Client(appliance, "plain")
    await client.sign_up()
    headers = mv_headers(client.key_id, client.secret, "PUT", "Cache/R")
    url = appliance.base + "StorePut?Resource=Cache/R"
    assert (await treq.put(url, headers=headers, data=b"first")).code == 200
    assert (await treq.put(url, headers=headers, data=b"first")).code == 200  # a client's retry: same bytes
    replayed = await treq.put(url, headers=headers, data=b"forged by a replay")
    assert replayed.code == 403
    assert json.loads(await replayed.content())["error"] == "replayed"
    assert await (await client.store("GET", "Cache/R")).content() == b"first"
