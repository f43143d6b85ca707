"""Assemble the SMTP listener factory that tap.py hands to ``StreamServerEndpointService``."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from twisted.internet.interfaces import IProtocolFactory, IReactorTime
from twisted.protocols.tls import TLSMemoryBIOFactory

from mailiverse.auth.connections import ConnectionLimiter
from mailiverse.contracts import IInbox
from mailiverse.smtp.limits import SmtpLimits
from mailiverse.smtp.server import SmtpServerFactory
from mailiverse.tls import ListenerKind, TLSContexts


def smtp_server_factory(
    inbox: IInbox,
    *,
    hostname: str,
    limits: SmtpLimits,
    tls: TLSContexts | None,
    listener_kind: ListenerKind,
    implicit_tls: bool,
    spool_dir: Path,
    reactor: IReactorTime | None = None,
    domains: Iterable[str] | None = None,
    connections: ConnectionLimiter | None = None,
) -> IProtocolFactory:
    """The protocol factory of one SMTP listener.

    ``listener_kind`` picks the default certificate ("ca" or "self-signed"); SNI can still
    select the other one.  With ``implicit_tls`` the session is TLS from the first byte
    (SMTPS, port 465 style) and STARTTLS is not offered; otherwise STARTTLS is offered when
    ``tls`` is given.  ``domains`` are the served mail domains (default: ``hostname``);
    recipients elsewhere are refused as relaying.  Listeners given the same ``connections``
    share its caps; by default the listener counts its own, sized by ``limits``.
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    assert reactor is not None
    creator: Any = None
    if tls is not None:
        creator = tls.server_context_factory(listener_kind)
    elif implicit_tls:
        raise ValueError("implicit TLS needs TLS contexts (tls=None given)")
    factory = SmtpServerFactory(
        inbox,
        hostname=hostname,
        domains=list(domains) if domains is not None else [hostname],
        limits=limits,
        starttls=creator,
        implicit_tls=implicit_tls,
        spool_dir=spool_dir,
        reactor=reactor,
        connections=connections,
    )
    if implicit_tls:
        tls_factory: IProtocolFactory = TLSMemoryBIOFactory(creator, False, factory)
        return tls_factory
    return factory
