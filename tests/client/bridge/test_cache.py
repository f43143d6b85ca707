"""``bridge --cache DIR`` (issue 23: "an optional cache is encrypted under a key derived from the user's key material
and is safe to delete"): a second start serves FETCH from it without downloading the originals again; its files
hold no plaintext and no store name; a damaged or foreign file is refused and the message fetched again; deleting
the directory is harmless; the size bound holds; without ``--cache`` nothing is written. Real app over real HTTPS
(``served``), real IMAP client on loopback.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_twisted

from mailiverse.client import Client
from mailiverse.client.bridge.service import cache_bytes
from mailiverse.client.bridge.state import DiskCache
from mailiverse.client.errors import UsageError
from tests.client.bridge.live import ALICE, LiveBridge, account, start_bridge
from tests.support.client import Served, in_thread

SUBJECTS = ("Cache test alpha", "Cache test bravo", "Cache test charlie")


def _body(subject: str) -> str:
    return f"The secret body of {subject}, to be found nowhere on disk."


@pytest_twisted.async_yield_fixture
async def mail(served: Served) -> AsyncIterator[Client]:
    """alice with three messages from bob in her INBOX; bob's client."""
    alice = await account(served, "alice")
    alice.close()
    bob = await account(served, "bob")
    for subject in SUBJECTS:
        await in_thread(bob.send, [ALICE], subject, _body(subject))
    try:
        yield bob
    finally:
        bob.close()


def _fetch_all(running: LiveBridge) -> dict[str, bytes]:
    """SELECT INBOX and FETCH every message whole: subject -> bytes."""
    found = {}
    with running.imap() as imap:
        status, data = imap.select("INBOX")
        assert status == "OK", data
        status, fetched = imap.fetch("1:*", "(RFC822)")
        assert status == "OK", fetched
    for part in fetched:
        if isinstance(part, tuple):
            subject = re.search(rb"^Subject: (.*)\r$", part[1], re.MULTILINE)
            assert subject is not None
            found[subject.group(1).decode()] = part[1]
    return found


def _originals(running: LiveBridge) -> list[str]:
    """The INBOX originals the bridge downloaded (twins and listings are other paths)."""
    return running.requests("GET", "/api/store/Mail/In/")


async def _run(served: Served, tmp_path: Path, *options: str) -> tuple[dict[str, bytes], list[str]]:
    """One bridge start with ``options``: what FETCH returned and which originals it downloaded."""
    running = await start_bridge(served, tmp_path, *options)
    try:
        return await in_thread(_fetch_all, running), _originals(running)
    finally:
        await running.stop()


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir())


@pytest_twisted.ensureDeferred
async def test_a_second_start_serves_fetch_from_the_cache(served: Served, mail: Client, tmp_path: Path) -> None:
    """The first start downloads the three originals and writes three sealed files (0600, in a 0700 directory,
    named by 64 hex digits, holding no subject, body or store name); a second start with the same directory
    returns the same bytes and downloads none; without --cache, a start downloads them all again."""
    cache = tmp_path / "cache"
    first, downloaded = await _run(served, tmp_path, "--cache", str(cache))
    assert sorted(first) == sorted(SUBJECTS) and len(downloaded) == 3
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    files = _files(cache)
    assert len(files) == 3
    bases = [path.rsplit("/", 1)[1] for path in downloaded]
    for path in files:
        assert re.fullmatch(r"[0-9a-f]{64}", path.name) and not any(base in path.name for base in bases)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        sealed = path.read_bytes()
        for subject in SUBJECTS:
            for secret in (subject, _body(subject), "Mail/In", *bases):
                assert secret.encode() not in sealed
        assert b"bob@example.org" not in sealed and b"From:" not in sealed

    second, downloaded = await _run(served, tmp_path, "--cache", str(cache))
    assert second == first and downloaded == []
    uncached, downloaded = await _run(served, tmp_path)
    assert uncached == first and len(downloaded) == 3


