"""The contracts of mail moving through the appliance: who receives it (``IInbox``), what leaves (``IOutbound``).

The SMTP receiver, the submission service and the legacy protocol hand mail to an ``IInbox``
(the delivery pipeline is the one real provider); the submission service hands mail for other
domains to an ``IOutbound`` (the persistent outbound queue). A message travels as an ``ISpooled``:
the spool's ``SpooledMessage`` is one, so no front end needs to import the spool's internals.
A message that came from outside over SMTP travels with its ``Envelope``, which asks the inbox to
judge where it came from (SPF, DKIM, DMARC, ARC) before storing it.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from zope.interface import Interface

#: The store folder of received mail, and of the sender's own copy of what they sent (docs/protocol.md §2.4).
INBOX_FOLDER = "Mail/In"
SENT_FOLDER = "Mail/Sent"
#: Where received mail that failed its checks goes (DMARC ``p=quarantine``): a folder the original
#: client never lists. Accounts that original clients read (envelope v1) keep such mail in ``Mail/In``,
#: marked in its twin.
SPAM_FOLDER = "Mail/Spam"
#: Where mail from a first-time sender goes for an account whose screener is on (issue 19): approved
#: senders' mail goes to the inbox, blocked ones' is refused.
SCREENER_FOLDER = "Mail/Screener"


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
    #: The alias ``address`` is, when it is one (the inbox's own reference: counted and its senders noted
    #: on delivery); None for an account's own name.
    alias: object | None = field(default=None, compare=False, repr=False)
    #: The address the account moved to (docs/moving.md), when ``address`` is its own name: SMTP answers
    #: ``551 5.1.6`` naming it to mail from outside; the logged-in paths store the mail, which is forwarded.
    moved_to: str | None = field(default=None, compare=False)


class MailboxFull(Exception):
    """The message would take a recipient's mailbox past its storage quota; nothing was stored.

    Temporary: the sender keeps the message and tries again later (SMTP 452 4.2.2). The message
    names no recipient (it may reach a log).
    """


class MessageRefused(Exception):
    """The message itself cannot be stored, now or later (it made the delivery workers fail
    repeatedly); nothing was stored. Permanent: SMTP 554 5.6.0."""


class MessageRejected(Exception):
    """The message was judged and refused by policy (its authenticity); nothing was stored.

    ``code`` and ``enhanced`` are the SMTP reply to give (``550 5.7.1`` for good, ``451 4.7.0`` to
    try again later), ``text`` a fixed, plain-ASCII sentence the sender may read: never anything
    taken from the message.
    """

    def __init__(self, code: int, enhanced: str, text: str) -> None:
        super().__init__(f"{code} {enhanced} {text}")
        self.code = code
        self.enhanced = enhanced
        self.text = text


@dataclass(frozen=True)
class Envelope:
    """How a message arrived from outside, unauthenticated, on an MX listener: what judging it needs.

    ``client_ip`` is the connecting address, ``helo`` the name it greeted with, ``mail_from`` the
    reverse path ("" for a bounce). ``authserv_id`` is the appliance's host name, which names its
    ``Authentication-Results`` header; ``local_domains`` are the domains it serves: mail claiming
    one of them in its From is refused, since their users send only through the logged-in paths.
    Mail from those paths carries no envelope and is not judged.
    """

    client_ip: str
    helo: str
    mail_from: str
    authserv_id: str
    local_domains: tuple[str, ...]


@dataclass(frozen=True)
class SealedObjects:
    """One message sealed elsewhere (on the sender's device) for the holder of ``key_id``: its original and its
    JSON twin, each ``seal(zlib(...))`` as the store keeps them (docs/e2e.md). The appliance cannot open them."""

    key_id: str
    original: bytes = field(repr=False)
    twin: bytes = field(repr=False)


class EnvelopeRefused(Exception):
    """Envelopes sealed elsewhere that cannot be stored as they are: ``code`` says why (``stale_key``: not sealed
    to a key the recipient holds now; ``organisation_copy_required``: the domain's organisation key is missing;
    ``conflict``: the key base is taken)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class IInbox(Interface):
    """Where mail for local users goes: resolve an address, then store a message durably."""

    def resolve(address: str, mail_from: str | None = None) -> Awaitable[Recipient | None]:
        """Look up a local address (served domain already checked); ``None`` means no such user, or an
        alias that takes no mail (disabled, deleted) or none from ``mail_from`` (limited to the senders
        that have written to it). ``mail_from`` is the envelope sender of mail from outside ("" for a
        bounce); without it (the logged-in paths) no sender limit applies."""

    def deliver(
        message: ISpooled,
        mail_from: str,
        recipients: list[Recipient],
        folder: str = INBOX_FOLDER,
        envelope: Envelope | None = None,
    ) -> Awaitable[str]:
        """Store ``message`` durably in ``folder`` of every recipient; only then return its path there
        (raise on failure: ``MailboxFull`` when it would take a recipient past the quota, and then
        nothing is stored for any recipient; ``MessageRefused`` when the message can never be stored).

        With an ``envelope`` (mail from outside) the message is judged first: ``MessageRejected``
        when the policy refuses it (nothing stored), and mail that fails DMARC under
        ``p=quarantine`` is filed in ``SPAM_FOLDER`` instead of ``folder``."""

    def deliver_sealed(
        copies: list[tuple[Recipient, SealedObjects]],
        mail_from: str,
        key_base: str,
        folder: str = INBOX_FOLDER,
        organisation: dict[str, SealedObjects] | None = None,
        stamps: tuple[str, ...] = (),
    ) -> Awaitable[str]:
        """Store envelopes sealed on the sender's device, as they came, under ``<folder>/<key_base>`` of each
        recipient; after the durable commit, the path. Checked first: each envelope names a key its recipient
        holds now, and a recipient domain under the organisation policy has its ``organisation`` copy
        (``EnvelopeRefused``); screeners and quotas as for ``deliver``."""


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
    "SPAM_FOLDER",
    "Envelope",
    "IInbox",
    "IOutbound",
    "ISpooled",
    "MailboxFull",
    "MessageRefused",
    "MessageRejected",
    "EnvelopeRefused",
    "SealedObjects",
    "Recipient",
]
