"""Export: download and decrypt every mail folder into a local Maildir (the one thing the client writes to disk).

``Mail/In`` becomes the Maildir's own inbox; any other ``Mail/<F>`` becomes the Maildir++ subfolder
``.<F>`` (so ``mailbox.Maildir(dir).get_folder("Sent")`` reads the sent mail).  Each message is
written to ``tmp/`` and renamed into ``new/`` under its store ID, so a second export adds only
what is new.  Directories are 0700 and files 0600: the plaintext is the user's mail.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mailiverse.client.api import MESSAGE_ID, Client
from mailiverse.client.errors import UsageError
from mailiverse.privatefile import private_dir, write_private

INBOX = "Mail/In"


@dataclass
class ExportResult:
    """How many messages each folder got, and how many were already there."""

    written: dict[str, int] = field(default_factory=dict)
    skipped: int = 0

    @property
    def total(self) -> int:
        return sum(self.written.values())


def _maildir(root: Path) -> None:
    for sub in ("", "tmp", "new", "cur"):
        private_dir(root / sub if sub else root)


def _known(root: Path, name: str) -> bool:
    if (root / "new" / name).exists():
        return True
    cur = root / "cur"
    return any(entry == name or entry.startswith(name + ":") for entry in os.listdir(cur))


def _write(root: Path, name: str, data: bytes) -> None:
    # Maildir: the unfinished file lives in tmp/, the finished one is renamed into new/.
    write_private(root / "new" / name, data, temp_dir=root / "tmp")


def export_maildir(client: Client, directory: str | os.PathLike[str]) -> ExportResult:
    """Decrypt all of the user's mail into the Maildir at ``directory`` (created if needed)."""
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise UsageError(f"{root} exists and is not a directory")
    try:
        _maildir(private_dir(root))
    except OSError as error:
        raise UsageError(f"cannot create the Maildir at {root} ({error.strerror})") from None
    result = ExportResult()
    for folder in client.mail_folders():
        name = folder.split("/", 1)[1]
        target = root if folder == INBOX else root / f".{name}"
        _maildir(target)
        count = 0
        for entry in client.iter_objects(folder + "/"):
            message_id = entry.path[len(folder) + 1 :]
            if not MESSAGE_ID.fullmatch(message_id):
                continue
            if _known(target, message_id):
                result.skipped += 1
                continue
            _write(target, message_id, client.open_mail(entry.path))
            count += 1
        result.written["Inbox" if folder == INBOX else name] = count
    return result
