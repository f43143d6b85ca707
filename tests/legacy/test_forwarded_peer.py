"""The legacy web routes behind a trusted proxy: StoreEnable, Send and the WebSocket line servers count
the forwarded client, as the API does; their access-log lines name the route, never the query.

The legacy resource is mounted in the web app (``build_web_app(legacy_resource=...)``) exactly as the
appliance mounts it, and the app's plain-HTTP Site is served on a real socket on 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path

import pytest_twisted
from twisted.internet import reactor
from twisted.logger import formatEvent
from twisted.web.server import Site

from mailiverse.auth.forwarded import TrustedProxies
from mailiverse.submission import Submission
from mailiverse.web.wiring import build_web_app
from tests.support.legacy import DOMAIN, LegacyAppliance
from tests.support.legacy_client import WsLines
from tests.support.logs import captured
from tests.support.loopback_http import LoopbackClient, serving

LOOPBACK_PROXY = TrustedProxies.parse(["127.0.0.0/8"])
#: The legacy StoreEnable budget per client address (LegacyBackend.enable_limiter).
ENABLE_BUDGET = 20


def plain_site(appliance: LegacyAppliance, tmp_path: Path, trusted: TrustedProxies) -> Site:
    app, _purger = build_web_app(
        appliance.database,
        hostname="mail." + DOMAIN,
        domains=(DOMAIN,),
        submission=Submission(appliance.delivery, (DOMAIN,)),
        reactor=reactor,
        static_dir=tmp_path,
        legacy_resource=appliance.parts.web_resource,
        spool_dir=tmp_path / "spool",
    )
    return app.plain(trusted).site()


async def _enable(http: LoopbackClient, forwarded_for: str) -> str:
    reply = await http.request(
        "GET", "/Mailiverse/StoreEnable?email=canary@elsewhere.example", headers={"X-Forwarded-For": forwarded_for}
    )
    assert reply.status == 403, reply.body
    return str(reply.json()["message"])


@pytest_twisted.ensureDeferred
async def test_store_enable_counts_the_forwarded_client(appliance: LegacyAppliance, tmp_path: Path) -> None:
    """StoreEnable's per-address budget is the forwarded client's behind a trusted proxy, the peer's otherwise."""
    with captured() as events:
        async with serving(plain_site(appliance, tmp_path, LOOPBACK_PROXY)) as http:
            messages = [await _enable(http, "198.51.100.7") for _ in range(ENABLE_BUDGET)]
            assert not [m for m in messages if "too many" in m]
            assert "too many" in await _enable(http, "198.51.100.7")
            assert "too many" not in await _enable(http, "198.51.100.8")
    lines = [formatEvent(e) for e in events if e.get("log_namespace") == "mailiverse.accesslog"]
    assert lines and all(line.startswith("GET /Mailiverse/StoreEnable 403 ") for line in lines), lines
    assert not [e for e in events if "canary" in repr(e) or "198.51.100" in repr(e)]


@pytest_twisted.ensureDeferred
async def test_store_enable_ignores_headers_from_an_untrusted_peer(appliance: LegacyAppliance, tmp_path: Path) -> None:
    """From a peer that is not a trusted proxy, a new X-Forwarded-For buys no new StoreEnable budget."""
    async with serving(plain_site(appliance, tmp_path, TrustedProxies.parse(["10.0.0.0/8"]))) as http:
        for n in range(ENABLE_BUDGET):
            assert "too many" not in await _enable(http, f"198.51.100.{n}")
        assert "too many" in await _enable(http, "192.0.2.1")


@pytest_twisted.ensureDeferred
async def test_websocket_session_knows_the_forwarded_client(appliance: LegacyAppliance, tmp_path: Path) -> None:
    """A legacy WebSocket session through a trusted proxy keys its limits by the forwarded client."""
    with captured() as events:
        async with serving(plain_site(appliance, tmp_path, LOOPBACK_PROXY)) as http:
            port = int(http.base.rsplit(":", 1)[1])
            lines = await WsLines.connect(reactor, port, "/Mailiverse/KeyServer", {"X-Forwarded-For": "198.51.100.9"})
            await lines.send(b"not a packet")
            assert await lines.recv() is None
    closed = [e for e in events if "connection from" in e.get("log_format", "")]
    assert [e["peer"] for e in closed] == ["198.51.100.9"]
