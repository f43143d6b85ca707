"""End to end on the device (docs/e2e.md), without a server: the copies the client seals are the appliance's
own format (the same zlib bytes and twin as delivery makes, opened by the client's read path), the ``e2e``
signature verifies only for the untouched message from its signer, a header cannot be smuggled into the
composed message, and another appliance's key answers are checked against that domain's pinned log."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Mapping
from typing import IO, Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mailiverse.client import Client, e2e, keys
from mailiverse.client.errors import ApiError, UsageError
from mailiverse.client.transport import Response
from mailiverse.crypto.formats import decrypt_any
from mailiverse.crypto.keys import generate_private_key, public_key_der
from mailiverse.delivery.sealing import SealJob, seal_message
from mailiverse.keylog import merkle, sth
from mailiverse.keylog.records import (
    KeyRecord,
    canonical_json,
    key_record_fields,
    sign_key_record,
    verify_key_record,
)
from mailiverse.mime.compose import Composed
from mailiverse.mime.limits import Limits
from mailiverse.mime.summary import summarize

ALICE, BOB = "alice@a.example", "bob@b.example"
NOW_MS = 1_765_062_000_000


@pytest.fixture(scope="module")
def alice_key() -> rsa.RSAPrivateKey:
    return generate_private_key(2048)


@pytest.fixture(scope="module")
def bob_key() -> rsa.RSAPrivateKey:
    return generate_private_key(2048)


def _record(private: rsa.RSAPrivateKey, address: str, fmt: str = "v2", **fields: Any) -> KeyRecord:
    document = key_record_fields(private.public_key(), [address], envelope_format=fmt, created_ms=NOW_MS, **fields)
    return verify_key_record(sign_key_record(document, private))


def _message(sender: str = ALICE, subject: str = "Grüße", text: str = "Hello Bob.\n") -> bytes:
    composed = Composed(to=(BOB,), subject=subject, text=text, from_address=sender)
    return e2e.compose_message(composed, default_from=sender, now_ms=NOW_MS)


def _verified(address: str, record: KeyRecord, history: tuple[KeyRecord, ...] = ()) -> keys.VerifiedKey:
    head = sth.TreeHead(1, merkle.leaf_hash(record.leaf), NOW_MS)
    return keys.VerifiedKey(address, record, 0, head, list(history))


class _Objects:
    """A transport serving stored objects as ``GET /api/store/<path>``: the client's own read path opens them."""

    def __init__(self, objects: Mapping[str, bytes]) -> None:
        self.objects = dict(objects)

    def request(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]) -> Response:
        if method == "PUT" and body is not None:
            self.objects[path.removeprefix("/api/store/")] = body
            return Response(200, {}, b'{"version":1}')
        found = self.objects.get(path.removeprefix("/api/store/"))
        if method != "GET" or found is None:
            return Response(404, {}, b'{"error":"not_found","message":"no such object"}')
        return Response(200, {}, found)

    def close(self) -> None:
        pass


def _reader(private: rsa.RSAPrivateKey, objects: Mapping[str, bytes]) -> Client:
    client = Client(_Objects(objects), "bob")
    client._token = "session"  # as after a login; the keys are what `viewing` gives a reader
    return client.viewing("/api/store", [private])


