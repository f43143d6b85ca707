"""The contract between the SMTP receiver and whatever stores what it receives."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from zope.interface import Interface

if TYPE_CHECKING:
    from mailiverse.spool import SpooledMessage


@dataclass(frozen=True)
class Recipient:
    """A local recipient accepted by RCPT TO.

    ``address`` is the address as given with its local part lowercased (the domain is
    lowercased and in A-label form); ``user`` is the canonical account name. ``account`` is
    whatever the inbox looked up while resolving, handed back to ``deliver`` so it need not look
    the account up again; the SMTP layer never reads it, and it takes no part in equality.
    """

    address: str
    user: str
    account: object | None = field(default=None, compare=False, repr=False)


class IInbox(Interface):
    """The delivery side of the SMTP receiver."""

    def resolve(address: str) -> Awaitable[Recipient | None]:  # type: ignore[misc,empty-body]
        """Look up a local address (served domain already checked); ``None`` means no such user."""

    def deliver(  # type: ignore[misc,empty-body]
        message: SpooledMessage, mail_from: str, recipients: list[Recipient]
    ) -> Awaitable[None]:
        """Store ``message`` durably for every recipient; return only after that, raise on failure."""
