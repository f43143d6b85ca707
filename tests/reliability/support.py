"""Shared helpers for the reliability suite: raw SMTP sessions, store reads, process memory and a PG fixture."""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from mailiverse.config import DataDir
from mailiverse.store.db import Database
from mailiverse.store.objects import iter_object_chunks, list_objects
from mailiverse.store.users import add_user, get_user
from tests.integration.harness import DOMAIN, Appliance
from tests.integration.test_receive import tls_context

#: A syntactically proper SMTP reply line: three digits 2xx-5xx, then space or hyphen (or nothing).
REPLY_LINE = re.compile(rb"^[2-5][0-9][0-9](?:[ -]|$)")
_MAX_REPLY_LINES = 100
_MAX_REPLY_BYTES = 1 << 20


class SmtpSession:
    """A raw SMTP client over a socket that checks every reply line is a proper SMTP code."""

    def __init__(self, port: int, *, source: str = "127.0.0.1", timeout: float = 30) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout, source_address=(source, 0)
        )
        self.buffer = b""
        self.replies: list[bytes] = []

    def reply(self) -> tuple[int, bytes]:
        lines: list[bytes] = []
        while len(lines) < _MAX_REPLY_LINES:
            while b"\r\n" not in self.buffer:
                if len(self.buffer) > _MAX_REPLY_BYTES:
                    raise AssertionError("reply line without CRLF")
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError(f"closed after {lines!r}")
                self.buffer += data
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            assert REPLY_LINE.match(line), f"improper SMTP reply line {line!r}"
            lines.append(line)
            if line[3:4] != b"-":
                self.replies.append(line)
                return int(line[:3]), b"\n".join(lines)
        raise AssertionError("reply longer than 100 lines")

    def command(self, data: bytes) -> tuple[int, bytes]:
        self.sock.sendall(data)
        return self.reply()

    def hello(self) -> None:
        assert self.reply()[0] == 220
        assert self.command(b"EHLO client.test\r\n")[0] == 250

    def starttls(self, app: Appliance) -> None:
        self.hello()
        assert self.command(b"STARTTLS\r\n")[0] == 220
        self.sock = tls_context(app).wrap_socket(self.sock, server_hostname=f"mail.{DOMAIN}")
        assert self.command(b"EHLO client.test\r\n")[0] == 250

    def envelope(self, rcpts: list[str], sender: str = "bob@remote.test") -> None:
        assert self.command(f"MAIL FROM:<{sender}>\r\n".encode())[0] == 250
        for rcpt in rcpts:
            assert self.command(f"RCPT TO:<{rcpt}>\r\n".encode())[0] == 250
        assert self.command(b"DATA\r\n")[0] == 354

    def send_data(self, body: bytes) -> tuple[int, bytes]:
        """Send a message body already in CRLF form (dot-stuffed here) and the end-of-data line."""
        stuffed = re.sub(rb"(?m)^\.", b"..", body)
        if not stuffed.endswith(b"\r\n"):
            stuffed += b"\r\n"
        self.sock.sendall(stuffed)
        return self.command(b".\r\n")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def db_url(app: Appliance) -> str:
    return app.db_url or DataDir(app.data_dir).default_db_url


def read_store(app: Appliance, user: str, prefix: str = "Mail/") -> dict[str, bytes]:
    """Every object of ``user`` under ``prefix``, read in-process through the store's own door."""
    db = Database.open(db_url(app), reactor=None, migrate=False)

    def read(conn: Any) -> dict[str, bytes]:
        account = get_user(conn, user)
        assert account is not None, f"no user {user}"
        found: dict[str, bytes] = {}
        after = None
        for _ in range(10_000):
            page = list_objects(conn, account.id, prefix, after=after, limit=1000)
            for info in page:
                found[info.path] = b"".join(iter_object_chunks(conn, account.id, info.path))
            if len(page) < 1000:
                return found
            after = page[-1].path
        raise AssertionError("store listing did not end")

    try:
        # Off the test's main thread: pytest-twisted's reactor counts it as the reactor thread.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(db.run_sync, read).result(timeout=300)
    finally:
        db.close()


def count_objects_of(app: Appliance, names: list[str], prefix: str = "Mail/In/") -> dict[str, int]:
    """How many objects under ``prefix`` each named user has, in one database session."""
    db = Database.open(db_url(app), reactor=None, migrate=False)

    def count(conn: Any) -> dict[str, int]:
        out = {}
        for name in names:
            account = get_user(conn, name)
            assert account is not None, f"no user {name}"
            out[name] = len(list_objects(conn, account.id, prefix, limit=1000))
        return out

    try:
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(db.run_sync, count).result(timeout=300)
    finally:
        db.close()


def add_users(app: Appliance, names: list[str], public_key_der: bytes, fmt: str = "v2") -> None:
    """Create many users at once in-process, sharing one public key (the admin CLI costs a process each)."""
    db = Database.open(db_url(app), reactor=None, migrate=False)

    def create(conn: Any) -> None:
        for name in names:
            add_user(conn, name, public_key_der, fmt)

    try:
        with ThreadPoolExecutor(1) as pool:
            pool.submit(db.transact_sync, create).result(timeout=300)
    finally:
        db.close()


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def served(app: Appliance, source: str = "127.0.0.2") -> bool:
    """True if a fresh client (from another loopback address) gets a 220 greeting and an EHLO reply."""
    s = SmtpSession(app.smtp_port, source=source, timeout=15)
    try:
        s.hello()
        return s.command(b"QUIT\r\n")[0] == 221
    finally:
        s.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A throw-away PostgreSQL database (skipped when PG is unreachable, failed under CI)."""
    from mailiverse.testing_db import create_postgres_database, drop_postgres_database, require_postgres

    require_postgres()
    url = create_postgres_database("mv_rel")
    try:
        yield url
    finally:
        drop_postgres_database(url)
