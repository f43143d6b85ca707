"""The HTTPS listener's connection caps over real TLS connections on the loopback.

The listener is built by ``https_listener_factory``, as the appliance builds it, around the real
web app. Different peers are simulated by binding the client to 127.0.0.2, 127.0.0.3, ...
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from mailiverse.tls import TLSContexts, ensure_self_signed
from mailiverse.web.listeners import WebLimits, https_listener_factory
from tests.support.webapi import Api


class Listener:
    """The app's HTTPS listener on a free 127.0.0.1 port, and clients that trust its certificate."""

    def __init__(self, api: Api, tmp_path: Path, limits: WebLimits) -> None:
        cert, key = ensure_self_signed(tmp_path / "tls", "localhost")
        creator = TLSContexts((cert, key)).server_context_factory("ca")
        self.limiter = limits.limiter()
        factory = https_listener_factory(api.app.site(), creator, self.limiter)
        self.port: Any = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.number: int = self.port.getHost().port
        self.context = ssl.create_default_context(cafile=str(cert))

    def connect(self, source: str) -> http.client.HTTPSConnection:
        """A TLS connection from ``source`` with the handshake done (raises OSError when refused)."""
        raw = socket.create_connection(("127.0.0.1", self.number), timeout=10, source_address=(source, 0))
        try:
            tls = self.context.wrap_socket(raw, server_hostname="localhost")
        except OSError:
            raw.close()
            raise
        connection = http.client.HTTPSConnection("localhost", self.number, context=self.context, timeout=10)
        connection.sock = tls
        return connection


def health(connection: http.client.HTTPSConnection) -> int:
    """GET /api/health on an open connection (kept alive); the status."""
    connection.request("GET", "/api/health")
    response = connection.getresponse()
    assert json.loads(response.read())["status"] == "ok"
    return response.status


def refused(connect: Callable[[], http.client.HTTPSConnection]) -> bool:
    """True if the server closes the connection before the TLS handshake completes."""
    try:
        connection = connect()
    except (ssl.SSLError, ConnectionError):
        return True
    connection.close()
    return False


def eventually_admitted(connect: Callable[[], http.client.HTTPSConnection], attempts: int = 50) -> bool:
    """True once a new connection gets in (the server learns of an earlier close asynchronously)."""
    for _ in range(attempts):
        if not refused(connect):
            return True
    return False


@pytest.fixture
def listeners() -> Iterator[list[Listener]]:
    """Listeners a test opens, closed after it."""
    opened: list[Listener] = []
    yield opened
    for listener in opened:
        listener.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_per_address_cap_refuses_extra_tls_connections(
    api: Api, tmp_path: Path, listeners: list[Listener]
) -> None:
    """Past the per-address cap the extra TLS connection from 127.0.0.2 is closed before the handshake,
    127.0.0.3 still gets in, and closing one connection frees a slot."""
    listener = Listener(api, tmp_path, WebLimits(max_connections=100, max_connections_per_address=3))
    listeners.append(listener)

    def scenario() -> dict[str, Any]:
        held = [listener.connect("127.0.0.2") for _ in range(3)]
        try:
            outcome: dict[str, Any] = {"held": [health(c) for c in held]}
            outcome["extra_refused"] = refused(lambda: listener.connect("127.0.0.2"))
            other = listener.connect("127.0.0.3")
            outcome["other"] = health(other)
            other.close()
            outcome["held_still_served"] = [health(c) for c in held]
            held.pop().close()
            outcome["after_close"] = eventually_admitted(lambda: listener.connect("127.0.0.2"))
            return outcome
        finally:
            for connection in held:
                connection.close()

    outcome = await deferToThread(scenario)
    assert outcome == {
        "held": [200, 200, 200],
        "extra_refused": True,
        "other": 200,
        "held_still_served": [200, 200, 200],
        "after_close": True,
    }


@pytest_twisted.ensureDeferred
async def test_total_cap_refuses_every_address(api: Api, tmp_path: Path, listeners: list[Listener]) -> None:
    """With the total cap reached a new address is refused too, until a connection closes."""
    listener = Listener(api, tmp_path, WebLimits(max_connections=3, max_connections_per_address=32))
    listeners.append(listener)

    def scenario() -> tuple[bool, bool]:
        held = [listener.connect(f"127.0.0.{4 + i}") for i in range(3)]
        try:
            assert [health(c) for c in held] == [200, 200, 200]
            full = refused(lambda: listener.connect("127.0.0.9"))
            held.pop(0).close()
            return full, eventually_admitted(lambda: listener.connect("127.0.0.9"))
        finally:
            for connection in held:
                connection.close()

    full, admitted = await deferToThread(scenario)
    assert full and admitted
