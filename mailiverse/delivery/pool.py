"""The appliance's pool of delivery worker processes: start, feed, time, kill and replace them.

Each worker (``delivery/worker.py``) seals one message at a time. The pool keeps ``size`` of them
running, hands each free one the next waiting message (its bytes and the recipients' public keys,
in memory over a pipe), and writes the sealed objects it sends back into spooled temporary files:
ciphertext only, in memory up to 1 MiB, so the appliance's memory does not grow with the message.

A worker that crashes, exceeds its limits or misses its deadline is killed and replaced; the
message it held fails with :class:`WorkerLost` (SMTP answers 451 4.3.0, the sender retries).
A message that took ``strikes`` workers down in a row is refused for good
(:class:`~mailiverse.contracts.MessageRefused`, SMTP 554 5.6.0), remembered by a digest of its
content (never the content), for the last ``remember`` such messages.

A worker is retired after ``max_jobs`` messages (its input closed, it exits when done) and a fresh
one takes its place: whatever a message might have left behind in a worker (memory it grew, or a
foothold, should one ever defeat the parser) lasts for at most that many later messages.

With ``socket_path`` the pool starts no process: each worker is a connection to that Unix socket, where
a systemd socket unit (``Accept=yes``, ``appliance/mailiverse-worker.socket``) starts one worker per
connection under a user of its own, in a sandbox of its own; the worker speaks the same protocol over
the connection. Killing such a worker is closing its connection: one waiting reads the end and exits,
one computing is ended by the CPU ceiling it armed for the message, the same as the deadline.

A worker judging a message asks its DNS questions here (``ENQUIRY`` frames), one at a time; the
message's ``Answerer`` (``delivery/enquiries.py``) answers them with the resolver the caller gave.
A worker that asks when its message is not judged, while a question is open, or more than
``MAX_ENQUIRIES`` times breaks the protocol: it is killed like any other.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass, field
from typing import IO, Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectError, ConnectionDone, ConnectionLost, ProcessExitedAlready
from twisted.internet.interfaces import IPullProducer
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from mailiverse.contracts import MessageRefused
from mailiverse.delivery import framing
from mailiverse.delivery.encrypt import IN_MEMORY
from mailiverse.delivery.enquiries import Answerer, Resolve
from mailiverse.delivery.isolation import IsolationSettings
from mailiverse.delivery.sealing import SealedMeta, SealJob
from mailiverse.delivery.workersocket import connect_worker
from mailiverse.logs import Logger

log = Logger()

MIB = 1024 * 1024
#: How much of a message is handed to a worker's pipe at a time.
FEED_PIECE = MIB


class WorkerLost(Exception):
    """The worker sealing the message died, hit a limit or hung; nothing was stored. Try again later."""


class WorkerError(Exception):
    """The worker reported an exception while sealing (named by its type only)."""


def content_digest(raw: bytes) -> bytes:
    """SHA-256 of the message without the appliance's own leading trace header, which changes per attempt."""
    start = 0
    if raw[:9].lower() == b"received:":
        end = raw.find(b"\r\n")
        while end != -1 and raw[end + 2 : end + 3] in (b" ", b"\t"):
            end = raw.find(b"\r\n", end + 2)
        start = len(raw) if end == -1 else end + 2
    return hashlib.sha256(memoryview(raw)[start:]).digest()


@dataclass
class _Job:
    raw: bytes
    job: SealJob
    digest: bytes
    size: int
    done: Deferred[tuple[list[IO[bytes]], SealedMeta]] = field(default_factory=Deferred)
    objects: list[IO[bytes]] = field(default_factory=list)
    current: IO[bytes] | None = None
    received: int = 0
    timer: Any = None
    #: Answers the message's DNS questions; None when the worker may ask none.
    answerer: Answerer | None = None
    asking: bool = False

    def discard(self) -> None:
        for item in self.objects:
            item.close()
        if self.current is not None:
            self.current.close()
        self.objects, self.current = [], None


