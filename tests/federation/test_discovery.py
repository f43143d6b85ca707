"""Finding another domain's appliance (mailiverse/federation/discovery.py): the TXT record and the discovery
document read strictly, hostile announcements refused with words a user can read, answers remembered.

The documents are served by a table of URLs (what each hostile server would answer); the real network path,
DNS server, HTTPS with ``--trust-ca`` and two appliances, is tests/e2e/test_federation.py.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

import pytest
import pytest_twisted

from mailiverse.federation.discovery import (
    Discovery,
    NoAppliance,
    RemoteBadRange,
    RemoteNotFound,
    RemoteUnavailable,
    parse_txt,
)
from mailiverse.webfetch import Fetched, FetchError
from tests.support.fakedns import FakeResolver

KEY = base64.b64encode(bytes(range(32))).decode()
OTHER_KEY = base64.b64encode(bytes(32)).decode()
WELL_KNOWN = "https://mx.b.example/.well-known/mailiverse"


@dataclass
class Web:
    """What each URL answers: (status, body), a FetchError's words, or nothing (connection refused)."""

    pages: dict[str, tuple[int, bytes] | str] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    async def get(self, url: str, *, max_bytes: int, accept: str = "application/json") -> Fetched:
        self.asked.append(url)
        page = self.pages.get(url.split("?")[0], "connection refused")
        if isinstance(page, str):
            raise FetchError(f"mx.b.example: {page}")
        return Fetched(page[0], "application/json", page[1])


def _document(**changes: object) -> bytes:
    document: dict[str, object] = {
        "version": 1,
        "domains": ["b.example"],
        "directory": "https://mx.b.example/.well-known/mailiverse/keys/",
        "log": {
            "algorithm": "Ed25519",
            "public_key": KEY,
            "sth": "https://mx.b.example/api/log/sth",
            "consistency": "https://mx.b.example/api/log/consistency",
            "entries": "https://mx.b.example/api/log/entries",
        },
    }
    document.update(changes)
    return json.dumps(document).encode()


def _txt(directory: str = WELL_KNOWN, key: str = KEY) -> str:
    return f"v=mailiverse1; directory={directory}; log=ed25519:{key}"


def _discovery(txt: tuple[str, ...] | None, web: Web) -> Discovery:
    records = {} if txt is None else {("_mailiverse.b.example", "TXT"): txt}
    return Discovery(FakeResolver(records), web)  # type: ignore[arg-type]


def test_the_txt_record_is_read_strictly() -> None:
    assert parse_txt(_txt().encode()) == (WELL_KNOWN, bytes(range(32)))
    assert parse_txt(b"v=spf1 -all") is None
    for bad in (
        f"v=mailiverse1; directory={WELL_KNOWN}",
        _txt(key="AAAA"),
        _txt(directory="http://mx.b.example/.well-known/mailiverse"),
        _txt(directory="https://127.0.0.1/.well-known/mailiverse"),
        _txt(directory="https://[::1]/.well-known/mailiverse"),
        _txt(directory="https://mx.b.example:5432/.well-known/mailiverse"),
        _txt(directory="https://user@mx.b.example/.well-known/mailiverse"),
    ):
        with pytest.raises(RemoteUnavailable):
            parse_txt(bad.encode())


@pytest_twisted.ensureDeferred
async def test_an_announced_appliance_is_found_and_remembered() -> None:
    web = Web({WELL_KNOWN: (200, _document())})
    discovery = _discovery((_txt(),), web)
    found = await discovery.announcement("B.example.")
    assert (found.via, found.directory, found.log_key) == (
        "dns",
        "https://mx.b.example/.well-known/mailiverse/keys/",
        bytes(range(32)),
    )
    assert await discovery.announcement("b.example") == found
    assert web.asked == [WELL_KNOWN]  # the second answer came from memory


@pytest_twisted.ensureDeferred
async def test_without_a_record_the_domain_itself_may_answer() -> None:
    log = {"algorithm": "Ed25519", "public_key": KEY, "consistency": "https://b.example/api/log/consistency"}
    document = _document(directory="https://b.example/.well-known/mailiverse/keys/", log=log)
    web = Web({"https://b.example/.well-known/mailiverse": (200, document)})
    found = await _discovery(None, web).announcement("b.example")
    assert found.via == "https" and found.directory.startswith("https://b.example/")


@pytest_twisted.ensureDeferred
async def test_no_record_and_no_answer_means_no_appliance_and_is_remembered() -> None:
    web = Web()
    discovery = _discovery(None, web)
    for _ in range(2):
        with pytest.raises(NoAppliance):
            await discovery.announcement("b.example")
    assert web.asked == ["https://b.example/.well-known/mailiverse"]


@pytest.mark.parametrize(
    ("txt", "page", "words"),
    [
        ((_txt(),), "connection refused", "connection refused"),
        ((_txt(),), (200, b"<html>"), "other than JSON"),
        ((_txt(),), (500, b"{}"), "HTTP 500"),
        ((_txt(),), (200, _document(version=2)), "version 1"),
        ((_txt(),), (200, _document(domains=["c.example"])), "does not serve it"),
        ((_txt(key=OTHER_KEY),), (200, _document()), "different log keys"),
        ((_txt(),), (200, _document(directory="https://evil.example/keys/")), "another host"),
        ((_txt(),), (200, _document(log={"algorithm": "RSA"})), "Ed25519"),
        ((_txt(), _txt()), (200, _document()), "more than one"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_hostile_announcements_are_refused_with_reasons(
    txt: tuple[str, ...], page: tuple[int, bytes] | str, words: str
) -> None:
    discovery = _discovery(txt, Web({WELL_KNOWN: page}))
    with pytest.raises(RemoteUnavailable, match=words):
        await discovery.announcement("b.example")


@pytest_twisted.ensureDeferred
async def test_key_answers_and_consistency_proofs_are_relayed() -> None:
    keys = "https://mx.b.example/.well-known/mailiverse/keys/"
    web = Web(
        {
            WELL_KNOWN: (200, _document()),
            keys + "bob@b.example": (200, b'{"key_id": "k"}'),
            "https://mx.b.example/api/log/consistency": (200, b'{"consistency": []}'),
        }
    )
    discovery = _discovery((_txt(),), web)
    announcement, answer = await discovery.key_answer("Bob@b.example")
    assert answer == {"key_id": "k"} and announcement.domain == "b.example"
    with pytest.raises(RemoteNotFound):
        web.pages[keys + "carol@b.example"] = (404, b'{"error": "not_found"}')
        await discovery.key_answer("carol@b.example")
    assert await discovery.consistency("b.example", 1, 2) == {"consistency": []}
    assert web.asked[-1] == "https://mx.b.example/api/log/consistency?first=1&second=2"
    web.pages["https://mx.b.example/api/log/consistency"] = (400, b'{"error": "bad_range"}')
    with pytest.raises(RemoteBadRange):
        await discovery.consistency("b.example", 5, 2)
