"""Group keys in the database (docs/keys.md, "Groups"): a group is an account that cannot log in (no SRP
verifier) whose public key is the group's key, so mail to ``name@domain`` is delivered and sealed exactly as
mail to a person is; ``key_groups`` marks the account as a group, and ``key_group_members`` holds the group's
private key wrapped (sealed) to each member's public key, one row per group key the member was given.

A member is *active* while they hold a row for the group's current key. Removing a member means a new group
key that only the remaining members get: the removed member keeps the rows of the keys they had, and the
group's store (and so its mail) is closed to them from then on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, insert, select, update

from mailiverse.store.errors import InvalidInput
from mailiverse.store.schema import domain_policies, key_group_members, key_groups, users
from mailiverse.store.users import User, add_user_txn, get_user_txn, user_of_row

#: Members of one group at most.
MAX_MEMBERS = 200
#: A wrapped key (an RSA-AES mail object of a 2048–4096-bit private key) is a few KiB.
MAX_WRAPPED_BYTES = 16 * 1024


@dataclass(frozen=True)
class Group:
    id: int
    name: str
    kind: str
    key_id: str
    owner_id: int | None
    account: User

    @property
    def public_key(self) -> bytes:
        """The group's current key: its account's, to which mail for it is sealed."""
        return self.account.public_key


def create_group_txn(
    conn: Connection,
    name: str,
    *,
    kind: str,
    key_id: str,
    public_key: bytes,
    envelope_format: str,
    owner_id: int | None,
    wrapped: Mapping[int, bytes],
    now_ms: int,
) -> Group:
    """The group's account and its row, and its key wrapped to each member (UserExists if the name is taken)."""
    account = add_user_txn(conn, name, public_key, envelope_format, now_ms=now_ms)
    # The account exists for delivery only: no verifier, so nobody logs in as the group.
    group_id = conn.execute(
        insert(key_groups)
        .values(
            local=account.name,
            kind=kind,
            key_id=key_id,
            owner_id=owner_id,
            created_ms=now_ms,
        )
        .returning(key_groups.c.id)
    ).scalar_one()
    _wrap_txn(conn, int(group_id), key_id, wrapped)
    group = group_by_name_txn(conn, account.name)
    assert group is not None
    return group


def _wrap_txn(conn: Connection, group_id: int, key_id: str, wrapped: Mapping[int, bytes]) -> None:
    if not wrapped or len(wrapped) > MAX_MEMBERS:
        raise InvalidInput(f"a group has 1 to {MAX_MEMBERS} members")
    for blob in wrapped.values():
        if not isinstance(blob, bytes) or not 0 < len(blob) <= MAX_WRAPPED_BYTES:
            raise InvalidInput("a wrapped group key is 1 byte to 16 KiB")
    conn.execute(
        insert(key_group_members),
        [{"group_id": group_id, "user_id": uid, "key_id": key_id, "wrapped": blob} for uid, blob in wrapped.items()],
    )


def group_by_name_txn(conn: Connection, name: str) -> Group | None:
    account = get_user_txn(conn, name)
    if account is None:
        return None
    row = conn.execute(select(key_groups).where(key_groups.c.local == account.name)).first()
    if row is None:
        return None
    return Group(int(row.id), account.name, row.kind, row.key_id, row.owner_id, account)


def is_group_name_txn(conn: Connection, name: str) -> bool:
    return conn.execute(select(key_groups.c.id).where(key_groups.c.local == name.lower())).first() is not None


def active_members_txn(conn: Connection, group: Group) -> list[User]:
    """The accounts holding the group's current key, by name."""
    rows = conn.execute(
        select(users)
        .join(key_group_members, key_group_members.c.user_id == users.c.id)
        .where(key_group_members.c.group_id == group.id, key_group_members.c.key_id == group.key_id)
        .order_by(users.c.name)
    ).mappings()
    return [user_of_row(row) for row in rows]


def is_active_member_txn(conn: Connection, group: Group, user_id: int) -> bool:
    return (
        conn.execute(
            select(key_group_members.c.user_id).where(
                key_group_members.c.group_id == group.id,
                key_group_members.c.user_id == user_id,
                key_group_members.c.key_id == group.key_id,
            )
        ).first()
        is not None
    )


