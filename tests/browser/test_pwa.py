"""The installable client in Debian's Chromium: the manifest and icons, Chromium's own installability check, the
offline start to the login screen, a cache that holds the client's files and nothing else (no mail, no /api/),
and a new release replacing the old cache.

The appliance here serves a copy of the client that the tests change as a release would: it runs with a
``mailiverse`` package whose modules are the checkout's (symlinked) and whose ``webclient/`` is that copy, the
packaged client being the one the server prefers (``mailiverse.web.assets.webclient_dir``).

Set ``MV_SCREENSHOTS=docs/screenshots`` to refresh docs/screenshots/pwa-offline-login.png.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from mailiverse.web.assets import CHECKOUT_WEBCLIENT
from tests.support.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    base_url,
    check_mail,
    login,
    require_chromium,
    row,
    signup,
    smtp_send,
    text_mail,
    wait_until,
)
from tests.support.harness import DOMAIN, Appliance

pytestmark = pytest.mark.integration

CHECKOUT_PACKAGE = CHECKOUT_WEBCLIENT.parent / "mailiverse"
PRELUDE = "self.MAILIVERSE_SHELL = "

# Every cache's name and the URLs it holds.
CACHED = """async () => {
  const out = {};
  for (const name of await caches.keys()) {
    const cache = await caches.open(name);
    out[name] = (await cache.keys()).map((request) => request.url);
  }
  return out;
}"""


@dataclass
class Served:
    """The running appliance and the copy of the client it serves."""

    app: Appliance
    client: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """An appliance with open sign-up serving a copy of the client (see the module's docstring)."""
    require_chromium()
    root = tmp_path_factory.mktemp("pwa")
    package = root / "path" / "mailiverse"
    package.mkdir(parents=True)
    for entry in CHECKOUT_PACKAGE.iterdir():
        if entry.name not in {"__pycache__", "webclient"}:
            (package / entry.name).symlink_to(entry)
    client = package / "webclient"
    shutil.copytree(CHECKOUT_WEBCLIENT, client, ignore=shutil.ignore_patterns(".*", "*~"))
    app = Appliance(root / "appliance", extra_args=["--open-signup"])
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(package.parent)  # ahead of the checkout (the editable install's .pth)
    try:
        app.start()
    finally:
        if previous is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = previous
    try:
        yield Served(app, client)
    finally:
        app.stop()


@pytest.fixture(scope="module")
def chromium(playwright: Any) -> Any:
    """Playwright's Chromium type (of the test process's one Playwright), to launch Debian's Chromium with a
    profile of its own per test."""
    return playwright.chromium


@pytest.fixture
def profile(chromium: Any, tmp_path: Path) -> Iterator[Any]:
    """Opens Chromium with a fresh profile on disk, as a person's browser has, not an incognito context (in
    which Chromium installs no app: its installability check answers "in-incognito"); closed after the test.

    It accepts the appliance's self-signed certificate at launch: Chromium refuses a service worker on an origin
    with a certificate error ("An SSL certificate error occurred when fetching the script"), even in a context
    that ignores HTTPS errors as the other browser tests' contexts do."""
    opened: list[Any] = []

    def launch(**options: Any) -> Any:
        context = chromium.launch_persistent_context(
            str(tmp_path / f"profile{len(opened)}"),
            executable_path=str(CHROMIUM),
            args=[*CHROMIUM_ARGS, "--ignore-certificate-errors"],
            ignore_https_errors=True,
            **options,
        )
        opened.append(context)
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(30_000)
        return page

    yield launch
    for context in opened:
        context.close()


def _release(page: Any) -> dict[str, Any]:
    """The release the server has now, as its service worker names it (the first line of /sw.js)."""
    reply = page.request.get(page.url.split("#")[0].rstrip("/") + "/sw.js")
    assert reply.status == 200
    first = reply.text().split("\n", 1)[0]
    assert first.startswith(PRELUDE)
    result: dict[str, Any] = json.loads(first[len(PRELUDE) : -1])
    return result


def _cached(page: Any) -> dict[str, list[str]]:
    result: dict[str, list[str]] = page.evaluate(CACHED)
    return result


def _kept(page: Any, release: dict[str, Any]) -> bool:
    """Whether the page is controlled by the worker of ``release`` and its cache is the only one, complete
    (false while the page reloads itself into a new release)."""
    from playwright.sync_api import Error as PlaywrightError

    try:
        cached = _cached(page)
        controlled = page.evaluate("Boolean(navigator.serviceWorker.controller)")
    except PlaywrightError as e:
        if "context was destroyed" in str(e):
            return False
        raise
    name = "mailiverse-shell-" + release["version"]
    return controlled and list(cached) == [name] and len(cached[name]) == len(release["files"])


def _visit(profile: Any, served: Served, **options: Any) -> Any:
    """A fresh profile's page on the client, once its first worker has kept the whole release."""
    page = profile(**options)
    page.goto(base_url(served.app) + "/")
    page.wait_for_selector("#auth:not([hidden])")
    release = _release(page)
    wait_until(page, lambda: _kept(page, release), 60.0)
    return page


def _png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_manifest_and_icons(profile: Any, served: Served) -> None:
    """The page links a manifest that parses with the members an installer needs, a theme colour that is the
    client's accent, and icons of 192 and 512 pixels (one maskable) and an apple-touch-icon that load as PNG."""
    page = profile()
    base = base_url(served.app)
    page.goto(base + "/")
    href = page.locator("link[rel=manifest]").get_attribute("href")
    reply = page.request.get(base + href)
    assert reply.status == 200 and reply.headers["content-type"] == "application/manifest+json"
    manifest = reply.json()
    assert manifest["name"] and manifest["short_name"]
    assert (manifest["start_url"], manifest["scope"], manifest["display"]) == ("/", "/", "standalone")
    accent = re.search(r"--accent:\s*(#[0-9a-f]{6})", (served.client / "style.css").read_text()).group(1)
    assert manifest["theme_color"] == accent
    assert page.locator("meta[name=theme-color]").get_attribute("content") == accent
    assert manifest["background_color"] == "#ffffff"
    sizes = set()
    for icon in manifest["icons"]:
        image = page.request.get(base + icon["src"])
        assert image.status == 200 and image.headers["content-type"] == "image/png", icon["src"]
        width, height = _png_size(image.body())
        assert f"{width}x{height}" == icon["sizes"] and icon["type"] == "image/png"
        sizes.add((width, icon["purpose"]))
    assert {(192, "any"), (512, "any"), (512, "maskable")} <= sizes
    touch = page.locator("link[rel=apple-touch-icon]").get_attribute("href")
    image = page.request.get(base + touch)
    assert image.headers["content-type"] == "image/png" and _png_size(image.body()) == (180, 180)


def test_chromium_finds_it_installable(profile: Any, served: Served) -> None:
    """Chromium's own check (CDP Page.getInstallabilityErrors) finds nothing against installing the client, and
    its manifest parser reports no error."""
    page = _visit(profile, served)
    cdp = page.context.new_cdp_session(page)
    manifest = cdp.send("Page.getAppManifest")
    assert manifest["url"].endswith("/manifest.webmanifest") and manifest["errors"] == []
    assert cdp.send("Page.getInstallabilityErrors") == {"installabilityErrors": []}


def test_offline_start_shows_the_login_screen(profile: Any, served: Served, tmp_path: Path) -> None:
    """After one visit online, the client opens without a network: the login screen, from the worker's cache,
    under the same CSP; the API stays unreachable (nothing of it was kept)."""
    folder = Path(os.environ.get("MV_SCREENSHOTS") or tmp_path)
    page = _visit(profile, served, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page.context.set_offline(True)
    response = page.reload()
    assert response.from_service_worker
    csp = response.headers["content-security-policy"]
    assert "script-src 'self' 'wasm-unsafe-eval';" in csp and "worker-src 'self'" in csp
    page.wait_for_selector("#auth:not([hidden])")
    assert page.locator("#login-form").is_visible()
    assert page.get_by_role("button", name="Log in").is_visible()
    assert page.locator("#auth-status").inner_text() == "This device is offline. Log in once it is back online."
    # Sign-up needs the server: its tab hides when /api/signup cannot be asked.
    wait_until(page, lambda: page.locator("#tab-signup").is_hidden(), 10.0)
    refused = page.evaluate("fetch('/api/health').then(() => 'answered', () => 'refused')")
    assert refused == "refused"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / "pwa-offline-login.png"))
    assert (folder / "pwa-offline-login.png").stat().st_size > 5000
    page.context.set_offline(False)  # back online: the notice goes
    wait_until(page, lambda: page.locator("#auth-status").inner_text() == "", 10.0)


