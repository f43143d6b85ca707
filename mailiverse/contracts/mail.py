"""The contracts of mail moving through the appliance: who receives it (``IInbox``), what leaves (``IOutbound``).

The SMTP receiver, the submission service and the legacy protocol hand mail to an ``IInbox``
(the delivery pipeline is the one real provider); the submission service hands mail for other
domains to an ``IOutbound`` (the persistent outbound queue). A message travels as an ``ISpooled``:
the spool's ``SpooledMessage`` is one, so no front end needs to import the spool's internals.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from zope.interface import Interface

#: The store folder of received mail, and of the sender's own copy of what they sent (docs/protocol.md §2.4).
INBOX_FOLDER = "Mail/In"
SENT_FOLDER = "Mail/Sent"


class ISpooled(Protocol):
    """A message held for delivery: its size, independent readers, the whole text, and release."""

    @property
    def size(self) -> int:
        """The message's length in bytes."""

    def open(self) -> BinaryIO:
        """A new reader from the first byte (any number may be open at once, from any thread)."""

    def read_all(self) -> bytes:
        """The whole message."""

    def close(self) -> None:
        """Release what holds the message (memory, the encrypted spill file)."""


@dataclass(frozen=True)
class Recipient:
    """A local recipient accepted by RCPT TO (or by the submission service).

    ``address`` is the address as given with its local part lowercased (the domain is
    lowercased and in A-label form); ``user`` is the canonical account name. ``account`` is
    whatever the inbox looked up while resolving, handed back to ``deliver`` so it need not look
    the account up again; front ends never read it, and it takes no part in equality.
    ``over_quota`` says the mailbox was already full when resolved: SMTP answers 452 4.2.2 for it.
    """

    address: str
    user: str
    account: object | None = field(default=None, compare=False, repr=False)
    over_quota: bool = field(default=False, compare=False)


class MailboxFull(Exception):
    """The message would take a recipient's mailbox past its storage quota; nothing was stored.

    Temporary: the sender keeps the message and tries again later (SMTP 452 4.2.2). The message
    names no recipient (it may reach a log).
    """


class MessageRefused(Exception):
    """The message itself cannot be stored, now or later (it made the delivery workers fail
    repeatedly); nothing was stored. Permanent: SMTP 554 5.6.0."""


class IInbox(Interface):
    """Where mail for local users goes: resolve an address, then store a message durably."""

    def resolve(address: str) -> Awaitable[Recipient | None]:
        """Look up a local address (served domain already checked); ``None`` means no such user."""

    def deliver(
        message: ISpooled, mail_from: str, recipients: list[Recipient], folder: str = INBOX_FOLDER
    ) -> Awaitable[str]:
        """Store ``message`` durably in ``folder`` of every recipient; only then return its path there
        (raise on failure: ``MailboxFull`` when it would take a recipient past the quota, and then
        nothing is stored for any recipient; ``MessageRefused`` when the message can never be stored)."""


class IOutbound(Interface):
    """The persistent outbound queue (smarthost or direct MX, retries, bounces, DKIM).

    It is handed messages for remote recipients only; local recipients go to the ``IInbox``.
    """

    def submit(*, user: str, mail_from: str, recipients: list[str], message: bytes) -> Awaitable[str]:
        """Queue ``message`` from ``mail_from`` (an address of ``user``) to remote ``recipients``;
        return the queue id."""


__all__ = [
    "INBOX_FOLDER",
    "SENT_FOLDER",
    "IInbox",
    "IOutbound",
    "ISpooled",
    "MailboxFull",
    "MessageRefused",
    "Recipient",
]
