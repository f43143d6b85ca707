"""The server side of the line protocol reproduces the srp.json transcripts when its b and IVs are fixed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from mailiverse.config import LegacyOptions
from mailiverse.legacy.backend import LegacyBackend
from mailiverse.legacy.session import LineSession
from mailiverse.store import legacy as repo
from mailiverse.store import users as users_repo
from mailiverse.store.db import Database
from mailiverse.testing_db import sqlite_url
from tests.support.legacy_client import b64, unb64

VECTORS = json.loads((Path(__file__).resolve().parent.parent / "vectors" / "srp.json").read_text())
CASES = VECTORS["cases"]


def _seed(conn: Any, case: dict[str, Any], name: str, block: bytes) -> None:
    user = users_repo.add_user_txn(conn, name, b"placeholder-spki", "v1", legacy=True)
    users_repo.update_user_auth_txn(
        conn,
        user.id,
        srp_salt=bytes.fromhex(case["salt_s_hex"]),
        srp_verifier=bytes.fromhex(case["v_hex"]),
        srp_group=repo.LEGACY_SRP_GROUP,
        key_block=block or None,
    )


@pytest.mark.parametrize("case", CASES, ids=[c["user"] for c in CASES])
@pytest_twisted.ensureDeferred
async def test_server_lines_match_the_transcript(case: dict[str, Any], tmp_path: Path) -> None:
    """With b and the IV fixed, every server line equals the vector's wire line byte for byte."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from twisted.internet import reactor

    database = Database.open(sqlite_url(tmp_path), reactor=reactor)
    try:
        response_text = case["post_auth_messages"][1]["plain_text"]
        block = unb64(json.loads(response_text.partition("!")[2])["block"])
        options = LegacyOptions(enabled=True, domains=("example.com",))
        key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        backend = LegacyBackend(database, options=options, secret=b"k" * 32, mail_auth_key=key, send_key=key)
        name = backend.local_name(case["user"])
        assert name is not None
        await database.transact(_seed, case, name, block)
        server_iv = bytes.fromhex(case["post_auth_messages"][1]["iv_hex"])
        session = LineSession(
            "key",
            backend,
            "127.0.0.1",
            b=int.from_bytes(bytes.fromhex(case["b_hex"]), "big", signed=True),
            ivs=[server_iv],
        )
        client_lines = [m for m in case["login_messages"] if m["from"] == "client"] + [case["post_auth_messages"][0]]
        server_lines = [m for m in case["login_messages"] if m["from"] == "server"] + [case["post_auth_messages"][1]]
        for sent, expected in zip(client_lines, server_lines):
            reply = await session.receive(sent["wire_line"].rstrip("\n").encode())
            assert reply.lines == [expected["wire_line"].encode()]
        assert reply.close is True
        assert b64(block) in response_text
    finally:
        database.close()
