"""A large mailbox put straight into an appliance's SQLite store (sealed exactly as delivery seals it: an original
and its JSON twin per message), and the timed steps of the web client's sync in Chromium (login to the first page,
the whole list, an incremental sync, a warm login). Used by tests/browser/test_sync.py and bench/browser_sync.py.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import load_der_public_key
from sqlalchemy import create_engine

from mailiverse.client.api import Client
from mailiverse.client.bridge.state import key_seeds, open_document
from mailiverse.client.transport import HttpsTransport
from mailiverse.crypto.formats import seal_mail_object
from mailiverse.store.objects import NewObject, delete_object_txn, insert_new_objects_txn
from mailiverse.store.quota import add_usage_txn
from mailiverse.store.users import get_user_txn
from tests.support.browser import PASSWORD, base_url, synced, wait_until
from tests.support.harness import DOMAIN, Appliance, self_signed_cert

#: Messages written per transaction.
_BATCH = 2000


@dataclass(frozen=True)
class Seeded:
    """One message put in the store: its twin's path, its subject and its date (ms)."""

    path: str
    subject: str
    when: int


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def twin_json(i: int, when: int, subject: str) -> bytes:
    """A JSON twin as the appliance writes one (docs/protocol.md §2.3), about 1 KB once sealed."""
    return json.dumps(
        {
            "original": f"Mail/In/{when}_{i}",
            "addresses": {
                "from": [{"name": _b64(f"Sender {i % 97}"), "email": _b64(f"s{i % 97}@remote.test")}],
                "to": [{"email": _b64(f"bench@{DOMAIN}")}],
            },
            "dates": {"sent": str(when), "written": str(when)},
            "uidl": f"<{i}@remote.test>",
            "content": {
                "headers": [
                    ["Subject", _b64(subject)],
                    ["Content-Type", _b64("text/plain; charset=utf-8")],
                ],
                "class": "string",
                "value": f"Body of message {i}. " * 20,
            },
        }
    ).encode()


def _original(i: int, subject: str) -> bytes:
    return (
        f"From: Sender {i % 97} <s{i % 97}@remote.test>\r\nTo: bench@{DOMAIN}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{i}@remote.test>\r\n\r\n" + f"Body of message {i}. " * 20 + "\r\n"
    ).encode()


def _engine(app: Appliance) -> Any:
    return create_engine(f"sqlite:///{app.data_dir / 'mailiverse.sqlite3'}", connect_args={"timeout": 60})


def seed(
    app: Appliance, user: str, count: int, *, start: int = 0, envelope: str = "v2", now_ms: int | None = None
) -> list[Seeded]:
    """Put ``count`` messages (numbered from ``start``, a second apart, the last one now) in ``user``'s inbox,
    sealed to the account's key in ``envelope`` format ("v2", or "v1" as the original Mailiverse sealed)."""
    engine = _engine(app)
    out: list[Seeded] = []
    try:
        with engine.begin() as conn:
            account = get_user_txn(conn, user)
            assert account is not None
            public = load_der_public_key(account.public_key)
            user_id = account.id
        end = int(time.time() * 1000) if now_ms is None else now_ms
        first = end - (count - 1) * 1000
        for at in range(0, count, _BATCH):
            items: list[NewObject] = []
            for i in range(start + at, start + min(count, at + _BATCH)):
                when = first + (i - start) * 1000
                subject = f"Message number {i}"
                key = f"{when}_{i:06d}"
                twin = seal_mail_object(envelope, public, twin_json(i, when, subject))  # type: ignore[arg-type]
                original = seal_mail_object(envelope, public, _original(i, subject))  # type: ignore[arg-type]
                items.append(NewObject(user_id, f"Mail/In/{key}", original, when))
                items.append(NewObject(user_id, f"Mail/In_Json/{key}", twin, when))
                out.append(Seeded(f"Mail/In_Json/{key}", subject, when))
            with engine.begin() as conn:
                insert_new_objects_txn(conn, items)
                add_usage_txn(conn, {user_id: sum(len(item.data) for item in items)})
    finally:
        engine.dispose()
    return out


