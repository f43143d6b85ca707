"""Collaborators of the web layer, declared as interfaces: the outbound queue for remote recipients."""

from __future__ import annotations

from collections.abc import Awaitable

from zope.interface import Interface


class IOutbound(Interface):
    """The persistent outbound queue (smarthost or direct MX, retries, bounces, DKIM).

    The web layer hands it messages for remote recipients only; local recipients go through
    ``Delivery`` and the Sent copy is stored by the web layer itself.
    """

    def submit(  # type: ignore[misc,empty-body]
        *, user: str, mail_from: str, recipients: list[str], message: bytes
    ) -> Awaitable[str]:
        """Queue ``message`` from ``mail_from`` (an address of ``user``) to remote ``recipients``; return the queue id."""
