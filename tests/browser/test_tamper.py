"""Tamper evidence in the browser: a stored message with a flipped bit
is listed and opened as "tampered — not shown"."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from tests.support.browser import check_mail, new_page, row, signup, smtp_send, text_mail
from tests.support.harness import DOMAIN, Appliance

pytestmark = pytest.mark.integration

SECRET = "launch code 90210-tamper-canary"
TAMPERED_SUBJECT = "(tampered — not shown)"


def _flip_bits(app: Appliance, user: str) -> list[str]:
    """Flip one bit in the middle of every stored object of ``user`` under Mail/ (in the SQLite file);
    return the paths."""
    db = sqlite3.connect(app.data_dir / "mailiverse.sqlite3", timeout=30)
    try:
        found = db.execute(
            "select o.id, o.path from objects o join users u on u.id = o.user_id "
            "where u.name = ? and o.path like 'Mail/%'",
            (user,),
        ).fetchall()
        for object_id, _path in found:
            (data,) = db.execute(
                "select data from object_chunks where object_id = ? and seq = 0", (object_id,)
            ).fetchone()
            changed = bytearray(data)
            changed[len(changed) // 2] ^= 0x01
            db.execute("update object_chunks set data = ? where object_id = ? and seq = 0", (bytes(changed), object_id))
        db.commit()
        return [path for _id, path in found]
    finally:
        db.close()


def test_tampered_message_is_flagged_not_shown(browser: Any, appliance: Appliance) -> None:
    """A v2 message whose stored bytes were changed shows a "tampered — not shown" notice and none of its text."""
    page = new_page(browser, appliance)
    signup(page, "tina")
    smtp_send(appliance, f"tina@{DOMAIN}", text_mail("tina", "Quarterly secret", f"The {SECRET} is inside.\n"))
    flipped = _flip_bits(appliance, "tina")
    assert sorted(p.split("/")[1] for p in flipped) == ["In", "In_Json"]
    smtp_send(appliance, f"tina@{DOMAIN}", text_mail("tina", "Intact note", "Nothing to see here.\n"))

    check_mail(page)
    assert row(page, "Intact note").count() == 1
    tampered = row(page, TAMPERED_SUBJECT)
    assert tampered.count() == 1
    assert row(page, "Quarterly secret").count() == 0

    tampered.click()
    notice = page.locator("#reader .notice.tampered")
    notice.wait_for()
    text = notice.inner_text()
    assert text.startswith("Tampered — not shown") and "failed its integrity check" in text
    assert notice.get_attribute("role") == "alert"
    assert page.locator("#reader pre.text").count() == 0
    assert SECRET not in page.content() and "90210" not in page.locator("body").inner_text()

    # The control: an untouched message still opens normally.
    row(page, "Intact note").click()
    page.wait_for_selector("#reader pre.text")
    assert "Nothing to see here." in page.locator("#reader pre.text").inner_text()
    assert page.locator("#reader .notice.tampered").count() == 0
