"""Files the admin commands make in the data dir: private, and given to the data dir's owner when run as root."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO

from mailiverse.admin.errors import BadArchive
from mailiverse.privatefile import private_dir, private_writer

_COPY_BLOCK = 1024 * 1024


def own_like(target: Path | int, reference: Path) -> None:
    """Running as root, give ``target`` to ``reference``'s owner, so the service user can read it.

    ``target`` is a path (a symbolic link itself is changed, never what it points to) or an open
    file descriptor.  Not running as root, nothing changes.
    """
    if os.geteuid() != 0:
        return
    st = reference.stat()
    with contextlib.suppress(OSError):
        if isinstance(target, int):
            os.fchown(target, st.st_uid, st.st_gid)
        else:
            os.chown(target, st.st_uid, st.st_gid, follow_symlinks=False)


def write_owned(path: Path, source: IO[bytes], size: int, owner: Path) -> None:
    """Write exactly ``size`` bytes of ``source`` to ``path`` (mode 0600, owned like ``owner``).

    A source that ends early is a damaged archive (:class:`BadArchive`).
    """
    private_dir(path.parent)
    with private_writer(path) as handle:
        remaining = size
        while remaining:
            block = source.read(min(remaining, _COPY_BLOCK))
            if not block:
                raise BadArchive()
            handle.write(block)
            remaining -= len(block)
        own_like(handle.fileno(), owner)
