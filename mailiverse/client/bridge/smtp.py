"""The bridge's SMTP submission server (RFC 6409) on the user's own machine: a mail app logs in with the local
password and hands over a message, which goes to the appliance as the logged-in user (``submit.py``).

A small state machine of its own rather than ``twisted.mail.smtp.ESMTP``, for the reasons
mailiverse/smtp/server.py gives (one ``IMessage`` per recipient, no size accounting, every failure a 550):
here one transaction is one hand-over with all its recipients, the reply waits until the appliance took the
message, and a temporary failure is 4xx. Framing: a line ends with LF; one without the CR before it (a bare LF),
or with a CR inside, is refused in a command and refuses the message in DATA, and only ``.CRLF`` ends DATA.
Over-long lines are skipped without being kept. Each command is answered before the next buffered one is read
(PIPELINING keeps its order); reading pauses while the buffer waits on a slow answer.

AUTH PLAIN and LOGIN are offered over TLS, and also in clear text when the peer is this machine (loopback: no
one else can listen there); ``MAIL`` needs AUTH; failed logins go through the shared ``Throttle``.

Why one module of this size: the framing, STARTTLS reset and ordering rules are one state machine over one
input buffer.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocolFactory, IReactorThreads, IReactorTime, ITLSTransport
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.threads import deferToThreadPool
from twisted.protocols.policies import TimeoutMixin
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from mailiverse.client.api import plain_address
from mailiverse.client.bridge.localauth import LocalLogin
from mailiverse.client.bridge.submit import MAX_RECIPIENTS, TEMPORARY, Reply, Submitter, reply_for
from mailiverse.client.errors import ClientError
from mailiverse.failures import describe
from mailiverse.logs import Logger

log = Logger()
T = TypeVar("T")

MAX_MESSAGE_BYTES = 50 * 1024 * 1024
#: A command line (RFC 4954 lets an AUTH line reach 12288 octets), and a line of message data (RFC 5322 says
#: 998; mail apps that break it are let through up to this, anything longer is an attack or a bug).
MAX_COMMAND_LINE = 12288
MAX_DATA_LINE = 64 * 1024
#: What may wait in the input buffer while a command is being answered before reading pauses.
MAX_PIPELINE_BUFFER = 1024 * 1024
IDLE_TIMEOUT = 600
MAX_ERRORS = 20
MAX_SESSION_AUTH_FAILURES = 3

_PATH = re.compile(rb"^(FROM|TO):[ \t]*<([^<>]*)>(?:[ \t]+(.*))?$", re.IGNORECASE | re.DOTALL)
_PRINTABLE_ADDRESS = re.compile(r"^[^\s<>()\[\]\\,;:\"@]+@[A-Za-z0-9.\-]+$")
_PARAM = re.compile(rb"^([A-Za-z0-9][A-Za-z0-9-]*)(?:=([\x21-\x3c\x3e-\x7e]+))?$")

Runner = Callable[..., "Deferred[Any]"]


def thread_runner(reactor: Any) -> Runner:
    """Run a blocking call on ``reactor``'s thread pool (the Client is blocking)."""

    def run(function: Callable[..., T], *args: Any) -> Deferred[T]:
        return deferToThreadPool(reactor, reactor.getThreadPool(), function, *args)

    return run


class SubmissionFactory(ServerFactory):
    """One ``SubmissionProtocol`` per connection: ``tls`` is offered with STARTTLS, or was already done around
    the connection (``implicit_tls``; wrap the factory with :func:`implicit_tls_factory`)."""

    def __init__(
        self,
        submitter: Submitter,
        login: LocalLogin,
        *,
        tls: Any | None,
        implicit_tls: bool,
        reactor: IReactorTime,
        run: Runner | None = None,
        max_message_size: int = MAX_MESSAGE_BYTES,
        hostname: str = "localhost",
    ) -> None:
        self.submitter = submitter
        self.login = login
        self.tls = tls
        self.implicit_tls = implicit_tls
        self.reactor = reactor
        self.run = run if run is not None else thread_runner(reactor)
        self.max_message_size = max_message_size
        self.hostname = hostname.encode("ascii")

    def buildProtocol(self, addr: Any) -> Any:
        protocol = SubmissionProtocol(self)
        protocol.factory = self
        return protocol


