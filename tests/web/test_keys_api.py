"""The key directory's HTTP API (issue 20): publication rules, the answers outside verifiers rely on, the log.

The proofs are checked by a verifier written here from RFC 9162 §2.1.3.2 and §2.1.4.2 (it imports nothing of
``mailiverse.keylog.merkle``): every inclusion proof of a log of 10,000 entries served over the API, and
consistency proofs between many pairs of its sizes. The publication rules refuse a record with a bad
signature, one bound to other addresses, one for a key the account does not hold, and a rotation whose old
record changes more than its status; ``/.well-known/mailiverse/keys/`` answers the same for every unknown
address and is rate-limited.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest_twisted
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mailiverse.crypto.keys import generate_private_key
from mailiverse.keylog.records import (
    address_hash,
    canonical_json,
    key_record_fields,
    sign_key_record,
)
from tests.support import rfc9162
from tests.support.webapi import Api, ApiClient, rsa_key, signed_in

PASSWORD = "a long enough password for the key directory"


# -- an independent RFC 9162 verifier: tests/support/rfc9162.py, from the RFC's text, not the project's code --

_leaf_hash = rfc9162.leaf
rfc_root = rfc9162.mth_of


def rfc_verify_inclusion(leaf: bytes, index: int, size: int, path: list[bytes], root: bytes) -> bool:
    """§2.1.3.2 for the leaf with these bytes."""
    return rfc9162.verify_inclusion(_leaf_hash(leaf), index, size, path, root)


def rfc_verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes, path: list[bytes]) -> bool:
    """§2.1.4.2, and the trivial case of equal sizes (an empty proof, equal roots)."""
    if first == second:
        return not path and first_root == second_root
    return rfc9162.verify_consistency(first, second, first_root, second_root, path)


def sth_bytes(head: dict[str, Any]) -> bytes:
    """docs/keys.md: the 66 signed bytes of a tree head."""
    return (
        b"mailiverse-sth-v1\n"
        + head["tree_size"].to_bytes(8, "big")
        + head["timestamp"].to_bytes(8, "big")
        + base64.b64decode(head["root_hash"])
    )


# -- helpers -----------------------------------------------------------------------------------------------


def _record(api: Api, name: str, index: int, **extra: Any) -> dict[str, Any]:
    addresses = [f"{name}@{domain}" for domain in api.app.domains]
    return sign_key_record(
        key_record_fields(rsa_key(index).public_key(), addresses, created_ms=1000, **extra), rsa_key(index)
    )


async def _publish(client: ApiClient, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    reply = await client.call("POST", "/api/keys", json_body=body)
    return reply.status, reply.json()


async def _log_key(api: Api) -> Ed25519PublicKey:
    answer = (await api.client().call("GET", "/api/log/key", auth=None)).json()
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(answer["public_key"]))


@pytest_twisted.ensureDeferred
async def test_publication_rules(api: Api) -> None:
    """Only a record signed by the account's own current key, for exactly its addresses, is published; once."""
    alice = await signed_in(api, "alice", PASSWORD, 0)
    good = _record(api, "alice", 0)

    tampered = dict(good, created_ms=2000)  # a member changed after signing
    status, answer = await _publish(alice, {"records": [tampered]})
    assert (status, answer["error"]) == (400, "invalid_record")
    assert answer["message"] == "the key record is refused: the record's signature does not verify with its key"
    elsewhere = sign_key_record(
        key_record_fields(rsa_key(0).public_key(), ["alice@evil.test"], created_ms=1), rsa_key(0)
    )
    status, answer = await _publish(alice, {"records": [elsewhere]})
    assert (status, answer["error"]) == (400, "invalid_record") and "addresses" in answer["message"]
    not_hers = _record(api, "alice", 3)  # validly signed, but not the key the account holds
    status, answer = await _publish(alice, {"records": [not_hers]})
    assert (status, answer["error"]) == (409, "key_mismatch")
    for junk in ([], [good, good, good], "x", [{"v": 1}], [dict(good, extra=1)]):
        status, answer = await _publish(alice, {"records": junk})
        assert (status, answer["error"]) == (400, "invalid_record"), junk

    status, answer = await _publish(alice, {"records": [good]})
    assert status == 201 and answer["key_id"] == good["key_id"]
    assert (await _publish(alice, {"records": [good]}))[1]["error"] == "already_published"

    reply = await alice.call("GET", "/api/keys/alice@" + api.app.domains[0])
    answer = reply.json()
    assert answer["record"] == good and base64.b64decode(answer["leaf"]) == canonical_json(good)
    assert answer["history"] == []


