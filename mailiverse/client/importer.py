"""Import a dump of an original Mailiverse store into an account, object by object, bytes unchanged.

A dump is a directory whose files sit at their store paths (docs/protocol.md §2.4): ``DIR/Mail/In/<ms>_<rand>``,
``DIR/Mail/In_Json/<...>``, ``DIR/Cache/I`` and so on, each holding the object's stored bytes
(``mailiverse-admin store dump`` writes this layout).  Every file becomes the object of the same name;
one already present with the same bytes is skipped, one present with other bytes is never overwritten
(a failure), and ``Mail/`` objects go through the store import (``PUT /api/store/<path>?import=1``,
only for absent objects).  Paths are checked before anything is sent: no traversal, no symlink that
leaves DIR, only names the store accepts.
"""

from __future__ import annotations

import hmac
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from mailiverse.client.api import Client
from mailiverse.client.errors import ApiError, ClientError, UsageError
from mailiverse.contracts import InvalidPath, validate_path

#: Largest object imported (the server's store cap).
MAX_IMPORT_BYTES = 64 * 1024 * 1024
#: Most files one import looks at (a bound on work, far above any real mailbox).
MAX_FILES = 1_000_000
#: Mail folders of a dump the server lets a client import (everything else under Mail/ is server-written only).
IMPORTABLE_MAIL_FOLDERS = ("Mail/In/", "Mail/In_Json/", "Mail/Out/", "Mail/Out_Json/")


@dataclass(frozen=True)
class DumpEntry:
    """One object of a dump: its store path and the file holding its bytes (a problem instead, if it cannot be used)."""

    path: str
    file: Path | None
    problem: str | None = None


@dataclass
class ImportResult:
    """Counts of an import, and one line per failure (path and reason, never content)."""

    imported: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)

    def fail(self, path: str, reason: str) -> None:
        self.failed += 1
        self.failures.append(f"{path}: {reason}")

    def summary(self) -> str:
        return f"imported {self.imported}, skipped {self.skipped}, failed {self.failed}"


def _store_path(relative: Path) -> str:
    return "/".join(relative.parts)


def scan_dump(directory: str | os.PathLike[str]) -> Iterator[DumpEntry]:
    """Every file of a dump as a store path, in name order; unusable entries come with a ``problem``.

    Symlinks are followed only when they stay inside the dump and name a regular file; symlinked
    directories are not entered.  Nothing outside ``directory`` is ever read.
    """
    top = Path(directory)
    try:
        root = top.resolve(strict=True)
    except (OSError, RuntimeError):
        raise UsageError(f"{directory} is not a readable directory") from None
    if not root.is_dir():
        raise UsageError(f"{directory} is not a directory")
    seen = 0
    for current, dirnames, filenames in os.walk(root, followlinks=False, onerror=None):
        here = Path(current)
        dirnames.sort()
        for name in list(dirnames):
            if (here / name).is_symlink():
                dirnames.remove(name)
                yield DumpEntry(
                    _store_path((here / name).relative_to(root)), None, "a symlinked directory is not followed"
                )
        for name in sorted(filenames):
            seen += 1
            if seen > MAX_FILES:
                raise UsageError(f"the dump has more than {MAX_FILES} files")
            yield _entry(root, here / name)


def _entry(root: Path, file: Path) -> DumpEntry:
    path = _store_path(file.relative_to(root))
    try:
        validate_path(path)
    except InvalidPath as error:
        return DumpEntry(path, None, f"not a store path ({error})")
    try:
        target = file.resolve(strict=True)
    except (OSError, RuntimeError):
        return DumpEntry(path, None, "a dangling or looping symlink")
    if root not in target.parents:
        return DumpEntry(path, None, "a symlink that leaves the dump directory")
    try:
        info = target.stat()
    except OSError:
        return DumpEntry(path, None, "cannot be read")
    if not stat.S_ISREG(info.st_mode):
        return DumpEntry(path, None, "not a regular file")
    if info.st_size > MAX_IMPORT_BYTES:
        return DumpEntry(path, None, f"larger than {MAX_IMPORT_BYTES} bytes")
    return DumpEntry(path, target)


def _read(file: Path) -> bytes:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(file, flags)
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_IMPORT_BYTES + 1)
    if len(data) > MAX_IMPORT_BYTES:
        raise ValueError("file grew past the import limit")
    return data


def _upload(client: Client, path: str, data: bytes) -> None:
    """Create ``path`` with ``data`` only if it is absent (If-None-Match: *); Mail/ objects through the import flag."""
    query = "?import=1" if path.startswith("Mail/") else ""
    client._send(  # noqa: SLF001 - the library's authenticated request helper; no public import call exists
        "PUT",
        "/api/store/" + quote(path, safe="/") + query,
        data=data,
        headers={"Content-Type": "application/octet-stream", "If-None-Match": "*"},
    )


def import_dump(
    client: Client,
    directory: str | os.PathLike[str],
    *,
    progress: Callable[[str, str], None] | None = None,
) -> ImportResult:
    """Upload every object of the dump at ``directory`` to the logged-in ``client``'s store, bytes unchanged."""
    entries = list(scan_dump(directory))
    sizes = {entry.path: entry.size for entry in client.iter_objects("")}
    result = ImportResult()
    for entry in entries:
        outcome = _import_one(client, entry, sizes, result)
        if progress is not None:
            progress(entry.path, outcome)
    return result


def _import_one(client: Client, entry: DumpEntry, sizes: dict[str, int], result: ImportResult) -> str:
    if entry.file is None:
        result.fail(entry.path, entry.problem or "unusable")
        return "failed"
    if entry.path.startswith("Mail/") and not entry.path.startswith(IMPORTABLE_MAIL_FOLDERS):
        result.fail(entry.path, "only Mail/In, In_Json, Out and Out_Json can be imported")
        return "failed"
    try:
        data = _read(entry.file)
    except (OSError, ValueError):
        result.fail(entry.path, "cannot be read")
        return "failed"
    try:
        if entry.path in sizes:
            return _compare(client, entry.path, data, sizes[entry.path], result)
        try:
            _upload(client, entry.path, data)
        except ApiError as error:
            if error.code != "version_conflict":
                raise
            # Created meanwhile (another device): compare with what is there now.
            return _compare(client, entry.path, data, None, result)
    except ClientError as error:
        result.fail(entry.path, error.message)
        return "failed"
    result.imported += 1
    return "imported"


def _compare(client: Client, path: str, data: bytes, size: int | None, result: ImportResult) -> str:
    if size is None or size == len(data):
        present = client.get_object(path)
        if hmac.compare_digest(present, data):
            result.skipped += 1
            return "skipped"
    result.fail(path, "already present with other bytes (not overwritten)")
    return "failed"
