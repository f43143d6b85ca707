"""A private Postfix (Debian's) that delivers mail for the appliance's domain itself: to the appliance's ``--lmtp``
unix socket through its lmtp(8) client, or through ``mailiverse-deliver`` as a pipe(8) transport.

Built on the relaying instance of tests/reliability/test_postfix.py (its service table, start and stop); only
main.cf and the extra master.cf services differ.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.reliability.test_postfix import POSTFIX, Postfix
from tests.support.harness import BIN, DOMAIN

POSTQUEUE = shutil.which("postqueue") or "/usr/sbin/postqueue"
#: pipe(8) runs the command as this user (neither root nor Postfix's user or group), in its own group, which may
#: use the socket.
PIPE_USER = "nobody"


def socket_group(transport: str) -> int:
    """The group that may deliver on the socket: Postfix's for its lmtp(8) client, the pipe user's for pipe(8)."""
    if transport == "lmtp":
        return grp.getgrnam("postfix").gr_gid
    return pwd.getpwnam(PIPE_USER).pw_gid


def socket_dir(root: Path, gid: int) -> Path:
    """A directory for the appliance's LMTP socket that group ``gid`` may use: setgid, so the socket the
    appliance creates there belongs to that group (mode 0660 then lets it, and no other user, deliver)."""
    directory = root / "lmtp"
    directory.mkdir()
    os.chown(directory, 0, gid)
    os.chmod(directory, 0o2750)
    return directory


def deliver_command() -> list[str]:
    """How pipe(8) runs mailiverse-deliver as PIPE_USER: the console script when that user may run this venv's
    Python; else the same module by the system's Python (it needs the standard library only), since a venv
    under a private home (/root, 0700) cannot be run by another user."""
    script = str(BIN / "mailiverse-deliver")
    probe = subprocess.run(["runuser", "-u", PIPE_USER, "--", script, "--help"], capture_output=True, timeout=60)
    if probe.returncode == 0:
        return [script]
    system_python = "/usr/bin/python3"
    root = Path(__file__).resolve().parents[2]
    return ["/usr/bin/env", f"PYTHONPATH={root}", system_python, "-m", "mailiverse.lda"]


def _main_cf(root: Path, transport: str) -> str:
    return f"""\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.test
mydomain = mx.test
myorigin = mx.test
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
virtual_mailbox_domains = {DOMAIN}
virtual_transport = {transport}
smtpd_reject_unlisted_recipient = no
mailiverse_destination_recipient_limit = 1
smtp_dns_support_level = disabled
smtp_host_lookup = native
biff = no
"""


class DeliveringPostfix(Postfix):
    """Postfix whose virtual domain ``DOMAIN`` is delivered by ``transport``: ``lmtp`` (to ``socket_path``)
    or ``pipe`` (mailiverse-deliver, which speaks LMTP to the same socket)."""

    def __init__(self, root: Path, socket_path: Path, transport: str) -> None:
        super().__init__(root, relay_port=0)
        self.socket_path = socket_path
        chosen = f"lmtp:unix:{socket_path}" if transport == "lmtp" else "mailiverse:"
        (root / "main.cf").write_text(_main_cf(root, chosen))
        command = " ".join([*deliver_command(), "--socket", str(socket_path), "-f", "${sender}", "-a", "${recipient}"])
        services = (
            "lmtp      unix  -       -       n       -       -       lmtp\n"
            "mailiverse unix -       n       n       -       -       pipe\n"
            f"  flags=q null_sender= user={PIPE_USER} argv={command}\n"
        )
        with (root / "master.cf").open("a") as master:
            master.write(services)

    def flush(self) -> None:
        """``postqueue -f``: try every deferred message again now."""
        result = subprocess.run([POSTQUEUE, "-c", str(self.root), "-f"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr

    def queue(self) -> str:
        """``postqueue -p``: what is still queued ("Mail queue is empty" when nothing)."""
        result = subprocess.run([POSTQUEUE, "-c", str(self.root), "-p"], capture_output=True, text=True, timeout=60)
        return result.stdout + result.stderr

    def wait_for_log(self, text: str, timeout: float = 60) -> str:
        """The mail log once it holds ``text`` (AssertionError with the log after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if text in log:
                return log
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared in the Postfix log:\n{self.log()}")


def postfix_available() -> bool:
    """Whether Debian's Postfix is installed and this process may start its master (root)."""
    return os.path.exists(POSTFIX) and os.geteuid() == 0 and sys.platform.startswith("linux")
