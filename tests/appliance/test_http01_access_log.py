"""The plain-HTTP ACME port logs requests by route too: a challenge token or a path someone typed on
port 80 (and redirected to HTTPS) never reaches the log."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.logger import formatEvent, globalLogPublisher

from mailiverse.acme.http01 import ChallengeStore, acme_http_site
from tests.support.loopback_http import serving

TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"


@pytest_twisted.ensureDeferred
async def test_http01_port_logs_routes_not_tokens_or_paths() -> None:
    """A challenge answer is logged as the challenge route, a redirect as ``/*``; no token, path or query."""
    store = ChallengeStore()
    store.put(TOKEN, f"{TOKEN}.thumb")
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        async with serving(acme_http_site(store)) as http:
            answer = await http.request("GET", f"/.well-known/acme-challenge/{TOKEN}")
            moved = await http.request(
                "GET", "/api/keys/canary.person@example.org?q=canary-query", headers={"User-Agent": "canary-agent"}
            )
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert (answer.status, moved.status) == (200, 301)
    texts = [formatEvent(e) for e in events] + [repr(e) for e in events]
    assert not [t for t in texts if TOKEN in t or "canary" in t]
    lines = [formatEvent(e) for e in events if e.get("log_namespace") == "mailiverse.accesslog"]
    assert [" ".join(line.split()[:3]) for line in lines] == [
        "GET /.well-known/acme-challenge/<token> 200",
        "GET /* 301",
    ], lines
