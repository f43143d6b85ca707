"""Domain encryption policies (AMS; docs/keys.md, "Domain policy"): ``personal`` (each address its own key, the
default), ``groups`` (group keys for shared mail, personal keys otherwise) or ``organisation`` (every message to
a person of the domain is also sealed to the organisation's key, whose private half the officers hold).

A policy is an entry of the transparency log signed by the log key, numbered one above the domain's previous
policy and naming that entry's leaf hash, so a policy only ever changes forward and every change is there for
clients and auditors to see. For ``organisation`` a new key pair is made here, its private half wrapped to
each officer's published key and then forgotten; the key is an ``organisation`` group (store/groups.py) whose
store receives the organisation copies and whose members are the officers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, update

from mailiverse.accounts.directory import stored_record_txn
from mailiverse.crypto.formats import seal_mail_object
from mailiverse.crypto.keys import generate_private_key, load_public_key, private_key_der
from mailiverse.keylog.merkle import leaf_hash
from mailiverse.keylog.records import (
    POLICIES,
    key_record_fields,
    sign_key_record,
    sign_policy_record,
    verify_key_record,
    verify_policy_record,
)
from mailiverse.store.errors import UserExists
from mailiverse.store.groups import DomainPolicy, add_policy_txn, create_group_txn, current_policy_txn
from mailiverse.store.keylog import Holder, KeyLog, current_key_of_user_txn, leaf_txn, record_keys_txn
from mailiverse.store.schema import users
from mailiverse.store.users import get_user_txn

#: An organisation's mailbox is never full: a full one would refuse mail to everyone in the domain.
ORGANISATION_QUOTA = 2**62


class PolicyError(Exception):
    """A policy change refused; the message says why (for the operator)."""


@dataclass(frozen=True)
class PolicyChange:
    domain: str
    policy: str
    seq: int
    leaf_index: int
    key_id: str | None
    officers: list[str]


def set_policy_txn(
    conn: Connection,
    log: KeyLog,
    log_key: Ed25519PrivateKey,
    domain: str,
    policy: str,
    *,
    officers: Sequence[str] = (),
    account: str = "organisation",
    domains: Sequence[str] = (),
    now_ms: int | None = None,
) -> PolicyChange:
    """Append ``domain``'s next policy to the log (and, for ``organisation``, make its key and account)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    domain = domain.lower()
    if policy not in POLICIES:
        raise PolicyError(f"the policy is one of {', '.join(POLICIES)}")
    if (policy == "organisation") != bool(officers):
        raise PolicyError("the organisation policy names its officers (--officer), and only it")
    previous = current_policy_txn(conn, domain)
    previous_hash = None
    if previous is not None:
        leaf = leaf_txn(conn, previous.leaf_index)
        if leaf is None:
            raise PolicyError(f"the log has lost {domain}'s policy entry {previous.seq}")
        previous_hash = leaf_hash(leaf)
    key_id = None
    group_id = None
    officer_addresses = [address.lower() for address in officers]
    if policy == "organisation":
        key_id, group_id = _organisation_key(conn, log, domain, officer_addresses, account, domains or [domain], now_ms)
    record = sign_policy_record(
        domain,
        policy,
        seq=1 if previous is None else previous.seq + 1,
        previous=previous_hash,
        key_id=key_id,
        officers=officer_addresses,
        created_ms=now_ms,
        log_key=log_key,
    )
    checked = verify_policy_record(record, log.public_key)
    start, _head = log.append_txn(conn, [checked.leaf], now_ms)
    add_policy_txn(conn, DomainPolicy(domain, checked.seq, policy, group_id, officer_addresses, start))
    return PolicyChange(domain, policy, checked.seq, start, key_id, officer_addresses)


def _organisation_key(
    conn: Connection,
    log: KeyLog,
    domain: str,
    officers: list[str],
    account: str,
    domains: Sequence[str],
    now_ms: int,
) -> tuple[str, int]:
    """A new organisation key wrapped to each officer's published key; its record in the log; its account."""
    wrapped: dict[int, bytes] = {}
    private = generate_private_key(2048)
    der = private_key_der(private)
    for address in officers:
        local, _, officer_domain = address.rpartition("@")
        officer = get_user_txn(conn, local)
        if officer_domain != domain or officer is None or officer.disabled:
            raise PolicyError(f"{address} is not an account of {domain}")
        current = current_key_of_user_txn(conn, officer.id)
        record = None if current is None else stored_record_txn(conn, current.leaf_index)
        if record is None or record.public_key != officer.public_key:
            raise PolicyError(f"{address} has no key in the directory yet (they log in once with a current client)")
        wrapped[officer.id] = seal_mail_object(record.envelope_format, load_public_key(record.public_key), der)
    addresses = [f"{account}@{d}" for d in domains]
    record_fields = key_record_fields(private.public_key(), addresses, kind="organisation", created_ms=now_ms)
    signed = sign_key_record(record_fields, private)
    del private, der  # the private half now exists only wrapped to the officers
    checked = verify_key_record(signed)
    try:
        group = create_group_txn(
            conn,
            account,
            kind="organisation",
            key_id=checked.key_id,
            public_key=checked.public_key,
            envelope_format=checked.envelope_format,
            owner_id=None,
            wrapped=wrapped,
            now_ms=now_ms,
        )
    except UserExists:
        raise PolicyError(f"the name {account!r} is taken: choose the organisation's account with --account") from None
    conn.execute(update(users).where(users.c.id == group.account.id).values(quota_bytes=ORGANISATION_QUOTA))
    record_keys_txn(conn, log, [checked], Holder(user_id=group.account.id, group_id=group.id), now_ms)
    return checked.key_id, group.id


__all__ = ["ORGANISATION_QUOTA", "PolicyChange", "PolicyError", "set_policy_txn"]