def test_cache_holds_the_client_and_never_mail_or_api(profile: Any, served: Served) -> None:
    """After signing up, receiving mail and reading it, Cache Storage holds exactly the release's files: no
    /api/ answer, no message, nothing fetched while the client ran."""
    page = _visit(profile, served)
    page.click("#tab-signup")
    signup(page, "pia")
    smtp_send(served.app, f"pia@{DOMAIN}", text_mail("pia", "Cached nowhere", "This message stays encrypted."))
    check_mail(page)
    row(page, "Cached nowhere").click()
    page.wait_for_selector("#reader pre.text")
    assert "This message stays encrypted." in page.locator("#reader pre.text").inner_text()
    release = _release(page)
    cached = _cached(page)
    assert list(cached) == ["mailiverse-shell-" + release["version"]]
    urls = [url for kept in cached.values() for url in kept]
    paths = sorted(urlsplit(url).path for url in urls)
    assert paths == sorted(release["files"])
    assert not [url for url in urls if "/api/" in url or urlsplit(url).query]
    assert "/index.html" in paths and "/js/main.js" in paths and "/js/pwa.js" in paths


def _publish(client: Path, marker: str) -> None:
    """A new release of the client: a changed style sheet and a new module."""
    style = client / "style.css"
    style.write_text(style.read_text() + f"/* {marker} */\n")
    (client / "js" / f"{marker}.js").write_text(f"export const RELEASE = '{marker}';\n")


