"""Assemble the legacy protocol for the appliance: TCP listeners, the ``/Mailiverse/`` resource, the admin key text."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, Service
from twisted.internet.endpoints import serverFromString
from twisted.protocols.tls import TLSMemoryBIOFactory

from mailiverse.auth.connections import ConnectionLimiter, LimitedFactory
from mailiverse.auth.ratelimit import IRateLimits
from mailiverse.config import DEFAULT_QUOTA_BYTES, DataDir, LegacyOptions
from mailiverse.crypto.keys import public_key_der
from mailiverse.legacy.backend import LegacyBackend, ensure_legacy_secret
from mailiverse.legacy.serverkeys import ensure_server_keys, load_server_key
from mailiverse.legacy.tcp import LegacyLineFactory
from mailiverse.legacy.web import LegacyWeb
from mailiverse.legacy.websocket import websocket_resource
from mailiverse.logs import Logger
from mailiverse.submission import Submission

log = Logger()

#: The names under which the original web client embeds the server keys (``mEmbeddedResources.js``).
EMBEDDED_KEY_NAMES = {
    "mail-auth": "mail.auth.MailServerAuthenticatorNoThread.truststore.jks.b64",
    "send": "mail.client.Mailer.send-truststore.jks.b64",
}

WEAK_GROUP_WARNING = (
    "legacy Mailiverse protocol enabled: its SRP group is 257 bits and breakable, so anyone who "
    "records a legacy login or reads the database can log in as that user; upgrade legacy "
    "accounts (mailiverse-client upgrade-legacy) and disable --legacy when done"
)


@dataclass
class LegacyParts:
    """What the appliance mounts: listener services and the ``/Mailiverse/`` web resource."""

    services: list[IService]
    web_resource: Any
    backend: LegacyBackend
    web: LegacyWeb = field(repr=False)


class _Warning(Service):
    """Logs, at every start, that the legacy group is weak."""

    def startService(self) -> None:
        super().startService()
        log.warn(WEAK_GROUP_WARNING)


def _data_dir(data_dir: DataDir | Path | str) -> DataDir:
    return data_dir if isinstance(data_dir, DataDir) else DataDir(Path(data_dir))


def build_legacy(
    options: LegacyOptions,
    *,
    database: Any,
    tls_contexts: Any,
    data_dir: DataDir | Path | str,
    reactor: Any,
    submission: Submission | None = None,
    open_signup: bool = False,
    default_quota: int = DEFAULT_QUOTA_BYTES,
    connections: ConnectionLimiter | None = None,
    rate_limits: IRateLimits | None = None,
) -> LegacyParts:
    """Build the legacy KeyServer/MailServer listeners and the ``/Mailiverse/`` resource.

    The listeners speak TLS from the first byte with the "ca" listener certificate unless
    ``options.plain``; ``submission`` (optional) carries out Send (without it, Send is refused).
    ``open_signup`` is the appliance's ``--open-signup``: legacy sign-ups obey the same policy.
    ``default_quota`` is its ``--default-quota``: a StorePut past an account's quota answers 507.
    ``connections`` caps the two listeners' connections together, in all and per client address
    (closed before any TLS handshake, as on the HTTPS listeners). ``rate_limits``: see ``LegacyBackend``.
    """
    directory = _data_dir(data_dir)
    ensure_server_keys(directory)
    backend = LegacyBackend(
        database,
        options=options,
        secret=ensure_legacy_secret(directory.keys_dir),
        mail_auth_key=load_server_key(directory, "mail-auth"),
        send_key=load_server_key(directory, "send"),
        open_signup=open_signup,
        clock=reactor.seconds,
        rate_limits=rate_limits,
    )
    web = LegacyWeb(
        backend,
        submission=submission,
        keyserver=websocket_resource("key", backend, idle_timeout=options.idle_timeout, reactor=reactor),
        mailserver=websocket_resource("mail", backend, idle_timeout=options.idle_timeout, reactor=reactor),
        default_quota=default_quota,
    )
    services: list[IService] = [_Warning()]
    for role, endpoint in (("key", options.keyserver_endpoint), ("mail", options.mailserver_endpoint)):
        factory: Any = LegacyLineFactory(role, backend, idle_timeout=options.idle_timeout, reactor=reactor)  # type: ignore[arg-type]
        if not options.plain:
            factory = TLSMemoryBIOFactory(tls_contexts.server_context_factory("ca"), False, factory)
        if connections is not None:
            factory = LimitedFactory(factory, connections)
        service = StreamServerEndpointService(serverFromString(reactor, endpoint), factory)
        service.setName(f"legacy-{role}server")
        services.append(service)
    return LegacyParts(services=services, web_resource=web.resource(), backend=backend, web=web)


def legacy_keys_text(data_dir: DataDir | Path | str) -> str:
    """The mail-auth and send public keys as the original web client embeds them (b64 SPKI DER).

    One ``"name": "value",`` line each, ready for ``window.EmbeddedResources``.
    """
    directory = _data_dir(data_dir)
    ensure_server_keys(directory)
    lines = []
    for purpose, name in EMBEDDED_KEY_NAMES.items():
        der = public_key_der(load_server_key(directory, purpose))
        lines.append(f'"{name}": "{base64.b64encode(der).decode("ascii")}",')
    return "\n".join(lines) + "\n"