@pytest.mark.parametrize("fmt", ["v1", "v2"])
def test_sealed_copies_are_what_delivery_stores_and_the_client_reads(
    fmt: str, alice_key: rsa.RSAPrivateKey, bob_key: rsa.RSAPrivateKey
) -> None:
    """Original and twin sealed here hold the same zlib bytes, and the same twin (plus ``e2e``), as the
    appliance's delivery seals for the same message; the client's read path opens and summarises them."""
    raw = _message()
    bob = _record(bob_key, BOB, fmt)
    key_base = e2e.new_key_base(NOW_MS)
    member = e2e.signature_member(raw, ALICE, _record(alice_key, ALICE).key_id, alice_key)
    mine = e2e.Outgoing(raw, key_base, NOW_MS, member).seal(bob, delivered_to=BOB, to=BOB)
    assert (mine.to, mine.key_id, mine.organisation) == (BOB, bob.key_id, None)

    written: list[io.BytesIO] = []

    class Sink:
        def begin(self) -> IO[bytes]:
            written.append(io.BytesIO())
            return written[-1]

        def end(self, out: IO[bytes]) -> None:
            pass

    job = SealJob(
        f"Mail/In/{key_base}", f"Mail/In_Json/{key_base}", NOW_MS, ((fmt, bob.public_key),), Limits(), addresses=(BOB,)
    )
    seal_message(raw, job, Sink())
    theirs_original, theirs_twin = (out.getvalue() for out in written)
    assert decrypt_any(bob_key, mine.original) == decrypt_any(bob_key, theirs_original)

    reader = _reader(bob_key, {f"Mail/In/{key_base}": mine.original, f"Mail/In_Json/{key_base}": mine.twin})
    assert reader.read_message(f"Mail/In/{key_base}") == raw
    twin = reader.read_twin(f"Mail/In/{key_base}")
    expected = json.loads(reader.open_sealed(theirs_twin))
    assert twin.pop("e2e") == member
    assert twin == expected and list(twin) == list(expected)
    assert twin["original"] == f"Mail/In/{key_base}" and twin["delivered_to"] == BOB
    summary = summarize(twin)
    assert summary.subject == "Grüße" and summary.author is not None and summary.author.email == ALICE


def test_the_sent_copy_names_the_sent_folder(alice_key: rsa.RSAPrivateKey) -> None:
    """The sender's own copy's twin names ``Mail/Sent/<key base>`` and carries the same signature."""
    raw = _message()
    own = _record(alice_key, ALICE)
    outgoing = e2e.Outgoing(raw, "1_2", NOW_MS, e2e.signature_member(raw, ALICE, own.key_id, alice_key))
    sent = outgoing.seal(own, folder=e2e.SENT, delivered_to=ALICE)
    twin = json.loads(_reader(alice_key, {}).open_sealed(sent.twin))
    assert twin["original"] == "Mail/Sent/1_2" and twin["e2e"]["key_id"] == own.key_id
    assert sent.to_json().keys() == {"key_id", "original", "twin"}


def test_a_signature_verifies_with_the_signers_current_or_earlier_key(alice_key: rsa.RSAPrivateKey) -> None:
    """The ``e2e`` member verifies with the directory's key of its signer: the current key, or one in its history
    with that key id (mail signed before a rotation)."""
    raw = _message()
    current = _record(alice_key, ALICE)
    member = e2e.signature_member(raw, ALICE, current.key_id, alice_key)
    assert base64.b64decode(member["sha256"]) == hashlib.sha256(raw).digest()
    seal = e2e.check_signature(member, raw, lambda address: _verified(address, current))
    assert seal == e2e.Seal(True, ALICE)
    assert seal.line() == f"End-to-end encrypted · signed by {ALICE} (verified)"

    newer_key = generate_private_key(2048)
    newer = _record(newer_key, ALICE, supersedes=current.key_id)
    rotated = e2e.check_signature(member, raw, lambda address: _verified(address, newer, (current,)))
    assert rotated.verified
    forgotten = e2e.check_signature(member, raw, lambda address: _verified(address, newer))
    assert not forgotten.verified and f"no key {current.key_id}" in forgotten.reason