def wrapped_keys_txn(conn: Connection, group: Group, user_id: int) -> list[tuple[str, bytes]]:
    """Every group key wrapped to this member (current one first when they hold it)."""
    rows = conn.execute(
        select(key_group_members.c.key_id, key_group_members.c.wrapped).where(
            key_group_members.c.group_id == group.id, key_group_members.c.user_id == user_id
        )
    ).all()
    found = [(str(key_id), bytes(wrapped)) for key_id, wrapped in rows]
    return sorted(found, key=lambda item: item[0] != group.key_id)


def groups_of_member_txn(conn: Connection, user_id: int) -> list[Group]:
    """The groups this account is an active member of."""
    rows = conn.execute(
        select(key_groups.c.local)
        .join(key_group_members, key_group_members.c.group_id == key_groups.c.id)
        .where(key_group_members.c.user_id == user_id, key_group_members.c.key_id == key_groups.c.key_id)
        .order_by(key_groups.c.local)
    ).all()
    groups = [group_by_name_txn(conn, str(name)) for (name,) in rows]
    return [g for g in groups if g is not None]


def add_member_txn(conn: Connection, group: Group, user_id: int, wrapped: bytes) -> None:
    if is_active_member_txn(conn, group, user_id):
        raise InvalidInput("already a member")
    if len(active_members_txn(conn, group)) >= MAX_MEMBERS:
        raise InvalidInput(f"a group has at most {MAX_MEMBERS} members")
    conn.execute(
        delete(key_group_members).where(
            key_group_members.c.group_id == group.id,
            key_group_members.c.user_id == user_id,
            key_group_members.c.key_id == group.key_id,
        )
    )
    _wrap_txn(conn, group.id, group.key_id, {user_id: wrapped})


def rekey_group_txn(
    conn: Connection, group: Group, key_id: str, public_key: bytes, wrapped: Mapping[int, bytes]
) -> None:
    """The group's new key (and its account's public key, so new mail is sealed to it) for ``wrapped``'s members."""
    conn.execute(update(key_groups).where(key_groups.c.id == group.id).values(key_id=key_id))
    conn.execute(update(users).where(users.c.id == group.account.id).values(public_key=public_key))
    _wrap_txn(conn, group.id, key_id, wrapped)


def users_by_name_txn(conn: Connection, names: Sequence[str]) -> dict[str, User]:
    found = {}
    for name in names:
        user = get_user_txn(conn, name)
        if user is not None:
            found[user.name] = user
    return found


__all__ = [
    "MAX_MEMBERS",
    "DomainPolicy",
    "Group",
    "add_policy_txn",
    "current_policy_txn",
    "organisation_copies_txn",
    "active_members_txn",
    "add_member_txn",
    "create_group_txn",
    "group_by_name_txn",
    "groups_of_member_txn",
    "is_active_member_txn",
    "is_group_name_txn",
    "rekey_group_txn",
    "users_by_name_txn",
    "wrapped_keys_txn",
]


# -- domain policies ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DomainPolicy:
    domain: str
    seq: int
    policy: str
    group_id: int | None
    officers: list[str]
    leaf_index: int


def current_policy_txn(conn: Connection, domain: str) -> DomainPolicy | None:
    """The policy in force for ``domain`` (its newest entry), or None: none was ever set (``personal``)."""
    row = conn.execute(
        select(domain_policies)
        .where(domain_policies.c.domain == domain.lower())
        .order_by(domain_policies.c.seq.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return DomainPolicy(
        row.domain, int(row.seq), row.policy, row.group_id, list(json.loads(row.officers)), int(row.leaf_index)
    )


def add_policy_txn(conn: Connection, policy: DomainPolicy) -> None:
    conn.execute(
        insert(domain_policies).values(
            domain=policy.domain,
            seq=policy.seq,
            policy=policy.policy,
            group_id=policy.group_id,
            officers=json.dumps(policy.officers),
            leaf_index=policy.leaf_index,
        )
    )


def organisation_copies_txn(conn: Connection) -> dict[str, str]:
    """For each domain under the ``organisation`` policy, the account its organisation copies go to."""
    newest = (
        select(domain_policies.c.domain, func.max(domain_policies.c.seq).label("seq"))
        .group_by(domain_policies.c.domain)
        .subquery()
    )
    rows = conn.execute(
        select(domain_policies.c.domain, key_groups.c.local)
        .join(newest, (newest.c.domain == domain_policies.c.domain) & (newest.c.seq == domain_policies.c.seq))
        .join(key_groups, key_groups.c.id == domain_policies.c.group_id)
        .where(domain_policies.c.policy == "organisation")
    ).all()
    return {str(domain): str(local) for domain, local in rows}
