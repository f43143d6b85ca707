"""Run the client against the real web app in tests: where it is served,
the sync client in a thread, the CLI in-process.

The app is built as the web tests build it (``tests.support.webapi.make_api``) and served over real
HTTPS by the ``served`` fixture of tests/client/conftest.py.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet.threads import deferToThread

from mailiverse.client import Client, HttpsTransport, RecordingTransport
from mailiverse.client.cli import main
from mailiverse.client.transport import Response, Transport
from tests.support.webapi import Api

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
    """What one in-process run of ``mailiverse-client`` returned and printed."""

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
    transport_factory: Callable[[Any], Transport] | None = None,
) -> CliResult:
    """Run ``mailiverse-client`` in-process (in a thread) with the given environment and stdin (and, with
    ``transport_factory``, the CLI's transport)."""
    environ = {}
    if password is not None:
        environ["MAILIVERSE_PASSWORD"] = password
    if new_password is not None:
        environ["MAILIVERSE_NEW_PASSWORD"] = new_password
    out, err = io.StringIO(), io.StringIO()

    def no_terminal(_label: str) -> str:
        raise EOFError()

    extra = {} if transport_factory is None else {"transport_factory": transport_factory}
    status = await in_thread(
        main,
        argv,
        stdin=io.BytesIO(stdin),
        stdout=out,
        stderr=err,
        environ=environ,
        prompt=prompt or no_terminal,
        **extra,
    )
    return CliResult(status, out.getvalue(), err.getvalue())


@dataclass
class Swapping:
    """A transport that hands the CLI ``answers[(method, path)]`` instead of the server's answer."""

    inner: Transport
    answers: Mapping[tuple[str, str], bytes]

    def request(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]) -> Response:
        real = self.inner.request(method, path, body, headers)
        swapped = self.answers.get((method, path))
        if swapped is None:
            return real
        return Response(200, {"content-type": "application/json"}, swapped)

    def close(self) -> None:
        self.inner.close()


async def run_swapped(served: Served, answers: Mapping[tuple[str, str], bytes], *command: str) -> tuple[int, str, str]:
    """Alice's ``mailiverse-client COMMAND`` against ``served``, with some of the server's answers swapped."""

    def transport(_args: Any) -> Transport:
        return Swapping(HttpsTransport(served.url, ca_file=str(served.ca_file)), answers)

    result = await run_cli(served.argv("alice", *command), transport_factory=transport)
    return result.status, result.stdout, result.stderr