def _cached_style(page: Any, release: dict[str, Any]) -> str:
    """The style sheet as the cache of ``release`` holds it."""
    name = "mailiverse-shell-" + release["version"]
    text: str = page.evaluate(
        "(name) => caches.open(name).then((cache) => cache.match('/style.css')).then((response) => response.text())",
        name,
    )
    return text


def test_a_new_release_replaces_the_old_cache(profile: Any, served: Served) -> None:
    """A new release on the server reaches the client: on an untouched login screen the page reloads into it at
    once; while signed in it waits for the user (a notice, no reload), then takes it in. Each time the older
    release's cache is deleted, and the new one holds the new files."""
    page = _visit(profile, served)
    first = _release(page)
    _publish(served.client, "release-2")
    second = _release(page)
    assert second["version"] != first["version"] and "/js/release-2.js" in second["files"]
    loads: list[str] = []
    page.on("load", lambda _page: loads.append("load"))
    page.reload()  # a navigation: the browser checks /sw.js and finds the new release
    # The page reloads itself once the new worker has the release: two loads, this test's and its own.
    wait_until(page, lambda: len(loads) >= 2 and _kept(page, second), 60.0)
    assert "release-2" in _cached_style(page, second)
    page.wait_for_selector("#auth:not([hidden])")
    assert "release-2" in page.evaluate("fetch('/style.css').then((response) => response.text())")
    assert page.locator("#update-ready").count() == 0

    page.click("#tab-signup")
    signup(page, "quinn")
    _publish(served.client, "release-3")
    third = _release(page)
    page.evaluate("navigator.serviceWorker.getRegistration().then((registration) => registration.update())")
    notice = page.locator("#update-ready")
    notice.wait_for()
    assert "reloading logs you out" in notice.inner_text()
    assert page.locator("#app").is_visible()  # still signed in: nothing reloaded behind the user's back
    # Both releases are kept while the new worker waits; the page still runs on the older one.
    wait_until(page, lambda: len(_cached(page)) == 2, 30.0)
    assert set(_cached(page)) == {"mailiverse-shell-" + second["version"], "mailiverse-shell-" + third["version"]}
    assert "release-3" in _cached_style(page, third) and "release-3" not in _cached_style(page, second)
    notice.get_by_role("button", name="Reload").click()
    page.wait_for_selector("#auth:not([hidden])")
    wait_until(page, lambda: _kept(page, third), 60.0)
    login(page, "quinn")
