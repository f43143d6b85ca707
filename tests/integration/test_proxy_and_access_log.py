"""The real ``twistd mailiverse``: its access log names route templates, never user data, and behind
``--web-plain`` with ``--trusted-proxy`` each forwarded client has its own sign-up budget."""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.harness import Appliance, free_port, https_get

pytestmark = pytest.mark.integration

CANARIES = ("canary.person", "canary-query", "canary-folder", "canary-static", "198.51.100")
#: --open-signup's budget per client address (SignupPolicy.per_address).
SIGNUP_BUDGET = 5


def test_access_log_has_templates_and_no_user_data(appliance: Appliance) -> None:
    """Requests to the HTTPS port are logged as method, route template, status, size and duration."""
    assert https_get(appliance, "/api/keys/canary.person@example.org?q=canary-query")[0] == 401
    assert https_get(appliance, "/api/store/Mail/canary-folder/x")[0] == 401
    assert https_get(appliance, "/canary-static/canary.person@example.org")[0] == 404
    appliance.stop()
    log = appliance.log()
    assert re.search(r"GET /api/keys/<address> 401 \d+B \d+ms", log), log
    assert re.search(r"GET /api/store/<path> 401 \d+B \d+ms", log), log
    assert re.search(r"GET /\* 404 \d+B \d+ms", log), log
    assert not [canary for canary in CANARIES if canary in log], log


def _refused_signup(port: int, headers: dict[str, str]) -> int:
    """POST a sign-up for a reserved name over plain HTTP: 400 while the budget lasts, then 429."""
    b64 = lambda data: base64.b64encode(data).decode("ascii")  # noqa: E731
    body = {
        "user": "root",
        "salt": b64(b"s" * 16),
        "verifier": b64(b"v" * 256),
        "group": "rfc5054-2048-sha256",
        "public_key": b64(b"k" * 64),
        "key_block": b64(b"b" * 64),
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/signup",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return e.code


def test_trusted_proxy_gives_forwarded_clients_their_own_budget(tmp_path: Path) -> None:
    """--trusted-proxy 127.0.0.1 on a --web-plain listener: X-Forwarded-For names the client counted."""
    plain = free_port()
    app = Appliance(
        tmp_path / "proxied",
        extra_args=["--open-signup", "--web-plain", f"tcp:{plain}", "--trusted-proxy", "127.0.0.1"],
    )
    app.start()
    try:
        first = {"X-Forwarded-For": "198.51.100.7"}
        assert [_refused_signup(plain, first) for _ in range(SIGNUP_BUDGET)] == [400] * SIGNUP_BUDGET
        assert _refused_signup(plain, first) == 429
        assert _refused_signup(plain, {"X-Forwarded-For": "198.51.100.8"}) == 400
        assert _refused_signup(plain, {"Forwarded": "for=198.51.100.9"}) == 400
    finally:
        app.stop()
    assert "POST /api/signup 429" in app.log()
    assert "198.51.100" not in app.log()
