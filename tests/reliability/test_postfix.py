"""A real peer: Debian's Postfix on 127.0.0.1 relays to the appliance over mandatory STARTTLS; the mail decrypts."""

from __future__ import annotations

import os
import shutil
import smtplib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.appliance_state import read_store
from tests.support.harness import DOMAIN, Appliance, free_port
from tests.support.independent import open_mail
from tests.support.smtp import make_message

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not os.path.exists(POSTFIX) and not os.environ.get("CI"),
        reason="Debian package postfix is not installed (make test installs it as root)",
    ),
    pytest.mark.skipif(os.geteuid() != 0 and not os.environ.get("CI"), reason="Postfix's master must start as root"),
]

SERVICES = """\
smtp      inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def _main_cf(root: Path, relay_port: int) -> str:
    return f"""\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = relay.test
mydomain = relay.test
myorigin = relay.test
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:{relay_port}
smtp_tls_security_level = encrypt
smtp_tls_loglevel = 1
smtp_dns_support_level = disabled
smtp_host_lookup = native
biff = no
"""


class Postfix:
    """A private Postfix instance: its own config, queue and data directories in a temporary directory."""

    def __init__(self, root: Path, relay_port: int) -> None:
        self.root = root
        self.port = free_port()
        (root / "queue").mkdir()
        (root / "data").mkdir()
        (root / "main.cf").write_text(_main_cf(root, relay_port))
        (root / "master.cf").write_text(SERVICES.replace("smtp      inet", f"127.0.0.1:{self.port} inet", 1))
        shutil.chown(root / "data", "postfix", "postfix")

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([POSTFIX, "-c", str(self.root), *args], capture_output=True, text=True, timeout=60)

    def start(self) -> None:
        result = self.run("start")
        assert result.returncode == 0, f"postfix start failed: {result.stdout}{result.stderr}{self.log()}"
        for _ in range(100):
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=5) as smtp:
                    smtp.noop()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"postfix never listened:\n{self.log()}")

    def stop(self) -> None:
        self.run("stop")
        for _ in range(100):  # master exits within seconds; wait for its pid file to go
            if self.run("status").returncode != 0:
                return
            time.sleep(0.1)
        self.run("abort")

    def log(self) -> str:
        try:
            return (self.root / "maillog").read_text(errors="replace")
        except FileNotFoundError:
            return ""


@pytest.fixture
def postfix_root() -> Iterator[Path]:
    # Postfix's daemons run as user postfix and must traverse the path; pytest's tmp dirs are 0700.
    root = Path(tempfile.mkdtemp(prefix="mv-postfix-", dir="/tmp"))
    os.chmod(root, 0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_postfix_relays_over_starttls_and_mail_decrypts(tmp_path: Path, postfix_root: Path, record_property) -> None:
    """Mail submitted to a real Postfix is relayed with mandatory TLS to the appliance and decrypts for alice."""
    app = Appliance(tmp_path / "app")
    app.start()
    postfix = Postfix(postfix_root, app.smtp_port)
    try:
        key = app.add_user("alice", "v2")
        postfix.start()
        sent = make_message("Relayed by Postfix", "Postfix carried this body.\n")
        started = time.monotonic()
        with smtplib.SMTP("127.0.0.1", postfix.port, local_hostname="client.test", timeout=30) as smtp:
            assert smtp.sendmail("bob@remote.test", [f"alice@{DOMAIN}"], sent) == {}
        objects: dict[str, bytes] = {}
        for _ in range(600):
            objects = read_store(app, "alice", "Mail/In/")
            if objects:
                break
            time.sleep(0.1)
        assert objects, f"mail never arrived; postfix log:\n{postfix.log()}\nappliance log:\n{app.log()[-3000:]}"
        elapsed = time.monotonic() - started
        (blob,) = objects.values()
        plain = open_mail(key, blob)
        assert b"Subject: Relayed by Postfix" in plain and b"Postfix carried this body." in plain
        received = plain.split(b"\r\n\r\n", 1)[0]
        assert b"from relay.test" in received and b"TLS" in received, received
        log = postfix.log()
        assert "TLS connection established to 127.0.0.1" in log, log
        assert "status=sent" in log
        record_property("postfix_seconds", round(elapsed, 2))
        print(f"postfix relay: delivered and decrypted in {elapsed:.2f} s")
    finally:
        postfix.stop()
        app.stop()
    assert postfix.run("status").returncode != 0, "postfix is still running"
