"""Issue 23 with the real web client: two ``mailiverse-client bridge`` subprocesses and the web client in Debian's
Chromium, on one account of one real appliance, see the same ``\\Seen`` and the same Trash. \\Seen set over IMAP
shows as read in the inbox after a fresh page load; a message opened in the browser is \\Seen in a bridge started
after and, after a NOOP, in the one already running; a message the web client moves to Trash leaves the bridge's
INBOX and shows in its Trash.

Set ``MV_SCREENSHOTS=docs/screenshots`` to refresh the picture of the inbox after the bridge's mark
(bridge-flags.png)."""

from __future__ import annotations

import imaplib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.bridge import ACCOUNT_PASSWORD, World, message, running_bridge, start_world
from tests.support.bridge import wait_until as wait_for
from tests.support.browser import login, new_page, require_chromium, row, wait_until
from tests.support.harness import DOMAIN

pytestmark = pytest.mark.integration

USER = "flags"
SUBJECT_A, SUBJECT_B = "Bridge flags A", "Bridge flags B"
FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
UID = re.compile(rb"UID (\d+)")
W_STATE = "/api/store/Cache/W_state"
#: Seconds allowed for the web client's background save (it flushes ~800 ms after a change) and a bridge's refresh.
SAVE_TIMEOUT = 60.0
REFRESH_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One appliance, one account signed up with the CLI, and two messages delivered to it over SMTP."""
    require_chromium()
    running = start_world(tmp_path_factory.mktemp("bridge-flags"))
    try:
        running.signup(USER)
        to = f"{USER}@{DOMAIN}"
        running.deliver(USER, [message(SUBJECT_A, "First.\n", 1, to), message(SUBJECT_B, "Second.\n", 2, to)])
        yield running
    finally:
        running.appliance.stop()


def screenshots() -> Path | None:
    folder = os.environ.get("MV_SCREENSHOTS")
    return Path(folder) if folder else None


def listed(imap: imaplib.IMAP4) -> dict[str, tuple[int, set[bytes]]]:
    """Subject → (UID, flags) of every message in the mailbox selected on ``imap``."""
    status, data = imap.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert status == "OK", data
    found: dict[str, tuple[int, set[bytes]]] = {}
    for item in data:
        if not isinstance(item, tuple):
            continue
        meta, header = item
        flags, uid = FLAGS.search(meta), UID.search(meta)
        assert flags and uid, meta
        found[header.strip().partition(b":")[2].strip().decode()] = (int(uid.group(1)), set(flags.group(1).split()))
    return found


def mailbox(imap: imaplib.IMAP4, name: str) -> dict[str, tuple[int, set[bytes]]]:
    """Select ``name`` read-only (a fresh listing in the bridge) and list it."""
    status, answer = imap.select(name, readonly=True)
    assert status == "OK", answer
    return listed(imap)


class StateSaves:
    """The page's successful ``PUT`` of ``Cache/W_state``: how the test knows the web client saved its read set."""

    def __init__(self, page: Any) -> None:
        self.count = 0
        page.on("response", self._seen)

    def _seen(self, response: Any) -> None:
        request = response.request
        if request.method == "PUT" and response.url.endswith(W_STATE) and response.ok:
            self.count += 1

    def wait_after(self, page: Any, mark: int) -> None:
        wait_until(page, lambda: self.count > mark, SAVE_TIMEOUT)


def unread(page: Any, subject: str) -> bool:
    """Whether the inbox shows ``subject`` as unread: the row's ``unread`` class and its spoken label agree."""
    found = row(page, subject)
    assert found.count() == 1, subject
    marked = "unread" in (found.get_attribute("class") or "").split()
    spoken = (found.get_attribute("aria-label") or "").startswith("Unread. ")
    assert marked == spoken, (subject, found.get_attribute("class"), found.get_attribute("aria-label"))
    return marked


def open_in_browser(page: Any, subject: str) -> None:
    """Click the row and wait until the reader shows the decrypted message."""
    row(page, subject).click()
    wait_until(
        page,
        lambda: page.locator("#reader-subject").count() == 1 and page.inner_text("#reader-subject") == subject,
    )


