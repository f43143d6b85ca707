"""``mailiverse-client move`` refuses usage mistakes before it asks for a password or opens a connection."""

from __future__ import annotations

import io
from typing import Any

import pytest

from mailiverse.client.cli import EXIT_USAGE, main


def _no_transport(_args: Any) -> Any:
    raise AssertionError("a usage mistake must not open a connection")


@pytest.mark.parametrize(
    "command",
    [
        ["move", "--to", "https://new.example", "--grace-days", "366"],
        ["move", "--to", "https://new.example", "--grace-days", "-1"],
        ["move", "--to", "https://new.example", "--grace-days", "1.5"],
        ["move", "--to", "https://new.example", "--grace-days", "thirty"],
        ["move", "--status", "--finish-delete"],
        ["move", "--to", "https://new.example", "--to-ca", "x.pem", "--to-fingerprint", "00"],
    ],
)
def test_usage_mistakes_exit_2(command: list[str]) -> None:
    """Bad grace values and options that do not go together are usage errors (exit status 2), said on stderr."""
    err = io.StringIO()
    status = main(
        ["--server", "https://old.example", "--user", "alice", *command],
        transport_factory=_no_transport,
        stdout=io.StringIO(),
        stderr=err,
        environ={},
    )
    assert status == EXIT_USAGE and err.getvalue().startswith("mailiverse-client: ")
