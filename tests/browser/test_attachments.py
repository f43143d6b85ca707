"""Attachments on the way out: attach files, remove one, send to a local user who downloads them intact,
forward with the attachment, and a clear refusal for too much."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.support.browser import check_mail, new_page, row, signup
from tests.support.harness import DOMAIN, Appliance

pytestmark = pytest.mark.integration

PAYLOAD = os.urandom(300_000)
NAME = 'Überweisung März – "final".pdf'


def _download(page: Any, filename: str) -> tuple[str, bytes]:
    with page.expect_download() as info:
        page.click(f"#reader .attachments >> text={filename}")
    download = info.value
    with open(download.path(), "rb") as handle:
        return download.suggested_filename, handle.read()


def test_attach_send_download_and_forward(browser: Any, appliance: Appliance) -> None:
    carol = new_page(browser, appliance)
    signup(carol, "carol")
    dave = new_page(browser, appliance)
    signup(dave, "dave")

    carol.click("#compose-button")
    carol.fill("#compose-to", f"dave@{DOMAIN}")
    carol.fill("#compose-subject", "Invoice attached")
    carol.fill("#compose-text", "See the attachment.")
    carol.set_input_files(
        "#compose-files",
        [
            {"name": NAME, "mimeType": "application/pdf", "buffer": PAYLOAD},
            {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"scratch notes\n"},
        ],
    )
    carol.wait_for_selector("#compose-attachments li >> nth=1")
    carol.click("[aria-label='Remove notes.txt']")
    assert carol.locator("#compose-attachments li").count() == 1
    assert "Überweisung" in carol.locator("#compose-attachments").inner_text()
    carol.click("#send-button")
    carol.wait_for_selector("#compose", state="hidden")

    check_mail(dave)
    row(dave, "Invoice attached").click()
    dave.wait_for_selector("#reader .attachments")
    assert "notes.txt" not in dave.locator("#reader .attachments").inner_text()
    filename, data = _download(dave, "Überweisung")
    assert filename == NAME.replace('"', "_")
    assert data == PAYLOAD

    # Forwarding carries the attachment along.
    dave.click("#reader >> text=Forward")
    dave.wait_for_selector("#compose[open]")
    assert "Überweisung" in dave.locator("#compose-attachments").inner_text()
    dave.fill("#compose-to", f"carol@{DOMAIN}")
    dave.click("#send-button")
    dave.wait_for_selector("#compose", state="hidden")
    check_mail(carol)
    row(carol, "Fwd: Invoice attached").click()
    carol.wait_for_selector("#reader .attachments")
    assert _download(carol, "Überweisung")[1] == PAYLOAD
    carol.context.close()
    dave.context.close()


def test_too_much_to_attach_is_refused_with_a_clear_message(browser: Any, appliance: Appliance) -> None:
    erin = new_page(browser, appliance)
    signup(erin, "erin")
    erin.click("#compose-button")
    erin.set_input_files(
        "#compose-files",
        [{"name": "huge.bin", "mimeType": "application/octet-stream", "buffer": b"\0" * (37 * 1024 * 1024)}],
    )
    erin.wait_for_selector("#compose-status.error, #compose-status[class*=error]")
    assert "Attachments may add up to" in erin.locator("#compose-status").inner_text()
    assert erin.locator("#compose-attachments li").count() == 0
    erin.context.close()
