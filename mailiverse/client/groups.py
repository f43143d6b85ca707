"""Group keys on the client (docs/keys.md, "Groups"): the group's key pair is made here, and its private half
leaves this device only wrapped (sealed like mail) to a member's *verified* key from the key directory.

Removing a member makes a new group key wrapped to the members who remain; its record supersedes the old one
(signed by the old group key), so the log shows the change and new mail to the group is sealed to a key the
removed member never had.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives.asymmetric import rsa

from mailiverse.client import keys
from mailiverse.client.api import Client
from mailiverse.client.errors import ProtocolError, UsageError
from mailiverse.crypto.errors import CryptoError
from mailiverse.crypto.formats import seal_mail_object
from mailiverse.crypto.keys import generate_private_key, load_private_key, private_key_der, public_key_der
from mailiverse.keylog.records import key_record_fields, sign_key_record

#: Private keys of a group are opened from at most this many wrapped copies (one per key it has had).
MAX_GROUP_KEYS = 100


@dataclass(frozen=True)
class GroupKeys:
    """A group as its member sees it, with the group's private keys unwrapped (current first)."""

    name: str
    addresses: list[str]
    key_id: str
    members: list[str]
    private_keys: list[rsa.RSAPrivateKey]


def _split(address: str, client: Client) -> tuple[str, str]:
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        raise UsageError(f"not a group address: {address[:80]!r}")
    domains = {a.rpartition("@")[2].lower() for a in client.addresses}
    if domain.lower() not in domains:
        raise UsageError(f"{domain} is not a domain of this appliance ({', '.join(sorted(domains))})")
    return local.lower(), domain.lower()


def _wrap(private: rsa.RSAPrivateKey, verified: keys.VerifiedKey) -> str:
    """``private`` sealed to a member's verified key, in the member's envelope format."""
    blob = seal_mail_object(verified.record.envelope_format, verified.public_key, private_key_der(private))
    return base64.b64encode(blob).decode("ascii")


def create(client: Client, address: str, bits: int = 2048, now: Callable[[], float] = time.time) -> GroupKeys:
    """A new group at ``address`` (its name at every domain of the appliance), with you as its member."""
    name, _domain = _split(address, client)
    addresses = [f"{name}@{a.rpartition('@')[2]}" for a in client.addresses]
    private = generate_private_key(bits)
    record = sign_key_record(
        key_record_fields(private.public_key(), addresses, kind="group", created_ms=int(now() * 1000)), private
    )
    wrapped = seal_mail_object(
        client.envelope_format or "v2", client.private_key.public_key(), private_key_der(private)
    )
    answer = client.request_json(
        "POST",
        "/api/groups",
        {"name": name, "record": record, "wrapped": base64.b64encode(wrapped).decode("ascii")},
    )
    return _opened(client, answer)


def _opened(client: Client, answer: dict[str, Any]) -> GroupKeys:
    listed = answer.get("keys")
    if not isinstance(listed, list) or len(listed) > MAX_GROUP_KEYS:
        raise ProtocolError("the group's keys are malformed")
    private_keys = []
    for item in listed:
        try:
            blob = base64.b64decode(item["wrapped"], validate=True)
            private_keys.append(load_private_key(client.open_sealed(blob)))
        except (CryptoError, KeyError, TypeError, ValueError, binascii.Error):
            raise keys.KeyAlarm("a group key wrapped to you does not open with your keys") from None
    name, key_id = answer.get("name"), answer.get("key_id")
    addresses, members = answer.get("addresses"), answer.get("members")
    if not isinstance(name, str) or not isinstance(key_id, str) or not isinstance(addresses, list):
        raise ProtocolError("the group answer is malformed")
    return GroupKeys(name, [str(a) for a in addresses], key_id, [str(m) for m in members or []], private_keys)


def open_group(client: Client, address: str) -> GroupKeys:
    """The group's keys, unwrapped, after checking its current key against the key directory."""
    name, domain = _split(address, client)
    group = _opened(client, client.request_json("GET", "/api/groups/" + quote(name)))
    verified = keys.lookup(client, f"{name}@{domain}")
    if verified.record.kind not in ("group", "organisation") or verified.record.key_id != group.key_id:
        raise keys.KeyAlarm(f"the directory's key for {name}@{domain} is not the group's current key")
    if not group.private_keys or public_key_der(group.private_keys[0]) != verified.record.public_key:
        raise keys.KeyAlarm("the group key wrapped to you is not the key the directory publishes")
    return group


def list_groups(client: Client) -> list[dict[str, Any]]:
    answer = client.request_json("GET", "/api/groups")
    groups = answer.get("groups")
    if not isinstance(groups, list):
        raise ProtocolError("the groups answer is malformed")
    return [g for g in groups if isinstance(g, dict)]


def add_member(client: Client, address: str, member: str) -> GroupKeys:
    """Wrap the group's current key to ``member``'s verified key and add them."""
    group = open_group(client, address)
    verified = keys.lookup(client, member)
    answer = client.request_json(
        "POST",
        f"/api/groups/{quote(group.name)}/members",
        {"user": member, "key_id": group.key_id, "wrapped": _wrap(group.private_keys[0], verified)},
    )
    return _opened(client, answer)


def remove_member(
    client: Client, address: str, member: str, bits: int = 2048, now: Callable[[], float] = time.time
) -> GroupKeys:
    """A new group key for everyone but ``member``; the old record superseded, signed by the old group key."""
    name, domain = _split(address, client)
    group = open_group(client, address)
    removed = member.partition("@")[0].lower()
    if removed not in group.members:
        raise UsageError(f"{member} is not a member of {name}@{domain}")
    remaining = [m for m in group.members if m != removed]
    if not remaining:
        raise UsageError("a group keeps at least one member")
    current = keys.lookup(client, f"{name}@{domain}")
    now_ms = int(now() * 1000)
    old_fields = {k: v for k, v in current.record.document.items() if k != "signature"}
    old_fields.update({"status": "superseded", "retired_ms": now_ms})
    old_record = sign_key_record(old_fields, group.private_keys[0])
    private = generate_private_key(bits)
    new_record = sign_key_record(
        key_record_fields(
            private.public_key(),
            group.addresses,
            kind=current.record.kind,
            created_ms=now_ms,
            supersedes=current.record.key_id,
        ),
        private,
    )
    state = keys.load_state(client)
    wrapped = {m: _wrap(private, keys.lookup(client, f"{m}@{domain}", state)) for m in remaining}
    keys.save_state(client, state)
    answer = client.request_json(
        "POST",
        f"/api/groups/{quote(name)}/rekey",
        {"records": [new_record, old_record], "wrapped": wrapped, "removed": [removed]},
    )
    return _opened(client, answer)


def reader(client: Client, address: str) -> Client:
    """A client reading the group's mail with the group's keys (every key the group had that you were given)."""
    group = open_group(client, address)
    return client.viewing(f"/api/groups/{quote(group.name)}/store", group.private_keys)


__all__ = ["GroupKeys", "add_member", "create", "list_groups", "open_group", "reader", "remove_member"]