class _Worker(ProcessProtocol):
    """One worker process, seen from the appliance."""

    def __init__(self, pool: WorkerPool, workdir: str | None) -> None:
        self.pool = pool
        self.workdir = workdir
        self.ready = False
        self.job: _Job | None = None
        self.isolation: list[str] = []
        self._reader = framing.FrameReader()
        self._killed_because = ""
        self._pid: int | None = None
        self.jobs_done = 0
        self.retiring = False

    @property
    def pid(self) -> int | None:
        """The worker's process id (kept after it ends, for the log)."""
        return self._pid

    def connectionMade(self) -> None:
        self._pid = getattr(self.transport, "pid", None)
        if self.pool._stopping:
            self.kill("the appliance is stopping")  # a connection to the worker socket made after the stop

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == 2:
            # Before its first message a worker's errors say why it could not start; after, they
            # could quote a message, so they are dropped.
            if not self.ready:
                log.warn(
                    "delivery worker {pid} while starting: {text}",
                    pid=self.pid,
                    text=data[-500:].decode("utf-8", "replace"),
                )
            return
        if self._killed_because:
            return  # what a worker sends after we gave up on it is not read
        try:
            frames = self._reader.feed(data)
        except framing.FrameError:
            self.kill("broke the framing")
            return
        for tag, payload in frames:
            try:
                expected = self._frame(tag, payload)
            except (ValueError, KeyError, TypeError):  # JSON that is not what the protocol says
                expected = False
            if not expected:
                self.kill("sent an unexpected frame")
                return

    def _frame(self, tag: bytes, payload: bytes) -> bool:
        if tag == framing.HELLO and not self.ready:
            hello = json.loads(payload)
            self.isolation = [str(measure) for measure in hello["isolation"]]
            pid = hello.get("pid")
            if self._pid is None and isinstance(pid, int):
                self._pid = pid  # a worker behind a socket names itself
            self.ready = True
            # The worker is in its directory and found it empty: removed now, it stays empty for good
            # (a deleted directory takes no new entries) and nothing is left behind if we are killed.
            self._remove_workdir()
            self.pool._worker_ready(self)
            return True
        job = self.job
        if job is None or job.asking:
            return False  # a worker waiting for an answer sends nothing else
        if tag == framing.ENQUIRY:
            return self._enquiry(job, payload)
        if tag == framing.CHUNK:
            job.received += len(payload)
            if job.received > self.pool.output_cap(job):
                return False
            if job.current is None:
                job.current = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY, dir=self.pool.tmp_dir)  # noqa: SIM115
            job.current.write(payload)
            return True
        if tag == framing.END_OBJECT:
            if job.current is None:
                job.current = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY, dir=self.pool.tmp_dir)  # noqa: SIM115
            job.current.seek(0)
            job.objects.append(job.current)
            job.current = None
            return len(job.objects) <= 2 * len(job.job.keys)
        if tag == framing.RESULT:
            meta = SealedMeta.from_wire(json.loads(payload))
            if (meta.judgement is None) != (job.job.judge is None):
                return False
            refused = meta.judgement is not None and meta.judgement.refused
            if len(job.objects) != (0 if refused else 2 * len(job.job.keys)) or job.current is not None:
                return False
            self._finish(job)
            self.pool._succeeded(job, self)
            job.done.callback((job.objects, meta))
            return True
        if tag == framing.ERROR:
            error = str(json.loads(payload).get("error", "?"))[:100]
            self._finish(job)
            job.discard()
            self.pool._worker_idle(self)
            job.done.errback(WorkerError(error))
            return True
        return False

    def _enquiry(self, job: _Job, payload: bytes) -> bool:
        """Answer a DNS question of the job's worker; False (a protocol break) when it may not ask."""
        answerer = job.answerer
        if answerer is None or not answerer.may_ask() or job.objects or job.current is not None:
            return False
        name, rtype = framing.enquiry(payload)
        job.asking = True
        Deferred.fromCoroutine(answerer.answer(name, rtype)).addCallback(self._answer, job)
        return True

    def _answer(self, answer: dict[str, Any], job: _Job) -> None:
        job.asking = False
        if self.job is not job or self._killed_because:
            return  # the worker is gone or gave up on the message meanwhile
        assert self.transport is not None
        self.transport.write(framing.json_frame(framing.ANSWER, answer))

    def _finish(self, job: _Job) -> None:
        if job.timer is not None and job.timer.active():
            job.timer.cancel()
        self.job = None
        self.jobs_done += 1

    def start(self, job: _Job, deadline: float) -> None:
        self.job = job
        request = {"size": job.size, "cpu_seconds": max(1, int(deadline)), "job": job.job.to_wire()}
        if job.answerer is not None:
            deadline += framing.DNS_BUDGET_SECONDS  # waiting for answers costs the worker no CPU time
        job.timer = self.pool.reactor.callLater(deadline, self.kill, "missed its deadline")
        assert self.transport is not None
        self.transport.write(framing.json_frame(framing.JOB, request))
        # A piece at a time as the pipe drains: one write of the whole message would have the
        # transport join it into a second copy (a 50 MB message cost 100 MB of resident memory).
        transport: Any = self.transport  # the process transport is also its stdin pipe's consumer
        transport.registerProducer(_Feed(transport, job.raw), False)

    def kill(self, why: str) -> None:
        self._killed_because = self._killed_because or why
        try:
            self.transport.signalProcess("KILL")  # type: ignore[union-attr]
        except (ProcessExitedAlready, AttributeError, OSError):
            pass

    def _remove_workdir(self) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def processEnded(self, reason: Failure) -> None:
        self._remove_workdir()
        job, self.job = self.job, None
        if job is not None and job.timer is not None and job.timer.active():
            job.timer.cancel()
        self.pool._worker_ended(self, job, self._killed_because or _describe_exit(reason))


