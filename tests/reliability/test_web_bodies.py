"""Request bodies on a real ``twistd`` over HTTPS: never plaintext in a file, and capped from the headers on.

The server runs with ``TMPDIR`` pointed at a directory of the test. While a large body arrives and
after it was handled, no file holds a canary from it: not under that ``TMPDIR``, not under the data
directory, and not among the files the process holds open (unlinked ones included, read through
``/proc/<pid>/fd``). A 64 MiB body without a credential is answered 413 after the server has read a
few KiB (the client sends 16 KiB at a time, each piece only after giving the server a moment to
answer); a logged-in user's large PUT works.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
import ssl
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailiverse.client import Client, HttpsTransport
from tests.support.harness import DOMAIN, Appliance, free_port, self_signed_cert

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
PASSWORD = "alice has a long passphrase 7731"
#: Most body bytes a refused flood may get in before the answer: the 16 KiB cap and a few paced pieces.
FLOOD_TAKEN = 128 * 1024
#: Where a flood stops when the server has not answered (the old server read the whole 64 MiB).
FLOOD_GIVE_UP = 4 * MIB


@dataclass
class Server:
    """The running appliance, the directory its TMPDIR points at, and alice's bearer token."""

    app: Appliance
    system_tmp: Path
    token: str

    @property
    def pid(self) -> int:
        assert self.app.process is not None
        return self.app.process.pid

    def connect(self) -> http.client.HTTPSConnection:
        context = ssl.create_default_context(cafile=str(self_signed_cert(self.app)))
        return http.client.HTTPSConnection("127.0.0.1", self.app.web_port, context=context, timeout=60)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real appliance (open sign-up, --legacy) whose TMPDIR is a test directory; alice signed up and logged in."""
    work = tmp_path_factory.mktemp("bodies")
    system_tmp = work / "system-tmp"
    system_tmp.mkdir()
    legacy = ["--legacy-keyserver", f"tcp:{free_port()}", "--legacy-mailserver", f"tcp:{free_port()}"]
    app = Appliance(work / "app", extra_args=["--open-signup", "--legacy", *legacy])
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TMPDIR", str(system_tmp))
        app.start()
    try:
        client = Client(
            HttpsTransport(f"https://127.0.0.1:{app.web_port}", ca_file=str(self_signed_cert(app))), "alice"
        )
        client.signup(PASSWORD)
        client.login(PASSWORD)
        token = client._token  # the bearer token the client holds; the raw requests below carry it
        assert token is not None
        yield Server(app, system_tmp, token)
        assert app.process is not None and app.process.poll() is None, app.log()[-3000:]
    finally:
        app.stop()


def files_holding(canary: bytes, server: Server, *, skip_database: bool = False) -> list[str]:
    """Files under TMPDIR and the data dir, and every regular file the server holds open, that contain ``canary``."""
    found = []
    candidates: list[tuple[str, str]] = []
    for directory in (server.system_tmp, server.app.data_dir):
        candidates += [(str(p), str(p)) for p in directory.rglob("*") if p.is_file()]
    fds = Path(f"/proc/{server.pid}/fd")
    for fd in os.listdir(fds):
        try:
            target = os.readlink(fds / fd)
            if stat.S_ISREG(os.stat(fds / fd).st_mode):
                candidates.append((target, str(fds / fd)))
        except FileNotFoundError:
            continue
    for name, path in candidates:
        if skip_database and Path(name.removesuffix(" (deleted)")).name.startswith("mailiverse.sqlite3"):
            continue
        try:
            with open(path, "rb") as handle:
                if canary in handle.read():
                    found.append(name)
        except FileNotFoundError:
            continue
    return found


def wait_until_held(server: Server, count: int) -> None:
    """Wait until a file the server holds open under TMPDIR or the data dir has grown to ``count`` bytes:
    the body sent so far has been read and put wherever the server keeps it."""
    fds = Path(f"/proc/{server.pid}/fd")
    places = (str(server.system_tmp), str(server.app.data_dir))
    for _ in range(3000):
        for fd in os.listdir(fds):
            try:
                if os.readlink(fds / fd).startswith(places) and os.stat(fds / fd).st_size >= count:
                    return
            except FileNotFoundError:
                continue
        time.sleep(0.01)
    raise AssertionError("the server holds the body in no file")


@pytest.mark.parametrize("route", ["send", "store"])
def test_large_body_is_never_plaintext_in_a_file(server: Server, route: str) -> None:
    """A 300 KB /api/send (the plaintext message) or store PUT leaves no plaintext in any file of TMPDIR,
    the data dir or the process's open files, while it arrives and after it was handled."""
    canary = b"PLAINTEXT-CANARY-" + secrets.token_hex(12).encode()
    line = canary + b" " + b"m" * 60 + b"\n"
    headers = {"Authorization": f"Bearer {server.token}"}
    if route == "send":
        text = (line * (300_000 // len(line))).decode()
        body = json.dumps({"to": [f"alice@{DOMAIN}"], "subject": "big", "text": text}).encode()
        method, path, headers["Content-Type"] = "POST", "/api/send", "application/json"
    else:
        body = line * (300_000 // len(line))
        method, path, headers["Content-Type"] = "PUT", "/api/store/Cache/canary", "application/octet-stream"
    conn = server.connect()
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            conn.putheader(name, value)
        conn.endheaders()
        conn.send(body[:-16])
        # The spool keeps at most 64 KiB of plaintext in memory before it encrypts it to its file.
        wait_until_held(server, len(body) - 16 - 64 * 1024)
        assert files_holding(canary, server) == []
        conn.send(body[-16:])
        reply = conn.getresponse()
        answer = reply.read()
        assert reply.status in (200, 201), answer[:300]
    finally:
        conn.close()
    assert files_holding(canary, server, skip_database=route == "store") == []
    assert list(server.system_tmp.iterdir()) == []


def flood(server: Server, path: str, headers: dict[str, str], *, declared: bool) -> tuple[int, dict[str, str], int]:
    """PUT a 64 MiB body (declared, or chunked with no length) in 16 KiB pieces, each sent only after the server
    had a moment to answer, until it answers; (status, JSON answer, body bytes sent before the answer).

    A raw TLS socket, not http.client: whether the answer has come is a read with a short timeout (TLS 1.3
    session tickets make the socket readable before any answer)."""
    total = 64 * MIB
    framing = {"Content-Length": str(total)} if declared else {"Transfer-Encoding": "chunked"}
    lines = [f"PUT {path} HTTP/1.1", f"Host: mail.{DOMAIN}"]
    lines += [f"{k}: {v}" for k, v in {"Content-Type": "application/octet-stream", **headers, **framing}.items()]
    context = ssl.create_default_context(cafile=str(self_signed_cert(server.app)))
    piece = b"Z" * (16 * 1024)
    framed = piece if declared else b"%x\r\n%s\r\n" % (len(piece), piece)
    answer = b""
    sent = 0
    with socket.create_connection(("127.0.0.1", server.app.web_port), timeout=60) as raw_socket:
        with context.wrap_socket(raw_socket, server_hostname="127.0.0.1") as sock:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            try:
                while sent < FLOOD_GIVE_UP:
                    sock.settimeout(0.05)
                    try:
                        answer = sock.recv(65536)
                        break
                    except TimeoutError:
                        pass
                    sock.settimeout(60)
                    sock.sendall(framed)
                    sent += len(piece)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered and stopped reading; its answer is read below
            sock.settimeout(10)
            try:
                while chunk := sock.recv(65536):
                    answer += chunk
            except (TimeoutError, ConnectionResetError, ssl.SSLError):
                pass
    assert answer, f"no answer after {sent} bytes of body"
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    got = {name.strip().lower(): value.strip() for name, _, value in (h.partition(":") for h in header_lines)}
    assert got["connection"] == "close"
    length = int(got["content-length"])
    return int(status_line.split(" ")[1]), json.loads(body[:length]), sent


@pytest.mark.parametrize(
    ("path", "declared"),
    [
        ("/api/store/Cache/flood", False),
        ("/api/store/Cache/flood", True),
        ("/Mailiverse/StorePut?Resource=Cache/flood", False),
        ("/Mailiverse/StorePut?Resource=Cache/flood", True),
    ],
    ids=["api-chunked", "api-declared", "legacy-chunked", "legacy-declared"],
)
def test_anonymous_64_mib_body_is_cut_off_after_a_few_kib(server: Server, path: str, declared: bool) -> None:
    """A 64 MiB PUT without any credential is answered 413 after a few KiB of its body (before any of it when
    its length is declared), the connection is closed, and nothing is kept."""
    status, answer, sent = flood(server, path, {}, declared=declared)
    print(f"anonymous {path} {'declared' if declared else 'chunked'}: answered after {sent} body bytes")
    assert status == 413
    assert answer == {"error": "body_too_large", "message": "the request body is larger than this route accepts"}
    assert sent <= FLOOD_TAKEN, f"the server took {sent} bytes before answering"
    if declared:
        assert sent == 0, "a declared length over the cap is refused before the body"
    assert list(server.system_tmp.iterdir()) == []


@pytest.mark.parametrize(
    ("path", "headers", "status", "error"),
    [
        ("/api/store/Cache/forged", {"Authorization": "Bearer " + secrets.token_urlsafe(32)}, 401, "unauthenticated"),
        (
            "/Mailiverse/StorePut?Resource=Cache/forged",
            {"Authorization": "MV AKIAFORGED:c2lnbmF0dXJl"},
            403,
            "forbidden",
        ),
    ],
    ids=["bearer", "mv"],
)
def test_forged_credential_is_refused_before_the_body(
    server: Server, path: str, headers: dict[str, str], status: int, error: str
) -> None:
    """A streamed 64 MiB PUT with a forged credential is refused once the credential is checked, a few KiB in."""
    with_date = {**headers, "X-Mv-Date": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())}
    got, answer, sent = flood(server, path, with_date, declared=False)
    print(f"forged {path}: answered {got} after {sent} body bytes")
    assert (got, answer["error"]) == (status, error)
    assert sent <= FLOOD_TAKEN, f"the server took {sent} bytes before answering"


def test_authenticated_large_put_still_works(server: Server) -> None:
    """A logged-in user's 20 MiB PUT is stored whole and reads back byte for byte."""
    data = secrets.token_bytes(20 * MIB)
    conn = server.connect()
    try:
        auth = {"Authorization": f"Bearer {server.token}"}
        conn.request("PUT", "/api/store/Cache/large", data, {**auth, "Content-Type": "application/octet-stream"})
        reply = conn.getresponse()
        assert reply.status == 201, reply.read()[:300]
        reply.read()
        conn.request("GET", "/api/store/Cache/large", headers=auth)
        got = conn.getresponse()
        assert got.status == 200
        assert got.read() == data
    finally:
        conn.close()