@pytest_twisted.ensureDeferred
async def test_rotation_keeps_history_and_needs_the_old_keys_signature(api: Api) -> None:
    """A rotation publishes the new record and the old one superseded (signed by the old key); never deletes."""
    bob = await signed_in(api, "bob", PASSWORD, 1)
    first = _record(api, "bob", 1)
    assert (await _publish(bob, {"records": [first]}))[0] == 201
    new_key = generate_private_key(2048)
    addresses = [f"bob@{domain}" for domain in api.app.domains]
    new = sign_key_record(
        key_record_fields(new_key.public_key(), addresses, created_ms=5000, supersedes=first["key_id"]), new_key
    )
    old_fields = {k: v for k, v in first.items() if k != "signature"}
    superseded = sign_key_record(dict(old_fields, status="superseded", retired_ms=5000), rsa_key(1))
    block = base64.b64encode(b"\x00" * 64).decode()

    # the old record re-signed by someone else's key cannot retire it
    forged_old = sign_key_record(
        key_record_fields(rsa_key(2).public_key(), addresses, key_id=first["key_id"], created_ms=1000,
                          status="superseded", retired_ms=5000), rsa_key(2),
    )  # fmt: skip
    status, answer = await _publish(bob, {"records": [new, forged_old], "key_block": block})
    assert (status, answer["error"]) == (409, "key_mismatch")
    # changing more than the status (here its created time) is refused too
    changed = sign_key_record(dict(old_fields, status="superseded", retired_ms=5000, created_ms=7), rsa_key(1))
    status, answer = await _publish(bob, {"records": [new, changed], "key_block": block})
    assert (status, answer["error"]) == (409, "key_mismatch")

    status, answer = await _publish(bob, {"records": [new, superseded], "key_block": block})
    assert status == 201 and answer["key_id"] == new["key_id"]
    looked = (await bob.call("GET", f"/api/keys/bob@{api.app.domains[0]}")).json()
    assert looked["record"] == new
    assert [entry["record"] for entry in looked["history"]] == [superseded]
    account = (await bob.call("GET", "/api/account")).json()
    assert base64.b64decode(account["public_key"]) == base64.b64decode(new["public_key"])
    # the log holds all three records in order: first, superseded, new
    entries = (await bob.call("GET", "/api/log/entries?start=0&end=10")).json()["entries"]
    assert [json.loads(base64.b64decode(e["leaf"]))["key_id"] for e in entries] == [first["key_id"]] * 2 + [
        new["key_id"]
    ]


@pytest_twisted.ensureDeferred
async def test_well_known_lookup_is_public_uniform_and_rate_limited(api: Api) -> None:
    carol = await signed_in(api, "carol", PASSWORD, 2)
    assert (await _publish(carol, {"records": [_record(api, "carol", 2)]}))[0] == 201
    stranger = api.client()
    domain = api.app.domains[0]
    found = await stranger.call("GET", f"/.well-known/mailiverse/keys/carol@{domain}", auth=None)
    assert found.status == 200 and found.json()["record"]["addresses"] == sorted(
        address_hash(f"carol@{d}") for d in api.app.domains
    )
    answers = set()
    for address in (
        f"nobody@{domain}",
        "carol@remote.test",
        "x" * 400 + "@" + domain,
        "no-at-sign",
        f"CAROL@{domain}x",
    ):
        reply = await stranger.call("GET", "/.well-known/mailiverse/keys/" + address, auth=None)
        answers.add((reply.status, reply.body))
    assert answers == {(404, b'{"error":"not_found","message":"no key for that address"}')}
    statuses = [
        (await stranger.call("GET", f"/.well-known/mailiverse/keys/n{i}@{domain}", auth=None)).status for i in range(40)
    ]
    assert statuses[0] == 404 and statuses[-1] == 429


