"""A delivery worker reached over a Unix socket, seen by the pool as if it were a child process.

On the appliance, ``appliance/mailiverse-worker.socket`` listens at ``/run/mailiverse/worker.sock``
with ``Accept=yes``: systemd starts one ``mailiverse-worker@.service`` per connection, as the user
``mailiverse-worker`` in a sandbox of its own, with the connection as its standard input and output.
The pool (``delivery/pool.py``, ``--worker-socket``) connects once per worker it wants; this module
makes each connection look like the process it would otherwise have spawned: the worker's bytes
arrive as its stdout, closing our side for writing is closing its stdin, and killing it is dropping
the connection (the main process holds no right to signal another user's process, by design).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.python.failure import Failure

#: How long to wait for the socket to accept (systemd accepts at once; a missing socket fails at once).
CONNECT_TIMEOUT = 10


class _AsProcess:
    """The connection's transport, with the calls the pool makes of a process transport."""

    pid = None

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        self._transport.write(data)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._transport.unregisterProducer()

    def closeStdin(self) -> None:
        """The worker reads the end of its input and exits: the connection closes after it."""
        self._transport.loseWriteConnection()

    def signalProcess(self, signal: str) -> None:
        """Any signal is the end of the connection: the worker exits on it (or at its CPU ceiling)."""
        self._transport.abortConnection()


class _Connection(Protocol):
    def __init__(self, worker: ProcessProtocol, first: bytes) -> None:
        self.worker = worker
        self.first = first

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.first)
        self.worker.makeConnection(_AsProcess(self.transport))

    def dataReceived(self, data: bytes) -> None:
        self.worker.childDataReceived(1, data)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self.worker.processEnded(reason)


def connect_worker(reactor: Any, path: str, worker: ProcessProtocol, first: bytes) -> None:
    """Connect ``worker`` (the pool's protocol) to the worker socket at ``path`` and send ``first`` (the worker's
    settings, which a process would have had on its command line).

    A socket that cannot be reached ends the worker at once (``processEnded`` with the connect
    error), so the pool's start-up back-off applies as for a process that could not start.
    """
    endpoint = UNIXClientEndpoint(reactor, path, timeout=CONNECT_TIMEOUT)
    connecting = endpoint.connect(Factory.forProtocol(lambda: _Connection(worker, first)))
    connecting.addErrback(worker.processEnded)