def test_two_bridges_and_the_web_client_share_seen_and_trash(browser: Any, world: World, tmp_path: Path) -> None:
    """\\Seen from a bridge shows read in Chromium; a message read in Chromium is \\Seen in a new bridge and (after
    NOOP) in the running one; a message trashed in Chromium leaves the bridge's INBOX for its Trash."""
    with running_bridge(world, USER, tmp_path / "one", poll=1.0) as first:
        imap = first.imap()
        try:
            assert imap.select("INBOX")[0] == "OK"
            before = listed(imap)
            assert set(before) == {SUBJECT_A, SUBJECT_B}, before
            assert all(b"\\Seen" not in flags for _uid, flags in before.values()), before
            status, answer = imap.uid("STORE", str(before[SUBJECT_A][0]), "+FLAGS", "(\\Seen)")
            assert status == "OK", answer

            # 1. A fresh page load reads W_state: A read, B unread.
            page = new_page(browser, world.appliance, viewport={"width": 900, "height": 320})
            saves = StateSaves(page)
            login(page, USER, ACCOUNT_PASSWORD)
            wait_until(page, lambda: row(page, SUBJECT_A).count() == 1 and row(page, SUBJECT_B).count() == 1)
            assert not unread(page, SUBJECT_A)
            assert unread(page, SUBJECT_B)
            assert page.inner_text("#count-inbox") == "1"
            folder = screenshots()
            if folder:
                folder.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(folder / "bridge-flags.png"))

            # 2. B opened in the browser: saved to W_state, then \Seen in a second bridge and in the first.
            mark = saves.count
            open_in_browser(page, SUBJECT_B)
            saves.wait_after(page, mark)
            assert not unread(page, SUBJECT_B)
            with running_bridge(world, USER, tmp_path / "two", poll=1.0) as second:
                other = second.imap()
                try:
                    seen = mailbox(other, "INBOX")
                finally:
                    other.logout()
                assert seen[SUBJECT_B][1] >= {b"\\Seen"}, seen
                assert seen[SUBJECT_A][1] >= {b"\\Seen"}, seen
                assert {uid for uid, _ in seen.values()} == {uid for uid, _ in before.values()}, (seen, before)

            def first_sees_b() -> bool:
                assert imap.noop()[0] == "OK"
                return b"\\Seen" in listed(imap)[SUBJECT_B][1]

            wait_for(first_sees_b, REFRESH_TIMEOUT, "the running bridge seeing B \\Seen after NOOP")

            # 3. A moved to Trash in the browser (the reader's Delete button): gone from INBOX, listed in Trash.
            mark = saves.count
            open_in_browser(page, SUBJECT_A)
            page.locator("#reader").get_by_role("button", name="Delete", exact=True).click()
            wait_until(page, lambda: row(page, SUBJECT_A).count() == 0)
            saves.wait_after(page, mark)

            def first_drops_a() -> bool:
                assert imap.noop()[0] == "OK"
                return SUBJECT_A not in listed(imap)

            wait_for(first_drops_a, REFRESH_TIMEOUT, "the running bridge dropping A from INBOX after NOOP")
            expunged = imap.response("EXPUNGE")[1]
            assert expunged and expunged[0] is not None, expunged
            assert set(listed(imap)) == {SUBJECT_B}
            page.context.close()
        finally:
            imap.logout()

        fresh = first.imap()
        try:
            status, boxes = fresh.list()
            names = [line.rpartition(b" ")[2].strip(b'"') for line in boxes if isinstance(line, bytes)]
            assert status == "OK" and b"Trash" in names, boxes
            trash = mailbox(fresh, "Trash")
            assert set(trash) == {SUBJECT_A}, trash
            assert b"\\Seen" in trash[SUBJECT_A][1], trash
            assert set(mailbox(fresh, "INBOX")) == {SUBJECT_B}
        finally:
            fresh.logout()
