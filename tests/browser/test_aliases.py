"""Aliases in the web client (docs/webclient.md, "Aliases") in Debian's Chromium against a real twistd: the
Addresses page makes, labels, limits, disables and deletes aliases; mail to an alias is shown "via" it and one
click stops it (the appliance then refuses it at RCPT, checked over SMTP); replies and new mail go out from an
alias; the label is sealed in the browser (v2 envelope, opened here by the server's own Python code).

Set ``MV_SCREENSHOTS=docs/screenshots`` to refresh the pictures of the Addresses page and the "via" reader."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import load_der_private_key

from mailiverse.crypto import envelope, formats
from mailiverse.crypto.errors import DecryptionError
from tests.support.browser import (
    PASSWORD,
    base_url,
    check_mail,
    login,
    new_page,
    row,
    signup,
    smtp_send,
    text_mail,
    wait_until,
)
from tests.support.harness import DOMAIN, Appliance
from tests.support.smtp import SmtpSession

pytestmark = pytest.mark.integration

SHIELD = re.compile(r"^[0-9abcdefghjkmnpqrstuvxyz]{16}@" + re.escape(DOMAIN) + "$")

SEAL_JS = """async (cases) => {
  const { toB64 } = await import('/js/crypto/bytes.js');
  const { generateKeyPair } = await import('/js/crypto/keys.js');
  const { importSealingKey, seal, sealMailObject } = await import('/js/crypto/seal.js');
  const { publicDer, privateDer } = await generateKeyPair(2048);
  const key = await importSealingKey(publicDer);
  const out = [];
  for (const [size, chunk] of cases) {
    const data = new Uint8Array(size);
    for (let i = 0; i < size; i++) data[i] = (i * 31 + 7) & 255;
    out.push({ size, chunk, blob: toB64(await seal(key, data, chunk || undefined)) });
  }
  const object = toB64(await sealMailObject(key, new TextEncoder().encode('{"label": "Grüße, shop X"}')));
  return { privateDer: toB64(privateDer), out, object };
}"""


def rcpt_code(app: Appliance, address: str, sender: str = "bob@remote.test") -> int:
    """The appliance's answer to RCPT TO ``address`` (mail from ``sender``), over plain SMTP; nothing is sent."""
    session = SmtpSession(app.smtp_port, timeout=60)
    try:
        session.hello()
        assert session.command(f"MAIL FROM:<{sender}>\r\n".encode())[0] == 250
        code, _reply = session.command(f"RCPT TO:<{address}>\r\n".encode())
        session.command(b"QUIT\r\n")
    finally:
        session.close()
    return code


def server_aliases(page: Any, app: Appliance) -> list[dict[str, Any]]:
    """``GET /api/aliases`` with the page's session: what the server keeps and returns."""
    response = page.request.get(f"{base_url(app)}/api/aliases")
    assert response.ok, response.text()
    aliases: list[dict[str, Any]] = response.json()["aliases"]
    return aliases


def open_addresses(page: Any) -> None:
    page.click("#addresses-link")
    page.wait_for_selector("#addresses-page:not([hidden])")
    wait_until(page, lambda: page.get_attribute("#addresses-link", "aria-current") == "page")


def card(page: Any, address: str) -> Any:
    return page.locator("#alias-rows li.alias", has=page.locator(".alias-address", has_text=address))


def open_message(page: Any, subject: str) -> None:
    row(page, subject).first.click()
    wait_until(page, lambda: page.locator("#reader-subject").count() == 1
               and page.inner_text("#reader-subject") == subject)  # fmt: skip


def screenshots() -> Path | None:
    folder = os.environ.get("MV_SCREENSHOTS")
    return Path(folder) if folder else None