def test_tampering_and_a_wrong_signer_are_not_verified(alice_key: rsa.RSAPrivateKey) -> None:
    """A changed message, a changed signature, a signer other than the From address, a key that is not the
    signer's, a malformed member and a key alarm each read as "signature not verified", with the reason."""
    raw = _message()
    current = _record(alice_key, ALICE)
    member = e2e.signature_member(raw, ALICE, current.key_id, alice_key)

    def find(address: str) -> keys.VerifiedKey:
        return _verified(address, current)

    def check(candidate: object, message: bytes = raw, lookup: Any = find) -> e2e.Seal:
        seal = e2e.check_signature(candidate, message, lookup)
        assert not seal.verified and seal.line().startswith("End-to-end encrypted · signature not verified: ")
        return seal

    assert "not the one that was signed" in check(member, raw.replace(b"Hello Bob", b"Hello Eve")).reason
    signature = bytearray(base64.b64decode(member["signature"]))
    signature[10] ^= 1
    bad = {**member, "signature": base64.b64encode(bytes(signature)).decode()}
    assert "does not verify" in check(bad).reason

    # mallory signs with her own key a message whose From is alice: the From and the signer disagree ...
    mallory_key = generate_private_key(2048)
    mallory = _record(mallory_key, "mallory@m.example")
    forged = e2e.signature_member(raw, "mallory@m.example", mallory.key_id, mallory_key)
    assert "but the message is from alice@a.example" in check(forged).reason
    # ... and claiming to be alice with her own key does not verify with alice's directory key
    claimed = e2e.signature_member(raw, ALICE, current.key_id, mallory_key)
    assert "does not verify" in check(claimed).reason

    assert "malformed" in check({**member, "sha256": "not base64!"}).reason
    assert "version 1" in check({**member, "v": 2}).reason
    assert "version 1" in check("e2e").reason

    def alarm(address: str) -> keys.VerifiedKey:
        raise keys.KeyAlarm("the inclusion proof does not lead to the signed root")

    def absent(address: str) -> keys.VerifiedKey:
        raise ApiError(404, "no_appliance", "no appliance")

    assert check(member, lookup=alarm).reason.startswith(f"KEY ALARM for {ALICE}: the inclusion proof")
    assert "has no key in a directory" in check(member, lookup=absent).reason


@pytest.mark.parametrize(
    "composed",
    [
        Composed(to=(BOB,), subject="=?utf-8?q?x=0D=0ABcc:=20evil@evil.com?="),
        Composed(to=(BOB,), subject="x\r\nBcc: evil@evil.com"),
        Composed(to=(BOB,), subject="x\u2028Bcc: evil@evil.com"),
        Composed(to=("bob@b.example\r\nBcc: evil@evil.com",)),
        Composed(to=(BOB,), from_address="alice@a.example\r\nBcc: evil@evil.com"),
    ],
)
def test_composing_refuses_header_injection(composed: Composed) -> None:
    """A subject or address that would add a header line, raw or as an encoded word, is refused on the device."""
    with pytest.raises(UsageError) as refused:
        e2e.compose_message(composed, default_from=ALICE, now_ms=NOW_MS)
    assert "invalid_" in refused.value.message


def test_the_composed_message_is_what_the_appliance_composes() -> None:
    """The device's message has the appliance's header fields (no Bcc), stamps first when asked for."""
    composed = Composed(to=(BOB,), cc=("carol@c.example",), bcc=("dave@d.example",), subject="s", text="t\n")
    raw = e2e.compose_message(
        composed, default_from=ALICE, now_ms=NOW_MS, stamps=["1:20:2512061200:bob@b.example::x:y"]
    )
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    names = [line.split(":", 1)[0].lower() for line in head.split("\r\n") if not line.startswith((" ", "\t"))]
    assert names[:2] == ["x-hashcash", "from"]
    assert set(names) == {"x-hashcash", "from", "to", "cc", "subject", "date", "message-id"} | {
        "content-type",
        "content-transfer-encoding",
        "mime-version",
    }
    assert b"dave@d.example" not in raw and "@a.example>" in head  # the Message-ID names the sender's domain


# -- another appliance's directory -------------------------------------------------------------------


