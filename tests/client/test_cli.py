"""``mailiverse-client`` argument handling, output shapes and exit codes, in-process against the real app over HTTPS."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import pytest_twisted

from mailiverse.client.api import MessageInfo, folder_path
from mailiverse.client.cli import clean, format_listing, format_message, main
from mailiverse.client.errors import UsageError
from mailiverse.store import accounts as repo
from tests.support.client import PASSWORD, Served, run_cli


def _offline(argv: list[str]) -> tuple[int, str]:
    """Run the CLI with a transport factory that must never be reached."""
    err = io.StringIO()

    def no_network(_args: object) -> object:
        raise AssertionError("no request expected")

    status = main(argv, transport_factory=no_network, stdout=io.StringIO(), stderr=err, environ={})  # type: ignore[arg-type]
    return status, err.getvalue()


@pytest.mark.parametrize(
    "argv",
    [
        ["--user", "alice", "login"],
        ["--server", "https://localhost", "login"],
        ["--server", "https://localhost", "--user", "alice"],
        ["--server", "https://localhost", "--user", "alice", "frobnicate"],
        ["--server", "https://localhost", "--user", "alice", "--ca", "a.pem", "--fingerprint", "00" * 32, "login"],
        ["--server", "https://localhost", "--user", "alice", "send", "--subject", "no recipient"],
        ["--server", "https://localhost", "--user", "alice", "read"],
    ],
)
def test_usage_errors_exit_2_with_one_line(argv: list[str]) -> None:
    """Missing or conflicting arguments exit 2 with exactly one line on stderr."""
    status, err = _offline(argv)
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("mailiverse-client: ")


@pytest.mark.parametrize(
    "argv",
    [
        ["--server", "http://localhost:8443", "--user", "alice", "login"],
        ["--server", "https://localhost/path", "--user", "alice", "login"],
        ["--server", "https://localhost", "--user", "alice", "--fingerprint", "abc", "login"],
        ["--server", "https://localhost", "--user", "al ice", "login"],
    ],
)
def test_bad_server_pin_or_user_is_refused_before_connecting(argv: list[str]) -> None:
    """A non-https URL, a malformed fingerprint or an invalid user name is a usage error (exit 2, one line)."""

    def refusing_factory(args: object) -> object:
        from mailiverse.client.cli import default_transport

        return default_transport(args)  # type: ignore[arg-type]

    err = io.StringIO()
    status = main(argv, transport_factory=refusing_factory, stdout=io.StringIO(), stderr=err, environ={})  # type: ignore[arg-type]
    assert status == 2 and err.getvalue().count("\n") == 1


def test_folder_names() -> None:
    """Inbox and Sent map to Mail/In and Mail/Sent; twins, traversal and junk are refused."""
    assert folder_path("Inbox") == "Mail/In"
    assert folder_path("sent") == "Mail/Sent"
    assert folder_path("Mail/In") == "Mail/In"
    for bad in ("Mail/In_Json", "../x", "Mail/a/b", "", "Mail/"):
        with pytest.raises(UsageError):
            folder_path(bad)


def test_terminal_escapes_are_neutralised() -> None:
    """Escape sequences in a subject or body cannot reach the terminal; tabs never split an ls line."""
    info = MessageInfo("1_2", "Mail/In/1_2", 0, "Eve <eve@x.org>", "hi\x1b[2J\tthere\u009b", 10)
    line = format_listing(info)
    assert "\x1b" not in line and "\u009b" not in line
    assert line.split("\t") == ["1_2", "1970-01-01T00:00:00Z", "Eve <eve@x.org>", "hi\ufffd[2J\ufffdthere\ufffd"]
    shown = format_message(b"From: a@b.c\r\nSubject: s\x1b]0;t\x07\r\n\r\nline one\r\n\x1b[31mred\r\n")
    assert "\x1b" not in shown and "\x07" not in shown
    assert "line one\n" in shown and "\r" not in shown
    assert clean("a\nb") == "a\ufffdb"


@pytest_twisted.ensureDeferred
async def test_full_cli_flow(served: Served, tmp_path: Path) -> None:
    """signup, login, send, ls, read, passwd and export through the CLI, each exiting 0 with the documented output."""
    signup = await run_cli(served.argv("Alice", "signup"))
    assert (signup.status, signup.stderr) == (0, "")
    assert "alice@example.org" in signup.stdout
    login = await run_cli(served.argv("alice", "login"))
    assert login.status == 0 and login.stdout.startswith("logged in as alice")
    sent = await run_cli(
        served.argv("alice", "send", "--to", "alice@example.org", "--subject", "Hello there"), stdin=b"Body line\n"
    )
    assert sent.status == 0, sent.stderr
    assert "delivered to alice@example.org" in sent.stdout
    listing = await run_cli(served.argv("alice", "ls"))
    assert listing.status == 0
    [line] = listing.stdout.splitlines()
    message_id, date, sender, subject = line.split("\t")
    assert (sender, subject) == ("alice@example.org", "Hello there")
    assert date.endswith("Z")
    sent_listing = await run_cli(served.argv("alice", "ls", "--folder", "Sent"))
    assert sent_listing.stdout.split("\t")[0] == sent.stdout.split()[1].rstrip(":")
    read = await run_cli(served.argv("alice", "read", message_id))
    assert read.status == 0
    assert "Subject: Hello there" in read.stdout and "Body line" in read.stdout
    passwd = await run_cli(served.argv("alice", "passwd"), new_password="brand new long password")
    assert passwd.status == 0, passwd.stderr
    old = await run_cli(served.argv("alice", "login"))
    assert old.status == 3 and old.stderr == "mailiverse-client: wrong user name or password\n"
    export = await run_cli(served.argv("alice", "export", str(tmp_path / "md")), password="brand new long password")
    assert export.status == 0 and "exported 2 message(s)" in export.stdout


@pytest_twisted.ensureDeferred
async def test_cli_failures_are_one_line(served: Served) -> None:
    """Wrong password, closed sign-up, a taken name, an unknown ID and a missing password
    each exit non-zero with one line."""
    assert (await run_cli(served.argv("alice", "signup"))).status == 0
    wrong = await run_cli(served.argv("alice", "login"), password="nope, wrong")
    assert wrong.status == 3 and wrong.stderr.count("\n") == 1
    closed = await run_cli(served.argv("bob", "signup"))
    assert closed.status == 1 and "signup_closed" in closed.stderr and closed.stderr.count("\n") == 1
    code, _ = await served.api.database.transact(repo.create_invite_txn)
    taken = await run_cli(served.argv("ALICE", "signup", "--invite", code))
    assert taken.status == 1 and "username_taken" in taken.stderr
    invited = await run_cli(served.argv("bob", "signup", "--invite", code))
    assert invited.status == 0, invited.stderr
    missing = await run_cli(served.argv("alice", "read", "123_456"))
    assert missing.status == 2 and "no message" in missing.stderr
    no_password = await run_cli(served.argv("alice", "login"), password=None)
    assert no_password.status == 2 and "MAILIVERSE_PASSWORD" in no_password.stderr
    unknown = await run_cli(served.argv("alice", "send", "--to", "ghost@example.org", "--subject", "x"), stdin=b"x")
    assert unknown.status == 1 and "unknown_recipient" in unknown.stderr
    for result in (wrong, closed, taken, missing, no_password, unknown):
        assert result.stdout == "" and PASSWORD not in result.stderr


@pytest_twisted.ensureDeferred
async def test_prompts_when_no_environment(served: Served) -> None:
    """Without MAILIVERSE_PASSWORD the password is prompted for; sign-up asks twice and refuses a mismatch."""
    answers = iter([PASSWORD, "something else"])
    mismatch = await run_cli(served.argv("alice", "signup"), password=None, prompt=lambda _label: next(answers))
    assert mismatch.status == 2 and "differ" in mismatch.stderr
    asked: list[str] = []

    def prompt(label: str) -> str:
        asked.append(label)
        return PASSWORD

    assert (await run_cli(served.argv("alice", "signup"), password=None, prompt=prompt)).status == 0
    assert (await run_cli(served.argv("alice", "login"), password=None, prompt=prompt)).status == 0
    assert asked == ["Password for alice: ", "Password again: ", "Password for alice: "]
