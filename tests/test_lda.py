"""``mailiverse-deliver``, the console script, against a real appliance's ``--lmtp`` listeners: what lands in the
mailbox (sealed, and as sent) and the sysexits status Postfix and sendmail act on, with a one-line reason on stderr
that never quotes the message or an address."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from mailiverse import lda
from mailiverse.config import DEFAULT_MAX_MESSAGE_SIZE
from mailiverse.smtp.limits import SmtpLimits
from mailiverse.smtp.lmtp import lmtp_server_factory
from mailiverse.testing import MemoryInbox
from tests.support.appliance_state import read_store
from tests.support.harness import BIN, DOMAIN, Appliance, free_port
from tests.support.independent import open_mail

DELIVER = str(BIN / "mailiverse-deliver")
SUBJECT = b"Subject: handed over by an LDA"


def mbox_message(tag: str) -> tuple[bytes, bytes]:
    """A message as a local(8) command receives it (an mbox From line, LF line ends, a line starting with a dot), and
    what the appliance should store of it. ``tag`` makes it unique: the appliance stores the same message once."""
    body = b"From: Bob <bob@remote.test>\nTo: alice@example.org\nMessage-ID: <%s@remote.test>\n" % tag.encode()
    body += SUBJECT + b"\n\nfirst line\n.leading dot\nlast line\n"
    return b"From bob@remote.test  Sat Nov 21 10:00:00 2026\n" + body, body.replace(b"\n", b"\r\n")


MBOX_MESSAGE, _ = mbox_message("refused")


class Running:
    def __init__(self, app: Appliance, socket_path: Path, tcp_port: int, key: object) -> None:
        self.app, self.socket_path, self.tcp_port, self.key = app, socket_path, tcp_port, key

    def deliver(
        self, *args: str, message: bytes = MBOX_MESSAGE, env: dict[str, str] | None = None, socket: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        command = [DELIVER, *(["--socket", str(self.socket_path)] if socket else []), *args]
        environ = {"PATH": os.environ["PATH"], **(env or {})}
        result = subprocess.run(command, input=message, capture_output=True, timeout=120, env=environ)
        # One short line at most, never the message or an address.
        assert result.stderr.count(b"\n") <= 1, result.stderr
        assert b"@" not in result.stderr and b"leading dot" not in result.stderr, result.stderr
        return result

    def inbox(self) -> list[bytes]:
        """alice's messages, decrypted with her key."""
        return [open_mail(self.key, blob) for blob in read_store(self.app, "alice", "Mail/In/").values()]  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One appliance with an LMTP unix socket and an LMTP TCP port; alice (room), carol (no room left)."""
    root = tmp_path_factory.mktemp("lda")
    socket_path = root / "lmtp.sock"
    tcp_port = free_port()
    app = Appliance(root / "app", extra_args=["--lmtp", f"unix:{socket_path}", "--lmtp", f"tcp:{tcp_port}"])
    app.start()
    try:
        key = app.add_user("alice", "v2")
        app.add_user("carol", "v2")
        app.admin("user", "quota", "carol", "10")
        yield Running(app, socket_path, tcp_port, key)
    finally:
        app.stop()


def _new_message(running: Running, before: list[bytes]) -> bytes:
    """The one message alice has now that she did not have ``before``, decrypted."""
    [new] = [message for message in running.inbox() if message not in before]
    return new


def test_delivered_with_options_and_exit_0(running: Running) -> None:
    """-f and -a: exit 0, nothing on stderr, and alice's mailbox holds the message sealed (it decrypts with her
    key only), the mbox From line gone, LF made CRLF, the leading dot kept, under an LMTP trace field."""
    before = running.inbox()
    message, expected = mbox_message("options")
    result = running.deliver("-f", "bob@remote.test", "-a", f"alice@{DOMAIN}", message=message)
    assert (result.returncode, result.stderr) == (0, b"")
    stored = read_store(running.app, "alice", "Mail/In/")
    assert all(expected not in blob and SUBJECT not in blob for blob in stored.values())
    plain = _new_message(running, before)
    assert plain.endswith(expected)
    assert b"with LMTP id" in plain and b"From bob@remote.test  Sat" not in plain
    assert stat.S_IMODE(os.stat(running.socket_path).st_mode) == 0o660


def test_delivered_from_postfix_environment_over_tcp(running: Running) -> None:
    """No -a/-f: $RECIPIENT and $SENDER as local(8) sets them, over --lmtp tcp:HOST:PORT; exit 0."""
    before = running.inbox()
    env = {"SENDER": "bob@remote.test", "RECIPIENT": f"alice@{DOMAIN}", "ORIGINAL_RECIPIENT": f"nobody@{DOMAIN}"}
    message, expected = mbox_message("environment")
    result = running.deliver("--lmtp", f"tcp:127.0.0.1:{running.tcp_port}", env=env, socket=False, message=message)
    assert (result.returncode, result.stderr) == (0, b"")
    assert _new_message(running, before).endswith(expected)
    # The same message again (a retry after a lost reply): delivered, and kept once.
    again = running.deliver("--lmtp", f"tcp:127.0.0.1:{running.tcp_port}", env=env, socket=False, message=message)
    assert again.returncode == 0
    assert len(running.inbox()) == len(before) + 1


def test_unknown_user_exits_67(running: Running) -> None:
    """A recipient the appliance does not know: EX_NOUSER (67), and the appliance's 5.1.1 on stderr."""
    result = running.deliver("-f", "bob@remote.test", "-a", f"nobody@{DOMAIN}")
    assert result.returncode == lda.EX_NOUSER == 67
    assert b"550 5.1.1" in result.stderr