class _RemoteDirectory:
    """Another appliance's log (real Merkle tree, heads signed by its log key), as this appliance's proxy
    relays it: ``Client.remote_key`` and ``Client.remote_consistency`` answers."""

    def __init__(self, domain: str) -> None:
        self.domain = domain
        self.log_key = Ed25519PrivateKey.generate()
        self.tree = merkle.MerkleTree()
        self.leaves: list[bytes] = []
        self.records: dict[str, int] = {}
        self.unavailable = False

    def announce(self) -> str:
        return base64.b64encode(self.log_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()

    def publish(self, address: str, private: rsa.RSAPrivateKey) -> None:
        record = sign_key_record(key_record_fields(private.public_key(), [address], created_ms=NOW_MS), private)
        leaf = canonical_json(record)
        self.records[address] = self.tree.append(leaf)
        self.leaves.append(leaf)

    def remote_key(self, address: str) -> dict[str, Any]:
        if self.unavailable:
            raise ApiError(502, "remote_unavailable", "the appliance cannot be reached")
        if address not in self.records:
            raise ApiError(404, "not_found", "no key for that address")
        index, size = self.records[address], self.tree.size
        head = sth.TreeHead(size, self.tree.root_at(size), NOW_MS + size)
        leaf = self.leaves[index]
        answer = {
            "record": json.loads(leaf),
            "leaf": base64.b64encode(leaf).decode(),
            "leaf_index": index,
            "tree_size": size,
            "audit_path": [base64.b64encode(n).decode() for n in self.tree.inclusion(index, size)],
            "sth": sth.to_json(head, sth.sign(head, self.log_key)),
            "history": [],
            "policy": None,
        }
        discovery = {"via": "dns", "directory": "https://x/.well-known/mailiverse", "log_key": self.announce()}
        return {"domain": self.domain, "discovery": discovery, "answer": answer}

    def remote_consistency(self, domain: str, first: int, second: int) -> dict[str, Any]:
        assert domain == self.domain
        proof = self.tree.consistency(first, second)
        return {"first": first, "second": second, "consistency": [base64.b64encode(n).decode() for n in proof]}


def test_a_remote_key_is_checked_against_the_domains_pinned_log(bob_key: rsa.RSAPrivateKey) -> None:
    """The first answer pins the domain's log key; later answers must extend the same log (consistency proofs
    through the proxy), and a new log key, a forked log or an unreachable appliance is a KeyAlarm."""
    remote = _RemoteDirectory("b.example")
    remote.publish(BOB, bob_key)
    state = keys.TrustState()
    client: Any = remote
    verified = keys.remote_lookup(client, BOB, state)
    assert verified.record.public_key == public_key_der(bob_key) and verified.head.tree_size == 1
    assert state.changed and state.remote["b.example"].head == verified.head
    assert state.log_key is None and state.head is None  # this appliance's own log is untouched

    remote.publish("carol@b.example", generate_private_key(2048))
    again = keys.remote_lookup(client, BOB, state)
    assert again.head.tree_size == 2 and state.remote["b.example"].head == again.head

    # kept in Settings/keylog, sealed to the user's own key, with the rest of the state
    store = _reader(bob_key, {})
    keys.save_state(store, state)
    assert keys.load_state(store).remote == state.remote and not state.changed

    with pytest.raises(ApiError) as absent:
        keys.remote_lookup(client, "nobody@b.example", state)
    assert absent.value.code == "not_found"

    remote.unavailable = True
    with pytest.raises(keys.KeyAlarm, match="cannot be reached"):
        keys.remote_lookup(client, BOB, state)
    remote.unavailable = False

    pinned = remote.log_key
    remote.log_key = Ed25519PrivateKey.generate()
    with pytest.raises(keys.KeyAlarm, match="another log key"):
        keys.remote_lookup(client, BOB, state)
    remote.log_key = pinned

    fork = _RemoteDirectory("b.example")
    fork.log_key = pinned  # the same key signs a log that does not extend the one this user saw
    fork.publish(BOB, generate_private_key(2048))
    fork.publish("carol@b.example", bob_key)
    fork.publish("dave@b.example", bob_key)
    with pytest.raises(keys.KeyAlarm, match="the log of b.example .*forked"):
        keys.remote_lookup(fork, "carol@b.example", state)
