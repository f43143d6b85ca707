"""User repository behaviour on both backends, through the async store calls."""

from __future__ import annotations

import pytest
import pytest_twisted

from mailiverse.store import (
    InvalidInput,
    User,
    UserExists,
    UserNotFound,
    VersionConflict,
)
from tests.support.store_calls import StoreCalls


@pytest_twisted.ensureDeferred
async def test_add_and_get_user_case_insensitively(store: StoreCalls) -> None:
    """A user added as 'Alice' is stored as 'alice' and found under any case."""
    created = await store.add_user("Alice", b"spki-der", "v2")
    assert created.name == "alice"
    assert created.key_block_version == 0 and not created.legacy and not created.disabled
    assert await store.get_user("ALICE") == created
    assert await store.get_user_by_id(created.id) == created
    assert await store.get_user("bob") is None
    assert await store.get_user_by_id(created.id + 1000) is None


@pytest_twisted.ensureDeferred
async def test_duplicate_names_raise_user_exists(store: StoreCalls) -> None:
    """Adding a name that differs only in case raises UserExists and leaves one user."""
    await store.add_user("alice", b"k", "v2")
    with pytest.raises(UserExists):
        await store.add_user("ALICE", b"k2", "v1")
    assert [u.name for u in await store.list_users()] == ["alice"]


@pytest_twisted.ensureDeferred
async def test_list_users_in_name_order(store: StoreCalls) -> None:
    """list_users returns every user sorted by name, with their stored fields."""
    for name in ["carol", "alice", "bob"]:
        await store.add_user(name, name.encode(), "v1", legacy=name == "bob")
    listed = await store.list_users()
    assert [u.name for u in listed] == ["alice", "bob", "carol"]
    assert [u.legacy for u in listed] == [False, True, False]
    assert [u.public_key for u in listed] == [b"alice", b"bob", b"carol"]


@pytest.mark.parametrize(
    ("name", "key", "fmt"),
    [
        ("", b"k", "v1"),
        ("a b", b"k", "v1"),
        ("a/b", b"k", "v1"),
        ("x" * 300, b"k", "v1"),
        ("ok", b"", "v1"),
        ("ok", b"k" * 20000, "v1"),
        ("ok", b"k", "v3"),
        ("a\x00b", b"k", "v1"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_bad_user_fields_are_rejected(store: StoreCalls, name: str, key: bytes, fmt: str) -> None:
    """Empty, spaced, slashed, control-character or long names, bad keys and unknown formats raise InvalidInput."""
    with pytest.raises(InvalidInput):
        await store.add_user(name, key, fmt)
    assert await store.list_users() == []


@pytest_twisted.ensureDeferred
async def test_update_auth_and_key_block_versions(store: StoreCalls) -> None:
    """SRP data is replaced; a new key block bumps its version and a stale expected version conflicts."""
    created = await store.add_user("alice", b"k", "v2")
    updated = await store.update_user_auth(
        created.id,
        srp_salt=b"salt",
        srp_verifier=b"verifier",
        srp_group="rfc5054-2048",
        key_block=b"kb1",
    )
    assert (updated.srp_salt, updated.srp_verifier, updated.srp_group) == (
        b"salt",
        b"verifier",
        "rfc5054-2048",
    )
    assert (updated.key_block, updated.key_block_version) == (b"kb1", 1)
    again = await store.set_key_block(created.id, b"kb2", if_version=1)
    assert (again.key_block, again.key_block_version) == (b"kb2", 2)
    with pytest.raises(VersionConflict):
        await store.set_key_block(created.id, b"kb3", if_version=1)
    with pytest.raises(VersionConflict):
        await store.update_user_auth(
            created.id,
            srp_salt=b"s",
            srp_verifier=b"v",
            srp_group="g",
            key_block=b"kb3",
            if_key_block_version=1,
        )
    current = await store.get_user_by_id(created.id)
    assert current is not None and current.key_block == b"kb2" and current.srp_salt == b"salt"


@pytest_twisted.ensureDeferred
async def test_unknown_user_updates_raise_user_not_found(store: StoreCalls) -> None:
    """Updating a user id that does not exist raises UserNotFound."""
    with pytest.raises(UserNotFound):
        await store.set_disabled(999, True)
    with pytest.raises(UserNotFound):
        await store.set_key_block(999, b"kb")


@pytest_twisted.ensureDeferred
async def test_disable_and_delete(store: StoreCalls) -> None:
    """A user can be disabled and re-enabled; deleting removes them and reports whether they existed."""
    created = await store.add_user("alice", b"k", "v2")
    assert (await store.set_disabled(created.id, True)).disabled
    assert not (await store.set_disabled(created.id, False)).disabled
    assert await store.delete_user(created.id) is True
    assert await store.delete_user(created.id) is False
    assert await store.get_user("alice") is None


def test_user_repr_hides_secret_material() -> None:
    """A User's repr shows no verifier, salt or key block bytes (so logs cannot leak them)."""
    user = User(
        1,
        "alice",
        0,
        "v2",
        b"PUB",
        False,
        b"SALTSALT",
        b"VERIFIER",
        "g",
        b"KEYBLOCK",
        1,
        False,
    )
    shown = repr(user)
    assert "alice" in shown
    for secret in ("SALTSALT", "VERIFIER", "KEYBLOCK"):
        assert secret not in shown