@pytest_twisted.ensureDeferred
async def test_ten_thousand_entries_every_proof_checks_independently(api: Api) -> None:
    """A log of 10,000 entries: the API's inclusion proofs of a spread of leaves, and consistency proofs between
    its sizes, all check with the RFC's algorithms written above; every head the log issued verifies."""
    dave = await signed_in(api, "dave", PASSWORD, 3)
    assert (await _publish(dave, {"records": [_record(api, "dave", 3)]}))[0] == 201
    # Fill the log behind the API with valid records of other keys (signing 10,000 RSA records takes a while,
    # so a few keys sign records for many addresses).
    from mailiverse.keylog.records import verify_key_record
    from mailiverse.store.keylog import Holder, record_keys_txn

    signers = [rsa_key(i) for i in range(4, 8)]
    records = []
    for i in range(9_999):
        key = signers[i % len(signers)]
        records.append(
            verify_key_record(
                sign_key_record(key_record_fields(key.public_key(), [f"filler{i}@fill.test"], created_ms=i), key)
            )
        )
    log = api.app.key_directory.log
    heads_before = len((await api.client().call("GET", "/api/log/heads?after=0", auth=None)).json()["heads"])
    for start in range(0, len(records), 2000):
        await api.database.transact(record_keys_txn, log, records[start : start + 2000], Holder(), 10**12)
    stranger = api.client()
    entries: list[bytes] = []
    while len(entries) < 10_000:
        page = (await stranger.call("GET", f"/api/log/entries?start={len(entries)}&end=99999", auth=None)).json()
        assert len(page["entries"]) <= 1000
        entries += [base64.b64decode(e["leaf"]) for e in page["entries"]]
    assert len(entries) == 10_000
    sth = (await stranger.call("GET", "/api/log/sth", auth=None)).json()
    assert sth["tree_size"] == 10_000 and base64.b64decode(sth["root_hash"]) == rfc_root(entries)
    log_key = await _log_key(api)
    log_key.verify(base64.b64decode(sth["signature"]), sth_bytes(sth))

    # dave's key: leaf 0, proven in the head of 10,000
    answer = (await dave.call("GET", f"/api/keys/dave@{api.app.domains[0]}")).json()
    assert answer["tree_size"] == 10_000 and answer["leaf_index"] == 0
    path = [base64.b64decode(p) for p in answer["audit_path"]]
    assert rfc_verify_inclusion(base64.b64decode(answer["leaf"]), 0, 10_000, path, rfc_root(entries))
    assert not rfc_verify_inclusion(base64.b64decode(answer["leaf"]) + b" ", 0, 10_000, path, rfc_root(entries))

    # a spread of filler leaves through the directory's own proof code
    root = rfc_root(entries)
    for index in (1, 2, 511, 512, 4095, 4096, 8191, 9998, 9999):
        proven = await api.database.run(log.prove_txn, [index])
        assert proven[0].leaf == entries[index]
        assert rfc_verify_inclusion(entries[index], index, 10_000, proven[0].audit_path, root), index

    # consistency between sizes the log had (the heads), over HTTP
    heads = (await stranger.call("GET", "/api/log/heads?after=0", auth=None)).json()["heads"]
    assert len(heads) == heads_before + 5
    for head in heads:
        log_key.verify(base64.b64decode(head["signature"]), sth_bytes(head))
        assert base64.b64decode(head["root_hash"]) == rfc_root(entries[: head["tree_size"]])
    sizes = [h["tree_size"] for h in heads]
    for first in sizes:
        for second in (10_000, 7_777 if first <= 7_777 else 10_000):
            if first > second:
                continue
            reply = await stranger.call("GET", f"/api/log/consistency?first={first}&second={second}", auth=None)
            proof = [base64.b64decode(p) for p in reply.json()["consistency"]]
            first_root, second_root = rfc_root(entries[:first]), rfc_root(entries[:second])
            assert rfc_verify_consistency(first, second, first_root, second_root, proof), (first, second)
            if 0 < first < second:
                assert not rfc_verify_consistency(first, second, _leaf_hash(b"fork"), second_root, proof)
    bad = await stranger.call("GET", "/api/log/consistency?first=5&second=10001", auth=None)
    assert (bad.status, bad.json()["error"]) == (400, "bad_range")
    for query in ("first=-1&second=2", "first=a&second=2", "second=2"):
        reply = await stranger.call("GET", "/api/log/consistency?" + query, auth=None)
        assert reply.status == 400, query


