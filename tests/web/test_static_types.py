"""The web client's files are served with their pinned types (the system MIME table is never read):
a module script must come as JavaScript, or the browser refuses it (with ``nosniff``, which every
response carries)."""

from __future__ import annotations

import mimetypes
import shutil
from pathlib import Path

import pytest_twisted

from mailiverse.web.assets import webclient_dir
from tests.support.webapi import Api


@pytest_twisted.ensureDeferred
async def test_client_files_have_their_types(api: Api) -> None:
    # the test app serves its static files from its temp dir: the real client's files, copied there
    static = Path(api.app.static_dir)
    shutil.copytree(webclient_dir(), static, dirs_exist_ok=True)
    client = api.client()
    for path, expected in (
        ("/", b"text/html"),
        ("/js/main.js", b"text/javascript"),
        ("/js/crypto/keylog.js", b"text/javascript"),
        ("/style.css", b"text/css"),
    ):
        reply = await client.call("GET", path, auth=None)
        assert reply.status == 200, path
        assert reply.headers.getRawHeaders(b"content-type")[0].split(b";")[0] == expected, path
        assert reply.headers.getRawHeaders(b"x-content-type-options") == [b"nosniff"]
    # the system table (/etc/mime.types, ~1,500 types here) was not read; Python's built-in one (~150) was
    assert mimetypes.knownfiles == [] and len(mimetypes.types_map) < 400
