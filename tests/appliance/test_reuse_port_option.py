"""``--reuse-port``: off by default, on as a flag, and refused with an error naming the option for a listener that
is not a plain tcp: endpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.python import usage

from tests.support.options import parse


def test_off_by_default_and_on_with_the_flag(tmp_path: Path) -> None:
    """Without the flag listeners bind exclusively; --reuse-port turns SO_REUSEPORT on for them."""
    assert parse(tmp_path).reuse_port is False
    assert parse(tmp_path, "--reuse-port", "--smtp", "tcp6:2525", "--web-plain", "tcp:8080").reuse_port is True


@pytest.mark.parametrize(
    "args",
    [
        ["--smtp", "unix:/tmp/smtp.sock"],
        ["--smtps-selfsigned", "ssl:4651:privateKey=k.pem"],
        ["--web", "ssl:8443:privateKey=k.pem"],
        ["--web-plain", "unix:/tmp/web.sock"],
    ],
)
def test_a_listener_that_is_not_tcp_is_refused(tmp_path: Path, args: list[str]) -> None:
    """SO_REUSEPORT needs a TCP socket the appliance binds itself: another endpoint type is a usage error."""
    with pytest.raises(usage.UsageError, match=r"--reuse-port works with tcp: endpoints only, and '(unix|ssl):"):
        parse(tmp_path, "--reuse-port", *args)


def test_a_system_without_so_reuseport_is_told_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the socket option does not exist, --reuse-port stops start-up saying what is missing."""
    import socket

    monkeypatch.delattr(socket, "SO_REUSEPORT")
    with pytest.raises(usage.UsageError, match="--reuse-port needs the SO_REUSEPORT socket option"):
        parse(tmp_path, "--reuse-port")
