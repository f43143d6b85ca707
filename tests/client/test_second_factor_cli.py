"""``mailiverse-client`` and an account with a second factor: it has no authenticator, so it asks for a recovery
code (``--recovery-code``, ``MAILIVERSE_RECOVERY_CODE`` or a prompt), and each code works once."""

from __future__ import annotations

import io

import pytest_twisted

from mailiverse.client.cli import main
from tests.support.client import PASSWORD, Served, in_thread, run_cli
from tests.support.softauthn import enrol_passkey
from tests.support.webapi import BASE, signed_in


async def _enrolled(served: Served) -> list[str]:
    client = await signed_in(served.api, "alice", PASSWORD)
    _authenticator, codes = await enrol_passkey(client, BASE)
    return codes


@pytest_twisted.ensureDeferred
async def test_cli_logs_in_with_a_recovery_code_once(served: Served) -> None:
    """Without a code the login fails (exit 3, one line); with --recovery-code it succeeds; the same code twice
    fails; a prompt on the terminal and MAILIVERSE_RECOVERY_CODE work too."""
    codes = await _enrolled(served)
    missing = await run_cli(served.argv("alice", "login"))
    assert missing.status == 3 and missing.stdout == ""
    assert missing.stderr.count("\n") == 1 and "recovery code" in missing.stderr

    first = await run_cli(["--recovery-code", codes[0], *served.argv("alice", "login")])
    assert first.status == 0, first.stderr
    assert first.stdout.startswith("logged in as alice")
    again = await run_cli(["--recovery-code", codes[0], *served.argv("alice", "login")])
    assert again.status == 3 and "not accepted" in again.stderr and codes[0] not in again.stderr

    asked: list[str] = []

    def prompt(label: str) -> str:
        asked.append(label)
        return codes[1].lower()

    prompted = await run_cli(served.argv("alice", "ls"), prompt=prompt)
    assert prompted.status == 0, prompted.stderr
    assert asked == ["Recovery code for alice (the account has a second factor): "]

    out, err = io.StringIO(), io.StringIO()
    environ = {"MAILIVERSE_PASSWORD": PASSWORD, "MAILIVERSE_RECOVERY_CODE": codes[2]}
    status = await in_thread(
        main, served.argv("alice", "login"), stdin=io.BytesIO(), stdout=out, stderr=err, environ=environ
    )
    assert status == 0, err.getvalue()
    assert out.getvalue().startswith("logged in as alice")


@pytest_twisted.ensureDeferred
async def test_wrong_password_is_still_exit_3_without_asking_for_a_code(served: Served) -> None:
    """A wrong password fails before any second factor: no prompt for a recovery code."""
    await _enrolled(served)
    asked: list[str] = []

    def prompt(label: str) -> str:
        asked.append(label)
        raise EOFError()

    wrong = await run_cli(served.argv("alice", "login"), password="not the password at all", prompt=prompt)
    assert wrong.status == 3 and wrong.stderr == "mailiverse-client: wrong user name or password\n"
    assert asked == []
