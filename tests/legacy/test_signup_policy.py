"""Legacy sign-up obeys the appliance's sign-up policy, reveals no modern account, and upgrades revoke MV keys.

Security review findings 1 and 4 (docs/security.md): on an invite-only appliance a stranger could
create a legacy account (and send DKIM-signed mail with it); the availability test and StoreEnable
told which names had accounts; MV store credentials outlived an upgrade and a password change.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from sqlalchemy import func, select

from mailiverse.auth.srp6a import SRP_GROUP
from mailiverse.config import LegacyOptions
from mailiverse.crypto.keys import generate_private_key, public_key_der
from mailiverse.store import accounts as accounts_repo
from mailiverse.store.legacy import get_credentials_txn
from mailiverse.store.schema import legacy_pending, legacy_store_credentials
from mailiverse.testing_db import sqlite_url
from tests.support.legacy import DOMAIN, KEYS, Client, LegacyAppliance, serve_legacy
from tests.support.legacy_client import availability_line, b64, environment_text, signup_line

MODERN_KEY = public_key_der(generate_private_key(2048).public_key())


@pytest.fixture
def invite_only(tmp_path: Path) -> Iterator[LegacyAppliance]:
    """``--legacy`` with the defaults: captcha off, sign-up by invitation (no --open-signup)."""
    options = LegacyOptions(enabled=True, domains=(DOMAIN,), hostname="mail." + DOMAIN)
    yield from serve_legacy(tmp_path, sqlite_url(tmp_path), options)


async def _modern_account(app: LegacyAppliance, name: str) -> None:
    await app.database.transact(
        accounts_repo.create_account_txn,
        name,
        public_key_der=MODERN_KEY,
        envelope_format="v2",
        srp_salt=b"s" * 16,
        srp_verifier=b"\x02" * 256,
        srp_group=SRP_GROUP,
        key_block=b"block",
        invite=None,
        open_signup=True,
    )


async def _invite(app: LegacyAppliance) -> str:
    code, _record = await app.database.transact(accounts_repo.create_invite_txn)
    return code


async def _count(app: LegacyAppliance, table: Any) -> int:
    def count_txn(conn: Any) -> int:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

    return await app.database.run(count_txn)


async def _store_enable(app: LegacyAppliance, address: str, captcha: str) -> tuple[int, bytes]:
    reply = await treq.get(app.base + f"StoreEnable?email={address}&captcha={captcha}")
    return reply.code, await reply.content()


@pytest_twisted.ensureDeferred
async def test_stranger_cannot_sign_up_on_an_invite_only_appliance(invite_only: LegacyAppliance) -> None:
    """Without an invitation, legacy sign-up and StoreEnable are refused and nothing is recorded."""
    await _modern_account(invite_only, "owner")
    stranger = Client(invite_only, "plain", "stranger")
    answer = await stranger.init(signup_line(invite_only.mail_auth_public, stranger.address, KEYS[0]))
    assert answer["succeeded"] is False
    assert "invitation" in answer["reason"]
    forged = signup_line(invite_only.mail_auth_public, stranger.address, KEYS[0], captcha="A" * 26)
    assert (await stranger.init(forged))["succeeded"] is False
    assert await _count(invite_only, legacy_pending) == 0
    code, _body = await _store_enable(invite_only, stranger.address, "null")
    assert code == 403
    assert await _count(invite_only, legacy_store_credentials) == 0


@pytest_twisted.ensureDeferred
async def test_an_invitation_admits_one_legacy_sign_up(invite_only: LegacyAppliance) -> None:
    """The invite code goes where the original client puts its captcha token: StoreEnable, then sign-up."""
    await _modern_account(invite_only, "owner")
    code = await _invite(invite_only)
    alice = Client(invite_only, "plain", "alice")
    await alice.store_enable(code)
    signup = signup_line(invite_only.mail_auth_public, alice.address, KEYS[0], captcha=code)
    assert (await alice.init(signup))["succeeded"] is True
    block = environment_text(alice.server_environment()).encode()
    assert await alice.op("mail", "Put", {"block": b64(block)}) == {"block": b64(block)}
    invites = await invite_only.database.run(accounts_repo.list_invites_txn)
    assert [i.used_by for i in invites] == ["alice"]
    # The code is spent: nobody else gets in with it, not even through StoreEnable.
    bob = Client(invite_only, "plain", "bob")
    assert (await bob.init(signup_line(invite_only.mail_auth_public, bob.address, KEYS[0], captcha=code)))[
        "succeeded"
    ] is False
    assert (await _store_enable(invite_only, bob.address, code))[0] == 403


@pytest_twisted.ensureDeferred
async def test_availability_test_does_not_reveal_modern_accounts(invite_only: LegacyAppliance) -> None:
    """On an invite-only appliance the availability answer is the same for a modern account's name and a free one."""
    await _modern_account(invite_only, "owner")
    probe = Client(invite_only, "plain", "probe")
    taken = await probe.init(availability_line(invite_only.mail_auth_public, f"owner@{DOMAIN}"))
    free = await probe.init(availability_line(invite_only.mail_auth_public, f"freename@{DOMAIN}"))
    assert taken == free


@pytest_twisted.ensureDeferred
async def test_store_enable_does_not_reveal_modern_accounts(invite_only: LegacyAppliance) -> None:
    """StoreEnable answers a modern account's name like a free one, and what it makes opens nothing of that account."""
    await _modern_account(invite_only, "owner")
    code = await _invite(invite_only)
    taken_code, taken_body = await _store_enable(invite_only, f"owner@{DOMAIN}", code)
    free_code, free_body = await _store_enable(invite_only, f"freename@{DOMAIN}", code)
    assert taken_code == free_code == 200
    assert taken_body.startswith(b"AccessKeyId!") and free_body.startswith(b"AccessKeyId!")
    key_id = taken_body.decode().split("&")[0][len("AccessKeyId!") :]
    creds = await invite_only.database.run(get_credentials_txn, key_id)
    assert creds is not None and creds.user_id is None  # unbound: it opens no store


@pytest_twisted.ensureDeferred
async def test_upgrade_revokes_every_mv_credential(appliance: LegacyAppliance) -> None:
    """After the upgrade to the modern login, the account's MV store keys no longer open its store."""
    client = Client(appliance, "plain")
    await client.sign_up()
    assert (await client.store("PUT", "Cache/I", b"SGVsbG8=")).code == 200
    spare = Client(appliance, "plain")
    await spare.store_enable()  # an unbound pair for the same name
    upgraded = await client.op(
        "key", "mailiverse.legacy.Upgrade", {"salt": b64(b"s" * 16), "verifier": b64(b"\x01" * 256), "group": SRP_GROUP}
    )
    assert upgraded == {}
    assert (await client.store("GET", "Cache/I")).code == 403
    assert await appliance.database.run(get_credentials_txn, client.key_id) is None
    assert await appliance.database.run(get_credentials_txn, spare.key_id) is None
