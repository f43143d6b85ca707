"""Fixtures for the client tests: the real web app on a real HTTPS port on 127.0.0.1, and helpers that run the sync client in a thread.

The app is built exactly as the web tests build it (``tests.support.webapi.make_api``: real SQLite,
real sessions, a settable clock, an in-memory outbound queue) and served by Twisted with a
certificate from a throwaway test CA, so the client's TLS pinning is exercised for real.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_twisted
from twisted.internet import reactor, ssl
from twisted.internet.threads import deferToThread

from mailiverse.client import Client, HttpsTransport, RecordingTransport
from mailiverse.client.cli import main
from mailiverse.store.db import Database
from mailiverse.testing import issue_test_certificate
from mailiverse.testing_db import sqlite_url
from tests.support.webapi import Api, make_api

T = TypeVar("T")
PASSWORD = "a long and unguessable client password"


@dataclass
class Served:
    """The app listening on https://localhost:<port>, and how to trust it."""

    api: Api
    port: int
    ca_file: Path
    cert_file: Path

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def transport(self) -> RecordingTransport:
        """A recording HTTPS transport that trusts the test CA."""
        return RecordingTransport(HttpsTransport(self.url, ca_file=str(self.ca_file)))

    def client(self, user: str) -> tuple[Client, RecordingTransport]:
        transport = self.transport()
        return Client(transport, user), transport

    def argv(self, user: str, *command: str) -> list[str]:
        return ["--server", self.url, "--user", user, "--ca", str(self.ca_file), *command]


async def in_thread(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking client code off the reactor thread, which keeps serving the app."""
    return await deferToThread(function, *args, **kwargs)


@dataclass
class CliResult:
    status: int
    stdout: str
    stderr: str


async def run_cli(
    argv: list[str],
    *,
    password: str | None = PASSWORD,
    new_password: str | None = None,
    stdin: bytes = b"",
    prompt: Callable[[str], str] | None = None,
) -> CliResult:
    """Run ``mailiverse-client`` in-process (in a thread) with the given environment and stdin."""
    environ = {}
    if password is not None:
        environ["MAILIVERSE_PASSWORD"] = password
    if new_password is not None:
        environ["MAILIVERSE_NEW_PASSWORD"] = new_password
    out, err = io.StringIO(), io.StringIO()

    def no_terminal(_label: str) -> str:
        raise EOFError()

    status = await in_thread(
        main, argv, stdin=io.BytesIO(stdin), stdout=out, stderr=err, environ=environ, prompt=prompt or no_terminal
    )
    return CliResult(status, out.getvalue(), err.getvalue())


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """The web app (first sign-up free, then invites) on a real TLS port."""
    database = Database.open(sqlite_url(tmp_path))
    api, delivery = make_api(database, tmp_path)
    issued = issue_test_certificate(tmp_path / "certs", ["localhost"])
    context = ssl.DefaultOpenSSLContextFactory(str(issued.key_path), str(issued.cert_path))
    port = reactor.listenSSL(0, api.app.site(), context, interface="127.0.0.1")  # type: ignore[attr-defined]
    try:
        yield Served(api, int(port.getHost().port), issued.ca_cert_path, issued.cert_path)
    finally:
        pytest_twisted.blockon(port.stopListening())
        delivery.stop()
        database.close()
