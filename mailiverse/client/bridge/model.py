"""What the bridge's IMAP and SMTP servers need of the mailbox: the contract between ``state.py`` (the store, the
keys, the shared Cache/ documents) and ``imap.py``/``smtp.py`` (the protocols). Plain data and one Protocol; every
method of ``IMailState`` blocks (it talks HTTPS to the appliance and decrypts), so the servers call it off the
reactor thread (``deferToThread``), one call at a time per mailbox state.

Mailboxes (docs/bridge.md):

=========== ===================================== ================
name        store                                 SPECIAL-USE
=========== ===================================== ================
INBOX       ``Mail/In/`` + ``Mail/In_Json/``
Sent        ``Mail/Sent/`` + ``Mail/Sent_Json/``  ``\\Sent``
Drafts      ``Mail/Drafts/`` + ``..._Json/``      ``\\Drafts``
Spam        ``Mail/Spam/`` + ``..._Json/``        ``\\Junk``
Screener    ``Mail/Screener/`` + ``..._Json/``
Trash       any of the above, in ``Cache/W_state`` ``trash`` (as the web client keeps it)  ``\\Trash``
=========== ===================================== ================

A message's ``key`` is its twin's store path (``Mail/In_Json/<key base>``), as the web client names it. A message
in the trash set shows in Trash only. ``\\Seen`` is the web client's ``read`` set of ``Cache/W_state``; the other
flags and keywords live in ``Cache/W_flags``; UIDs and UIDVALIDITY in ``Cache/W_uids``: all three encrypted with
the cache-key rule (docs/formats.md §7.4) and written with optimistic versions, so two bridges and the web client
see one state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

INBOX, SENT, DRAFTS, SPAM, SCREENER, TRASH = "INBOX", "Sent", "Drafts", "Spam", "Screener", "Trash"
MAILBOXES = (INBOX, SENT, DRAFTS, SPAM, SCREENER, TRASH)
SPECIAL_USE = {SENT: "\\Sent", DRAFTS: "\\Drafts", SPAM: "\\Junk", TRASH: "\\Trash"}
#: Flags the bridge keeps (any keyword too: an atom without a backslash).
SYSTEM_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")


class BridgeError(Exception):
    """A refusal the IMAP/SMTP servers turn into ``NO`` (or a 4xx/5xx reply): the message says why, no content."""


@dataclass(frozen=True)
class MessageRef:
    """One message of a mailbox as the protocols see it. ``size`` is the length of ``message(key)``, the decrypted
    message (RFC822.SIZE: clients such as mbsync check it against the bytes they fetch)."""

    uid: int
    key: str
    flags: frozenset[str]
    size: int
    internal_ms: int


@dataclass(frozen=True)
class MailboxView:
    """A mailbox now: its UIDVALIDITY, the UID the next message will get, and its messages in UID order."""

    name: str
    uidvalidity: int
    uidnext: int
    messages: tuple[MessageRef, ...] = field(default_factory=tuple)


class IMailState(Protocol):
    """The user's mailboxes over the appliance's store. Every method blocks; call it off the reactor thread."""

    def mailboxes(self) -> Sequence[str]:
        """The names of the mailboxes (``MAILBOXES``)."""
        ...

    def view(self, mailbox: str, *, refresh: bool = False) -> MailboxView:
        """The mailbox's messages (listing the store again first with ``refresh``, which IDLE polls)."""
        ...

    def message(self, key: str) -> bytes:
        """The full RFC 5322 message, decrypted here from its stored original (kept in memory only)."""
        ...

    def set_flags(self, mailbox: str, uids: Sequence[int], flags: Sequence[str], mode: str) -> MailboxView:
        """``mode`` is ``set``, ``add`` or ``remove`` (STORE FLAGS, +FLAGS, -FLAGS); saved to the store at once."""
        ...

    def expunge(self, mailbox: str, uids: Sequence[int] | None = None) -> list[int]:
        """Delete for good the messages flagged ``\\Deleted`` (only those of ``uids`` if given: UID EXPUNGE);
        the UIDs removed. A message moved away meanwhile is never deleted."""
        ...

    def move(self, mailbox: str, uids: Sequence[int], target: str) -> list[tuple[int, int]]:
        """Move messages to ``target`` (trash, spam, inbox, ...); (old UID, new UID) pairs for COPYUID."""
        ...

    def append(self, mailbox: str, message: bytes, flags: Sequence[str], internal_ms: int | None) -> int:
        """Seal ``message`` to the user's own key and store it in ``mailbox``; its UID (APPENDUID)."""
        ...
