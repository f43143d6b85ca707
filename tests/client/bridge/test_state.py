"""The bridge's mailbox state (``mailiverse/client/bridge/state.py``) against the real web app over real HTTPS:
listings, UIDs shared by two bridges, flags the web client reads, trash, moves, expunge and APPEND, and no
plaintext in the shared Cache/ documents."""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, ssl

from mailiverse.client import Client
from mailiverse.client import api as client_api
from mailiverse.client.bridge.model import (
    DRAFTS,
    INBOX,
    MAILBOXES,
    SCREENER,
    SENT,
    SPAM,
    TRASH,
    BridgeError,
    IMailState,
    MailboxView,
)
from mailiverse.client.bridge.state import TAMPERED_MESSAGE, Bodies, MailState, key_order
from mailiverse.client.errors import ApiError
from mailiverse.client.transport import Response, Transport
from mailiverse.compat.cache_keys import decrypt_cache_file, encrypt_cache_file
from mailiverse.contracts.mail import INBOX_FOLDER, SCREENER_FOLDER, SPAM_FOLDER
from mailiverse.delivery.pipeline import Delivery
from mailiverse.spool import SpooledMessage
from mailiverse.store import accounts as repo
from mailiverse.store.db import Database
from mailiverse.testing import issue_test_certificate
from mailiverse.testing_db import sqlite_url
from tests.support.client import PASSWORD, Served, in_thread
from tests.support.webapi import make_api


@dataclass
class World:
    """The app on a real TLS port, and its delivery pipeline (mail from outside, into any folder)."""

    served: Served
    delivery: Delivery
    counter: list[int] = field(default_factory=lambda: [0])


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    database = Database.open(sqlite_url(tmp_path))
    api, delivery = make_api(database, tmp_path)
    issued = issue_test_certificate(tmp_path / "certs", ["localhost"])
    context = ssl.DefaultOpenSSLContextFactory(str(issued.key_path), str(issued.cert_path))
    port = reactor.listenSSL(0, api.app.site(), context, interface="127.0.0.1")  # type: ignore[attr-defined]
    try:
        yield World(Served(api, int(port.getHost().port), issued.ca_cert_path, issued.cert_path), delivery)
    finally:
        pytest_twisted.blockon(port.stopListening())
        delivery.stop()
        database.close()


@dataclass
class Watching:
    """A transport that records every answer's status, and runs ``before_put`` once, just before the first PUT
    of ``path`` leaves (so another writer can get in between a read and a write)."""

    inner: Transport
    path: str
    before_put: Callable[[], object] | None = None
    seen: list[tuple[str, str, int]] = field(default_factory=list)

    def request(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]) -> Response:
        if method == "PUT" and path == self.path and self.before_put is not None:
            action, self.before_put = self.before_put, None
            action()
        response = self.inner.request(method, path, body, headers)
        self.seen.append((method, path, response.status))
        return response

    def close(self) -> None:
        self.inner.close()


async def signup(world: World, name: str) -> None:
    client, _ = world.served.client(name)
    invite = None
    if not await world.served.api.accounts.signup_open():
        invite, _ = await world.served.api.database.transact(repo.create_invite_txn)
    await in_thread(client.signup, PASSWORD, invite)
    client.close()


async def login(world: World, name: str, transport: Transport | None = None) -> Client:
    """A new device's logged-in client."""
    client = Client(transport or world.served.transport(), name)
    await in_thread(client.login, PASSWORD)
    return client


async def deliver(world: World, to: str, subject: str, folder: str = INBOX_FOLDER) -> bytes:
    """Mail from outside, stored in ``folder``; its exact bytes."""
    world.counter[0] += 1
    raw = (
        f"From: Bob <bob@remote.test>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: Tue, 02 Jan 2024 03:04:05 +0000\r\nMessage-ID: <m{world.counter[0]}@remote.test>\r\n\r\n"
        f"The body of {subject}.\r\n"
    ).encode()
    recipient = await world.delivery.resolve(to)
    assert recipient is not None
    await world.delivery.deliver(SpooledMessage(size=len(raw), memory=raw), "bob@remote.test", [recipient], folder)
    return raw


