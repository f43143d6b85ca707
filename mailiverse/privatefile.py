"""Owner-only files on disk: written atomically, created at most once, kept in 0700 directories.

Every key, secret, certificate and exported message the appliance writes goes through here, so
the rules live in one place:

* the content is written to a fresh temporary file in the same directory, opened with
  ``O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC`` and the final mode from the start (never a
  moment with wider permissions), flushed and fsynced, then renamed onto the target and the
  directory fsynced, so a crash leaves either the old file or the new one, never a partial one;
* a file "created once" is published with ``link()``, which fails when the name exists, so a
  process that loses a creation race keeps the winner's content instead of overwriting it;
* an existing symlink at the target is replaced by the rename (never followed), and no write
  ever goes through one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)


def private_dir(path: Path, *, mode: int = PRIVATE_DIR_MODE) -> Path:
    """Create ``path`` (and missing parents) as an owner-only directory if absent; return it.

    An existing directory is left as it is: it may be one the operator chose on purpose.
    """
    path = Path(path)
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    return path


def _temporary_name(path: Path, temp_dir: Path | None) -> Path:
    return (path.parent if temp_dir is None else Path(temp_dir)) / f".{path.name}.{secrets.token_hex(8)}.tmp"


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; some filesystems cannot fsync a directory, which is harmless.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _publish_once(tmp: Path, path: Path, mode: int) -> None:
    """Give ``tmp``'s content the name ``path`` unless ``path`` exists (then ``FileExistsError``)."""
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        raise
    except OSError:
        pass  # no hard links here (FAT, some network filesystems): fall back to O_EXCL on the name
    fd = os.open(path, _CREATE_FLAGS, mode)
    try:
        with os.fdopen(fd, "wb") as out, open(tmp, "rb") as source:
            os.fchmod(out.fileno(), mode)
            shutil.copyfileobj(source, out)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def private_writer(
    path: Path, *, mode: int = PRIVATE_FILE_MODE, exclusive: bool = False, temp_dir: Path | None = None
) -> Iterator[BinaryIO]:
    """Yield a binary handle whose content becomes ``path`` (mode ``mode``) when the block ends cleanly.

    If the block raises, the temporary file is removed and ``path`` is untouched.  With
    ``exclusive`` the file is only created, never replaced: ``FileExistsError`` if ``path`` exists
    by then.  ``temp_dir`` (same filesystem as ``path``) holds the temporary file instead of
    ``path``'s directory, for layouts such as Maildir that say where unfinished files go.  The
    caller may ``os.fchown(handle.fileno(), ...)`` inside the block; the owner carries over.
    """
    path = Path(path)
    tmp = _temporary_name(path, temp_dir)
    fd = os.open(tmp, _CREATE_FLAGS, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # exactly ``mode``, whatever the umask
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            _publish_once(tmp, path, mode)
        else:
            os.replace(tmp, path)
    finally:
        # After os.replace the name is gone already; after link() (or a failure) it is ours to remove.
        tmp.unlink(missing_ok=True)
    _fsync_directory(path.parent)


def write_private(path: Path, data: bytes, *, mode: int = PRIVATE_FILE_MODE, temp_dir: Path | None = None) -> None:
    """Atomically replace ``path`` with ``data``, readable by the owner alone (or as ``mode`` says)."""
    with private_writer(path, mode=mode, temp_dir=temp_dir) as handle:
        handle.write(data)


def create_private(path: Path, data: bytes, *, mode: int = PRIVATE_FILE_MODE) -> None:
    """Create ``path`` holding ``data`` complete, or raise ``FileExistsError``; never overwrites anything."""
    with private_writer(path, mode=mode, exclusive=True) as handle:
        handle.write(data)


def create_private_once(path: Path, make: Callable[[], bytes], *, mode: int = PRIVATE_FILE_MODE) -> bytes:
    """Return ``path``'s content, first creating it from ``make()`` if it does not exist.

    When several threads or processes race, exactly one ``make()`` result is kept and every caller
    gets that one.  An existing file (or symlink the operator put there) is read, never replaced.
    """
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    data = make()
    try:
        create_private(path, data, mode=mode)
    except FileExistsError:
        return path.read_bytes()
    return data


__all__ = [
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "create_private",
    "create_private_once",
    "private_dir",
    "private_writer",
    "write_private",
]