@implementer(IPullProducer)
class _Feed:
    """Writes a message into a worker's pipe in pieces of FEED_PIECE bytes, each when the last has drained."""

    def __init__(self, consumer: Any, raw: bytes) -> None:
        self._consumer: Any = consumer
        self._view: memoryview | None = memoryview(raw)
        self._offset = 0

    def resumeProducing(self) -> None:
        view = self._view
        if view is None:
            return
        piece = view[self._offset : self._offset + FEED_PIECE]
        self._offset += len(piece)
        if self._offset >= len(view):
            self._view = None
            consumer, self._consumer = self._consumer, None
            consumer.write(bytes(piece))
            consumer.unregisterProducer()
            return
        self._consumer.write(bytes(piece))

    def stopProducing(self) -> None:
        self._view = self._consumer = None


def _describe_exit(reason: Failure) -> str:
    value = reason.value
    if isinstance(value, ConnectError):
        return f"could not be reached ({type(value).__name__})"
    if isinstance(value, ConnectionDone):
        return "closed its connection"
    if isinstance(value, ConnectionLost):
        return "lost its connection"
    signal = getattr(value, "signal", None)
    if signal:
        return f"was killed by signal {signal}"
    return f"exited with status {getattr(value, 'exitCode', '?')}"


class WorkerPool(Service):
    """``size`` isolated worker processes sealing messages for :class:`~mailiverse.delivery.pipeline.Delivery`."""

    def __init__(
        self,
        size: int,
        *,
        reactor: Any,
        tmp_dir: str | None = None,
        settings: IsolationSettings | None = None,
        strikes: int = 2,
        remember: int = 1024,
        deadline_seconds: float = 30.0,
        deadline_per_mib: float = 2.0,
        queue_seconds: float = 120.0,
        max_jobs: int = 1000,
        socket_path: str | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.setName("delivery-workers")
        self.size = size
        self.reactor = reactor
        self.tmp_dir = tmp_dir
        self.settings = settings or IsolationSettings()
        self.strikes = strikes
        self.remember = remember
        self.deadline_seconds = deadline_seconds
        self.deadline_per_mib = deadline_per_mib
        self.queue_seconds = queue_seconds
        self.max_jobs = max_jobs
        self.socket_path = socket_path
        self._workers: set[_Worker] = set()
        self._idle: deque[_Worker] = deque()
        self._waiting: deque[_Job] = deque()
        self._strikes: OrderedDict[bytes, int] = OrderedDict()
        self._stopping = False
        self._start_failures = 0
        self._logged_isolation: list[str] | None = None

    # -- life ----------------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        for _ in range(self.size - len(self._workers)):
            self._spawn()

    def stopService(self) -> None:
        super().stopService()
        self._stopping = True
        for worker in list(self._workers):
            worker.kill("the appliance is stopping")
        while self._waiting:
            job = self._waiting.popleft()
            job.done.errback(WorkerLost("the appliance is stopping"))

    def worker_pids(self) -> list[int]:
        """The process ids of the running workers."""
        return [pid for pid in (w.pid for w in self._workers) if pid is not None]

    def _spawn(self) -> None:
        if self.socket_path is not None:
            worker = _Worker(self, None)
            self._workers.add(worker)
            connect_worker(
                self.reactor, self.socket_path, worker, framing.json_frame(framing.SETTINGS, asdict(self.settings))
            )
            return
        workdir = tempfile.mkdtemp(prefix="mailiverse-worker-")
        worker = _Worker(self, workdir)
        self._workers.add(worker)
        argv = self.worker_argv()
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        self.reactor.spawnProcess(
            worker, sys.executable, argv, env=env, path=workdir, childFDs={0: "w", 1: "r", 2: "r"}
        )

    def worker_argv(self) -> list[str]:
        """The command line of a worker process (a test's pool may run a misbehaving one instead)."""
        return [sys.executable, "-I", "-m", "mailiverse.delivery.worker", json.dumps(asdict(self.settings))]

    def _worker_ready(self, worker: _Worker) -> None:
        self._start_failures = 0
        if worker.isolation != self._logged_isolation:
            self._logged_isolation = worker.isolation
            log.info(
                "delivery workers: {size} processes{where}; isolation: {measures}",
                size=self.size,
                where=f" behind {self.socket_path}" if self.socket_path else "",
                measures=", ".join(worker.isolation),
            )
        self._worker_idle(worker)

    def _worker_idle(self, worker: _Worker) -> None:
        if self._stopping:
            return
        if worker.jobs_done >= self.max_jobs:
            self._retire(worker)
            return
        self._idle.append(worker)
        self._dispatch()

    def _retire(self, worker: _Worker) -> None:
        """End ``worker`` cleanly (its input closed: it exits at once) and start its successor now."""
        worker.retiring = True
        self._workers.discard(worker)
        assert worker.transport is not None
        worker.transport.closeStdin()
        self._spawn()

    def _worker_ended(self, worker: _Worker, job: _Job | None, why: str) -> None:
        self._workers.discard(worker)
        if worker in self._idle:
            self._idle.remove(worker)
        if job is not None:
            job.discard()
            self._struck(job, why)
        elif worker.retiring:
            log.debug("delivery worker {pid} retired after {count} messages", pid=worker.pid, count=worker.jobs_done)
            return
        elif not self._stopping:
            # a worker behind the socket that never answered has no process id: the socket names it
            who = worker.pid if worker.pid is not None else f"at {self.socket_path}"
            log.warn("delivery worker {pid} {why}", pid=who, why=why)
        if self._stopping:
            return
        if not worker.ready:
            self._start_failures += 1
        delay = 0.0 if self._start_failures == 0 else min(10.0, 0.1 * 2**self._start_failures)
        self.reactor.callLater(delay, self._replace)

    def _replace(self) -> None:
        if not self._stopping and len(self._workers) < self.size:
            self._spawn()

    # -- jobs ----------------------------------------------------------------------------------

    def output_cap(self, job: _Job) -> int:
        """The most ciphertext a job may send back: far above any real message's (zlib never grows much)."""
        return 2 * len(job.job.keys) * (4 * job.size + 16 * MIB)

    def deadline(self, size: int) -> float:
        return self.deadline_seconds + self.deadline_per_mib * size / MIB

    async def seal(
        self, raw: bytes, job: SealJob, digest: bytes | None = None, resolve: Resolve | None = None
    ) -> tuple[list[IO[bytes]], SealedMeta]:
        """The sealed objects of ``raw`` (per recipient: original, twin), rewound; none when the worker's
        judgement refuses the message (``SealedMeta.judgement``).

        ``digest`` is ``content_digest(raw)`` when the caller computed it already (off the reactor
        thread, for a large message). ``resolve`` answers the DNS questions of a judged message
        (``job.judge`` with ``dns``). Raises WorkerLost (try again later) or MessageRefused (never).
        """
        if digest is None:
            digest = content_digest(raw)
        if self._strikes.get(digest, 0) >= self.strikes:
            raise MessageRefused("this message made the delivery workers fail repeatedly")
        if self._stopping:
            raise WorkerLost("the appliance is stopping")
        pending = _Job(raw, job, digest, len(raw))
        if job.judge is not None and job.judge.dns and resolve is not None:
            pending.answerer = Answerer(resolve, self.reactor)
        self._waiting.append(pending)
        timer = self.reactor.callLater(self.queue_seconds, self._queue_timeout, pending)
        self._dispatch()
        try:
            return await pending.done
        finally:
            if timer.active():
                timer.cancel()

    def _queue_timeout(self, job: _Job) -> None:
        if job in self._waiting:
            self._waiting.remove(job)
            job.done.errback(WorkerLost("no delivery worker became free in time"))

    def _dispatch(self) -> None:
        while self._idle and self._waiting:
            worker = self._idle.popleft()
            job = self._waiting.popleft()
            worker.start(job, self.deadline(job.size))
            job.raw = b""  # the pipe holds it now; the pool keeps no copy

    def _succeeded(self, job: _Job, worker: _Worker) -> None:
        self._strikes.pop(job.digest, None)
        self._worker_idle(worker)

    def _struck(self, job: _Job, why: str) -> None:
        count = self._strikes.pop(job.digest, 0) + 1
        self._strikes[job.digest] = count
        while len(self._strikes) > self.remember:
            self._strikes.popitem(last=False)
        tag = job.digest[:8].hex()
        if count >= self.strikes:
            log.error(
                "delivery worker {why} on message {tag}, {count} times in a row: refused (554)",
                why=why,
                tag=tag,
                count=count,
            )
            job.done.errback(MessageRefused("this message made the delivery workers fail repeatedly"))
        else:
            log.warn("delivery worker {why} on message {tag}: the sender will retry (451)", why=why, tag=tag)
            job.done.errback(WorkerLost(f"the delivery worker {why}"))
