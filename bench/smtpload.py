"""The one SMTP load client every server is measured with: N connections sending one message back to back.

Each connection says EHLO, optionally STARTTLS and EHLO again, then loops MAIL, RCPT, DATA, the message,
``.`` until the deadline; the latency of a message is from handing the final ``.`` to the socket to reading
the 250. Connections come from distinct 127.0.0.x source addresses so a per-address connection limit on
the server does not turn the load into refusals, and reconnect after ``per_connection`` messages (the
appliance closes a connection after 100). Every loop is bounded in count and in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import ssl
import statistics
import time
from dataclasses import dataclass, field

from bench.messages import RECIPIENT, SENDER

#: Largest reply we accept from a server (lines times length): a guard against a babbling peer.
_MAX_REPLY_LINES = 64
_LIMIT = 64 * 1024


class SmtpFailure(Exception):
    """The server answered with an unexpected code or dropped the connection."""


@dataclass(frozen=True)
class Load:
    """What to send, and how hard and how long."""

    host: str
    port: int
    starttls: bool
    message: bytes
    connections: int
    duration_s: float
    warmup_s: float = 0.0
    #: no connection starts a message after this many in total (warm-up included)
    max_messages: int = 1_000_000
    #: messages per connection before QUIT and reconnect
    per_connection: int = 50
    #: the longest wait for any one reply, and for stragglers after the deadline
    reply_timeout_s: float = 120.0
    #: first source address is 127.0.0.<first_source>, one address per connection
    first_source: int = 2


@dataclass
class Samples:
    """Raw results of one load run."""

    started: float
    measured_from: float
    deadline: float
    finished: float = 0.0
    completions: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    attempted: int = 0
    client_cpu_s: float = 0.0

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

    def window(self) -> list[float]:
        """Latencies of the messages completed inside the measured window."""
        return [
            lat
            for done, lat in zip(self.completions, self.latencies, strict=True)
            if self.measured_from <= done <= self.deadline
        ]

    def summary(self) -> dict[str, float | int | dict[str, int]]:
        """messages/s inside the window, latency percentiles in ms, counts."""
        window = sorted(self.window())
        span = self.deadline - self.measured_from
        return {
            "messages": len(window),
            "messages_total": len(self.latencies),
            "errors": self.errors,
            "error_kinds": dict(self.error_kinds),
            "window_s": round(span, 3),
            "msgs_per_s": len(window) / span if span > 0 else 0.0,
            "p50_ms": percentile(window, 50) * 1000,
            "p99_ms": percentile(window, 99) * 1000,
            "mean_ms": (statistics.fmean(window) * 1000) if window else float("nan"),
            "client_cpu_s": round(self.client_cpu_s, 3),
            "elapsed_s": round(self.finished - self.started, 3),
        }


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list; NaN when empty."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), int(-(-pct * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


def client_tls_context() -> ssl.SSLContext:
    """Loopback benchmarking: encrypt as a real sender would, but do not verify the test certificates."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def _reply(reader: asyncio.StreamReader, timeout: float) -> tuple[int, bytes]:
    lines = []
    for _ in range(_MAX_REPLY_LINES):
        line = await asyncio.wait_for(reader.readline(), timeout)
        if not line.endswith(b"\n"):
            raise SmtpFailure("connection closed")
        lines.append(line)
        if line[3:4] != b"-":
            code = line[:3]
            if not code.isdigit():
                raise SmtpFailure("malformed reply")
            return int(code), b"".join(lines)
    raise SmtpFailure("reply too long")


async def _command(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes, expect: int, timeout: float
) -> None:
    writer.write(line + b"\r\n")
    code, _ = await _reply(reader, timeout)
    if code != expect:
        raise SmtpFailure(f"{line.split()[0].decode(errors='replace')} {code}")


class _Stop(Exception):
    pass


#: Every message's ticket, from a random start (so runs against one appliance do not repeat each other's).
_TICKETS = itertools.count(secrets.randbits(48) << 16)


async def _session(load: Load, source: str, samples: Samples, tls: ssl.SSLContext | None) -> None:
    """One connection: up to ``per_connection`` messages, then QUIT."""
    timeout = load.reply_timeout_s
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(load.host, load.port, local_addr=(source, 0), limit=_LIMIT), timeout
    )
    try:
        code, _ = await _reply(reader, timeout)
        if code != 220:
            raise SmtpFailure(f"greeting {code}")
        await _command(reader, writer, b"EHLO client.bench.test", 250, timeout)
        if tls is not None:
            await _command(reader, writer, b"STARTTLS", 220, timeout)
            await writer.start_tls(tls, server_hostname="mail.example.org")
            await _command(reader, writer, b"EHLO client.bench.test", 250, timeout)
        for _ in range(load.per_connection):
            if time.monotonic() >= samples.deadline or samples.attempted >= load.max_messages:
                raise _Stop
            samples.attempted += 1
            # Each message distinct: the appliance keeps a repeated message once (store/receipts.py), as any
            # real sender's stream of mail is distinct too.
            ticket = b"X-Bench-Ticket: %016x\r\n" % next(_TICKETS)
            size = len(load.message) + len(ticket)
            await _command(reader, writer, f"MAIL FROM:<{SENDER}> SIZE={size}".encode(), 250, timeout)
            await _command(reader, writer, f"RCPT TO:<{RECIPIENT}>".encode(), 250, timeout)
            await _command(reader, writer, b"DATA", 354, timeout)
            writer.write(ticket + load.message)
            await asyncio.wait_for(writer.drain(), timeout)
            writer.write(b".\r\n")
            sent = time.monotonic()
            code, _ = await _reply(reader, timeout)
            done = time.monotonic()
            if code != 250:
                samples.error(f"DATA {code}")
                continue
            samples.completions.append(done)
            samples.latencies.append(done - sent)
        with contextlib.suppress(Exception):
            await _command(reader, writer, b"QUIT", 221, 5)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 5)


async def _connection(load: Load, index: int, samples: Samples, tls: ssl.SSLContext | None) -> None:
    source = f"127.0.0.{load.first_source + index % (254 - load.first_source)}"
    # Each pass sends at least one message or records an error, so max_messages bounds the loop too.
    for _ in range(load.max_messages + 1):
        if time.monotonic() >= samples.deadline or samples.attempted >= load.max_messages:
            return
        try:
            await _session(load, source, samples, tls)
        except _Stop:
            return
        except (TimeoutError, OSError, SmtpFailure, ssl.SSLError) as e:
            samples.error(type(e).__name__ if not isinstance(e, SmtpFailure) else str(e))
            await asyncio.sleep(0.05)


async def drive(load: Load) -> Samples:
    """Run the load; returns when every connection has finished (stragglers bounded by the reply timeout)."""
    tls = client_tls_context() if load.starttls else None
    now = time.monotonic()
    samples = Samples(started=now, measured_from=now + load.warmup_s, deadline=now + load.warmup_s + load.duration_s)
    cpu_before = time.process_time()
    tasks = [asyncio.ensure_future(_connection(load, i, samples, tls)) for i in range(load.connections)]
    budget = load.warmup_s + load.duration_s + load.reply_timeout_s + 10
    _, pending = await asyncio.wait(tasks, timeout=budget)
    for task in pending:
        task.cancel()
        samples.error("cancelled at the time limit")
    if pending:
        await asyncio.wait(pending, timeout=10)
    samples.finished = time.monotonic()
    samples.client_cpu_s = time.process_time() - cpu_before
    return samples


def run(load: Load) -> Samples:
    """``drive`` on a fresh event loop (the client runs in the benchmark's own process)."""
    return asyncio.run(drive(load))
