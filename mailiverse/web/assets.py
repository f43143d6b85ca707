"""Where the browser client's files are: the copy packaged with mailiverse, else a source checkout's webclient/;
and the application shell its service worker keeps for opening offline (``shell``, ``service_worker``)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from urllib.parse import quote

#: The client in a source checkout (an editable install); builds copy it into the package (setup.py).
CHECKOUT_WEBCLIENT = Path(__file__).resolve().parent.parent.parent / "webclient"


def webclient_dir() -> Path:
    """The directory to serve the client from: the packaged ``mailiverse/webclient/`` first, then the checkout's."""
    packaged = resources.files("mailiverse").joinpath("webclient")
    # twisted.web.static.File serves from the file system, so only an unpacked copy will do (wheels install unpacked).
    if isinstance(packaged, Path) and packaged.joinpath("index.html").is_file():
        return packaged
    return CHECKOUT_WEBCLIENT


#: The service worker's script, at the root of the client so that its scope is the whole client.
SERVICE_WORKER = "sw.js"

# The application shell: the files the service worker keeps for opening offline. Everything the client is made of
# but the worker itself (a worker never caches its own script) and the documents that travel with vendored code
# (README.md, LICENSE), which no page loads.
_NOT_SHELL_NAMES = frozenset({SERVICE_WORKER, "LICENSE", "LICENSE.txt", "COPYING"})
_NOT_SHELL_SUFFIXES = (".md", "~")

# A file's place in the shell's version: its path, size and modification time (nanoseconds).
_Stat = tuple[str, int, int]


@dataclass(frozen=True)
class Shell:
    """The client's files as URL paths, and a version that changes whenever one of them, or the worker, does."""

    version: str
    files: tuple[str, ...]


def _stat(static_dir: Path, relative: str) -> _Stat | None:
    try:
        stat = (static_dir / relative).stat()
    except FileNotFoundError:
        return None
    return relative, stat.st_size, stat.st_mtime_ns


def _shell_stats(static_dir: Path) -> tuple[_Stat, ...]:
    stats = []
    for root, folders, names in os.walk(static_dir):
        folders[:] = [folder for folder in folders if not folder.startswith(".")]
        prefix = Path(root).relative_to(static_dir).as_posix()
        for name in names:
            if name.startswith(".") or name in _NOT_SHELL_NAMES or name.endswith(_NOT_SHELL_SUFFIXES):
                continue
            stat = _stat(static_dir, name if prefix == "." else f"{prefix}/{name}")
            if stat is not None:
                stats.append(stat)
    return tuple(sorted(stats))


@lru_cache(maxsize=4)
def _shell_for(static_dir: Path, files: tuple[_Stat, ...], worker: _Stat | None) -> Shell:
    """The shell of one state of ``static_dir``; the arguments after it are only the cache's key."""
    digest = hashlib.sha256()
    for name in [name for name, _size, _mtime in files] + ([worker[0]] if worker else []):
        digest.update(name.encode() + b"\0")
        try:
            digest.update(hashlib.sha256((static_dir / name).read_bytes()).digest())
        except FileNotFoundError:  # deleted since it was listed: the next request lists the files again
            digest.update(b"gone")
    return Shell(version=digest.hexdigest()[:16], files=tuple("/" + quote(name) for name, _size, _mtime in files))


def shell(static_dir: Path) -> Shell:
    """The shell ``static_dir`` serves now. The files are listed on every call (a stat each: 0.6 ms for the
    client's 57 files here) but read and hashed again only when one's size or mtime changed."""
    return _shell_for(static_dir, _shell_stats(static_dir), _stat(static_dir, SERVICE_WORKER))


def service_worker(static_dir: Path) -> bytes:
    """The service worker as served: webclient/sw.js after one line naming the shell it is to keep. A release
    that changes any file of the client changes these bytes, so browsers install the new worker (and its cache)."""
    current = shell(static_dir)
    prelude = json.dumps({"version": current.version, "files": list(current.files)}, separators=(",", ":"))
    source = (static_dir / SERVICE_WORKER).read_bytes()
    return b"self.MAILIVERSE_SHELL = " + prelude.encode() + b";\n" + source