def test_full_mailbox_exits_75(running: Running) -> None:
    """A mailbox with no room (452 4.2.2 from the appliance): EX_TEMPFAIL (75), so the MTA keeps the message."""
    result = running.deliver("-f", "bob@remote.test", "-a", f"carol@{DOMAIN}")
    assert result.returncode == lda.EX_TEMPFAIL == 75
    assert b"452 4.2.2" in result.stderr
    assert read_store(running.app, "carol", "Mail/In/") == {}


def test_permanent_refusal_exits_69(running: Running) -> None:
    """A message the judgement refuses for good (a From in the appliance's own domain, 550 5.7.1): EX_UNAVAILABLE."""
    forged = MBOX_MESSAGE.replace(b"From: Bob <bob@remote.test>", f"From: <ceo@{DOMAIN}>".encode())
    result = running.deliver("-f", "bob@remote.test", "-a", f"alice@{DOMAIN}", message=forged)
    assert result.returncode == lda.EX_UNAVAILABLE == 69
    assert b"550 5.7.1" in result.stderr


def test_missing_socket_exits_75(tmp_path: Path) -> None:
    """No listener at the socket path (the appliance is down): EX_TEMPFAIL, the message stays with the MTA."""
    result = subprocess.run(
        [DELIVER, "--socket", str(tmp_path / "absent.sock"), "-f", "", "-a", f"alice@{DOMAIN}"],
        input=MBOX_MESSAGE,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 75
    assert b"cannot reach" in result.stderr


@pytest.mark.parametrize(
    ("args", "message", "reason"),
    [
        (["--max-size", "100"], MBOX_MESSAGE, b"larger than 100"),
        ([], b"From: b@r.test\nSubject: long\n\n" + b"x" * 999 + b"\n", b"longer than 998"),
        ([], b"From: b@r.test\nSubject: cr\n\nbare\rcarriage return\n", b"bare CR"),
        ([], b"", b"empty"),
        ([], b"From bob@remote.test Sat Nov 21 10:00:00 2026\n", b"empty"),
    ],
)
def test_undeliverable_input_exits_65(running: Running, args: list[str], message: bytes, reason: bytes) -> None:
    """Oversized, a line over 998 octets, a bare CR, nothing at all: EX_DATAERR (65) before the appliance is asked."""
    result = running.deliver("-f", "bob@remote.test", "-a", f"alice@{DOMAIN}", *args, message=message)
    assert result.returncode == lda.EX_DATAERR == 65
    assert reason in result.stderr


def test_oversize_by_the_appliance_limit_exits_65(running: Running) -> None:
    """A message over the appliance's own limit (its SIZE refusal, 552 5.3.4) with a larger --max-size: 65 as well."""
    big = b"From: b@r.test\nSubject: big\n\n" + (b"y" * 900 + b"\n") * (DEFAULT_MAX_MESSAGE_SIZE // 900 + 10)
    result = running.deliver("-f", "bob@remote.test", "-a", f"alice@{DOMAIN}", "--max-size", str(2**27), message=big)
    assert result.returncode == 65
    assert b"552 5.3.4" in result.stderr


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["-f", "bob@remote.test"], {}),  # no recipient
        (["-a", f"alice@{DOMAIN}"], {}),  # no sender
        (["-f", "bob@remote.test", "-a", "alice"], {}),  # not an address
        (["-f", "bob@remote.test", "-a", f"alice@{DOMAIN}", "--max-size", "many"], {}),
        (["--no-such-option"], {"SENDER": "b@r.test", "RECIPIENT": f"alice@{DOMAIN}"}),
        (["-f", "b@r.test", "-a", f"alice@{DOMAIN}", "--lmtp", "ssl:host:1"], {}),
    ],
)
def test_usage_errors_exit_64(running: Running, args: list[str], env: dict[str, str]) -> None:
    """Bad or missing options (no recipient, no sender, a bad address, an unknown option): EX_USAGE (64)."""
    result = running.deliver(*args, env=env)
    assert result.returncode == lda.EX_USAGE == 64
    assert result.stderr.startswith(b"mailiverse-deliver: usage")


@pytest_twisted.ensureDeferred
async def test_a_451_from_the_appliance_exits_75(tmp_path: Path) -> None:
    """A local error after the dot (451 4.3.0, the inbox failed): EX_TEMPFAIL, so the MTA tries again."""
    (tmp_path / "spool").mkdir()
    factory = lmtp_server_factory(
        MemoryInbox(users={"alice": "alice"}, domains=[DOMAIN], fail=True),
        hostname=f"mail.{DOMAIN}",
        domains=[DOMAIN],
        limits=SmtpLimits(),
        spool_dir=tmp_path / "spool",
    )
    path = tmp_path / "lmtp.sock"
    port = reactor.listenUNIX(str(path), factory, mode=0o600)  # type: ignore[attr-defined]

    def run() -> subprocess.CompletedProcess[bytes]:
        command = [DELIVER, "--socket", str(path), "-f", "bob@remote.test", "-a", f"alice@{DOMAIN}"]
        return subprocess.run(command, input=MBOX_MESSAGE, capture_output=True, timeout=60)

    try:
        result = await deferToThread(run)
    finally:
        await port.stopListening()
    assert result.returncode == 75
    assert b"451 4.3.0" in result.stderr


def test_default_size_is_the_appliances() -> None:
    """The default --max-size is the appliance's default --max-message-size (50 MiB)."""
    assert lda.DEFAULT_MAX_SIZE == DEFAULT_MAX_MESSAGE_SIZE
