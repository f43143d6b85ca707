"""A twisted.web ``Site`` served on a real socket on 127.0.0.1, and a plain-HTTP client for it.

For tests that need what only a real connection has: the peer address the rate limits key on
and the access log the ``Site`` writes when a request finishes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.server import Site


@dataclass
class LoopbackReply:
    """One response as read off the socket."""

    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class LoopbackClient:
    """Plain HTTP to one port on 127.0.0.1, a new connection per request."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self._http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))

    async def request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, json_body: Any = None
    ) -> LoopbackReply:
        """Send one request (``path`` as raw as given) and read the whole answer."""
        sent = dict(headers or {})
        data = None
        if json_body is not None:
            data = json.dumps(json_body).encode("utf-8")
            sent.setdefault("Content-Type", "application/json")
        response = await self._http.request(method, self.base + path, headers=sent, data=data, allow_redirects=False)
        body = await response.content()
        return LoopbackReply(response.code, body)


@asynccontextmanager
async def serving(site: Site) -> AsyncIterator[LoopbackClient]:
    """Listen with ``site`` on a free port of 127.0.0.1 until the block ends."""
    port = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[attr-defined]
    try:
        yield LoopbackClient(port.getHost().port)
    finally:
        await port.stopListening()
