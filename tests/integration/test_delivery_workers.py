"""A real twistd with ``--workers 2``: mail is sealed in isolated worker processes that may die, hang or be
bombed without costing a message or the main process's memory."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.harness import DOMAIN, Appliance, stored
from tests.support.independent import open_mail
from tests.support.smtp import SmtpSession, make_message

pytestmark = pytest.mark.integration

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: Hostile messages sent for the memory test: 1,000 in the long suite (LONG=1), fewer in the quick one.
HOSTILE = 1_000 if os.environ.get("LONG") else 300


@pytest.fixture
def appliance(tmp_path: Path) -> Iterator[Appliance]:
    """A running appliance on SQLite with two delivery workers."""
    app = Appliance(tmp_path / "appliance", extra_args=["--workers", "2"])
    app.start()
    try:
        yield app
    finally:
        app.stop()


def worker_pids(app: Appliance) -> list[int]:
    """The main process's children: its delivery workers."""
    assert app.process is not None
    pids: list[int] = []
    for task in Path(f"/proc/{app.process.pid}/task").iterdir():
        try:
            pids += [int(pid) for pid in (task / "children").read_text().split()]
        except OSError:
            continue
    return pids


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def wait_for(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def deliver(app: Appliance, body: bytes, rcpt: str = f"alice@{DOMAIN}") -> tuple[int, bytes]:
    session = SmtpSession(app.smtp_port, timeout=120)
    try:
        session.hello()
        session.envelope([rcpt])
        return session.send_data(body)
    finally:
        session.close()


def large_message(lines: int) -> bytes:
    head = make_message("Large", "The body follows.\n")
    return head + b"".join(
        b"line %07d of the large message, with some words to make it longer\r\n" % i for i in range(lines)
    )


def deliver_killing_its_worker(app: Appliance, message: bytes) -> tuple[int, bytes]:
    """Send ``message`` and SIGKILL the worker seen sealing it; the reply to the final dot."""
    baseline = workers_at_rest(app)
    result: list[tuple[int, bytes]] = []
    sender = threading.Thread(target=lambda: result.append(deliver(app, message)))
    sender.start()
    killed: list[int] = []
    deadline = time.monotonic() + 60
    while not killed and sender.is_alive() and time.monotonic() < deadline:
        for pid, before in baseline.items():
            if cpu_seconds(pid) - before > 0.05:  # this worker has the message now
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
        time.sleep(0.005)
    sender.join(120)
    assert killed, "no worker was seen working on the message"
    wait_for(lambda: len(worker_pids(app)) == 2 and killed[0] not in worker_pids(app))
    return result[0]


def workers_at_rest(app: Appliance) -> dict[int, float]:
    """Each worker's CPU seconds, once both are running and done starting (their CPU time stands still)."""
    deadline = time.monotonic() + 30
    while True:
        before = {pid: cpu_seconds(pid) for pid in worker_pids(app)}
        time.sleep(0.3)
        after = {pid: cpu_seconds(pid) for pid in worker_pids(app)}
        if len(after) == 2 and before == after:
            return after
        assert time.monotonic() < deadline, "the workers did not come to rest"


def test_a_worker_killed_mid_delivery_gives_451_and_the_retry_is_stored_once(appliance: Appliance) -> None:
    """SIGKILL to the worker sealing a message: 451 4.3.0, nothing stored; the retry is stored once and decrypts."""
    key = appliance.add_user("alice")
    wait_for(lambda: len(worker_pids(appliance)) == 2)
    message = large_message(250_000)  # ~17 MB: its sealing takes long enough to be caught at it
    code, text = deliver_killing_its_worker(appliance, message)
    assert code == 451 and b"4.3.0" in text, text
    assert stored(appliance, "alice", "Mail/In/") == []

    code, text = deliver(appliance, message)
    assert code == 250, text
    originals = stored(appliance, "alice", "Mail/In/")
    assert len(originals) == 1 and len(stored(appliance, "alice", "Mail/In_Json/")) == 1
    blob = appliance.admin("store", "cat", "alice", originals[0]).stdout
    assert open_mail(key, blob).endswith(message)
    log = appliance.log()
    assert "delivery workers: 2 processes; isolation: " in log
    assert "the sender will retry (451)" in log
    assert "line 0000001 of the large message" not in log


def test_a_message_that_kills_its_worker_twice_is_refused_with_554(appliance: Appliance) -> None:
    """The same message killing a worker on two attempts in a row: 451, then 554 5.6.0, logged without its content."""
    appliance.add_user("alice")
    wait_for(lambda: len(worker_pids(appliance)) == 2)
    message = large_message(250_000)
    first = deliver_killing_its_worker(appliance, message)
    assert first[0] == 451, first
    second = deliver_killing_its_worker(appliance, message)
    assert second[0] == 554 and b"5.6.0" in second[1], second
    code, text = deliver(appliance, message)  # refused by its digest now, without a worker
    assert code == 554 and b"5.6.0" in text, text
    assert stored(appliance, "alice", "Mail/In/") == []
    assert deliver(appliance, make_message("after", "still served\n"))[0] == 250
    log = appliance.log()
    assert "2 times in a row: refused (554)" in log
    assert "of the large message" not in log


def nested_bomb(depth: int) -> bytes:
    head = b"From: bomb@remote.test\r\nTo: alice@example.org\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"
    parts = [head]
    for level in range(depth):
        parts.append(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (level, level))
    parts.append(b"Content-Type: text/plain\r\n\r\nbottom\r\n")
    parts += [b"--b%d--\r\n" % level for level in reversed(range(depth))]
    return b"".join(parts)


def wide_bomb(count: int) -> bytes:
    head = (
        b"From: bomb@remote.test\r\nTo: alice@example.org\r\nSubject: wide\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=w\r\n\r\n"
    )
    return head + b"--w\r\n\r\nx\r\n" * count + b"--w--\r\n"


def test_a_mime_bomb_ends_in_the_workers_limits_not_the_main_process(appliance: Appliance) -> None:
    """10,000 levels deep and 100,000 parts: stored with the twin naming the limit; the main process barely grows."""
    key = appliance.add_user("alice")
    assert appliance.process is not None
    assert deliver(appliance, make_message("warm-up", "hello\n"))[0] == 250
    before = rss_kib(appliance.process.pid)
    for bomb, limit in ((nested_bomb(10_000), b"nesting depth limit"), (wide_bomb(100_000), b"part count limit")):
        code, text = deliver(appliance, bomb)
        assert code == 250, text
    twins = stored(appliance, "alice", "Mail/In_Json/")
    texts = [open_mail(key, appliance.admin("store", "cat", "alice", path).stdout) for path in twins]
    assert any(b"nesting depth limit" in t for t in texts) and any(b"part count limit" in t for t in texts), texts
    growth = rss_kib(appliance.process.pid) - before
    assert growth < 20 * 1024, f"the main process grew by {growth} KiB"


def hostile_messages(count: int) -> Iterator[bytes]:
    """Small hostile messages of several kinds, each a little different."""
    kinds = [
        lambda i: nested_bomb(300 + i % 50),
        lambda i: wide_bomb(6_000 + i),
        lambda i: b"Subject: many\r\n" + b"X-H: %d\r\n" % i * 2_500 + b"\r\nbody\r\n",
        lambda i: (
            b"Content-Type: multipart/mixed; boundary=q\r\nMIME-Version: 1.0\r\n\r\n--q\r\n"
            b"Content-Type: text/plain; charset=x-unknown-%d\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            % i
            + b"!!!not base64 at all===\r\n" * 200
            + b"--q\r\nContent-Type: message/rfc822\r\n\r\n" * 40
        ),
        lambda i: (
            b"Subject: =?utf-8?b?"
            + b"A" * 900
            + b"?=\r\n"
            + (b"Subject: =?x?q?" + b"=FF" * 300 + b"?=\r\n") * 50
            + b"\r\n"
        ),
    ]
    for i in range(count):
        yield kinds[i % len(kinds)](i)


def test_the_main_process_does_not_grow_with_hostile_messages(appliance: Appliance) -> None:
    """RSS of the main process before and after 1,000 hostile messages (300 quick), all stored: growth under 20 MB."""
    appliance.add_user("alice")
    assert appliance.process is not None
    messages = list(hostile_messages(HOSTILE))
    codes: dict[int, int] = {}

    def send(batch: list[bytes]) -> None:
        for start in range(0, len(batch), 50):
            session = SmtpSession(appliance.smtp_port, timeout=120)
            try:
                session.hello()
                for body in batch[start : start + 50]:
                    session.envelope([f"alice@{DOMAIN}"])
                    code = session.send_data(body)[0]
                    codes[code] = codes.get(code, 0) + 1
            finally:
                session.close()

    send(messages[:100])  # warm-up: caches, pools and the allocator settle
    before = rss_kib(appliance.process.pid)
    send(messages)
    after = rss_kib(appliance.process.pid)
    assert set(codes) == {250}, codes
    assert after - before < 20 * 1024, f"{before} KiB before, {after} KiB after"
    print(json.dumps({"rss_before_kib": before, "rss_after_kib": after}))


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_large_message_is_held_about_once_by_the_main_process(appliance: Appliance) -> None:
    """A 30 MB message sealed by a worker: the main process's peak RSS grows by well under twice its size
    (it hands the message to the worker's pipe a piece at a time, never joined into a second copy)."""
    appliance.add_user("alice")
    assert appliance.process is not None
    pid = appliance.process.pid
    body = b"".join(b"%076d\r\n" % n for n in range(30_000_000 // 78))
    message = b"From: bob@remote.test\r\nTo: alice@example.org\r\nSubject: large\r\n\r\n" + body
    session = SmtpSession(appliance.smtp_port, timeout=300)
    try:
        session.hello()
        session.envelope([f"alice@{DOMAIN}"])
        assert session.send_data(b"small\r\n")[0] == 250  # warm: the first delivery's imports and pools
        idle = rss_kib(pid)
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        session.envelope([f"alice@{DOMAIN}"])
        assert session.send_data(message)[0] == 250
    finally:
        session.close()
    growth = (_peak_rss_kib(pid) - idle) * 1024
    assert growth < 1.5 * len(message), f"peak growth {growth / 1e6:.1f} MB for a {len(message) / 1e6:.1f} MB message"
    assert len(stored(appliance, "alice", "Mail/In/")) == 2
