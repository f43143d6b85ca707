"""A real MTA in front: Debian's Postfix delivers the appliance's domain through its lmtp(8) client to ``--lmtp
unix:...``, and through ``mailiverse-deliver`` as a pipe(8) transport; the mail lands sealed and decrypts, an
unknown user bounces, and when the appliance is down Postfix keeps the message and delivers it, once, later."""

from __future__ import annotations

import os
import smtplib
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.test_postfix import postfix_root  # noqa: F401 - a fixture
from tests.support.appliance_state import read_store
from tests.support.harness import DOMAIN, Appliance
from tests.support.independent import open_mail
from tests.support.postfix_lda import DeliveringPostfix, postfix_available, socket_dir, socket_group
from tests.support.smtp import make_message

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not postfix_available() and not os.environ.get("CI"),
        reason="needs Debian's postfix installed (make test installs it) and root to start its master",
    ),
]

TRANSPORTS = ["lmtp", "pipe"]


class Setup:
    """The appliance (listening on an LMTP socket Postfix's group may use) and a Postfix delivering to it."""

    def __init__(self, tmp_path: Path, root: Path, transport: str) -> None:
        self.socket_path = socket_dir(root, socket_group(transport)) / "lmtp.sock"
        self.app = Appliance(tmp_path / "app", extra_args=["--lmtp", f"unix:{self.socket_path}"])
        self.postfix = DeliveringPostfix(root, self.socket_path, transport)
        self.key: object = None
        self.transport = transport

    def start_appliance(self) -> None:
        self.app.start()
        self.key = self.app.add_user("alice", "v2")

    def submit(self, subject: str, recipients: list[str]) -> bytes:
        sent = make_message(subject, f"Carried by Postfix: {subject}.\n")
        with smtplib.SMTP("127.0.0.1", self.postfix.port, local_hostname="client.test", timeout=30) as smtp:
            assert smtp.sendmail("bob@remote.test", recipients, sent) == {}
        return sent

    def mailbox(self, timeout: float = 60) -> list[bytes]:
        """alice's messages, decrypted, once there is at least one (empty after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            objects = read_store(self.app, "alice", "Mail/In/")
            if objects or time.monotonic() > deadline:
                return [open_mail(self.key, blob) for blob in objects.values()]  # type: ignore[arg-type]
            time.sleep(0.1)

    def diagnosis(self) -> str:
        return f"postfix log:\n{self.postfix.log()}\nappliance log:\n{self.app.log()[-3000:]}"


@pytest.fixture(params=TRANSPORTS)
def setup(request: pytest.FixtureRequest, tmp_path: Path, postfix_root: Path) -> Iterator[Setup]:  # noqa: F811
    running = Setup(tmp_path, postfix_root, request.param)
    try:
        yield running
    finally:
        running.postfix.stop()
        running.app.stop()
    assert running.postfix.run("status").returncode != 0, "postfix is still running"


def test_postfix_delivers_through_lmtp_and_mailiverse_deliver(setup: Setup) -> None:
    """Postfix hands a message for alice and nobody to the appliance: alice's copy is stored sealed and decrypts to
    what was sent, under Postfix's Received field and the appliance's LMTP one; nobody's bounces as user unknown."""
    setup.start_appliance()
    assert stat.S_IMODE(os.stat(setup.socket_path).st_mode) == 0o660
    assert os.stat(setup.socket_path).st_gid == os.stat(setup.socket_path.parent).st_gid != 0
    setup.postfix.start()
    started = time.monotonic()
    sent = setup.submit("Delivered by Postfix", [f"alice@{DOMAIN}", f"nobody@{DOMAIN}"])
    messages = setup.mailbox()
    assert len(messages) == 1, setup.diagnosis()
    elapsed = time.monotonic() - started
    [plain] = messages
    assert plain.endswith(sent)
    header = plain.split(b"\r\n\r\n", 1)[0]
    assert b"with LMTP id" in header and b"by mx.test (Postfix)" in header, header
    stored = read_store(setup.app, "alice", "Mail/In/")
    assert all(b"Carried by Postfix" not in blob for blob in stored.values())
    log = setup.postfix.wait_for_log("status=bounced")
    sent_lines = [line for line in log.splitlines() if "status=sent" in line]
    assert len(sent_lines) == 1 and f"to=<alice@{DOMAIN}>" in sent_lines[0], sent_lines
    # (Postfix's bounce to bob@remote.test then fails too: remote.test has no address here; not counted.)
    bounced = [line for line in log.splitlines() if "status=bounced" in line and f"to=<nobody@{DOMAIN}>" in line]
    assert len(bounced) == 1 and "5.1.1" in bounced[0], bounced
    print(f"postfix to the appliance: delivered and decrypted in {elapsed:.2f} s")


def test_postfix_keeps_the_message_while_the_appliance_is_down_and_delivers_it_once(setup: Setup) -> None:
    """The appliance is not running: Postfix defers the message (the socket is missing; mailiverse-deliver exits 75)
    and keeps it queued; once the appliance runs, ``postqueue -f`` delivers it, exactly once."""
    setup.postfix.start()
    sent = setup.submit("Deferred, then delivered", [f"alice@{DOMAIN}"])
    log = setup.postfix.wait_for_log("status=deferred")
    deferral = next(line for line in log.splitlines() if "status=deferred" in line)
    # lmtp(8) cannot connect; mailiverse-deliver cannot either and exits 75 (EX_TEMPFAIL), which Postfix reads as 4.3.0.
    expected = "No such file or directory" if setup.transport == "lmtp" else "dsn=4.3.0"
    assert expected in deferral, deferral
    if setup.transport == "pipe":
        assert "cannot reach the appliance's LMTP listener" in deferral, deferral
    assert "alice@" in setup.postfix.queue()
    setup.start_appliance()
    time.sleep(1)
    assert read_store(setup.app, "alice", "Mail/In/") == {}, "delivered before the flush"
    setup.postfix.flush()
    messages = setup.mailbox()
    assert [m.endswith(sent) for m in messages] == [True], setup.diagnosis()
    setup.postfix.wait_for_log("status=sent")
    for _ in range(100):
        if "Mail queue is empty" in setup.postfix.queue():
            break
        time.sleep(0.1)
    assert "Mail queue is empty" in setup.postfix.queue()
    setup.postfix.flush()
    time.sleep(2)
    assert len(read_store(setup.app, "alice", "Mail/In/")) == 1, "delivered more than once"
    assert setup.postfix.log().count("status=sent") == 1