def delete(app: Appliance, user: str, paths: list[str]) -> None:
    """Delete objects of ``user`` as the store API does (each leaves a tombstone)."""
    engine = _engine(app)
    try:
        with engine.begin() as conn:
            account = get_user_txn(conn, user)
            assert account is not None
            for path in paths:
                assert delete_object_txn(conn, account.id, path)
    finally:
        engine.dispose()


def first_page_shown(page: Any) -> bool:
    return page.locator("body").get_attribute("data-first-page") == "1"


def timed_login(page: Any, name: str, *, timeout: float = 900.0) -> dict[str, float]:
    """Log in through the form and time (seconds from the click) the first page of mail shown and the sync done."""
    before = synced(page)
    page.fill("#login-user", name)
    page.fill("#login-password", PASSWORD)
    start = time.monotonic()
    page.click("#login-form button[type=submit]")
    wait_until(page, lambda: first_page_shown(page) or synced(page) > before, timeout)
    first = time.monotonic() - start
    wait_until(page, lambda: synced(page) > before, timeout)
    done = time.monotonic() - start
    timing = page.evaluate("mailiverseTiming()")
    return {"first_s": first, "synced_s": done, "login_ms": timing.get("login", 0), "sync_ms": timing.get("sync", 0)}


def timed_check(page: Any, *, timeout: float = 300.0) -> float:
    """Press "check for new mail" and time the sync it runs (seconds)."""
    before = synced(page)
    start = time.monotonic()
    page.click("#refresh-button")
    wait_until(page, lambda: synced(page) > before, timeout)
    return time.monotonic() - start


def timed_warm_login(page: Any, name: str, newest_subject: str) -> float:
    """Log out, log in again and time (seconds) until the newest message is in the list (from the cache)."""
    logout(page)
    page.fill("#login-user", name)
    page.fill("#login-password", PASSWORD)
    start = time.monotonic()
    page.click("#login-form button[type=submit]")
    page.locator("#list .row", has_text=newest_subject).first.wait_for(timeout=60_000)
    return time.monotonic() - start


def logout(page: Any) -> None:
    """Log out through the account menu."""
    page.click("#account-button")
    page.click("#logout-button")
    page.wait_for_selector("#auth:not([hidden])")


def account_client(app: Appliance, user: str) -> Client:
    """mailiverse-client's API, logged in to ``user`` (to read what the web client stored)."""
    client = Client(HttpsTransport(base_url(app), ca_file=str(self_signed_cert(app))), user)
    client.login(PASSWORD)
    return client


def cache_index(client: Client) -> dict[str, dict[str, Any]]:
    """The web client's encrypted index (Cache/W_index), opened with the account's key, by twin path."""
    document = open_document("W_index", key_seeds(client), client.get_object("Cache/W_index"))
    assert document is not None and document["v"] == 2
    return {item["p"]: item for item in document["items"]}


def message_key(client: Client, blob: bytes) -> bytes:
    """The message key of a sealed object, unwrapped here with the private key (v2: OAEP; v1: PKCS#1 v1.5)."""
    key = client.private_key
    if blob[0] == 2:
        length = int.from_bytes(blob[1:3], "big")
        oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
        return key.decrypt(blob[3 : 3 + length], oaep)
    length = int.from_bytes(blob[1:5], "big")
    return key.decrypt(blob[5 : 5 + length], padding.PKCS1v15())


def check_index(client: Client, seeded: list[Seeded], folders: dict[str, str] | None = None) -> None:
    """Every seeded message is in the index with its subject and date, and its message key is the right one."""
    index = cache_index(client)
    assert set(index) == {m.path for m in seeded}
    for message in seeded:
        item = index[message.path]
        assert (
            item["s"] == message.subject
            and item["d"] == message.when
            and item["k"] == (folders or {}).get(message.path, "inbox")
        )
        assert base64.b64decode(item["mk"]) == message_key(client, client.get_object(message.path))
