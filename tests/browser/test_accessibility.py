"""Accessibility of the web client (docs/accessibility.md) in Debian's Chromium against a real twistd.

axe-core (vendored from npm in tests/support/vendor/axe-core, test tooling only) runs with the WCAG 2.0 and 2.1 A
and AA rules and axe's best practices on every view the client has: log-in and sign-up, the inbox with mail
delivered over SMTP, the reader (text, HTML with remote content blocked, attachments, Spam, Trash, the screener's
question, a group's message), the composer (new and reply), search results, Spam, Trash, Screener, Sent, a group's
mailbox, the account menu, the Keys and Addresses pages and every dialog (password, move, shortcuts, spam
training, alias deletion, blocking a sender), on a desktop window and on a phone. No view may have a violation of
impact serious or critical; the minor and moderate ones are counted and printed (``-s``).

axe goes in with ``add_init_script`` (a DevTools script, which the page's CSP does not govern): the test's browser
context keeps the appliance's CSP, and a test checks that it is still in force.

A second test uses the client with the keyboard only: sign-up, the skip link, the list (arrows, Home, Enter), the
reader and its toolbar, reply and compose (Esc closes the dialog and the focus comes back), send, Trash, back to the
list, the folders, the account menu, the password dialog, the shortcuts, the Keys and Addresses pages and log out;
every focused control shows a focus ring.

Set ``MV_A11Y_REPORT=FILE`` to write the counts per view as JSON (docs/accessibility.md's table). One module past
500 lines: both tests share the appliance, the axe harness and the helpers that drive the page by keyboard."""

from __future__ import annotations

import json
import os
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.support.axe import AXE, RUN_AXE, TAGS, Audit
from tests.support.browser import (
    PASSWORD,
    base_url,
    check_mail,
    login,
    row,
    signup,
    smtp_send,
    text_mail,
    wait_synced,
    wait_until,
)
from tests.support.e2e import Device
from tests.support.harness import DOMAIN, Appliance
from tests.support.smtp import SmtpSession

pytestmark = pytest.mark.integration

SALES = f"sales@{DOMAIN}"


def axe_page(browser: Any, app: Appliance, **options: Any) -> Any:
    """A fresh context whose pages carry axe-core, on the appliance's login screen."""
    context = browser.new_context(ignore_https_errors=True, **options)
    context.add_init_script(path=str(AXE))
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(base_url(app) + "/")
    page.wait_for_selector("#auth:not([hidden])")
    return page


def open_message(page: Any, subject: str) -> None:
    row(page, subject).first.click()
    wait_until(
        page, lambda: page.locator("#reader-subject").count() == 1 and page.inner_text("#reader-subject") == subject
    )


def show_folder(page: Any, folder: str) -> None:
    page.click(f"#folders [data-folder={folder}]")
    wait_until(page, lambda: page.get_attribute(f"#folders [data-folder={folder}]", "aria-current") == "page")


def wait_status(page: Any, text: str) -> None:
    wait_until(page, lambda: text in page.inner_text("#app-status"), 30.0)


def html_mail(to: str, subject: str) -> EmailMessage:
    """An HTML newsletter with a remote image (blocked by the reader) and a plain alternative."""
    msg = text_mail(to, subject, "The plain alternative.", sender="News <news@remote.test>")
    msg.add_alternative(
        '<h1>This week</h1><p>Three things happened.</p><img src="https://tracker.remote.test/p.gif" alt="">',
        subtype="html",
    )
    return msg


def attachment_mail(to: str, subject: str) -> EmailMessage:
    msg = text_mail(to, subject, "The notes are attached.", sender="Carol <carol@remote.test>")
    msg.add_attachment(b"first line\nsecond line\n", maintype="text", subtype="plain", filename="notes.txt")
    return msg


def deliver_to_group(app: Appliance, subject: str) -> None:
    message = (
        f"From: Carol <carol@remote.test>\r\nTo: {SALES}\r\nSubject: {subject}\r\n"
        f"Date: Sat, 21 Nov 2026 10:00:00 +0000\r\nMessage-ID: <a11y-{uuid.uuid4()}@remote.test>\r\n\r\n"
        "The quote for the team.\r\n"
    ).encode()
    session = SmtpSession(app.smtp_port, timeout=60)
    try:
        session.hello()
        session.envelope([SALES], sender="carol@remote.test")
        code, reply = session.send_data(message)
        assert code == 250, reply
    finally:
        session.close()


