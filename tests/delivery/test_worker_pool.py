"""The delivery worker pool: real worker processes seal, die, hang, and are replaced; isolation holds from inside."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from mailiverse.contracts import MessageRefused
from mailiverse.crypto.formats import open_mail_object
from mailiverse.crypto.keys import generate_private_key, public_key_der
from mailiverse.delivery.isolation import IsolationSettings
from mailiverse.delivery.pool import WorkerLost, WorkerPool, content_digest
from mailiverse.delivery.sealing import SealJob
from mailiverse.mime.limits import Limits
from mailiverse.mime.twin import convert
from tests.support.waiting import until

PRIVATE_KEY = generate_private_key()
PUBLIC_KEY = public_key_der(PRIVATE_KEY)
MESSAGE = b"From: bob@remote.test\r\nTo: alice@example.org\r\nSubject: hello\r\n\r\nHi Alice.\r\n"


def _job(stamp: str = "1_2") -> SealJob:
    return SealJob(f"Mail/In/{stamp}", f"Mail/In_Json/{stamp}", 1, (("v1", PUBLIC_KEY), ("v2", PUBLIC_KEY)), Limits())


@pytest_twisted.async_yield_fixture
async def pool(tmp_path: Path) -> AsyncIterator[WorkerPool]:
    workers = WorkerPool(2, reactor=reactor, tmp_dir=str(tmp_path))
    workers.startService()
    await until(lambda: len(workers._idle) == 2)
    try:
        yield workers
    finally:
        workers.stopService()
        await until(lambda: not workers._workers)


@pytest_twisted.ensureDeferred
async def test_a_worker_seals_the_original_and_the_twin_for_every_recipient(pool: WorkerPool) -> None:
    """A worker returns, per recipient and in its envelope format, the message and its JSON twin, sealed."""
    objects, meta = await pool.seal(MESSAGE, _job())
    assert meta.size == len(MESSAGE)
    assert [obj.read(1) for obj in objects] == [b"\x01", b"\x01", b"\x02", b"\x02"]
    for obj in objects:
        obj.seek(0)
    opened = [open_mail_object(PRIVATE_KEY, obj.read()) for obj in objects]
    twin = convert(MESSAGE, original_path="Mail/In/1_2", written_ms=1)
    assert opened == [MESSAGE, twin, MESSAGE, twin]


@pytest_twisted.ensureDeferred
async def test_a_killed_worker_fails_its_message_then_refuses_it_and_is_replaced(pool: WorkerPool) -> None:
    """SIGKILL mid-message: WorkerLost (451) once, MessageRefused (554) the second time; new workers serve on."""
    big = MESSAGE + b"x" * 76 + b"\r\n" * 1 + (b"y" * 76 + b"\r\n") * 300_000

    async def attempt() -> BaseException:
        before = set(pool.worker_pids())
        pending = Deferred.fromCoroutine(pool.seal(big, _job()))
        await until(lambda: any(w.job is not None for w in pool._workers))
        busy = next(w for w in pool._workers if w.job is not None)
        assert busy.pid in before
        os.kill(busy.pid, signal.SIGKILL)  # type: ignore[arg-type]
        try:
            await pending
        except (WorkerLost, MessageRefused) as error:
            return error
        raise AssertionError("the message was sealed by a killed worker")

    assert isinstance(await attempt(), WorkerLost)
    await until(lambda: len(pool._idle) == 2)
    assert isinstance(await attempt(), MessageRefused)
    with pytest.raises(MessageRefused):
        await pool.seal(big, _job("3_4"))  # refused at once, by its digest, without a worker
    await until(lambda: len(pool._idle) == 2)
    objects, _meta = await pool.seal(MESSAGE, _job())
    assert open_mail_object(PRIVATE_KEY, objects[0].read()) == MESSAGE


@pytest_twisted.ensureDeferred
async def test_a_worker_past_its_deadline_is_killed_and_replaced(tmp_path: Path) -> None:
    """A message that keeps its worker busy past the deadline fails with WorkerLost; a new worker takes over."""
    workers = WorkerPool(1, reactor=reactor, tmp_dir=str(tmp_path), deadline_seconds=0.0, deadline_per_mib=0.01)
    workers.startService()
    try:
        await until(lambda: len(workers._idle) == 1)
        first = workers.worker_pids()
        with pytest.raises(WorkerLost):
            await workers.seal(MESSAGE + b"z" * 20_000_000, _job())
        await until(lambda: len(workers._idle) == 1)
        assert workers.worker_pids() != first
    finally:
        workers.stopService()
        await until(lambda: not workers._workers)


@pytest_twisted.ensureDeferred
async def test_a_worker_is_retired_after_its_quota_of_messages(tmp_path: Path) -> None:
    """With max_jobs=2, one worker seals two messages, exits cleanly (status 0, no warning) and a fresh
    process seals the next two: no message waits on or is lost to the change."""
    from twisted.logger import globalLogPublisher

    events: list[dict[str, object]] = []
    globalLogPublisher.addObserver(events.append)
    workers = WorkerPool(1, reactor=reactor, tmp_dir=str(tmp_path), max_jobs=2)
    workers.startService()
    try:
        await until(lambda: len(workers._idle) == 1)
        seen = []
        for n in range(5):
            await until(lambda: bool(workers.worker_pids()))
            seen.append(workers.worker_pids()[0])
            objects, _meta = await workers.seal(MESSAGE, _job(f"{n}_1"))
            assert open_mail_object(PRIVATE_KEY, objects[0].read()) == MESSAGE
            pid = seen[-1]
            if n % 2:
                await until(lambda pid=pid: not os.path.exists(f"/proc/{pid}") or _zombie(pid))
    finally:
        workers.stopService()
        await until(lambda: not workers._workers)
        globalLogPublisher.removeObserver(events.append)
    assert len(set(seen)) == 3 and seen[0] == seen[1] and seen[2] == seen[3] != seen[0]
    warnings = [e for e in events if "delivery worker" in str(e.get("log_format")) and e.get("why")]
    assert [w for w in warnings if "stopping" not in str(w.get("why"))] == []


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return True


def test_the_digest_of_a_retried_message_ignores_the_appliances_own_trace_header() -> None:
    """Two attempts of one message differ only in the leading Received header: they share a digest."""
    one = b"Received: from a ([127.0.0.1])\r\n\tby mail id 1; Sat, 1 Jan 2026\r\n" + MESSAGE
    two = b"Received: from a ([127.0.0.1])\r\n\tby mail id 2; Sun, 2 Jan 2026\r\n" + MESSAGE
    assert content_digest(one) == content_digest(two) == content_digest(MESSAGE)
    assert content_digest(MESSAGE + b"!") != content_digest(MESSAGE)


PROBE = textwrap.dedent(
    """
    import errno, json, os, socket, sys
    from mailiverse.delivery.isolation import IsolationSettings, isolate
    port, secret, settings = int(sys.argv[1]), sys.argv[2], IsolationSettings(**json.loads(sys.argv[3]))
    applied = isolate(settings, ".")
    tried = {}
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        tried["connect"] = "connected"
    except OSError as e:
        tried["connect"] = errno.errorcode[e.errno]
    try:
        with open(secret, "rb") as f:
            tried["read"] = f.read().decode()
    except OSError as e:
        tried["read"] = errno.errorcode[e.errno]
    try:
        os.listdir(os.path.dirname(secret))
        tried["list"] = "listed"
    except OSError as e:
        tried["list"] = errno.errorcode[e.errno]
    try:
        if os.fork() == 0:
            os._exit(0)
        tried["fork"] = "forked"
    except OSError as e:
        tried["fork"] = errno.errorcode[e.errno]
    try:
        bytearray(4 * 1024 * 1024 * 1024)
        tried["memory"] = "allocated"
    except MemoryError:
        tried["memory"] = "MemoryError"
    os.write(1, json.dumps({"applied": applied, "tried": tried}).encode())
    """
)


def test_from_inside_an_isolated_worker_no_socket_no_data_dir_no_fork(tmp_path: Path) -> None:
    """Isolated as a worker isolates itself, a child can neither connect over TCP, nor read or list a data dir,
    nor fork, nor allocate past its address-space ceiling."""
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    secret = data_dir / "appliance.json"
    secret.write_text('{"db_url": "postgresql://secret"}')
    secret.chmod(0o600)
    workdir = tmp_path / "empty"
    workdir.mkdir(mode=0o700)
    settings = IsolationSettings(address_space_budget=256 * 1024 * 1024)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        child = subprocess.run(  # noqa: S603 - our own interpreter
            [sys.executable, "-I", "-c", PROBE, str(port), str(secret), json.dumps(settings.__dict__)],
            cwd=workdir,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            capture_output=True,
            timeout=60,
            check=False,
        )
    assert child.returncode == 0, child.stderr.decode(errors="replace")
    report = json.loads(child.stdout)
    tried = report["tried"]
    assert tried["connect"] == "EMFILE", report  # no descriptor left for a socket
    assert tried["read"] in ("EMFILE", "EACCES") and tried["list"] in ("EMFILE", "EACCES"), report
    assert tried["fork"] == "EAGAIN", report
    assert tried["memory"] == "MemoryError", report
    assert "no new files or sockets (RLIMIT_NOFILE 3)" in report["applied"]
    assert "no_new_privs" in report["applied"]
    if os.geteuid() == 0:
        assert "user nobody" in report["applied"]
