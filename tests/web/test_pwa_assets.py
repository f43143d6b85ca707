"""What makes the client installable, as the server serves it: the web app manifest's type, the service worker
with the list and version of the client's files (``mailiverse.web.assets``), its headers, and the CSP."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest_twisted

from mailiverse.web.assets import shell, webclient_dir
from tests.support.webapi import Api

PRELUDE = b"self.MAILIVERSE_SHELL = "


def _client(tmp_path: Path) -> Path:
    """A copy of the real client to change."""
    client = tmp_path / "client"
    shutil.copytree(webclient_dir(), client)
    return client


def _prelude(source: bytes) -> dict[str, object]:
    """The release the served worker is to keep: its first line."""
    first, _rest = source.split(b"\n", 1)
    assert first.startswith(PRELUDE) and first.endswith(b";")
    result: dict[str, object] = json.loads(first[len(PRELUDE) : -1])
    return result


def test_shell_lists_the_client_but_not_the_worker_or_documents(tmp_path: Path) -> None:
    """The shell is every file the client loads: the page, style, modules, vendored code, manifest and icons;
    not the worker itself, the vendored code's README and LICENSE, nor hidden files."""
    client = _client(tmp_path)
    (client / ".editor-backup").write_text("x")
    files = set(shell(client).files)
    expected = {"/index.html", "/style.css", "/manifest.webmanifest", "/js/main.js", "/js/pwa.js"}
    expected |= {"/js/ui/dom.js", "/vendor/hash-wasm/argon2.umd.min.js", "/icons/icon-512.png"}
    assert expected <= files
    every_module = {"/" + p.relative_to(client).as_posix() for p in (client / "js").rglob("*.js")}
    assert every_module <= files
    assert not {"/sw.js", "/vendor/hash-wasm/README.md", "/vendor/hash-wasm/LICENSE", "/.editor-backup"} & files
    assert all(not f.startswith("/api/") for f in files)


def test_shell_version_follows_every_file_and_the_worker(tmp_path: Path) -> None:
    """The version stays while nothing changes, and changes with a file's content, a new file or the worker."""
    client = _client(tmp_path)
    first = shell(client)
    assert shell(client) == first and len(first.version) == 16
    seen = {first.version}
    style = client / "style.css"
    style.write_text(style.read_text() + "/* release 2 */\n")
    seen.add(shell(client).version)
    (client / "js" / "added.js").write_text("export const ADDED = 1;\n")
    after_new_file = shell(client)
    assert "/js/added.js" in after_new_file.files
    seen.add(after_new_file.version)
    worker = client / "sw.js"
    worker.write_text(worker.read_text() + "// changed\n")
    seen.add(shell(client).version)
    assert len(seen) == 4


def test_shell_version_follows_a_change_of_the_same_size(tmp_path: Path) -> None:
    """A file rewritten with as many bytes (a one-letter fix) still changes the version, by its mtime."""
    client = _client(tmp_path)
    before = shell(client).version
    main = client / "js" / "main.js"
    text = main.read_text()
    main.write_text(text.replace("setupApp();", "setupApq();"))
    stat = main.stat()
    os.utime(main, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert shell(client).version != before


@pytest_twisted.ensureDeferred
async def test_worker_is_served_with_its_release_and_no_cache(api: Api) -> None:
    """/sw.js is JavaScript, never kept by a cache, carries the CSP, and names the release the server has."""
    static = Path(api.app.static_dir)
    shutil.copytree(webclient_dir(), static, dirs_exist_ok=True)
    client = api.client()
    reply = await client.call("GET", "/sw.js", auth=None)
    assert reply.status == 200
    assert reply.header("content-type") == "text/javascript; charset=utf-8"
    assert reply.header("cache-control") == "no-cache"
    assert "script-src 'self' 'wasm-unsafe-eval';" in (reply.header("content-security-policy") or "")
    release = _prelude(reply.body)
    assert release == {"version": shell(static).version, "files": list(shell(static).files)}
    assert reply.body.endswith((static / "sw.js").read_bytes())
    head = await client.call("HEAD", "/sw.js", auth=None)
    assert head.status == 200 and head.body == b""
    (static / "style.css").write_text("body { color: red; }\n")
    again = await client.call("GET", "/sw.js", auth=None)
    assert _prelude(again.body)["version"] != release["version"]


@pytest_twisted.ensureDeferred
async def test_worker_missing_is_a_json_404(api: Api) -> None:
    """A client without a worker answers /sw.js with the API's JSON 404, not a traceback."""
    reply = await api.client().call("GET", "/sw.js", auth=None)
    assert reply.status == 404
    assert reply.json()["error"] == "not_found"


@pytest_twisted.ensureDeferred
async def test_manifest_and_icons_have_their_types(api: Api) -> None:
    """The manifest is application/manifest+json and parses; its icons are PNGs; the CSP names worker and
    manifest sources as 'self' and keeps scripts to 'self' and WebAssembly."""
    static = Path(api.app.static_dir)
    shutil.copytree(webclient_dir(), static, dirs_exist_ok=True)
    client = api.client()
    reply = await client.call("GET", "/manifest.webmanifest", auth=None)
    assert reply.status == 200
    assert reply.header("content-type") == "application/manifest+json"
    manifest = reply.json()
    assert manifest["start_url"] == "/" and manifest["scope"] == "/" and manifest["display"] == "standalone"
    for icon in manifest["icons"]:
        image = await client.call("GET", icon["src"], auth=None)
        assert image.status == 200 and image.header("content-type") == "image/png"
        assert image.body.startswith(b"\x89PNG\r\n\x1a\n")
    csp = reply.header("content-security-policy") or ""
    directives = {d.strip().split(" ", 1)[0]: d.strip() for d in csp.split(";")}
    assert directives["worker-src"] == "worker-src 'self'"
    assert directives["manifest-src"] == "manifest-src 'self'"
    assert directives["script-src"] == "script-src 'self' 'wasm-unsafe-eval'"
    assert directives["default-src"] == "default-src 'self'"
