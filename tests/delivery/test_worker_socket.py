"""Delivery workers behind a Unix socket (``--worker-socket``), started per connection as systemd's
``mailiverse-worker.socket`` (Accept=yes) starts them: here by ``systemd-socket-activate --inetd --accept``,
the same contract (the connection as the worker's stdin and stdout), under a user of their own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.logger import globalLogPublisher
from twisted.python.usage import UsageError

from mailiverse.crypto.formats import open_mail_object
from mailiverse.crypto.keys import generate_private_key, public_key_der
from mailiverse.delivery import framing
from mailiverse.delivery.isolation import IsolationSettings
from mailiverse.delivery.pool import WorkerLost, WorkerPool
from mailiverse.delivery.sealing import SealJob
from mailiverse.mime.limits import Limits
from mailiverse.mime.twin import convert
from mailiverse.tap import Options, build_config
from tests.support.harness import stop_process
from tests.support.waiting import until

ACTIVATE = shutil.which("systemd-socket-activate")
pytestmark = pytest.mark.skipif(ACTIVATE is None, reason="systemd-socket-activate (package systemd) is missing")

PRIVATE_KEY = generate_private_key()
PUBLIC_KEY = public_key_der(PRIVATE_KEY)
MESSAGE = b"From: bob@remote.test\r\nTo: alice@example.org\r\nSubject: over a socket\r\n\r\nHi Alice.\r\n"
#: The unit's user, emulated: a user that is not the appliance's (the tests run as root).
WORKER_USER = "nobody"


def _job(stamp: str = "1_2") -> SealJob:
    return SealJob(f"Mail/In/{stamp}", f"Mail/In_Json/{stamp}", 1, (("v1", PUBLIC_KEY), ("v2", PUBLIC_KEY)), Limits())


@pytest.fixture
def worker_socket() -> Iterator[str]:
    """A socket whose every connection starts ``python -I -m mailiverse.delivery.worker`` as ``nobody``,
    in an empty directory, with no arguments: what ``mailiverse-worker@.service`` runs."""
    place = Path(tempfile.mkdtemp(prefix="mailiverse-wsock-"))
    place.chmod(0o755)
    empty = place / "cwd"
    empty.mkdir(mode=0o755)
    path = str(place / "worker.sock")
    as_user = ["setpriv", f"--reuid={WORKER_USER}", "--regid=nogroup", "--clear-groups"] if os.geteuid() == 0 else []
    command = [*as_user, sys.executable, "-I", "-m", "mailiverse.delivery.worker"]
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    assert ACTIVATE is not None
    # the activator's and the workers' own messages (a pipe nobody reads would fill and stop them)
    log = place / "activator.log"
    with log.open("wb") as errors:
        activator = subprocess.Popen(  # noqa: S603
            [ACTIVATE, "--inetd", "--accept", f"--listen={path}", *command],
            cwd=empty,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
    try:
        deadline = 100
        while not os.path.exists(path) and deadline:
            assert activator.poll() is None, log.read_text(errors="replace")
            deadline -= 1
            time.sleep(0.05)
        assert os.path.exists(path), "systemd-socket-activate did not listen"
        yield path
    finally:
        stop_process(activator)
        shutil.rmtree(place, ignore_errors=True)


@pytest_twisted.async_yield_fixture
async def pool(worker_socket: str, tmp_path: Path) -> AsyncIterator[WorkerPool]:
    workers = WorkerPool(2, reactor=reactor, tmp_dir=str(tmp_path), socket_path=worker_socket)
    workers.startService()
    await until(lambda: len(workers._idle) == 2, timeout=60)
    try:
        yield workers
    finally:
        workers.stopService()
        await until(lambda: not workers._workers)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1]
    except (OSError, IndexError):
        return False
    return not state.startswith("Z")


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


@pytest_twisted.ensureDeferred
async def test_workers_behind_the_socket_seal_under_their_own_user(pool: WorkerPool) -> None:
    """Two connections, two worker processes the pool did not start, each running as the unit's user
    (not the appliance's): each seals the original and the twin for every recipient."""
    pids = pool.worker_pids()
    assert len(set(pids)) == 2
    nobody = int(subprocess.run(["id", "-u", WORKER_USER], capture_output=True, check=True, text=True).stdout)  # noqa: S607
    for pid in pids:
        assert _alive(pid)
        assert os.getppid() != pid and _uid(pid) == (nobody if os.geteuid() == 0 else os.geteuid())
    worker = next(iter(pool._workers))
    assert f"user {WORKER_USER}" in worker.isolation and "no new files or sockets (RLIMIT_NOFILE 3)" in worker.isolation
    for n in range(4):  # both workers, twice each
        objects, meta = await pool.seal(MESSAGE, _job(f"{n}_2"))
        assert meta.size == len(MESSAGE)
        opened = [open_mail_object(PRIVATE_KEY, obj.read()) for obj in objects]
        twin = convert(MESSAGE, original_path=f"Mail/In/{n}_2", written_ms=1)
        assert opened == [MESSAGE, twin, MESSAGE, twin]


@pytest_twisted.ensureDeferred
async def test_the_appliance_sends_each_worker_its_settings_first(worker_socket: str, tmp_path: Path) -> None:
    """A worker behind the socket has no command line from the appliance: its address-space budget (sized by
    --max-message-size) arrives as the connection's first frame, and the ceiling it reports follows it."""
    ceilings = []
    for budget_mib in (600, 900):
        settings = IsolationSettings(address_space_budget=budget_mib * 1024 * 1024)
        workers = WorkerPool(1, reactor=reactor, tmp_dir=str(tmp_path), settings=settings, socket_path=worker_socket)
        workers.startService()
        try:
            await until(lambda workers=workers: len(workers._idle) == 1, timeout=60)
            (measure,) = [m for m in workers._idle[0].isolation if m.startswith("address space ")]
            ceilings.append(int(measure.split()[2]))
        finally:
            workers.stopService()
            await until(lambda workers=workers: not workers._workers)
    assert ceilings[1] - ceilings[0] in range(290, 311), ceilings
    assert ceilings[0] > 600


@pytest.mark.parametrize(
    "first",
    [
        b"",  # nothing at all
        b"garbage that is no frame",
        framing.json_frame(framing.JOB, {"size": 1}),  # a job before the settings
        framing.frame(framing.SETTINGS, b"x" * (framing.MAX_SETTINGS + 1)),  # oversized
        framing.frame(framing.SETTINGS, b"{not json"),
        framing.json_frame(framing.SETTINGS, {"address_space_budget": "lots", "user": "nobody"}),
        framing.json_frame(framing.SETTINGS, {"user": "nobody"}),
    ],
)
def test_a_connection_that_does_not_begin_with_settings_gets_no_worker(worker_socket: str, first: bytes) -> None:
    """Whatever reaches the socket first that is not a well-formed SETTINGS frame: the worker says nothing (no
    HELLO) and ends, closing the connection; it never serves."""
    import socket as sockets

    with sockets.socket(sockets.AF_UNIX) as client:
        client.settimeout(60)
        client.connect(worker_socket)
        received = b""
        try:
            client.sendall(first)
            client.shutdown(sockets.SHUT_WR)
            while chunk := client.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass  # it ended with bytes of ours unread: the kernel resets the connection
    assert received == b""


@pytest_twisted.ensureDeferred
async def test_a_worker_past_its_deadline_loses_its_connection_and_ends(worker_socket: str, tmp_path: Path) -> None:
    """The pool cannot signal another user's process: it drops the connection, the worker ends at the
    CPU ceiling it armed for the message (the same as the deadline), and a new connection takes over
    (a deadline of 0 s + 0.01 s per MiB: every message misses it)."""
    workers = WorkerPool(
        1,
        reactor=reactor,
        tmp_dir=str(tmp_path),
        deadline_seconds=0.0,
        deadline_per_mib=0.01,
        socket_path=worker_socket,
    )
    workers.startService()
    try:
        await until(lambda: len(workers._idle) == 1, timeout=60)
        (first,) = workers.worker_pids()
        with pytest.raises(WorkerLost):
            await workers.seal(MESSAGE + b"z" * 20_000_000, _job())
        await until(lambda: not _alive(first), timeout=30)
        await until(lambda: len(workers._idle) == 1, timeout=60)
        assert workers.worker_pids() != [first]
    finally:
        workers.stopService()
        await until(lambda: not workers._workers)


@pytest_twisted.ensureDeferred
async def test_a_retired_worker_reads_the_end_and_exits(worker_socket: str, tmp_path: Path) -> None:
    """max_jobs=1: after its message the pool closes its side for writing; the worker exits cleanly and
    the next message goes to a fresh connection, with no warning logged."""
    events: list[dict[str, object]] = []
    globalLogPublisher.addObserver(events.append)
    workers = WorkerPool(1, reactor=reactor, tmp_dir=str(tmp_path), max_jobs=1, socket_path=worker_socket)
    workers.startService()
    try:
        seen = []
        for n in range(3):
            await until(lambda: len(workers._idle) == 1, timeout=60)
            seen.append(workers.worker_pids()[0])
            objects, _meta = await workers.seal(MESSAGE, _job(f"{n}_1"))
            assert open_mail_object(PRIVATE_KEY, objects[0].read()) == MESSAGE
        await until(lambda: not _alive(seen[0]) and not _alive(seen[1]), timeout=30)
    finally:
        workers.stopService()
        await until(lambda: not workers._workers)
        globalLogPublisher.removeObserver(events.append)
    assert len(set(seen)) == 3
    warnings = [e for e in events if "delivery worker" in str(e.get("log_format")) and e.get("why")]
    assert [w for w in warnings if "stopping" not in str(w.get("why"))] == []


@pytest_twisted.ensureDeferred
async def test_an_unreachable_socket_fails_the_message_for_a_retry(tmp_path: Path) -> None:
    """No socket (the unit not running): the pool says so in the log, keeps trying with a back-off, and a
    message waiting past the queue time gets WorkerLost (SMTP 451: the sender retries), never lost."""
    events: list[dict[str, object]] = []
    globalLogPublisher.addObserver(events.append)
    missing = str(tmp_path / "no-such.sock")
    workers = WorkerPool(1, reactor=reactor, tmp_dir=str(tmp_path), queue_seconds=1.0, socket_path=missing)
    workers.startService()
    try:
        with pytest.raises(WorkerLost, match="no delivery worker became free in time"):
            await workers.seal(MESSAGE, _job())
    finally:
        workers.stopService()
        globalLogPublisher.removeObserver(events.append)
    reasons = [str(e.get("why")) for e in events if e.get("why")]
    assert any(reason.startswith("could not be reached") for reason in reasons), reasons


def test_the_option_takes_an_absolute_socket_path_and_needs_workers(tmp_path: Path) -> None:
    """--worker-socket: an absolute path, kept in the configuration; relative: refused; with --workers 0: unused."""

    def configured(*extra: str) -> object:
        options = Options()
        options.parseOptions(["--data-dir", str(tmp_path / "data"), "--domain", "example.org", *extra])
        return build_config(options)

    config = configured("--workers", "2", "--worker-socket", "/run/mailiverse/worker.sock")
    assert config.delivery_worker_socket == "/run/mailiverse/worker.sock"  # type: ignore[attr-defined]
    assert config.delivery_workers == 2  # type: ignore[attr-defined]
    with pytest.raises(UsageError, match="absolute path"):
        configured("--worker-socket", "worker.sock")
    # the unit always names the socket; an operator's --workers 0 still seals in the main process
    config = configured("--workers", "0", "--worker-socket", "/run/mailiverse/worker.sock")
    assert config.delivery_workers == 0 and config.delivery_worker_socket is None  # type: ignore[attr-defined]
