"""The peer a user would pick instead of the appliance: Postfix receiving into Dovecot over LMTP, ``mail_crypt``.

Both are the Debian packages, started privately: one temporary directory holds Postfix's configuration,
queue and data directories, Dovecot's configuration, base and state directories, the maildir and the keys;
Postfix's smtpd listens on a free 127.0.0.1 port with STARTTLS and hands every message over LMTP (a second
free port) to Dovecot, whose ``mail_crypt`` plugin encrypts each stored mail to a global EC public key
(configured with its private key, as Dovecot's documentation has it, so the peer is the set-up a user would
copy and not one that logs an error for every mail it cannot read back).

Postfix answers 250 once a message is in its queue, before Dovecot has stored it, so its acceptance rate is
not the figure to compare: ``measure`` drives the same load as every other server, then waits until the
queue is empty and the maildir holds every accepted message, and reports the rate at which messages reached
the maildir. A run whose maildir holds anything but ``mail_crypt`` files is refused (``PeerFailed``).

Postfix's daemons drop privileges to the ``postfix`` user and Dovecot's LMTP writes as ``nobody``, so this
needs root (the users come with the packages) and a directory those users can pass through: the temporary
directory is made in the system's temp dir, mode 0711, rather than somewhere under a private work directory.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench import procmem, servers, smtpload
from bench.messages import RECIPIENT
from mailiverse.tls import ensure_self_signed

NAME = "postfix-dovecot"
POSTFIX = Path("/usr/sbin/postfix")
DOVECOT = Path("/usr/sbin/dovecot")
DOVECOT_LMTP = Path("/usr/lib/dovecot/lmtp")
MAIL_CRYPT = Path("/usr/lib/dovecot/modules/lib10_mail_crypt_plugin.so")
#: Dovecot's mail_crypt file header (``IOSTREAM_CRYPT_MAGIC``): every stored mail must start with it.
CRYPT_MAGIC = b"CRYPTED\x03\x07"
#: Where Postfix keeps a message until it is delivered; all empty means the queue is drained.
_QUEUE_DIRS = ("maildrop", "incoming", "active", "deferred", "hold")
#: The mail user Dovecot's LMTP delivers as (its default ``first_valid_uid`` of 500 keeps root out).
_MAIL_USER = "nobody"
_MAIL_GROUP = "nogroup"


class PeerFailed(servers.ServerFailed):
    """The peer did not start, did not drain its queue, or stored a message in plaintext."""


def unavailable() -> str | None:
    """Why the peer cannot run here, or None when it can."""
    missing = [str(p) for p in (POSTFIX, DOVECOT, DOVECOT_LMTP, MAIL_CRYPT) if not p.exists()]
    if missing:
        return "needs the Debian packages of appliance/bench-packages.txt (missing " + ", ".join(missing) + ")"
    if os.geteuid() != 0:
        return "needs root (Postfix and Dovecot drop privileges to their own users)"
    return None


def _main_cf(root: Path, lmtp_port: int, cert: Path, key: Path) -> str:
    return f"""\
