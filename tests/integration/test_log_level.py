"""``--log-level`` in a real twistd: the per-message "stored message" debug line is written after an SMTP delivery
with ``--log-level debug``, and not at the default level, which still writes the appliance's info lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.harness import DOMAIN, Appliance, stored
from tests.support.smtp import make_message, send_starttls

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("args", "written"),
    [(["--log-level", "debug", "--workers", "1"], True), (["--workers", "0"], False)],
    ids=["debug", "default"],
)
def test_the_stored_message_line_follows_the_level(tmp_path: Path, args: list[str], written: bool) -> None:
    """One message over SMTP: its debug line is in twistd's log only at --log-level debug. It names the
    sender's domain as the delivery worker read it from the message, never the address."""
    app = Appliance(tmp_path / "appliance", extra_args=args)
    app.start()
    try:
        app.add_user("alice", "v2")
        assert send_starttls(app, [f"alice@{DOMAIN}"], make_message("Logged?", "Body.\n")) == {}
        assert len(stored(app, "alice", "Mail/In/")) == 1
    finally:
        app.stop()  # every line is written by the time twistd exits
    log = app.log()
    assert "delivery workers: " in log, log  # an info line of the appliance, written at both levels
    assert ("stored message " in log) is written, log
    assert ("from a sender at remote.test" in log) is written, log
    assert "bob@remote.test" not in log and "Logged?" not in log
