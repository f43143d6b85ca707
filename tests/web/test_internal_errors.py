"""An unexpected failure answers 500 in the API's JSON shape and is logged by type and place, never by message."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.logger import formatEvent, globalLogPublisher

from tests.support.webapi import Api


@pytest_twisted.ensureDeferred
async def test_unexpected_failure_is_json_500_and_logged_without_its_message(api: Api) -> None:
    """A route that fails unexpectedly answers 500 ``internal``; the log names the exception and route,
    not the secret in it."""
    canary = "canary-4f1e9b secret text"

    async def broken() -> bool:
        raise RuntimeError(canary)

    api.app.accounts.signup_open = broken  # type: ignore[method-assign]
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        reply = await api.client().call("GET", "/api/signup?user=bob%40example.org", auth=None)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert reply.status == 500
    assert reply.json() == {"error": "internal", "message": "internal error"}
    assert canary not in reply.body.decode()
    logged = [formatEvent(event) for event in events]
    failures = [text for text in logged if "failed:" in text]
    assert failures, logged
    assert "RuntimeError" in failures[0] and "GET /api/signup" in failures[0]
    assert "test_internal_errors.py" in failures[0]  # where it was raised
    assert not any(canary in text or "bob" in text for text in logged)