compatibility_level = 3.6
queue_directory = {root / "postfix" / "spool"}
data_directory = {root / "postfix" / "data"}
# start-fg keeps the master in the foreground, its log on its stdout (there is no syslog to rely on)
maillog_file = /dev/stdout
mail_owner = postfix
setgid_group = postdrop
myhostname = mail.example.org
mydomain = example.org
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
virtual_mailbox_domains = example.org
virtual_mailbox_maps = inline:{{ {RECIPIENT}=alice }}
virtual_transport = lmtp:inet:127.0.0.1:{lmtp_port}
# nothing is delivered locally: no aliases database to open (the package installs none)
alias_maps =
alias_database =
local_recipient_maps =
# no DNS: the benchmark machine has none, and the appliance does no lookups either
smtp_dns_support_level = disabled
lmtp_dns_support_level = disabled
smtpd_peername_lookup = no
smtpd_tls_security_level = may
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
# 100 connections from the load client: no per-client limits, enough smtpd processes for reconnects
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
default_process_limit = 250
message_size_limit = 60000000
biff = no
"""


#: Every service the queue needs, none chrooted (the private queue directory has no chroot tree).
_MASTER_CF = """\
127.0.0.1:{smtp_port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
lmtp      unix  - - n - - lmtp
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def _dovecot_conf(root: Path, lmtp_port: int) -> str:
    dovecot = root / "dovecot"
    return f"""\
base_dir = {dovecot / "run"}
state_dir = {dovecot / "state"}
log_path = {dovecot / "dovecot.log"}
protocols = lmtp
listen = 127.0.0.1
ssl = no
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:~/Maildir
# LMTP only looks users up, but Dovecot's auth service does not start without a passdb
passdb {{
  driver = passwd-file
  args = {dovecot / "users"}
}}
userdb {{
  driver = passwd-file
  args = {dovecot / "users"}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
protocol lmtp {{
  mail_plugins = $mail_plugins mail_crypt
}}
plugin {{
  mail_crypt_global_public_key = <{dovecot / "mail-crypt.pub.pem"}
  mail_crypt_global_private_key = <{dovecot / "mail-crypt.key.pem"}
  mail_crypt_save_version = 2
}}
"""


class Peer:
    """A running private Postfix and Dovecot; use as a context manager (everything is removed on exit)."""

    def __init__(self, timeout: float = 60) -> None:
        self.timeout = timeout
        self.root = Path(tempfile.mkdtemp(prefix="mailiverse-peer-"))
        self.smtp_port = servers.free_port()
        self.lmtp_port = servers.free_port()
        self.postfix_config = self.root / "postfix" / "etc"
        self.queue = self.root / "postfix" / "spool"
        self.maildir = self.root / "mail" / "alice" / "Maildir"
        self._processes: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Peer:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _start(self) -> None:
        reason = unavailable()
        if reason:
            raise PeerFailed(reason)
        # The postfix and mail users must pass through to their own directories, not list this one.
        self.root.chmod(0o711)
        self._start_dovecot()
        self._start_postfix()

    def _start_dovecot(self) -> None:
        dovecot = self.root / "dovecot"
        dovecot.mkdir()
        # Dovecot's documented global-key set-up: saving encrypts to the public key; the private key lets
        # Dovecot read a mail back (it parses each one it has just saved, for its index).
        key = ec.generate_private_key(ec.SECP256R1())
        (dovecot / "mail-crypt.pub.pem").write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        (dovecot / "mail-crypt.key.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        home = self.maildir.parent
        home.mkdir(parents=True)
        for directory in (home.parent, home):
            shutil.chown(directory, _MAIL_USER, _MAIL_GROUP)
        uid, gid = pwd.getpwnam(_MAIL_USER).pw_uid, grp.getgrnam(_MAIL_GROUP).gr_gid
        (dovecot / "users").write_text(f"{RECIPIENT}:{{PLAIN}}unused:{uid}:{gid}::{home}::\n")
        conf = dovecot / "dovecot.conf"
        conf.write_text(_dovecot_conf(self.root, self.lmtp_port))
        with open(dovecot / "stdout.log", "ab") as out:
            process = subprocess.Popen([str(DOVECOT), "-F", "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
        self._processes.append(process)
        servers.wait_for_banner(self.lmtp_port, process, self.timeout, dovecot / "dovecot.log")

    def _postfix(self, *command: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [str(POSTFIX), "-c", str(self.postfix_config), *command], capture_output=True, timeout=self.timeout
        )

    def _start_postfix(self) -> None:
        cert, key = ensure_self_signed(self.root / "cert", f"mail.{servers.DOMAIN}")
        self.postfix_config.mkdir(parents=True)
        self.queue.mkdir()
        (self.postfix_config / "main.cf").write_text(_main_cf(self.root, self.lmtp_port, cert, key))
        (self.postfix_config / "master.cf").write_text(_MASTER_CF.format(smtp_port=self.smtp_port))
        # check creates the queue's and the data directory's subdirectories with their owners and modes
        checked = self._postfix("check")
        if checked.returncode:
            raise PeerFailed(f"postfix check failed: {(checked.stdout + checked.stderr).decode(errors='replace')}")
        log = self.root / "postfix" / "stdout.log"
        with open(log, "ab") as out:
            process = subprocess.Popen(
                [str(POSTFIX), "-c", str(self.postfix_config), "start-fg"], stdout=out, stderr=subprocess.STDOUT
            )
        self._processes.append(process)
        servers.wait_for_banner(self.smtp_port, process, self.timeout, log)

    def close(self) -> None:
        """Stop both servers and remove the directory."""
        if len(self._processes) == 2 and self._processes[1].poll() is None:
            # start-fg's master is a child of the postfix command: stop it the ordinary way, by its pid file.
            self._postfix("stop")
        for process in reversed(self._processes):
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self._processes.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def alive(self) -> bool:
        return bool(self._processes) and all(process.poll() is None for process in self._processes)

    def cpu_seconds(self) -> float:
        """CPU used so far by Postfix and Dovecot, every process of both, ended ones included."""
        return sum(procmem.tree_cpu_seconds(process.pid) for process in self._processes)

    def _queue_files(self, name: str) -> int:
        return sum(len(files) for _, _, files in os.walk(self.queue / name))

    def queued(self) -> int:
        """Messages still in Postfix's queue (files in the directories a message passes through)."""
        return sum(self._queue_files(name) for name in _QUEUE_DIRS)

    def _stored(self) -> list[Path]:
        return [
            entry for sub in ("new", "cur") if (self.maildir / sub).is_dir() for entry in (self.maildir / sub).iterdir()
        ]

    def delivered(self) -> int:
        """Mails Dovecot has stored in the maildir."""
        return len(self._stored())

    def wait_drained(self, accepted: int, timeout: float) -> float:
        """Wait until the queue is empty and the maildir holds ``accepted`` mails; the monotonic time it was so."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = time.monotonic()
            if self.queued() == 0 and self.delivered() >= accepted:
                return now
            # a deferred message waits minutes for its retry: the peer failed to deliver, do not wait for it
            if self._queue_files("deferred") or not self.alive():
                break
            time.sleep(0.02)
        raise PeerFailed(
            f"{NAME} did not deliver {accepted} accepted messages within {timeout:g} s "
            f"({self.delivered()} stored, {self.queued()} queued)\n{self.log_tail()}"
        )

    def check_encrypted(self) -> int:
        """Raise PeerFailed unless every stored mail is a mail_crypt file; return how many were checked."""
        stored = self._stored()
        for path in stored:
            with open(path, "rb") as mail:
                if mail.read(len(CRYPT_MAGIC)) != CRYPT_MAGIC:
                    raise PeerFailed(f"{NAME} stored {path.name} in plaintext: mail_crypt is not in effect")
        return len(stored)

    def log_tail(self, chars: int = 3000) -> str:
        logs = (self.root / "postfix" / "stdout.log", self.root / "dovecot" / "dovecot.log")
        return "\n".join(log.read_text(errors="replace")[-chars:] for log in logs if log.exists())


def measure(
    message: bytes,
    connections: int,
    duration_s: float,
    warmup_s: float,
    reply_timeout_s: float = 120.0,
    drain_timeout_s: float = 300.0,
) -> dict[str, Any]:
    """One point against a fresh peer: the client's figures, the drained rate and the peer's CPU per message.

    ``msgs_per_s`` is the drained rate: mails that reached the maildir from the start of the measured window
    until the queue was empty, over that time (those accepted during the warm-up and delivered later count,
    as the window's own stragglers do). The rate of 250 replies inside the window is ``accepted_msgs_per_s``.
    """
    with Peer() as peer:
        load = smtpload.Load(
            "127.0.0.1",
            peer.smtp_port,
            True,
            message,
            connections,
            duration_s=duration_s,
            warmup_s=warmup_s,
            reply_timeout_s=reply_timeout_s,
        )
        at_window: list[int] = []
        counter = threading.Timer(warmup_s, lambda: at_window.append(peer.delivered()))
        cpu_before = peer.cpu_seconds()
        counter.start()
        try:
            samples = smtpload.run(load)
        finally:
            counter.cancel()
        summary = samples.summary()
        accepted = int(summary["messages_total"])  # type: ignore[arg-type]
        drained_at = peer.wait_drained(accepted, drain_timeout_s)
        cpu = peer.cpu_seconds() - cpu_before
        delivered = peer.check_encrypted()
        alive = peer.alive()
    in_window = delivered - (at_window[0] if at_window else 0)
    span = drained_at - samples.measured_from
    return {
        "server": NAME,
        "starttls": True,
        "size": len(message),
        "connections": connections,
        **summary,
        "accepted_msgs_per_s": summary["msgs_per_s"],
        "msgs_per_s": in_window / span if span > 0 else 0.0,
        "delivered": delivered,
        "drain_after_window_s": round(drained_at - samples.deadline, 3),
        "server_cpu_s": round(cpu, 3),
        "server_cpu_ms_per_msg": (cpu * 1000 / delivered) if delivered else float("nan"),
        "alive": alive,
    }
