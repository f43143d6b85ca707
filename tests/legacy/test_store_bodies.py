"""The legacy routes behind the appliance's Site: a StorePut body is capped from its MV signature before
the body streams (the store's cap when it verifies, a few KiB otherwise), and Send keeps its own cap.

The legacy protocol is served by tests/support/legacy.py; the web app (``build_web_app``, as the
appliance builds it) mounts its ``/Mailiverse/`` resource, and requests go through ``WebApp.site()``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

from mailiverse.contracts import IBodyGate
from tests.support.legacy import Client, LegacyAppliance
from tests.support.legacy_client import mv_headers
from tests.support.webapi import Api, make_api
from tests.support.wire import Wire, request_head

ANONYMOUS_CAP = 16 * 1024


@pytest.fixture
def mounted(appliance: LegacyAppliance, tmp_path: Path) -> Iterator[Api]:
    """The web app over the legacy appliance's database, with ``/Mailiverse/`` mounted as the appliance does."""
    web_dir = tmp_path / "web"
    web_dir.mkdir()
    api, delivery = make_api(appliance.database, web_dir)
    api.app.legacy_resource = appliance.parts.web_resource
    try:
        yield api
    finally:
        delivery.stop()


@pytest_twisted.ensureDeferred
async def test_signed_large_store_put_goes_through_the_site(appliance: LegacyAppliance, mounted: Api) -> None:
    """A correctly signed 3 MiB StorePut is stored whole; the same size with a forged signature is
    answered 403 before any of the body is read."""
    client = Client(appliance, "plain")
    await client.sign_up()
    data = secrets.token_bytes(3 * 1024 * 1024)
    wire = Wire(mounted.app.site())
    signed = mv_headers(client.key_id, client.secret, "PUT", "Cache/big", body=data)
    wire.send(request_head("PUT", "/Mailiverse/StorePut?Resource=Cache/big", signed, len(data)))
    await wire.stream(data, piece=64 * 1024)
    await wire.until(lambda: wire.complete)
    assert wire.response()[0] == 200, wire.transport.value()[-300:]
    got = await client.store("GET", "Cache/big")
    assert got.code == 200
    assert await got.content() == data

    forged_secret = base64.b64encode(os.urandom(32)).decode()
    forged = mv_headers(client.key_id, forged_secret, "PUT", "Cache/other", body=data)
    wire = Wire(mounted.app.site())
    wire.send(request_head("PUT", "/Mailiverse/StorePut?Resource=Cache/other", forged, len(data)))
    await wire.stream(data)
    status, headers, body = wire.response()
    assert status == 403
    assert json.loads(body)["error"] == "forbidden"
    assert headers["connection"] == "close"
    assert wire.fed < 2048, "nothing of the body is read once the signature is refused"


def test_legacy_resource_is_a_body_gate(appliance: LegacyAppliance) -> None:
    """The ``/Mailiverse/`` resource the appliance mounts provides IBodyGate."""
    assert verifyObject(IBodyGate, appliance.parts.web_resource)


def test_unsigned_store_put_is_capped_at_a_few_kib(appliance: LegacyAppliance, mounted: Api) -> None:
    """A StorePut without an MV Authorization declaring 64 MiB is answered 413 before its body."""
    wire = Wire(mounted.app.site())
    wire.send(request_head("PUT", "/Mailiverse/StorePut?Resource=Cache/x", {}, 64 * 1024 * 1024))
    status, _, body = wire.response()
    assert status == 413
    assert json.loads(body)["error"] == "body_too_large"
    assert wire.transport.disconnecting


@pytest_twisted.ensureDeferred
async def test_send_keeps_its_own_cap(appliance: LegacyAppliance, mounted: Api) -> None:
    """Send carries its credential inside its encrypted body, so it is read up to its own 1 MiB cap
    (the relay then judges it), and refused past that."""
    body = base64.b64encode(os.urandom(60_000))
    wire = Wire(mounted.app.site())
    wire.send(request_head("PUT", "/Mailiverse/Send", {}, len(body)))
    await wire.stream(body)
    await wire.until(lambda: wire.complete)
    status, _, reply = wire.response()
    assert len(body) > ANONYMOUS_CAP
    assert status == 400 and json.loads(reply)["error"] == "refused"

    wire = Wire(mounted.app.site())
    wire.send(request_head("PUT", "/Mailiverse/Send", {}, 2 * 1024 * 1024))
    assert wire.response()[0] == 413
