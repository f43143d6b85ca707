"""The errors of ``mailiverse-admin``: each is reported as one line on stderr with exit status 1."""

from __future__ import annotations


class AdminError(Exception):
    """A failure to report in one line, with exit status 1."""


class BackupError(AdminError):
    """A backup or restore failed; the message says what to do (never a secret)."""


class BadArchive(BackupError):
    """The archive does not decrypt: wrong passphrase, or it is damaged or was altered."""

    def __init__(self) -> None:
        super().__init__("the backup does not decrypt: wrong passphrase, or the file is damaged or was altered")