def document(client: Client, name: str) -> Any:
    """A Cache/ document decrypted here independently: the key block's DER as the seed, then zlib, then JSON."""
    der = base64.b64decode(client.key_environment[client_api.PRIVATE_KEY_NAME])
    return json.loads(zlib.decompress(decrypt_cache_file(name, der, client.get_object("Cache/" + name))))


def exists(client: Client, path: str) -> bool:
    return client.object_exists(path)


def keys_of(view: MailboxView) -> list[str]:
    return [ref.key for ref in view.messages]


def uid_map(view: MailboxView) -> dict[str, int]:
    return {ref.key: ref.uid for ref in view.messages}


@pytest_twisted.ensureDeferred
async def test_mailboxes_list_the_right_messages_with_their_decrypted_bytes(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each mailbox lists its store folder's messages (in pages) in delivery order; message() and the size are
    the decrypted original's."""
    await signup(world, "alice")
    await signup(world, "bob")
    first = await deliver(world, "alice@example.org", "first")
    second = await deliver(world, "alice@example.org", "second")
    spam = await deliver(world, "alice@example.org", "cheap pills", SPAM_FOLDER)
    screened = await deliver(world, "alice@example.org", "hello stranger", SCREENER_FOLDER)
    client = await login(world, "alice")
    await in_thread(client.send, ["bob@example.org"], "to bob", "Hi Bob\n")
    monkeypatch.setattr(client_api, "PAGE_SIZE", 1)
    state = MailState(client)
    protocol: IMailState = state
    assert list(protocol.mailboxes()) == list(MAILBOXES)

    inbox = await in_thread(state.view, INBOX)
    assert [ref.uid for ref in inbox.messages] == [1, 2] and inbox.uidnext == 3 and inbox.uidvalidity > 0
    assert all(key.startswith("Mail/In_Json/") for key in keys_of(inbox))
    assert keys_of(inbox) == sorted(keys_of(inbox), key=key_order)
    assert [await in_thread(state.message, key) for key in keys_of(inbox)] == [first, second]
    assert [ref.size for ref in inbox.messages] == [len(first), len(second)]
    assert all(ref.internal_ms == int(ref.key.rpartition("/")[2].split("_")[0]) for ref in inbox.messages)
    assert all(ref.flags == frozenset() for ref in inbox.messages)
    listed = [path for method, path in [(r.method, r.path) for r in client._transport.sent] if method == "GET"]  # type: ignore[attr-defined]
    assert sum("prefix=Mail%2FIn_Json%2F" in path for path in listed) >= 3  # one page per message, then the end

    for name, raw in ((SPAM, spam), (SCREENER, screened)):
        found = await in_thread(state.view, name)
        assert len(found.messages) == 1 and found.messages[0].uid == 1
        assert await in_thread(state.message, found.messages[0].key) == raw
        assert found.messages[0].size == len(raw)
    sent = await in_thread(state.view, SENT)
    assert len(sent.messages) == 1
    body = await in_thread(state.message, sent.messages[0].key)
    assert b"Subject: to bob" in body and sent.messages[0].size == len(body)
    assert "\\Seen" in sent.messages[0].flags  # the user's own mail is never unread, as in the web client
    assert (await in_thread(state.view, DRAFTS)).messages == ()
    assert (await in_thread(state.view, TRASH)).messages == ()
    client.close()


@pytest_twisted.ensureDeferred
async def test_uids_are_stable_across_restarts_and_shared_by_two_bridges(world: World) -> None:
    """A new MailState finds the same UIDs and sizes (decrypting nothing again); two bridges assigning at once
    meet a version conflict and end with one assignment."""
    await signup(world, "alice")
    for n in range(3):
        await deliver(world, "alice@example.org", f"message {n}")
    first_client = await login(world, "alice")
    first = MailState(first_client)
    before = await in_thread(first.view, INBOX)
    assert [ref.uid for ref in before.messages] == [1, 2, 3]

    restarted_transport = world.served.transport()
    restarted = MailState(await login(world, "alice", restarted_transport))
    again = await in_thread(restarted.view, INBOX)
    assert (again.uidvalidity, uid_map(again)) == (before.uidvalidity, uid_map(before))
    assert [ref.size for ref in again.messages] == [ref.size for ref in before.messages]
    assert not any(r.path.startswith("/api/store/Mail/In/") for r in restarted_transport.sent)  # sizes were kept

    watching = Watching(world.served.transport(), "/api/store/Cache/W_uids")
    second = MailState(await login(world, "alice", watching))
    await in_thread(second.view, INBOX)
    for n in range(3, 5):
        await deliver(world, "alice@example.org", f"message {n}")
    # Between the second bridge's read of W_uids and its write, the first bridge assigns the new UIDs.
    watching.before_put = lambda: first.view(INBOX, refresh=True)
    shared = await in_thread(second.view, INBOX, refresh=True)
    assert ("PUT", "/api/store/Cache/W_uids", 412) in watching.seen
    mine = await in_thread(first.view, INBOX)
    assert uid_map(shared) == uid_map(mine) and shared.uidvalidity == mine.uidvalidity == before.uidvalidity
    assert [ref.uid for ref in shared.messages] == [1, 2, 3, 4, 5] and shared.uidnext == 6
    assert keys_of(shared) == sorted(keys_of(shared), key=key_order)
    assert uid_map(await in_thread(restarted.view, INBOX, refresh=True)) == uid_map(shared)
    stored = await in_thread(document, first_client, "W_uids")
    assert stored["mailboxes"][INBOX]["uids"] == uid_map(shared) and stored["mailboxes"][INBOX]["next"] == 6


@pytest_twisted.ensureDeferred
async def test_flags_round_trip_and_seen_is_the_web_clients_read_set(world: World) -> None:
    """\\Seen is exactly W_state's ``read`` (both ways); other flags and keywords are in W_flags; another bridge
    sees them all."""
    await signup(world, "alice")
    await deliver(world, "alice@example.org", "one")
    await deliver(world, "alice@example.org", "two")
    client = await login(world, "alice")
    state, other = MailState(client), MailState(await login(world, "alice"))
    one, two = keys_of(await in_thread(state.view, INBOX))

    after = await in_thread(state.set_flags, INBOX, [1], ["\\seen", "\\Flagged", "$Label1"], "add")
    assert after.messages[0].flags == {"\\Seen", "\\Flagged", "$Label1"}
    assert (await in_thread(document, client, "W_state"))["read"] == [one]
    assert (await in_thread(document, client, "W_flags"))["flags"] == {one: ["\\Flagged", "$Label1"]}
    seen_there = await in_thread(other.view, INBOX, refresh=True)
    assert seen_there.messages[0].flags == {"\\Seen", "\\Flagged", "$Label1"} and seen_there.messages[1].flags == set()

    await in_thread(other.set_flags, INBOX, [1], ["\\Seen", "$label1"], "remove")
    assert (await in_thread(document, client, "W_state"))["read"] == []
    assert (await in_thread(state.view, INBOX, refresh=True)).messages[0].flags == {"\\Flagged"}
    replaced = await in_thread(state.set_flags, INBOX, [1, 2], ["\\Answered", "\\Seen"], "set")
    assert [ref.flags for ref in replaced.messages] == [{"\\Answered", "\\Seen"}] * 2
    assert sorted((await in_thread(document, client, "W_state"))["read"]) == sorted([one, two])

    # The web client marks a message unread: it writes W_state itself (zlib JSON under the cache-key rule).
    der = base64.b64decode(client.key_environment[client_api.PRIVATE_KEY_NAME])
    web = {"read": [two], "trash": [], "ham": []}
    await in_thread(
        client.put_object, "Cache/W_state", encrypt_cache_file("W_state", der, zlib.compress(json.dumps(web).encode()))
    )
    assert [ref.flags for ref in (await in_thread(state.view, INBOX, refresh=True)).messages] == [
        {"\\Answered"},
        {"\\Answered", "\\Seen"},
    ]


@pytest_twisted.ensureDeferred
async def test_bad_flags_mailboxes_and_moves_are_refused(world: World) -> None:
    """Unknown system flags, non-atom or long keywords, too many flags, unknown mailboxes and impossible moves
    or appends are BridgeError, and change nothing."""
    await signup(world, "alice")
    await deliver(world, "alice@example.org", "one")
    client = await login(world, "alice")
    state = MailState(client)
    await in_thread(state.view, INBOX)
    many = [f"k{n}" for n in range(64)]
    for flags in (["\\Recent"], ["\\Bogus"], ["two words"], ["a(b"], ['q"'], ["x" * 65], [*many, "one more"], [""]):
        with pytest.raises(BridgeError):
            await in_thread(state.set_flags, INBOX, [1], flags, "add")
    with pytest.raises(BridgeError):
        await in_thread(state.set_flags, INBOX, [1], ["\\Seen"], "toggle")
    with pytest.raises(ApiError):  # nothing was written
        await in_thread(client.get_object, "Cache/W_flags")
    assert (await in_thread(state.set_flags, INBOX, [1], many, "set")).messages[0].flags == set(many)
    with pytest.raises(BridgeError):
        await in_thread(state.set_flags, INBOX, [1], ["\\Flagged"], "add")
    for call in (
        lambda: state.view("Archive"),
        lambda: state.move(INBOX, [1], SENT),
        lambda: state.move(INBOX, [1], DRAFTS),
        lambda: state.move(INBOX, [1], INBOX),
        lambda: state.move(INBOX, [1], "Nowhere"),
        lambda: state.append(SPAM, b"Subject: x\r\n\r\ny\r\n", [], None),
        lambda: state.append(TRASH, b"Subject: x\r\n\r\ny\r\n", [], None),
        lambda: state.append(INBOX, b"", [], None),
        lambda: state.append(INBOX, b"Subject: x\r\n\r\ny\r\n", ["\\Nope"], None),
        lambda: state.message("Mail/Elsewhere_Json/1_2"),
        lambda: state.message("nonsense"),
    ):
        with pytest.raises(BridgeError):
            await in_thread(call)
    assert len((await in_thread(state.view, INBOX, refresh=True)).messages) == 1
    assert [path for path in await in_thread(client.mail_folders)] == ["Mail/In"]


@pytest_twisted.ensureDeferred
async def test_trash_and_moves_keep_state_and_never_reuse_a_uid(world: World) -> None:
    """Trash is W_state's trash set; INBOX, Spam and Screener moves rename both objects; each arrival gets a new
    UID there; moves the store cannot make are refused."""
    await signup(world, "alice")
    await signup(world, "bob")
    raws = [await deliver(world, "alice@example.org", f"message {n}") for n in range(3)]
    client = await login(world, "alice")
    await in_thread(client.send, ["bob@example.org"], "sent one", "text\n")
    state = MailState(client)
    keys = keys_of(await in_thread(state.view, INBOX))

    assert await in_thread(state.move, INBOX, [1], TRASH) == [(1, 1)]
    assert keys_of(await in_thread(state.view, INBOX)) == keys[1:]
    assert keys_of(await in_thread(state.view, TRASH)) == [keys[0]]
    assert (await in_thread(document, client, "W_state"))["trash"] == [keys[0]]
    assert await in_thread(exists, client, keys[0])
    assert await in_thread(state.move, TRASH, [1], INBOX) == [(1, 4)]
    assert uid_map(await in_thread(state.view, INBOX)) == {keys[1]: 2, keys[2]: 3, keys[0]: 4}
    assert (await in_thread(document, client, "W_state"))["trash"] == []

    await in_thread(state.set_flags, INBOX, [2], ["\\Seen", "\\Flagged"], "add")
    assert await in_thread(state.move, INBOX, [2], SPAM) == [(2, 1)]
    base = keys[1].rpartition("/")[2]
    moved = f"Mail/Spam_Json/{base}"
    assert [await in_thread(exists, client, path) for path in (moved, f"Mail/Spam/{base}", keys[1])] == [
        True,
        True,
        False,
    ]
    spam = await in_thread(state.view, SPAM)
    assert keys_of(spam) == [moved] and spam.messages[0].flags == {"\\Seen", "\\Flagged"}
    assert await in_thread(state.message, moved) == raws[1]
    assert (await in_thread(document, client, "W_state"))["read"] == [moved]
    assert await in_thread(state.move, SPAM, [1], SCREENER) == [(1, 1)]
    assert await in_thread(state.move, SCREENER, [1], INBOX) == [(1, 5)]
    assert uid_map(await in_thread(state.view, INBOX))[f"Mail/In_Json/{base}"] == 5

    # From the Trash to another folder than its own: out of the trash set, then moved in the store.
    assert await in_thread(state.move, INBOX, [3], TRASH) == [(3, 2)]
    assert await in_thread(state.move, TRASH, [2], SPAM) == [(2, 2)]
    assert keys_of(await in_thread(state.view, SPAM, refresh=True)) == [f"Mail/Spam_Json/{keys[2].rpartition('/')[2]}"]

    sent = (await in_thread(state.view, SENT)).messages[0]
    with pytest.raises(BridgeError):
        await in_thread(state.move, SENT, [sent.uid], INBOX)
    trashed = await in_thread(state.move, SENT, [sent.uid], TRASH)
    with pytest.raises(BridgeError):
        await in_thread(state.move, TRASH, [trashed[0][1]], INBOX)
    assert await in_thread(state.move, TRASH, [trashed[0][1]], SENT) == [(trashed[0][1], 2)]
    assert await in_thread(state.move, INBOX, [999], SPAM) == []

    other = MailState(await login(world, "alice"))
    for name in (INBOX, SPAM, SENT, TRASH):
        assert uid_map(await in_thread(other.view, name)) == uid_map(await in_thread(state.view, name, refresh=True))


@pytest_twisted.ensureDeferred
async def test_expunge_deletes_only_flagged_messages_still_in_the_mailbox(world: World) -> None:
    """EXPUNGE deletes both objects of \\Deleted messages (only the UIDs given, with UID EXPUNGE); one moved to
    Spam or to the Trash by another bridge meanwhile survives; in Trash it also leaves the trash set."""
    await signup(world, "alice")
    for n in range(5):
        await deliver(world, "alice@example.org", f"message {n}")
    client = await login(world, "alice")
    state, other = MailState(client), MailState(await login(world, "alice"))
    keys = keys_of(await in_thread(state.view, INBOX))
    await in_thread(other.view, INBOX)

    await in_thread(state.set_flags, INBOX, [1, 2, 3], ["\\Deleted"], "add")
    await in_thread(other.view, INBOX, refresh=True)
    assert await in_thread(other.move, INBOX, [2], SPAM) == [(2, 1)]
    assert await in_thread(other.move, INBOX, [3], TRASH) == [(3, 1)]
    assert await in_thread(state.expunge, INBOX) == [1]
    base = keys[0].rpartition("/")[2]
    assert not await in_thread(exists, client, keys[0])
    assert not await in_thread(exists, client, f"Mail/In/{base}")
    assert await in_thread(exists, client, f"Mail/Spam_Json/{keys[1].rpartition('/')[2]}")
    assert await in_thread(exists, client, keys[2])
    assert keys_of(await in_thread(state.view, INBOX)) == keys[3:]

    trash = await in_thread(state.view, TRASH, refresh=True)
    assert keys_of(trash) == [keys[2]] and "\\Deleted" in trash.messages[0].flags
    assert await in_thread(state.expunge, TRASH) == [1]
    assert not await in_thread(exists, client, keys[2])
    assert (await in_thread(document, client, "W_state"))["trash"] == []
    assert keys[2] not in (await in_thread(document, client, "W_flags"))["flags"]

    await in_thread(state.set_flags, INBOX, [4, 5], ["\\Deleted"], "add")
    assert await in_thread(state.expunge, INBOX, [5]) == [5]
    assert keys_of(await in_thread(state.view, INBOX)) == [keys[3]]
    assert await in_thread(exists, client, keys[3])
    assert keys[4] not in (await in_thread(document, client, "W_uids"))["mailboxes"][INBOX]["uids"]


@pytest_twisted.ensureDeferred
async def test_append_stores_a_sealed_copy_fetched_byte_identical(world: World) -> None:
    """APPEND seals the message and a twin to the account's own key and imports both; another device decrypts
    the same bytes with the same flags, UID and date."""
    await signup(world, "alice")
    await deliver(world, "alice@example.org", "already here")
    client = await login(world, "alice")
    state = MailState(client)
    await in_thread(state.view, INBOX)
    draft = (
        b"From: alice@example.org\r\nTo: carol@example.net\r\nSubject: =?utf-8?q?Entw=C3=BCrfe?=\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=latin-1\r\nContent-Transfer-Encoding: 8bit\r\n"
        b"\r\nGr\xfc\xdfe, \r\nno final newline"
    )
    when = 1_700_000_000_123
    uid = await in_thread(state.append, DRAFTS, draft, ["\\Draft", "\\Seen", "$Todo"], when)
    drafts = await in_thread(state.view, DRAFTS)
    ref = drafts.messages[0]
    assert (ref.uid, ref.internal_ms, ref.size, ref.flags) == (uid, when, len(draft), {"\\Draft", "\\Seen", "$Todo"})
    assert ref.key.startswith(f"Mail/Drafts_Json/{when}_")
    assert await in_thread(state.message, ref.key) == draft
    twin = json.loads(await in_thread(client.open_mail, ref.key))
    assert twin["original"] == "Mail/Drafts/" + ref.key.rpartition("/")[2]

    inbox_uid = await in_thread(state.append, INBOX, b"Subject: kept\r\n\r\nbody\r\n", [], None)
    sent_uid = await in_thread(state.append, SENT, b"Subject: mine\r\n\r\nsent body\r\n", [], None)
    assert (inbox_uid, sent_uid) == (2, 1)

    elsewhere = MailState(await login(world, "alice"))
    there = (await in_thread(elsewhere.view, DRAFTS)).messages[0]
    assert (there.uid, there.size, there.flags, there.internal_ms) == (uid, len(draft), ref.flags, when)
    assert await in_thread(elsewhere.message, there.key) == draft
    assert [r.uid for r in (await in_thread(elsewhere.view, INBOX)).messages] == [1, 2]
    assert await in_thread(elsewhere.message, keys_of(await in_thread(elsewhere.view, SENT))[0]) == (
        b"Subject: mine\r\n\r\nsent body\r\n"
    )


@pytest_twisted.ensureDeferred
async def test_cache_documents_hold_no_plaintext(world: World) -> None:
    """The stored bytes of every Cache/ document the bridge writes hold no subject, body, keyword or message
    key; each opens only with the account's key."""
    await signup(world, "alice")
    await deliver(world, "alice@example.org", "Quarterly-Secret-Subject")
    client = await login(world, "alice")
    state = MailState(client)
    await in_thread(state.view, INBOX)
    await in_thread(state.set_flags, INBOX, [1], ["\\Seen", "$PrivateKeyword"], "add")
    await in_thread(state.append, DRAFTS, b"Subject: Appended-Secret-Subject\r\n\r\nAppended secret body\r\n", [], None)
    await in_thread(state.move, INBOX, [1], TRASH)
    names = [entry.path for entry in await in_thread(lambda: list(client.iter_objects("Cache/")))]
    assert {"Cache/W_state", "Cache/W_flags", "Cache/W_uids", "Cache/W_sizes"} <= set(names)
    secrets = [b"Quarterly-Secret-Subject", b"The body of", b"Appended", b"PrivateKeyword", b"Mail/", b"Json"]
    for name in names:
        raw = await in_thread(client.get_object, name)
        for secret in secrets:
            assert secret not in raw, name
        with pytest.raises(Exception):  # noqa: B017 - any failure: the bytes are not zlib without the key
            zlib.decompress(raw)
    for name in ("W_state", "W_flags", "W_uids", "W_sizes"):
        assert isinstance(await in_thread(document, client, name), dict)


@pytest_twisted.ensureDeferred
async def test_tampered_and_half_deleted_messages(world: World) -> None:
    """A message whose original fails to decrypt reads as a fixed notice of its listed size (never remembered as
    its size); a twin without its original is not listed."""
    await signup(world, "alice")
    raw = await deliver(world, "alice@example.org", "fine")
    client = await login(world, "alice")
    headers = {"Content-Type": "application/octet-stream", "If-None-Match": "*"}
    for path in ("Mail/In/1_1", "Mail/In_Json/1_1", "Mail/In_Json/2_2"):
        await in_thread(client._send, "PUT", f"/api/store/{path}?import=1", data=b"\x02not sealed", headers=headers)
    state = MailState(client)
    inbox = await in_thread(state.view, INBOX)
    assert keys_of(inbox) == ["Mail/In_Json/1_1", *keys_of(inbox)[1:]] and len(inbox.messages) == 2
    notice = await in_thread(state.message, "Mail/In_Json/1_1")
    assert notice == TAMPERED_MESSAGE and inbox.messages[0].size == len(notice) and b"not sealed" not in notice
    assert await in_thread(state.message, inbox.messages[1].key) == raw
    assert set((await in_thread(document, client, "W_sizes"))["sizes"]) == {inbox.messages[1].key.rpartition("/")[2]}
    with pytest.raises(BridgeError):
        await in_thread(state.message, "Mail/In_Json/2_2")


def test_bodies_keep_at_most_their_limit() -> None:
    """The decrypted-message cache drops the least recently used first and never holds more than its limit."""
    bodies = Bodies(100)
    bodies.put("a", b"a" * 40)
    bodies.put("b", b"b" * 40)
    assert bodies.get("a") == b"a" * 40
    bodies.put("c", b"c" * 40)
    assert (bodies.get("a"), bodies.get("b"), bodies.get("c")) == (b"a" * 40, None, b"c" * 40)
    bodies.put("huge", b"h" * 101)
    assert bodies.get("huge") is None and bodies.size == 80
    bodies.rename("a", "z")
    assert bodies.get("a") is None and bodies.get("z") == b"a" * 40


def test_key_order_is_numeric() -> None:
    """Keys sort by delivery time and then the random part as numbers, not as text."""
    keys = ["Mail/In_Json/1000_2", "Mail/In_Json/999_10", "Mail/In_Json/1000_10", "Mail/In_Json/odd"]
    assert sorted(keys, key=key_order) == [
        "Mail/In_Json/999_10",
        "Mail/In_Json/1000_2",
        "Mail/In_Json/1000_10",
        "Mail/In_Json/odd",
    ]