def implicit_tls_factory(factory: SubmissionFactory, tls: Any) -> TLSMemoryBIOFactory:
    """``factory`` behind TLS from the first byte (the ``--smtps`` port)."""
    return TLSMemoryBIOFactory(tls, False, factory)


def smtp_factory(
    submitter: Submitter,
    login: LocalLogin,
    *,
    tls: Any,
    implicit_tls: bool,
    reactor: IReactorTime | IReactorThreads,
) -> IProtocolFactory:
    """The factory to listen with: STARTTLS offered, or TLS from the first byte."""
    factory = SubmissionFactory(submitter, login, tls=tls, implicit_tls=implicit_tls, reactor=reactor)  # type: ignore[arg-type]
    return implicit_tls_factory(factory, tls) if implicit_tls else factory


def _is_loopback(peer: Any) -> bool:
    try:
        return ipaddress.ip_address(str(getattr(peer, "host", ""))).is_loopback
    except ValueError:
        return False


def _checked_address(raw: bytes) -> str | None:
    """A plain ``local@domain`` address, or None (no source route, no quoting, no UTF-8: mail apps send none)."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    return text if plain_address(text) == text and _PRINTABLE_ADDRESS.match(text) else None


class SubmissionProtocol(Protocol, TimeoutMixin):
    """One mail app's SMTP session."""

    factory: SubmissionFactory

    def __init__(self, factory: SubmissionFactory) -> None:
        self.factory = factory
        self._inbuf = bytearray()
        self._skipping = False
        self._busy = False
        self._paused = False
        self._closing = False
        self._secure = factory.implicit_tls
        self._greeted = False
        self._user: str | None = None
        self._auth_failures = 0
        self._auth_step: Callable[[bytes], None] | None = None
        self._errors = 0
        self._pending: Any = None
        self._sender: str | None = None
        self._recipients: list[str] = []
        self._data: list[bytes] | None = None
        self._data_size = 0
        self._data_problem: Reply | None = None

    # -- connection ---------------------------------------------------------------------------

    @property
    def _io(self) -> Any:
        return self.transport

    def connectionMade(self) -> None:
        self.callLater = self.factory.reactor.callLater  # type: ignore[assignment]
        self._loopback = _is_loopback(self._io.getPeer())
        self._can_starttls = (
            self.factory.tls is not None and not self._secure and ITLSTransport.providedBy(self.transport)
        )
        self.setTimeout(IDLE_TIMEOUT)
        self._send(220, f"{self.factory.hostname.decode()} ESMTP mailiverse bridge")

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._closing = True
        self.setTimeout(None)
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None
        self._inbuf.clear()
        self._data = None

    def timeoutConnection(self) -> None:
        self._close(Reply(421, "4.4.2", "Idle timeout, closing connection"))

    def _reset_transaction(self) -> None:
        self._sender = None
        self._recipients = []
        self._data = None
        self._data_size = 0
        self._data_problem = None

    # -- replies ------------------------------------------------------------------------------

    def _send(self, code: int, text: str) -> None:
        if not self._closing:
            self._io.write(f"{code} {text}\r\n".encode("ascii", "replace"))

    def _reply(self, reply: Reply) -> None:
        self._send(reply.code, f"{reply.enhanced} {reply.text}")

    def _error(self, code: int, enhanced: str, text: str) -> None:
        self._reply(Reply(code, enhanced, text))
        self._errors += 1
        if self._errors >= MAX_ERRORS:
            self._close(Reply(421, "4.7.0", "Too many errors, closing connection"))

    def _close(self, reply: Reply) -> None:
        self._reply(reply)
        self._closing = True
        self._inbuf.clear()
        self._io.loseConnection()

    # -- framing ------------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        self._inbuf += data
        self._process()

    def _process(self) -> None:
        buffer = self._inbuf
        while not self._busy and not self._closing and buffer:
            limit = MAX_DATA_LINE if self._data is not None else MAX_COMMAND_LINE
            end = buffer.find(b"\n")
            if end < 0:
                if len(buffer) > limit + 1:
                    buffer.clear()
                    if not self._skipping:
                        self._skipping = True
                        self._line_too_long()
                return
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            if self._skipping:
                self._skipping = False
                continue
            if len(line) > limit + 1:
                self._line_too_long()
                continue
            crlf = line.endswith(b"\r")
            content = line[:-1] if crlf else line
            if self._data is not None:
                self._data_line(content, crlf)
            elif not crlf or b"\r" in content:
                self._error(500, "5.5.2", "Lines end with CRLF; a bare CR or LF is not allowed")
            else:
                self._command(content)
        if self._busy and not self._paused and len(buffer) > MAX_PIPELINE_BUFFER:
            self._paused = True
            self._io.pauseProducing()

    def _line_too_long(self) -> None:
        if self._data is not None:
            self._data_problem = self._data_problem or Reply(
                554, "5.6.0", f"A line of the message is longer than {MAX_DATA_LINE} bytes"
            )
        else:
            self._error(500, "5.5.2", "Line too long")

    def _wait(self, deferred: Deferred[Any]) -> None:
        """Read nothing more until ``deferred`` (which sends its own reply) is done."""
        self._busy = True

        def done(_: object) -> None:
            self._busy = False
            if self._paused and not self._closing:
                self._paused = False
                self._io.resumeProducing()
            if not self._closing:
                self.resetTimeout()
                self._process()

        def failed(failure: Failure) -> None:
            # By type and place only: an exception's message may carry an address or a line of the message.
            log.error("bridge SMTP: an internal error ({what})", what=describe(failure.value))
            self._reply(TEMPORARY)

        deferred.addErrback(failed).addBoth(done)

    # -- commands -----------------------------------------------------------------------------

    def _command(self, line: bytes) -> None:
        self.resetTimeout()
        if self._auth_step is not None:
            step, self._auth_step = self._auth_step, None
            step(line)
            return
        verb, _, argument = line.partition(b" ")
        handler = {
            b"EHLO": self._ehlo,
            b"HELO": self._helo,
            b"STARTTLS": self._starttls,
            b"AUTH": self._auth,
            b"MAIL": self._mail,
            b"RCPT": self._rcpt,
            b"DATA": self._data_command,
            b"RSET": self._rset,
            b"NOOP": lambda _: self._reply(Reply(250, "2.0.0", "OK")),
            b"QUIT": self._quit,
            b"VRFY": lambda _: self._reply(Reply(252, "2.5.0", "Cannot VRFY; send the message")),
            b"HELP": lambda _: self._reply(Reply(214, "2.0.0", "See docs/bridge.md")),
        }.get(verb.upper())
        if handler is None:
            self._error(500, "5.5.1", "Command unrecognized")
            return
        handler(argument.strip())

    def _auth_offered(self) -> bool:
        return self._secure or self._loopback

    def _ehlo(self, argument: bytes) -> None:
        if not argument:
            self._error(501, "5.5.4", "EHLO needs a host name")
            return
        self._greeted = True
        self._reset_transaction()
        lines = [f"{self.factory.hostname.decode()} at your service", "PIPELINING", "8BITMIME"]
        lines += [f"SIZE {self.factory.max_message_size}", "ENHANCEDSTATUSCODES"]
        if self._can_starttls and not self._secure:
            lines.append("STARTTLS")
        if self._auth_offered() and self._user is None:
            lines.append("AUTH PLAIN LOGIN")
        for line in lines[:-1]:
            self._io.write(f"250-{line}\r\n".encode("ascii"))
        self._send(250, lines[-1])

    def _helo(self, argument: bytes) -> None:
        if not argument:
            self._error(501, "5.5.4", "HELO needs a host name")
            return
        self._greeted = True
        self._reset_transaction()
        self._send(250, self.factory.hostname.decode())

    def _starttls(self, argument: bytes) -> None:
        if argument:
            self._error(501, "5.5.4", "STARTTLS takes no argument")
        elif self._secure:
            self._error(503, "5.5.1", "TLS is already active")
        elif not self._can_starttls:
            self._error(502, "5.5.1", "STARTTLS is not offered here")
        else:
            self._reply(Reply(220, "2.0.0", "Ready to start TLS"))
            # Whatever was pipelined in clear text after STARTTLS is dropped (CVE-2011-0411), and the
            # session starts over under TLS.
            self._inbuf.clear()
            self._io.startTLS(self.factory.tls)
            self._secure = True
            self._greeted = False
            self._user = None
            self._reset_transaction()

    def _rset(self, argument: bytes) -> None:
        self._reset_transaction()
        self._reply(Reply(250, "2.0.0", "Reset"))

    def _quit(self, argument: bytes) -> None:
        self._close(Reply(221, "2.0.0", "Bye"))

    # -- AUTH ---------------------------------------------------------------------------------

    def _auth(self, argument: bytes) -> None:
        if not self._greeted:
            self._error(503, "5.5.1", "Send EHLO first")
            return
        if self._user is not None:
            self._error(503, "5.5.1", "Already authenticated")
            return
        if self._sender is not None:
            self._error(503, "5.5.1", "AUTH is not allowed during a mail transaction")
            return
        if not self._auth_offered():
            self._error(538, "5.7.11", "Encryption required: use STARTTLS first")
            return
        locked = self.factory.login.throttle.locked()
        if locked > 0:
            self._reply(Reply(454, "4.7.0", f"Too many failed logins; try again in {int(locked) + 1} s"))
            return
        mechanism, _, initial = argument.partition(b" ")
        mechanism = mechanism.upper()
        if mechanism == b"PLAIN":
            if initial:
                self._auth_plain(initial)
            else:
                self._challenge(b"", self._auth_plain)
        elif mechanism == b"LOGIN":
            if initial:
                self._auth_login_user(initial)
            else:
                self._challenge(b"Username:", self._auth_login_user)
        else:
            self._error(504, "5.5.4", "Unrecognized authentication type; use PLAIN or LOGIN")

    def _challenge(self, prompt: bytes, step: Callable[[bytes], None]) -> None:
        self._auth_step = step
        self._send(334, base64.b64encode(prompt).decode("ascii"))

    def _decoded(self, line: bytes) -> bytes | None:
        if line.strip() == b"*":
            self._error(501, "5.0.0", "Authentication cancelled")
            return None
        try:
            return base64.b64decode(line.strip(), validate=True)
        except (binascii.Error, ValueError):
            self._error(501, "5.5.2", "Cannot decode the response (base64)")
            return None

    def _auth_plain(self, line: bytes) -> None:
        decoded = self._decoded(line)
        if decoded is None:
            return
        parts = decoded.split(b"\0")
        if len(parts) != 3:
            self._error(501, "5.5.2", "PLAIN wants authorization id, user name and password")
            return
        authzid, user, password = parts
        self._check(user, password, authzid in (b"", user))

    def _auth_login_user(self, line: bytes) -> None:
        user = self._decoded(line)
        if user is not None:
            self._challenge(b"Password:", lambda reply: self._auth_login_password(user, reply))

    def _auth_login_password(self, user: bytes, line: bytes) -> None:
        password = self._decoded(line)
        if password is not None:
            self._check(user, password, True)

    def _check(self, user: bytes, password: bytes, authzid_ok: bool) -> None:
        login = self.factory.login
        if authzid_ok and login.matches(user, password):
            login.throttle.succeeded()
            self._user = login.username
            self._reply(Reply(235, "2.7.0", "Authentication successful"))
            return
        login.throttle.failed()
        self._auth_failures += 1
        log.info("bridge SMTP: a failed login")
        refused = Deferred[None]()
        self._pending = self.factory.reactor.callLater(login.throttle.failure_delay, refused.callback, None)
        self._wait(refused.addCallback(lambda _: self._refuse_login()))

    def _refuse_login(self) -> None:
        self._pending = None
        self._reply(Reply(535, "5.7.8", "Authentication credentials invalid"))
        if self._auth_failures >= MAX_SESSION_AUTH_FAILURES:
            self._close(Reply(421, "4.7.0", "Too many failed logins, closing connection"))

    # -- the transaction ----------------------------------------------------------------------

    def _path(self, argument: bytes, keyword: bytes) -> tuple[bytes, list[bytes]] | None:
        match = _PATH.match(argument)
        if match is None or match.group(1).upper() != keyword:
            self._error(501, "5.5.4", f"Syntax: {keyword.decode()}:<address>")
            return None
        return match.group(2), (match.group(3) or b"").split()

    def _mail(self, argument: bytes) -> None:
        if self._user is None:
            self._error(530, "5.7.0", "Authentication required")
            return
        if not self._greeted:
            self._error(503, "5.5.1", "Send EHLO first")
            return
        if self._sender is not None:
            self._error(503, "5.5.1", "Nested MAIL command")
            return
        parsed = self._path(argument, b"FROM")
        if parsed is None:
            return
        path, parameters = parsed
        for parameter in parameters:
            match = _PARAM.match(parameter)
            if match is None:
                self._error(501, "5.5.4", "Malformed MAIL parameter")
                return
            name, value = match.group(1).upper(), match.group(2)
            if name == b"SIZE":
                if value is None or not value.isdigit() or len(value) > 20:
                    self._error(501, "5.5.4", "SIZE wants a number")
                    return
                if int(value) > self.factory.max_message_size:
                    self._error(552, "5.3.4", f"Message size exceeds fixed maximum {self.factory.max_message_size}")
                    return
            elif name not in (b"BODY", b"AUTH"):
                self._error(555, "5.5.4", f"Unsupported MAIL parameter {name.decode()}")
                return
        sender = _checked_address(path)
        if sender is None:
            self._error(553, "5.1.7", "The sender must be one of your addresses")
            return
        self._wait(
            self.factory.run(self.factory.submitter.sender_allowed, sender).addCallbacks(
                lambda allowed: self._sender_checked(sender, allowed), self._sender_check_failed
            )
        )

    def _sender_checked(self, sender: str, allowed: bool) -> None:
        if allowed:
            self._sender = sender
            self._reply(Reply(250, "2.1.0", "Sender OK"))
        else:
            self._error(550, "5.7.1", "The sender is not one of your addresses or active aliases")

    def _sender_check_failed(self, failure: Failure) -> None:
        log.info("bridge SMTP: the sender could not be checked ({kind})", kind=failure.type.__name__)
        refused = isinstance(failure.value, ClientError) and failure.value.code == "login_refused"
        self._reply(reply_for(failure.value) if refused else TEMPORARY)

    def _rcpt(self, argument: bytes) -> None:
        if self._sender is None:
            self._error(503, "5.5.1", "Send MAIL first")
            return
        parsed = self._path(argument, b"TO")
        if parsed is None:
            return
        path, parameters = parsed
        if parameters:
            self._error(555, "5.5.4", "RCPT takes no parameters here")
            return
        recipient = _checked_address(path)
        if recipient is None:
            self._error(553, "5.1.3", "Bad recipient address syntax")
        elif len(self._recipients) >= MAX_RECIPIENTS:
            self._reply(Reply(452, "4.5.3", f"Too many recipients (at most {MAX_RECIPIENTS} per message)"))
        else:
            self._recipients.append(recipient)
            self._reply(Reply(250, "2.1.5", "Recipient OK"))

    def _data_command(self, argument: bytes) -> None:
        if argument:
            self._error(501, "5.5.4", "DATA takes no argument")
        elif self._sender is None:
            self._error(503, "5.5.1", "Send MAIL first")
        elif not self._recipients:
            self._error(503, "5.5.1", "Send RCPT first")
        else:
            self._data = []
            self._send(354, "End data with <CR><LF>.<CR><LF>")

    def _data_line(self, content: bytes, crlf: bool) -> None:
        if crlf and content == b".":
            self._end_of_data()
            return
        if not crlf or b"\r" in content:
            self._data_problem = self._data_problem or Reply(
                554, "5.6.0", "The message has a bare CR or LF; lines end with CRLF"
            )
            return
        if content.startswith(b"."):
            content = content[1:]
        self._data_size += len(content) + 2
        if self._data_size > self.factory.max_message_size:
            self._data_problem = self._data_problem or Reply(
                552, "5.3.4", f"Message size exceeds fixed maximum {self.factory.max_message_size}"
            )
        if self._data_problem is None and self._data is not None:
            self._data.append(content)

    def _end_of_data(self) -> None:
        assert self._data is not None and self._sender is not None
        raw = b"\r\n".join(self._data) + b"\r\n"
        problem, sender, recipients = self._data_problem, self._sender, list(self._recipients)
        self._reset_transaction()
        if problem is not None:
            self._error(problem.code, problem.enhanced, problem.text)
            return
        self._wait(self.factory.run(self.factory.submitter.submit, sender, recipients, raw).addCallback(self._reply))


__all__: Sequence[str] = ["MAX_MESSAGE_BYTES", "SubmissionFactory", "SubmissionProtocol", "smtp_factory"]