def keys_checked(page: Any) -> int:
    return int(page.locator("body").get_attribute("data-keys-checked") or 0)


def test_axe_runs_under_the_appliance_csp(browser: Any, appliance: Appliance) -> None:
    """axe-core is present in the test's pages while the appliance's CSP still refuses inline scripts there."""
    page = axe_page(browser, appliance)
    response = page.request.get(base_url(appliance) + "/")
    assert "script-src 'self' 'wasm-unsafe-eval'" in response.headers["content-security-policy"]
    assert page.evaluate("typeof axe.run") == "function"
    with pytest.raises(Exception):  # noqa: B017,PT011 (Playwright names no type for a refused script)
        page.add_script_tag(content="window.inlineRan = true;")
    assert page.evaluate("window.inlineRan === undefined")
    # The harness sees a fault when there is one: an image without a text alternative is critical.
    page.evaluate("document.getElementById('auth').append(Object.assign(new Image(8, 8), {src: 'data:,'}))")
    found = {v["id"]: v["impact"] for v in page.evaluate(RUN_AXE, TAGS)}
    assert found.get("image-alt") == "critical", found
    page.context.close()


def test_every_view_has_no_serious_or_critical_violation(browser: Any, appliance: Appliance, tmp_path: Path) -> None:
    """axe-core (WCAG 2.0/2.1 A and AA, best practices) finds nothing serious or critical on any view or dialog."""
    audit = Audit()
    page = axe_page(browser, appliance, viewport={"width": 1280, "height": 800})
    audit.check(page, "log in")
    page.click("#tab-signup")
    page.wait_for_selector("#signup-form:not([hidden])")
    audit.check(page, "sign up")
    page.click("#tab-login")
    signup(page, "ann")
    ann = f"ann@{DOMAIN}"

    # The inbox with mail in it: text, HTML with a remote image, an attachment.
    for i in range(3):
        smtp_send(appliance, ann, text_mail("ann", f"Hello number {i}", f"How are you? This is message {i}."))
    smtp_send(appliance, ann, html_mail("ann", "This week in news"))
    smtp_send(appliance, ann, attachment_mail("ann", "Meeting notes"))
    check_mail(page)
    wait_until(page, lambda: page.locator("#list .row").count() == 5)
    audit.check(page, "inbox")

    open_message(page, "Hello number 1")
    audit.check(page, "reader (text)")
    open_message(page, "This week in news")
    page.wait_for_selector("#allow-remote")
    audit.check(page, "reader (HTML, remote content blocked)")
    open_message(page, "Meeting notes")
    audit.check(page, "reader (attachment)")

    # The composer: new, then a reply to ann herself (end to end once her key is published: the lock line says so).
    wait_until(page, lambda: keys_checked(page) >= 1, 120.0)
    page.click("#compose-button")
    page.wait_for_selector("#compose[open]")
    audit.check(page, "composer (new)")
    page.click("#discard-button")
    open_message(page, "Hello number 0")
    page.click("#reader button:text-is('Reply')")
    page.wait_for_selector("#compose[open]")
    page.fill("#compose-to", ann)
    page.dispatch_event("#compose-to", "change")
    wait_until(page, lambda: page.get_attribute("#compose-lock", "data-way") in ("e2e", "plain"), 60.0)
    audit.check(page, "composer (reply)")
    before = int(page.locator("body").get_attribute("data-synced") or 0)
    page.click("#send-button")
    wait_until(page, lambda: page.locator("#compose").is_hidden() or "Send again" in page.inner_text("#compose-status"))
    if page.locator("#compose").is_visible():  # ordinary mail: the composer asks once more
        page.click("#send-button")
    page.wait_for_selector("#compose", state="hidden", timeout=60_000)
    wait_synced(page, before + 1)

    # Spam: the training question, the folder and its message.
    show_folder(page, "inbox")
    open_message(page, "Hello number 2")
    page.click("#spam-button")
    page.wait_for_selector("#learn-dialog[open]")
    audit.check(page, "dialog: this is spam")
    page.click("#learn-no")
    wait_status(page, "Moved to Spam.")
    show_folder(page, "spam")
    wait_until(page, lambda: row(page, "Hello number 2").count() == 1)
    audit.check(page, "spam")
    open_message(page, "Hello number 2")
    audit.check(page, "reader (in Spam)")

    # Trash.
    show_folder(page, "inbox")
    open_message(page, "Hello number 1")
    page.click("#reader button:text-is('Delete')")
    wait_status(page, "Moved to Trash.")
    show_folder(page, "trash")
    wait_until(page, lambda: row(page, "Hello number 1").count() == 1)
    audit.check(page, "trash")
    open_message(page, "Hello number 1")
    audit.check(page, "reader (in Trash)")

    # Search, with and without results (the Spam and Trash messages among them, tagged).
    page.fill("#search", "number")
    wait_until(page, lambda: page.inner_text("#list-title").startswith("Search: number"))
    audit.check(page, "search results")
    page.fill("#search", "no-such-word-anywhere")
    wait_until(page, lambda: page.locator("#empty").is_visible())
    audit.check(page, "search (nothing found)")
    page.fill("#search", "")

    show_folder(page, "sent")
    wait_until(page, lambda: page.locator("#list .row").count() >= 1)
    audit.check(page, "sent")
    open_message(page, "Re: Hello number 0")
    audit.check(page, "reader (sent)")

    # The account menu and its dialogs, and the shortcuts.
    page.click("#account-button")
    page.wait_for_selector("#account-menu:not([hidden])")
    audit.check(page, "account menu")
    page.click("#password-button")
    page.wait_for_selector("#password-dialog[open]")
    audit.check(page, "dialog: change password")
    page.click("#password-cancel")
    page.click("#account-button")
    page.click("#passkeys-button")
    page.wait_for_selector("#passkeys-dialog[open]")
    audit.check(page, "dialog: passkeys")
    page.keyboard.press("Escape")
    page.wait_for_selector("#passkeys-dialog", state="hidden")
    page.click("#account-button")
    page.click("#move-button")
    page.wait_for_selector("#move-dialog[open]")
    audit.check(page, "dialog: move to another appliance")
    page.click("#move-cancel")
    page.click("#account-button")
    page.click("#help-button")
    page.wait_for_selector("#help[open]")
    audit.check(page, "dialog: keyboard shortcuts")
    page.keyboard.press("Escape")
    page.wait_for_selector("#help", state="hidden")

    # Keys (the login-time watch has published and checked ann's key).
    page.click("#keys-link")
    page.wait_for_selector("#keys-page:not([hidden])")
    audit.check(page, "keys")

    # Addresses: a shield alias, its label being edited, the deletion question; the screener's setting.
    page.click("#addresses-link")
    page.wait_for_selector("#addresses-page:not([hidden])")
    wait_until(page, lambda: page.inner_text("#screener-counts") != "")
    page.click("#alias-new-shield")
    page.wait_for_selector("#alias-created:not([hidden])")
    wait_until(page, lambda: page.locator("#alias-rows li").count() == 1)
    audit.check(page, "addresses (with an alias)")
    page.click("#alias-rows button:text-is('Edit label')")
    page.wait_for_selector("#alias-rows .alias-label-input")
    audit.check(page, "addresses (editing a label)")
    page.keyboard.press("Escape")
    page.click("#alias-rows button:text-is('Delete')")
    page.wait_for_selector("#alias-delete-dialog[open]")
    audit.check(page, "dialog: delete an alias")
    page.click("#alias-delete-cancel")

    # The screener: on, a new sender's message waits in it; its question and the block dialog.
    page.check("#screener-enabled")
    wait_until(page, lambda: page.inner_text("#screener-status").startswith("On:"))
    smtp_send(appliance, ann, text_mail("ann", "First contact", "Hello, we have not met.", sender="Sam <sam@new.test>"))
    check_mail(page)
    show_folder(page, "screener")
    wait_until(page, lambda: row(page, "First contact").count() == 1)
    audit.check(page, "screener")
    open_message(page, "First contact")
    page.wait_for_selector("#screener-banner")
    audit.check(page, "reader (screener's question)")
    page.click("#screener-block")
    page.wait_for_selector("#screener-block-dialog[open]")
    audit.check(page, "dialog: block a sender")
    page.click("#screener-block-cancel")

    # A group's mailbox: gail makes sales@ with the real mailiverse-client and adds ann.
    device = Device(tmp_path / "device", appliance)
    device.home.mkdir()
    for command in (("signup",), ("group", "new", SALES), ("group", "add", SALES, ann)):
        done = device.cli("gail", *command, password=PASSWORD)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    deliver_to_group(appliance, "Quote for the team")
    check_mail(page)
    wait_until(page, lambda: page.locator("#group-links [data-group=sales]").count() == 1)
    before = int(page.locator("body").get_attribute("data-group-synced") or 0)
    page.click("#group-links [data-group=sales]")
    wait_until(page, lambda: int(page.locator("body").get_attribute("data-group-synced") or 0) > before, 120.0)
    wait_until(page, lambda: row(page, "Quote for the team").count() == 1)
    audit.check(page, "group mailbox")
    open_message(page, "Quote for the team")
    audit.check(page, "reader (group)")

    # On a phone: the inbox, the folders menu, the reader in the list's place.
    phone = axe_page(browser, appliance, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    login(phone, "ann")
    wait_until(phone, lambda: phone.locator("#list .row").count() >= 3)
    audit.check(phone, "inbox (phone)")
    phone.click("#menu-button")
    phone.wait_for_selector("#folders:visible")
    audit.check(phone, "folders menu (phone)")
    phone.click("#menu-button")
    open_message(phone, "Meeting notes")
    audit.check(phone, "reader (phone)")
    phone.context.close()
    page.context.close()

    print("\n" + audit.table())
    report = os.environ.get("MV_A11Y_REPORT")
    if report:
        Path(report).write_text(json.dumps({v: dict(c) for v, c in audit.counts.items()}, indent=1) + "\n")
    assert not audit.blocking, "\n".join(audit.blocking)
    assert len(audit.counts) >= 30


# Where the focus is, and whether it shows: its element, text and focus ring.
FOCUSED = """() => {
  const e = document.activeElement;
  const style = getComputedStyle(e);
  return { id: e.id, tag: e.tagName, text: (e.textContent || '').trim().slice(0, 80),
    ring: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2 };
}"""


def focused(page: Any) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(FOCUSED)
    return result


def is_focused(page: Any, test: str) -> bool:
    """Whether the focused element passes ``test``, a JS function of the element."""
    return bool(page.evaluate(f"() => ({test})(document.activeElement)"))


def tab_to(page: Any, test: str, back: bool = False, limit: int = 60) -> dict[str, Any]:
    """Press Tab (Shift+Tab) until the focused element passes ``test``; it must show a focus ring."""
    for _ in range(limit):
        page.keyboard.press("Shift+Tab" if back else "Tab")
        if is_focused(page, test):
            now = focused(page)
            assert now["ring"], f"no visible focus ring on {now}"
            return now
    raise AssertionError(f"Tab never reached {test}; the focus is on {focused(page)}")


def by_id(element_id: str) -> str:
    return f"e => e.id === {json.dumps(element_id)}"


def reader_button(text: str) -> str:
    return f"e => e.tagName === 'BUTTON' && !!e.closest('#reader') && e.textContent === {json.dumps(text)}"


def press(page: Any, *keys: str) -> None:
    for key in keys:
        page.keyboard.press(key)


def test_keyboard_only(browser: Any, appliance: Appliance) -> None:
    """Sign-up, reading, replying, composing and sending, Trash, the folders, the menu, the dialogs, the Keys and
    Addresses pages and log out all work from the keyboard alone; the focus moves into what opens and comes back
    when it closes, and every control Tab reaches shows a focus ring."""
    page = axe_page(browser, appliance, viewport={"width": 1280, "height": 800})
    kim = f"kim@{DOMAIN}"

    # Sign up: the tabs take one Tab stop and the arrow keys.
    assert tab_to(page, by_id("tab-login"))["text"] == "Log in"
    page.keyboard.press("ArrowRight")
    assert is_focused(page, by_id("tab-signup")) and page.get_attribute("#tab-signup", "aria-selected") == "true"
    assert page.locator("#signup-form").is_visible() and page.locator("#login-form").is_hidden()
    tab_to(page, by_id("signup-user"))
    page.keyboard.type("kim")
    for field in ("signup-password", "signup-password2"):
        tab_to(page, by_id(field))
        page.keyboard.type(PASSWORD)
    tab_to(page, "e => e.type === 'submit' && !!e.closest('#signup-form')")
    page.keyboard.press("Enter")
    page.wait_for_selector("#app:not([hidden])", timeout=180_000)
    wait_synced(page, 1)
    assert is_focused(page, by_id("list"))  # the mailbox starts on the list

    for i in range(3):
        smtp_send(appliance, kim, text_mail("kim", f"Keyboard {i}", f"Message {i} for the keyboard."))
    tab_to(page, by_id("refresh-button"), back=True)
    before = int(page.locator("body").get_attribute("data-synced") or 0)
    page.keyboard.press("Enter")
    wait_synced(page, before + 1)
    wait_until(page, lambda: page.locator("#list .row").count() == 3)

    # The skip link, the first stop of the page, leads to the list.
    tab_to(page, by_id("skip-link"), back=True)
    assert page.locator("#skip-link").bounding_box()["y"] >= 0  # shown while focused
    page.keyboard.press("Enter")
    assert is_focused(page, by_id("list"))

    # The list: arrows browse (the focus stays), Home and End jump, Enter opens into the reader.
    subjects = [page.locator(f"#row-{i} .subject").inner_text() for i in range(3)]
    page.keyboard.press("ArrowDown")
    wait_until(page, lambda: page.get_attribute("#list", "aria-activedescendant") == "row-0")
    page.keyboard.press("ArrowDown")
    wait_until(page, lambda: page.get_attribute("#list", "aria-activedescendant") == "row-1")
    assert page.get_attribute("#row-1", "aria-selected") == "true" and is_focused(page, by_id("list"))
    page.keyboard.press("End")
    wait_until(page, lambda: page.get_attribute("#list", "aria-activedescendant") == "row-2")
    page.keyboard.press("Home")
    wait_until(page, lambda: page.get_attribute("#list", "aria-activedescendant") == "row-0")
    page.keyboard.press("Enter")
    wait_until(page, lambda: is_focused(page, by_id("reader")))
    wait_until(page, lambda: page.inner_text("#reader-subject") == subjects[0])

    # Reply from the reader's toolbar (Tab, then the arrows); Esc closes the composer, the focus comes back.
    assert tab_to(page, reader_button("Reply"))["text"] == "Reply"
    page.keyboard.press("ArrowRight")
    assert is_focused(page, reader_button("Reply all"))
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("Enter")
    page.wait_for_selector("#compose[open]")
    assert is_focused(page, by_id("compose-text"))
    assert page.input_value("#compose-subject") == f"Re: {subjects[0]}"
    page.keyboard.press("Escape")
    page.wait_for_selector("#compose", state="hidden")
    assert is_focused(page, reader_button("Reply"))

    # Compose (c) and send, to kim herself, end to end once her key is published.
    wait_until(page, lambda: keys_checked(page) >= 1, 120.0)
    page.keyboard.press("c")
    page.wait_for_selector("#compose[open]")
    assert is_focused(page, by_id("compose-to"))
    page.keyboard.type(kim)
    tab_to(page, by_id("compose-subject"))
    page.keyboard.type("Typed with the keyboard")
    tab_to(page, by_id("compose-text"))
    page.keyboard.type("No mouse was used.")
    tab_to(page, by_id("send-button"))
    page.keyboard.press("Enter")
    wait_until(page, lambda: page.locator("#compose").is_hidden() or "Send again" in page.inner_text("#compose-status"))
    if page.locator("#compose").is_visible():  # ordinary mail: asked once more, the focus still on Send
        assert is_focused(page, by_id("send-button"))
        page.keyboard.press("Enter")
    page.wait_for_selector("#compose", state="hidden", timeout=60_000)
    wait_status(page, "Sent to 1 recipient(s).")
    assert is_focused(page, reader_button("Reply"))

    # Move to Trash with the toolbar's Delete: the message leaves the list, the focus goes back to the list.
    tab_to(page, reader_button("Delete"))
    page.keyboard.press("Enter")
    wait_status(page, "Moved to Trash.")
    assert is_focused(page, by_id("list")) and page.locator("#reader").is_hidden()
    wait_until(page, lambda: row(page, subjects[0]).count() == 0)

    # Open with Enter, back to the list with Esc.
    page.keyboard.press("Enter")
    wait_until(page, lambda: is_focused(page, by_id("reader")))
    page.keyboard.press("Escape")
    assert page.locator("#reader").is_hidden() and is_focused(page, by_id("list"))

    # Folders: Trash by Tab and Enter, Sent by "g s", back to the inbox by "g i".
    tab_to(page, "e => e.dataset.folder === 'trash'", back=True)
    page.keyboard.press("Enter")
    wait_until(page, lambda: page.inner_text("#list-title") == "Trash" and row(page, subjects[0]).count() == 1)
    press(page, "g", "s")
    wait_until(page, lambda: page.inner_text("#list-title") == "Sent")
    wait_until(page, lambda: row(page, "Typed with the keyboard").count() == 1)
    press(page, "g", "i")
    wait_until(page, lambda: page.inner_text("#list-title") == "Inbox")

    # The account menu: Enter opens it, Tab and the arrows go through it, Esc closes it onto its button.
    tab_to(page, by_id("account-button"), back=True)
    page.keyboard.press("Enter")
    assert (
        page.locator("#account-menu").is_visible() and page.get_attribute("#account-button", "aria-expanded") == "true"
    )
    tab_to(page, by_id("password-button"))
    page.keyboard.press("ArrowDown")
    assert is_focused(page, "e => !!e.closest('#account-menu') && e.id !== 'password-button'")
    page.keyboard.press("Escape")
    assert page.locator("#account-menu").is_hidden() and is_focused(page, by_id("account-button"))
    assert page.get_attribute("#account-button", "aria-expanded") == "false"

    # Settings: the password dialog takes the focus; Esc closes it and the focus is back on the account button.
    page.keyboard.press("Enter")
    tab_to(page, by_id("password-button"))
    page.keyboard.press("Enter")
    page.wait_for_selector("#password-dialog[open]")
    assert is_focused(page, by_id("old-password"))
    page.keyboard.press("Escape")
    page.wait_for_selector("#password-dialog", state="hidden")
    wait_until(page, lambda: is_focused(page, by_id("account-button")), 5.0)  # focus returns on the close event
    assert is_focused(page, by_id("account-button")) and page.locator("#account-menu").is_hidden()

    # The shortcuts (?) in a dialog; Esc gives the focus back.
    page.keyboard.press("?")
    page.wait_for_selector("#help[open]")
    assert is_focused(page, "e => !!e.closest('#help')")
    page.keyboard.press("Escape")
    page.wait_for_selector("#help", state="hidden")
    assert is_focused(page, by_id("account-button"))

    # Keys and Addresses: the link moves the focus to the page's heading; a shield alias made by keyboard.
    tab_to(page, by_id("keys-link"))
    page.keyboard.press("Enter")
    assert is_focused(page, by_id("keys-title")) and page.locator("#keys-page").is_visible()
    tab_to(page, by_id("addresses-link"), back=True)
    page.keyboard.press("Enter")
    assert is_focused(page, by_id("addresses-title"))
    tab_to(page, by_id("alias-new-shield"))
    page.keyboard.press("Enter")
    page.wait_for_selector("#alias-created:not([hidden])")
    wait_until(page, lambda: is_focused(page, by_id("alias-copy")))

    # Log out from the account menu.
    tab_to(page, by_id("account-button"), back=True)
    page.keyboard.press("Enter")
    tab_to(page, by_id("logout-button"))
    page.keyboard.press("Enter")
    page.wait_for_selector("#auth:not([hidden])", timeout=60_000)
    assert page.locator("#app").is_hidden()
    page.context.close()
