"""The web service of the real twistd: MTA-STS policy and its switch."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.harness import DOMAIN, Appliance, https_get

pytestmark = pytest.mark.integration


def test_mta_sts_policy_is_served_and_can_be_switched_off(tmp_path: Path) -> None:
    """/.well-known/mta-sts.txt names the MX host in testing mode by default, enforce on request, 404 with none."""
    app = Appliance(tmp_path / "default")
    app.start()
    try:
        code, body = https_get(app, "/.well-known/mta-sts.txt")
        assert code == 200
        assert body.decode().split("\r\n") == [
            "version: STSv1",
            "mode: testing",
            f"mx: mail.{DOMAIN}",
            "max_age: 604800",
            "",
        ]
    finally:
        app.stop()
    app = Appliance(tmp_path / "enforce", extra_args=["--mta-sts-mode", "enforce"])
    app.start()
    try:
        assert b"mode: enforce\r\n" in https_get(app, "/.well-known/mta-sts.txt")[1]
    finally:
        app.stop()
    app = Appliance(tmp_path / "off", extra_args=["--mta-sts-mode", "none"])
    app.start()
    try:
        assert https_get(app, "/.well-known/mta-sts.txt")[0] == 404
    finally:
        app.stop()