@pytest_twisted.ensureDeferred
async def test_damaged_and_foreign_files_are_refused_and_fetched_again(
    served: Served, mail: Client, tmp_path: Path
) -> None:
    """A cache file with one bit flipped, and another's file put under a third's name, both fail to open: they are
    deleted, those two messages are downloaded again (byte-identical), and the third comes from the cache."""
    cache = tmp_path / "cache"
    first, _ = await _run(served, tmp_path, "--cache", str(cache))
    damaged, donor, foreign = _files(cache)
    flipped = bytearray(damaged.read_bytes())
    flipped[len(flipped) // 2] ^= 0x01
    damaged.write_bytes(bytes(flipped))
    foreign.write_bytes(donor.read_bytes())

    again, downloaded = await _run(served, tmp_path, "--cache", str(cache))
    assert again == first and len(downloaded) == 2
    assert len(_files(cache)) == 3 and damaged.read_bytes() != bytes(flipped)
    assert foreign.read_bytes() != donor.read_bytes()
    third, downloaded = await _run(served, tmp_path, "--cache", str(cache))
    assert third == first and downloaded == []


@pytest_twisted.ensureDeferred
async def test_deleting_the_cache_directory_is_harmless(served: Served, mail: Client, tmp_path: Path) -> None:
    """The directory deleted while a bridge runs, and again before a start: FETCH returns the same bytes, the
    missing messages are downloaded again, and the directory is made again (0700) with their sealed copies."""
    cache = tmp_path / "cache"
    running = await start_bridge(served, tmp_path, "--cache", str(cache))
    try:
        first = await in_thread(_fetch_all, running)
        shutil.rmtree(cache)
        assert await in_thread(_fetch_all, running) == first  # from memory
        await in_thread(mail.send, [ALICE], "Cache test delta", _body("Cache test delta"))
        with_new = await in_thread(_fetch_all, running)
        assert with_new["Cache test delta"].count(_body("Cache test delta").encode()) == 1
    finally:
        await running.stop()
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700 and len(_files(cache)) == 1
    shutil.rmtree(cache)
    again, downloaded = await _run(served, tmp_path, "--cache", str(cache))
    assert again == with_new and len(downloaded) == 4 and len(_files(cache)) == 4


@pytest_twisted.ensureDeferred
async def test_without_cache_nothing_is_written(
    served: Served, mail: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bridge without --cache, run from an empty directory that is also its HOME, lists and fetches every
    message and leaves that directory empty."""
    home = tmp_path / "home"
    home.mkdir()
    for name in ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "TMPDIR"):
        monkeypatch.setenv(name, str(home))
    monkeypatch.chdir(home)
    fetched, downloaded = await _run(served, home / "unused")
    assert sorted(fetched) == sorted(SUBJECTS) and len(downloaded) == 3
    assert list(home.rglob("*")) == []


def test_the_size_bound_holds_and_the_oldest_go_first(tmp_path: Path) -> None:
    """With room for about three bodies, a fourth removes the least recently used (a read counts as a use); the
    files never hold more than the bound; a body larger than the bound is not stored; a cache made with another
    key (a rotated private key) misses and deletes what it cannot open."""
    body = b"x" * 3000
    cache = DiskCache(tmp_path / "c", b"seed one", limit=10_000)
    for index, key in enumerate(("Mail/In_Json/1_1", "Mail/In_Json/2_2", "Mail/In_Json/3_3")):
        cache.put(key, body + bytes([index]))
        os.utime(tmp_path / "c" / cache.name(key), ns=(10**18 + index * 10**9,) * 2)
    assert cache.get("Mail/In_Json/1_1") == body + b"\0"  # now the most recently used
    cache.put("Mail/In_Json/4_4", body + b"\3")
    assert sum(p.stat().st_size for p in _files(tmp_path / "c")) <= 10_000
    assert cache.get("Mail/In_Json/2_2") is None
    for key, last in (("Mail/In_Json/1_1", b"\0"), ("Mail/In_Json/3_3", b"\2"), ("Mail/In_Json/4_4", b"\3")):
        assert cache.get(key) == body + last
    cache.put("Mail/In_Json/5_5", b"y" * 20_000)
    assert cache.get("Mail/In_Json/5_5") is None and len(_files(tmp_path / "c")) == 3

    rotated = DiskCache(tmp_path / "c", b"seed two", limit=10_000)
    assert rotated.name("Mail/In_Json/1_1") != cache.name("Mail/In_Json/1_1")
    (tmp_path / "c" / rotated.name("Mail/In_Json/1_1")).write_bytes(
        (tmp_path / "c" / cache.name("Mail/In_Json/1_1")).read_bytes()
    )
    assert rotated.get("Mail/In_Json/1_1") is None
    assert not (tmp_path / "c" / rotated.name("Mail/In_Json/1_1")).exists()


def test_cache_size_option() -> None:
    """--cache-size takes bytes or K/M/G (powers of 1024) and refuses nonsense and less than 1 MiB."""
    assert cache_bytes("1G") == 1024**3
    assert cache_bytes("500M") == 500 * 1024**2
    assert cache_bytes("2097152") == 2 * 1024**2
    for bad in ("", "lots", "-1G", "1T", "1000K"):
        with pytest.raises(UsageError, match="--cache-size"):
            cache_bytes(bad)
