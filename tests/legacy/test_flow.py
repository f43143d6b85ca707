"""The whole legacy flow, driven by an independent client: sign up, log in on both servers, store, send, receive."""

from __future__ import annotations

import base64
import json
import time
import zlib

import pytest
import pytest_twisted
import treq

from mailiverse.auth.srp6a import SRP_GROUP
from mailiverse.spool import SpooledMessage
from mailiverse.store.users import get_user_txn
from tests.support.legacy import KEYS, PKCS8, SMTP_PASSWORD, USER_KEY, Client, LegacyAppliance
from tests.support.legacy_client import (
    LoginFailed,
    aes_open,
    aes_seal,
    b64,
    environment_text,
    raw_inflate,
    rsa_aes_open,
    send_body,
    unb64,
)


def _complete_environment(client: Client) -> dict[str, str]:
    env = {"version": "2.0"}
    for k, v in client.server_environment().items():
        env["server/" + k] = v
        env["client/" + k] = v
    env["client/RSA-PrivateKey"] = b64(PKCS8)
    return env


async def _run_flow(app: LegacyAppliance, transport: str) -> None:
    client = Client(app, transport)
    await client.sign_up()

    # The key block on the KeyServer: put, then get it back and decrypt it with the CryptoKey.
    key_block = aes_seal(KEYS[1], zlib.compress(environment_text(_complete_environment(client)).encode()))
    assert await client.op("key", "Put", {"block": b64(key_block)}) == {"block": b64(key_block)}
    fetched = await client.op("key", "Get", {})
    assert fetched is not None and unb64(fetched["block"]) == key_block
    environment = json.loads(raw_inflate(aes_open(KEYS[1], unb64(fetched["block"]))).decode().partition("!")[2])
    assert environment["client/RSA-PrivateKey"] == b64(PKCS8)

    # The server environment comes back readable from the MailServer.
    mail_block = await client.op("mail", "Get", {})
    assert mail_block is not None
    assert json.loads(unb64(mail_block["block"]).decode().partition("!")[2]) == client.server_environment()

    # The MV store: put, list, get, delete.
    put = await client.store("PUT", "Cache/I", b"SGVsbG8=")
    assert put.code == 200 and await put.content() == b""
    version = put.headers.getRawHeaders("Version")[0]
    assert len(base64.b64decode(version)) == 16
    listing = await client.store("GET", "Cache/", list=True)
    assert listing.code == 200
    document = json.loads(await listing.content())
    assert document["isTruncated"] is False
    [entry] = document["contents"]
    assert entry["path"] == "Cache/I" and entry["size"] == 8 and entry["version"] == version
    assert entry["date"].endswith("Z GMT") and entry["date"][10] == "T"
    got = await client.store("GET", "Cache/I")
    assert got.code == 200 and await got.content() == b"SGVsbG8=" and got.headers.getRawHeaders("Version") == [version]
    # Another body for the same path needs a new signature: the MV date has whole seconds (legacy/replay.py).
    again = await client.store("PUT", "Cache/I", bytes(range(256)), now=time.time() + 1)
    assert again.headers.getRawHeaders("Version")[0] != version
    assert await (await client.store("GET", "Cache/I")).content() == bytes(range(256))
    deleted = await client.store("DELETE", "Cache/I")
    assert deleted.code == 200
    assert (await client.store("GET", "Cache/I")).code == 404

    # Mail arriving by SMTP lands as v1 Mail/In and Mail/In_Json, readable by the original reader.
    raw = (
        f"From: Bob <bob@remote.test>\r\nTo: {client.address}\r\nSubject: Hello\r\n"
        "Message-ID: <m1@remote.test>\r\n\r\nHi Alice\r\n"
    ).encode()
    recipient = await app.delivery.resolve(client.address)
    assert recipient is not None
    await app.delivery.deliver(SpooledMessage(size=len(raw), memory=raw), "bob@remote.test", [recipient])
    [twin_entry] = json.loads(await (await client.store("GET", "Mail/In_Json/", list=True)).content())["contents"]
    twin_blob = await (await client.store("GET", twin_entry["path"])).content()
    twin = json.loads(raw_inflate(rsa_aes_open(USER_KEY, twin_blob)))
    assert twin["original"] == "Mail/In/" + twin_entry["path"].split("/")[-1]
    assert twin["uidl"] == "<m1@remote.test>"
    original = await (await client.store("GET", twin["original"])).content()
    assert raw_inflate(rsa_aes_open(USER_KEY, original)) == raw

    # Send: authenticated, from the sender's own address, delivered locally.
    fields = {
        "user": client.address,
        "password": SMTP_PASSWORD,
        "from": f"Alice <{client.address}>",
        "to": client.address,
        "cc": "",
        "bcc": "",
        "replyTo": "",
        "subject": "note to self",
        "text": "plain body",
        "html": "<p>html body</p>",
        "messageId": "<0123456789ab00cdef@example.org>",
    }
    sent = await treq.put(app.base + "Send?random=7", data=send_body(app.send_public, fields))
    assert (sent.code, await sent.content()) == (200, b"Ok\n")
    listing = json.loads(await (await client.store("GET", "Mail/In/", list=True)).content())["contents"]
    assert len(listing) == 2
    newest = max(listing, key=lambda e: e["path"])
    mime = raw_inflate(rsa_aes_open(USER_KEY, await (await client.store("GET", newest["path"])).content()))
    assert b"Subject: note to self" in mime and b"<0123456789ab00cdef@example.org>" in mime
    assert b"multipart/alternative" in mime

    # The account upgrades itself to the modern group; the legacy login is refused from then on.
    upgraded = await client.op(
        "key", "mailiverse.legacy.Upgrade", {"salt": b64(b"s" * 16), "verifier": b64(b"\x01" * 256), "group": SRP_GROUP}
    )
    assert upgraded == {}
    user = await app.database.run(get_user_txn, "alice")
    assert user is not None and user.srp_group == SRP_GROUP and user.srp_verifier == b"\x01" * 256
    with pytest.raises(LoginFailed):
        await client.op("key", "Get", {})


@pytest_twisted.ensureDeferred
async def test_full_flow_over_tls(appliance: LegacyAppliance) -> None:
    """An original client signs up, logs in on both TLS servers, uses the store, sends, reads mail and upgrades."""
    await _run_flow(appliance, "tls")


@pytest_twisted.ensureDeferred
async def test_full_flow_over_plain_tcp(appliance: LegacyAppliance) -> None:
    """The same flow over the plain listeners (--legacy-plain)."""
    await _run_flow(appliance, "plain")


@pytest_twisted.ensureDeferred
async def test_full_flow_over_websocket(appliance: LegacyAppliance) -> None:
    """The same flow with the line servers reached over WebSocket at /Mailiverse/KeyServer and /MailServer."""
    await _run_flow(appliance, "ws")


@pytest.mark.postgres
@pytest_twisted.ensureDeferred
async def test_full_flow_on_postgresql(pg_appliance: LegacyAppliance) -> None:
    """The whole flow works with the PostgreSQL backend too."""
    await _run_flow(pg_appliance, "tls")
