"""The web client's sync (issue 24) in Debian's Chromium: a cold sync of a seeded mailbox through the batch
endpoint and the decryption workers, checked message by message against the store; an incremental sync that asks
only for what changed (new, deleted, moved); the message keys kept in the encrypted index; v1 envelopes too."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import create_engine

from mailiverse.client.bridge.state import CacheDocument, key_seeds, shape_state
from mailiverse.store.moves import move_objects_txn
from mailiverse.store.users import get_user_txn
from tests.support.browser import new_page, signup
from tests.support.harness import Appliance
from tests.support.mailbox import (
    Seeded,
    account_client,
    check_index,
    delete,
    logout,
    seed,
    timed_check,
    timed_login,
    timed_warm_login,
)


def _move(app: Appliance, user: str, source: str, target: str) -> None:
    engine = create_engine(f"sqlite:///{app.data_dir / 'mailiverse.sqlite3'}", connect_args={"timeout": 60})
    with engine.begin() as conn:
        account = get_user_txn(conn, user)
        assert account is not None
        move_objects_txn(conn, account.id, [(source, target)])
    engine.dispose()


def test_cold_then_incremental_sync(browser: Any, appliance: Appliance) -> None:
    """Cold: every message listed, newest first, keys cached. Incremental: one changes request and one batch of
    exactly the new twins; deletions and a move applied without fetching them; read marks made on another device
    arrive with the next check; a warm login shows the newest."""
    page = new_page(browser, appliance)
    signup(page, "syncer")
    logout(page)
    seeded = seed(appliance, "syncer", 400)
    cold = timed_login(page, "syncer")
    assert page.locator("#list .row").first.inner_text().count("Message number 399") == 1
    client = account_client(appliance, "syncer")
    check_index(client, seeded)

    fresh = seed(appliance, "syncer", 10, start=400)
    gone = [seeded[0].path, seeded[1].path]
    delete(appliance, "syncer", gone + [p.replace("_Json", "") for p in gone])
    moved = seeded[2]
    spam_path = moved.path.replace("Mail/In_Json/", "Mail/Spam_Json/")
    _move(appliance, "syncer", moved.path, spam_path)
    asked: list[tuple[str, str, bytes | None]] = []
    page.on("request", lambda r: asked.append((r.method, r.url, r.post_data_buffer)))
    incremental = timed_check(page)
    store_calls = [(m, u.split("/api/", 1)[1], b) for m, u, b in asked if "/api/store" in u or "/api/batch" in u]
    changes = [u for m, u, _ in store_calls if m == "GET" and u.startswith("store?since=")]
    batches = [b for m, u, b in store_calls if m == "POST" and u == "batch"]
    assert len(changes) == 1 and not changes[0].startswith("store?since=0&"), store_calls
    assert len(batches) == 1 and sorted(json.loads(batches[0])["paths"]) == sorted(m.path for m in fresh)
    assert not [u for m, u, _ in store_calls if m == "GET" and u.startswith("store/Mail/")], store_calls
    page.locator("#list .row", has_text="Message number 409").first.wait_for()
    after = [m for m in seeded if m.path not in gone and m != moved] + fresh
    after.append(Seeded(spam_path, moved.subject, moved.when))
    check_index(client, after, {spam_path: "spam"})

    # Another device (here mailiverse-client, through the document the web client keeps its read marks in) marks
    # three messages read: the next check brings the change and the unread count drops by three.
    unread = int(page.title().split(")")[0].lstrip("("))
    marked = [m.path for m in fresh[:3]]
    state = CacheDocument(client, "W_state", key_seeds(client), shape_state)
    state.update(lambda value: bool(value["read"].extend(marked) or True))
    timed_check(page)
    assert page.title() == f"({unread - 3}) mailiverse"
    warm = timed_warm_login(page, "syncer", "Message number 409")
    print(
        f"\n400 messages: cold first page {cold['first_s']:.2f} s, synced {cold['synced_s']:.2f} s; "
        f"incremental (10 new, 2 deleted, 1 moved) {incremental:.2f} s; warm login {warm:.2f} s"
    )
    page.context.close()


def test_v1_envelopes_sync_and_keep_their_keys(browser: Any, appliance: Appliance) -> None:
    """Mail sealed as the original Mailiverse sealed it (RSA PKCS#1 v1.5 + AES-CBC) syncs in the workers too."""
    page = new_page(browser, appliance)
    signup(page, "olduser")
    logout(page)
    seeded = seed(appliance, "olduser", 60, envelope="v1")
    timed_login(page, "olduser")
    page.locator("#list .row", has_text="Message number 59").first.wait_for()
    check_index(account_client(appliance, "olduser"), seeded)
    page.locator("#list .row", has_text="Message number 58").first.click()
    page.locator("#reader", has_text="Body of message 58.").first.wait_for()
    page.context.close()