@pytest_twisted.ensureDeferred
async def test_group_routes_refuse_what_is_not_a_members_to_do(api: Api) -> None:
    """A group is made with a group record for its own addresses; only members see it, add, or re-key; a re-key
    must wrap the new key to exactly the members who remain; hostile bodies get clear errors."""
    erin = await signed_in(api, "erin", PASSWORD, 4)
    frank = await signed_in(api, "frank", PASSWORD, 5)
    assert (await _publish(erin, {"records": [_record(api, "erin", 4)]}))[0] == 201
    addresses = [f"team@{domain}" for domain in api.app.domains]
    group_key = rsa_key(6)
    group_record = sign_key_record(
        key_record_fields(group_key.public_key(), addresses, kind="group", created_ms=1), group_key
    )
    wrapped = base64.b64encode(b"w" * 300).decode()
    for body, code in (
        ({"name": "team", "record": _record(api, "team", 6), "wrapped": wrapped}, "invalid_record"),  # personal
        ({"name": "erin", "record": group_record, "wrapped": wrapped}, "invalid_record"),  # other addresses
        ({"name": "team", "record": group_record, "wrapped": "!!"}, "invalid_request"),
        ({"name": "team", "record": group_record, "wrapped": base64.b64encode(b"w" * 20000).decode()}, None),
        ({"name": "../x", "record": group_record, "wrapped": wrapped}, None),
    ):
        reply = await erin.call("POST", "/api/groups", json_body=body)
        assert reply.status in (400, 409, 413), (body["name"], reply.status)
        if code is not None:
            assert reply.json()["error"] == code, reply.json()
    made = await erin.call(
        "POST", "/api/groups", json_body={"name": "team", "record": group_record, "wrapped": wrapped}
    )
    assert made.status == 201 and made.json()["members"] == ["erin"]
    assert made.json()["keys"] == [{"key_id": group_record["key_id"], "wrapped": wrapped}]
    # the name is taken now, for groups and accounts alike
    again = await frank.call(
        "POST", "/api/groups", json_body={"name": "team", "record": group_record, "wrapped": wrapped}
    )
    assert again.status == 409
    # a stranger sees nothing, and cannot add or re-key
    for method, path, body in (
        ("GET", "/api/groups/team", None),
        ("GET", "/api/groups/team/store", None),
        ("GET", "/api/groups/team/store/Mail/In/x", None),
        ("POST", "/api/groups/team/members", {"user": "frank", "key_id": group_record["key_id"], "wrapped": wrapped}),
        ("GET", "/api/groups/nosuch", None),
    ):
        reply = await frank.call(method, path, json_body=body)
        assert (reply.status, reply.json()["error"]) == (404, "not_found"), path
    assert (await frank.call("GET", "/api/groups")).json() == {"groups": []}
    stale = await erin.call(
        "POST", "/api/groups/team/members", json_body={"user": "frank", "key_id": "0" * 36, "wrapped": wrapped}
    )
    assert (stale.status, stale.json()["error"]) == (409, "stale_key")
    added = await erin.call(
        "POST",
        "/api/groups/team/members",
        json_body={"user": "frank", "key_id": group_record["key_id"], "wrapped": wrapped},
    )
    assert added.status == 200 and added.json()["members"] == ["erin", "frank"]
    # a re-key that leaves frank without the new key but does not say he is removed is refused
    new_key = rsa_key(7)
    new = sign_key_record(
        key_record_fields(
            new_key.public_key(), addresses, kind="group", created_ms=2, supersedes=group_record["key_id"]
        ),
        new_key,
    )
    old_fields = {k: v for k, v in group_record.items() if k != "signature"}
    old = sign_key_record(dict(old_fields, status="superseded", retired_ms=2), group_key)
    short = await erin.call(
        "POST", "/api/groups/team/rekey", json_body={"records": [new, old], "wrapped": {"erin": wrapped}}
    )
    assert (short.status, short.json()["error"]) == (409, "invalid_member")
    done = await erin.call(
        "POST",
        "/api/groups/team/rekey",
        json_body={"records": [new, old], "wrapped": {"erin": wrapped}, "removed": ["frank"]},
    )
    assert done.status == 200 and done.json()["members"] == ["erin"] and done.json()["key_id"] == new["key_id"]
    assert (await frank.call("GET", "/api/groups/team")).status == 404
    looked = (await erin.call("GET", f"/api/keys/team@{api.app.domains[0]}")).json()
    assert looked["record"] == new and [h["record"] for h in looked["history"]] == [old]


@pytest_twisted.ensureDeferred
async def test_discovery_document(api: Api) -> None:
    """`/.well-known/mailiverse`: the domains, the key directory and the log key, for anyone."""
    reply = await api.client().call("GET", "/.well-known/mailiverse", auth=None)
    assert reply.status == 200
    answer = reply.json()
    host = f"https://{api.app.hostname}"
    assert answer["version"] == 1 and answer["domains"] == list(api.app.domains)
    assert answer["directory"] == f"{host}/.well-known/mailiverse/keys/"
    assert answer["log"]["sth"] == f"{host}/api/log/sth" and answer["log"]["algorithm"] == "Ed25519"
    assert base64.b64decode(answer["log"]["public_key"]) == base64.b64decode(
        (await api.client().call("GET", "/api/log/key", auth=None)).json()["public_key"]
    )