def test_browser_sealing_opens_with_the_servers_python(browser: Any, appliance: Appliance) -> None:
    """What the browser seals (v2: empty, one chunk, exact chunk, many chunks; and a zlib'ed mail object) opens
    with mailiverse.crypto.envelope / formats under the key the browser made, with the header the format
    prescribes; a flipped byte fails."""
    page = new_page(browser, appliance)
    cases = [[0, 0], [1, 0], [65536, 0], [65537, 0], [200_000, 0], [1000, 100], [999, 100], [5, 1]]
    result = page.evaluate(SEAL_JS, cases)
    key = load_der_private_key(base64.b64decode(result["privateDer"]), None)
    for case in result["out"]:
        size, chunk = case["size"], case["chunk"] or envelope.DEFAULT_CHUNK_SIZE
        blob = base64.b64decode(case["blob"])
        expected = bytes((i * 31 + 7) & 255 for i in range(size))
        assert blob[0] == 2 and int.from_bytes(blob[1:3], "big") == 256
        assert int.from_bytes(blob[259:263], "big") == chunk
        chunks = max(1, -(-size // chunk))
        assert len(blob) == 3 + 256 + 4 + 7 + size + 16 * chunks
        assert envelope.open_sealed(key, blob) == expected  # type: ignore[arg-type]
        assert formats.decrypt_any(key, blob) == expected  # type: ignore[arg-type]
        tampered = bytearray(blob)
        tampered[-1] ^= 1
        with pytest.raises(DecryptionError):
            envelope.open_sealed(key, bytes(tampered))  # type: ignore[arg-type]
    sealed = base64.b64decode(result["object"])
    assert formats.format_of(sealed) == formats.FORMAT_V2
    opened = formats.open_mail_object(key, sealed)  # type: ignore[arg-type]
    assert opened == '{"label": "Grüße, shop X"}'.encode()
    page.context.close()


def test_aliases_in_the_web_client(browser: Any, appliance: Appliance) -> None:
    """A shield alias made on the Addresses page (with a sealed label) receives mail over SMTP, shown "via" it in
    the list and the reader; "Stop mail to this address" makes RCPT answer 550 and Undo 250 again; the filter lists
    its mail; a reply defaults From to it and new mail from it reaches a local user with that From; "Only known
    senders" refuses a stranger; the label survives a new login and the server holds only ciphertext; a chosen
    alias is made; Delete asks, says it is for good, and then the page no longer lists it and RCPT answers 550."""
    carol = new_page(browser, appliance, permissions=["clipboard-read", "clipboard-write"])
    signup(carol, "carol")
    open_addresses(carol)
    wait_until(carol, lambda: carol.locator("#alias-empty").is_visible())

    # A new shield address with a label, shown with a Copy button.
    carol.fill("#alias-label", "bike shop Ω")
    carol.click("#alias-new-shield")
    carol.wait_for_selector("#alias-created:not([hidden])")
    shield = carol.inner_text("#alias-created-address").strip()
    assert SHIELD.match(shield), shield
    carol.click("#alias-copy")
    wait_until(carol, lambda: "Copied" in carol.inner_text("#alias-status"))
    assert carol.evaluate("navigator.clipboard.readText()") == shield
    entry = card(carol, shield)
    assert entry.count() == 1
    assert entry.locator(".alias-label-text").inner_text() == "bike shop Ω"
    assert "0 received" in entry.inner_text() and "shield" in entry.inner_text() and "active" in entry.inner_text()
    [stored] = server_aliases(carol, appliance)
    label = base64.b64decode(stored["label"])
    assert label[0] == 2 and b"bike shop" not in label and "bike shop Ω".encode() not in label
    assert shield.encode() not in base64.b64decode(stored["sealed_address"])

    # Mail to the alias and to carol's own name: only the first is "via" the alias.
    smtp_send(appliance, shield, text_mail("carol", "Your bike is ready", "Come and fetch it."))
    smtp_send(appliance, f"carol@{DOMAIN}", text_mail("carol", "Hello Carol", "Plain mail to your name."))
    carol.click("#folders [data-folder=inbox]")
    check_mail(carol)
    wait_until(carol, lambda: row(carol, "Your bike is ready").count() == 1)
    assert row(carol, "Your bike is ready").locator(".via").inner_text() == f"via {shield}"
    assert f"Via {shield}." in (row(carol, "Your bike is ready").get_attribute("aria-label") or "")
    assert row(carol, "Hello Carol").locator(".via").count() == 0
    open_message(carol, "Hello Carol")
    assert carol.locator("#reader-via").count() == 0
    open_message(carol, "Your bike is ready")
    assert shield in carol.inner_text("#reader-via") and "bike shop Ω" in carol.inner_text("#reader-via")
    folder = screenshots()
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
        carol.screenshot(path=str(folder / "alias-via.png"))

    # Stop mail to this address: refused at RCPT; Undo: accepted again.
    carol.click("#via-stop")
    carol.wait_for_selector("#via-undo")
    assert "refused" in carol.inner_text("#reader-via")
    assert rcpt_code(appliance, shield) == 550
    assert rcpt_code(appliance, f"carol@{DOMAIN}") == 250
    carol.click("#via-undo")
    carol.wait_for_selector("#via-stop")
    assert rcpt_code(appliance, shield) == 250

    # A reply defaults From to the alias; the account's name stays a choice.
    carol.click("#reader button:text-is('Reply')")
    carol.wait_for_selector("#compose[open]")
    assert carol.input_value("#compose-from") == shield
    options = carol.locator("#compose-from option").all_inner_texts()
    assert f"carol@{DOMAIN}" in options and f"{shield} (bike shop Ω)" in options
    carol.click("#discard-button")

    # New mail from the alias to a local user arrives with that From.
    dave = new_page(browser, appliance)
    signup(dave, "dave")
    carol.click("#compose-button")
    carol.wait_for_selector("#compose[open]")
    assert carol.input_value("#compose-from") == f"carol@{DOMAIN}"
    carol.select_option("#compose-from", shield)
    carol.fill("#compose-to", f"dave@{DOMAIN}")
    carol.fill("#compose-subject", "From my shield")
    carol.fill("#compose-text", "Sent from an alias.")
    carol.click("#send-button")
    carol.wait_for_selector("#compose", state="hidden")
    check_mail(dave)
    wait_until(dave, lambda: row(dave, "From my shield").count() == 1)
    open_message(dave, "From my shield")
    from_line = dave.locator("#reader .hdr", has=dave.locator(".hdr-name", has_text="From")).first.inner_text()
    assert shield in from_line and f"carol@{DOMAIN}" not in from_line
    assert dave.locator("#reader-via").count() == 0
    dave.context.close()

    # The received count, and "via this address" lists the alias's mail only.
    open_addresses(carol)
    wait_until(carol, lambda: "1 received" in card(carol, shield).inner_text())
    card(carol, shield).locator("button:text-is('Via this address')").click()
    wait_until(carol, lambda: carol.inner_text("#list-title") == f"Via {shield} (1)")
    assert row(carol, "Your bike is ready").count() == 1 and row(carol, "Hello Carol").count() == 0

    # Only known senders: bob wrote to it before, a stranger is refused.
    open_addresses(carol)
    known = card(carol, shield).locator("button:text-is('Only known senders')")
    known.click()
    wait_until(carol, lambda: known.get_attribute("aria-pressed") == "true")
    assert server_aliases(carol, appliance)[0]["senders"] == "known"
    assert rcpt_code(appliance, shield, sender="stranger@elsewhere.test") == 550
    assert rcpt_code(appliance, shield) == 250
    known.click()
    wait_until(carol, lambda: known.get_attribute("aria-pressed") == "false")
    assert rcpt_code(appliance, shield, sender="stranger@elsewhere.test") == 250

    # Disable and Enable on the page.
    card(carol, shield).locator("button:text-is('Disable')").click()
    wait_until(carol, lambda: "disabled" in (card(carol, shield).get_attribute("class") or ""))
    assert rcpt_code(appliance, shield) == 550
    card(carol, shield).locator("button:text-is('Enable')").click()
    wait_until(carol, lambda: "disabled" not in (card(carol, shield).get_attribute("class") or ""))
    assert rcpt_code(appliance, shield) == 250

    # A new label, kept across a new login; the server holds only ciphertext.
    card(carol, shield).locator("button:text-is('Edit label')").click()
    carol.fill("#alias-rows li.alias input.alias-label-input", "newsletter Y")
    card(carol, shield).locator("button:text-is('Save label')").click()
    wait_until(carol, lambda: card(carol, shield).locator(".alias-label-text").count() == 1)
    label = base64.b64decode(server_aliases(carol, appliance)[0]["label"])
    assert b"newsletter" not in label and label[0] == 2
    carol.reload()
    login(carol, "carol", PASSWORD)
    open_addresses(carol)
    wait_until(carol, lambda: card(carol, shield).count() == 1)
    assert card(carol, shield).locator(".alias-label-text").inner_text() == "newsletter Y"

    # A chosen alias.
    carol.fill("#alias-chosen", "shop-carol")
    carol.click("#alias-new-chosen")
    wait_until(carol, lambda: carol.inner_text("#alias-created-address") == f"shop-carol@{DOMAIN}")
    assert card(carol, f"shop-carol@{DOMAIN}").count() == 1
    assert rcpt_code(appliance, f"shop-carol@{DOMAIN}") == 250
    if folder:
        carol.screenshot(path=str(folder / "aliases.png"))

    # Delete: asked first (Cancel keeps it), then gone for good.
    card(carol, shield).locator("button:text-is('Delete')").click()
    carol.wait_for_selector("#alias-delete-dialog[open]")
    assert "for good" in carol.inner_text("#alias-delete-dialog") and shield in carol.inner_text("#alias-delete-text")
    carol.click("#alias-delete-cancel")
    assert card(carol, shield).count() == 1 and rcpt_code(appliance, shield) == 250
    card(carol, shield).locator("button:text-is('Delete')").click()
    carol.wait_for_selector("#alias-delete-dialog[open]")
    carol.click("#alias-delete-yes")
    wait_until(carol, lambda: card(carol, shield).count() == 0)
    assert rcpt_code(appliance, shield) == 550
    assert [a["kind"] for a in server_aliases(carol, appliance)] == ["chosen"]
    carol.reload()
    login(carol, "carol", PASSWORD)
    open_addresses(carol)
    wait_until(carol, lambda: card(carol, f"shop-carol@{DOMAIN}").count() == 1)
    assert card(carol, shield).count() == 0
    carol.context.close()
