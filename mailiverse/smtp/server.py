"""The hardened ESMTP receiver: one protocol instance per connection, mail into an IInbox.

Built on ``twisted.mail.smtp.ESMTP`` for its reply formatting, idle timer and extension
plumbing, but with its own input loop and command handlers, because the stock ones are
unsafe for a public port 25:

* Framing.  Only CRLF ends a line.  A bare CR or LF in a command is refused; in DATA it
  marks the message as rejected (554 5.6.0) while reading on to the real ``CRLF.CRLF``, so
  ``LF.LF``, ``CR.CR``, ``LF.CRLF``, ``CRLF.LF`` and ``CR.LF`` can neither end the message
  nor smuggle a second one (SMTP smuggling).  Lines longer than the RFC 5321 limits are
  skipped without being buffered.
* STARTTLS.  Whatever the client pipelined after ``STARTTLS`` in clear text is discarded
  (the CVE-2011-0411 injection), and the session starts over after the handshake.
* Ordering.  Each command is handled to completion, including asynchronous recipient
  lookups and delivery, before the next buffered line is read, so pipelined replies stay in
  order and the input kept meanwhile is bounded (reading pauses beyond it).
* Limits.  Every count, size and time comes from ``SmtpLimits``.  Connections are counted per
  client (an IPv4 address or an IPv6 /64) by a ``ConnectionLimiter``.  Only progress (a greeting,
  a sender, a new recipient, message data, STARTTLS) restarts the idle timer; NOOP, RSET, HELP,
  VRFY and a repeated EHLO are answered but counted, so a client that sends no mail cannot hold
  a connection open.

Alternative to ``IMessageDelivery``/``IMessage`` (STYLE.md 5): those interfaces give one
``IMessage`` per recipient and feed it text lines with no size accounting, which would
mean one plaintext copy per recipient.  Here the transaction streams once into an
encrypted ``SpoolWriter`` and ``IInbox.deliver`` receives the message with all its
recipients; the 250 reply is sent only after ``deliver`` returns, which is the same
guarantee ``IMessage.eomReceived`` would give.

Why one module of this size: the framing, STARTTLS and ordering rules above are one state
machine over one input buffer; split across modules, the invariants (what is buffered, when a
line may be read) would no longer be checkable in one reading.
"""

from __future__ import annotations

import datetime
import email.utils
import ipaddress
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IReactorTime, ITLSTransport
from twisted.internet.protocol import ServerFactory
from twisted.mail.smtp import ESMTP
from twisted.python.failure import Failure

from mailiverse.auth.connections import ConnectionLimiter
from mailiverse.contracts import (
    Envelope,
    IInbox,
    MailboxFull,
    MessageRefused,
    MessageRejected,
    Recipient,
    normalise_domain,
)
from mailiverse.logs import Logger
from mailiverse.smtp.limits import SmtpLimits
from mailiverse.spool import SpooledMessage, SpoolError, SpoolWriter

log = Logger()

_MAIL_RE = re.compile(rb"^FROM:[ \t]*<([^<>]*)>(?:[ \t]+(.*))?$", re.IGNORECASE | re.DOTALL)
_RCPT_RE = re.compile(rb"^TO:[ \t]*<([^<>]*)>(?:[ \t]+(.*))?$", re.IGNORECASE | re.DOTALL)
_PATH_CHARS = re.compile(rb"^[\x21-\x7e]*$")  # printable ASCII, no spaces or controls
_HELO_UNSAFE = re.compile(r"[^A-Za-z0-9.\-:\[\]_]")
_SIZE_VALUE = re.compile(rb"^[0-9]{1,20}$")
#: What a 551 reply may quote of a moved account's new address (never a line break or a non-ASCII character).
_MOVED_TO = re.compile(r"[\x21-\x7e]{3,254}")


class SmtpServerFactory(ServerFactory):
    """Builds one ``MailiverseESMTP`` per connection and counts connections per client and in all.

    The count is a ``ConnectionLimiter`` (a client is an IPv4 address or an IPv6 /64); listeners
    given the same one share its caps. By default each factory has its own, sized by ``limits``.
    """

    def __init__(
        self,
        inbox: IInbox,
        *,
        hostname: str,
        domains: Iterable[str],
        limits: SmtpLimits,
        starttls: Any | None,
        implicit_tls: bool,
        spool_dir: Path,
        reactor: IReactorTime,
        connections: ConnectionLimiter | None = None,
    ) -> None:
        self.inbox = inbox
        self.hostname = hostname
        self.domains = frozenset(normalise_domain(d) for d in domains)
        if not self.domains:
            raise ValueError("at least one served domain is required")
        self.limits = limits
        self.starttls = None if implicit_tls else starttls
        self.implicit_tls = implicit_tls
        self.spool_dir = Path(spool_dir)
        self.reactor = reactor
        if connections is None:
            connections = ConnectionLimiter(limits.max_connections, limits.max_connections_per_ip)
        self.connection_limiter = connections

    def buildProtocol(self, addr: IAddress | None) -> MailiverseESMTP:
        return MailiverseESMTP(self)


@dataclass
class _DataTransaction:
    """A DATA phase in progress."""

    spool: SpoolWriter
    queue_id: str
    mail_from: str
    recipients: list[Recipient]
    #: How the message arrives, for the inbox to judge it (every listener here is an MX listener:
    #: there is no AUTH, so nothing that arrives over SMTP comes from a logged-in user).
    envelope: Envelope
    failure: tuple[int, str, str] | None = None

    def fail(self, code: int, enhanced: str, text: str) -> None:
        if self.failure is None:
            self.failure = (code, enhanced, text)
            self.spool.abort()


class MailiverseESMTP(ESMTP):
    """One inbound ESMTP session: no AUTH, no relaying, local recipients only."""

    #: What the 220 greeting says after the host name (LMTP's subclass names its protocol).
    greeting_text = b"ESMTP mailiverse"

    def __init__(self, factory: SmtpServerFactory) -> None:
        super().__init__(contextFactory=factory.starttls)
        self.factory = factory
        self.limits = factory.limits
        self.host = factory.hostname.encode("idna")
        self.timeout = self.limits.idle_timeout  # type: ignore[assignment]
        self.callLater = factory.reactor.callLater  # type: ignore[method-assign,assignment]
        self._inbuf = bytearray()
        self._skipping_long_line = False
        self._busy = False
        self._processing = False
        self._paused = False
        self._closing = False
        self._ip = ""
        self._connection_key: str | None = None
        self._session_timer: Any = None
        self._expire_when_idle = False
        # The idle timer runs from the last progress; time spent waiting on us (busy) does not count.
        self._last_progress = 0.0
        self._busy_since = 0.0
        self._secure = factory.implicit_tls
        self._errors = 0
        self._junk_commands = 0
        self._messages = 0
        self._helo_name: str | None = None
        self._esmtp = False
        self._mail_from: str | None = None
        self._recipients: list[Recipient] = []
        self._data: _DataTransaction | None = None
        self._commands: dict[bytes, Callable[[bytes], Deferred[None] | None]] = {
            b"HELO": self._cmd_helo,
            b"EHLO": self._cmd_ehlo,
            b"MAIL": self._cmd_mail,
            b"RCPT": self._cmd_rcpt,
            b"DATA": self._cmd_data,
            b"RSET": self._cmd_rset,
            b"NOOP": self._cmd_noop,
            b"QUIT": self._cmd_quit,
            b"VRFY": self._cmd_vrfy,
            b"HELP": self._cmd_help,
            b"STARTTLS": self._cmd_starttls,
        }

    @property
    def _io(self) -> Any:
        """The transport, typed loosely: it may be TCP, TLS-wrapped or a test double."""
        return self.transport

    # -- connection -------------------------------------------------------------------------

    def connectionMade(self) -> None:
        self._ip = _peer_ip(self._io.getPeer())
        self._connection_key = self.factory.connection_limiter.admit(self._ip)
        if self._connection_key is None:
            self._close(421, "4.7.0", "Too many connections, try again later")
            return
        self.canStartTLS = self.ctx is not None and not self._secure and ITLSTransport.providedBy(self.transport)
        self.sendCode(220, self.host + b" " + self.greeting_text)
        self._progressed()
        self._session_timer = self.callLater(self.limits.max_session_seconds, self._session_expired)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._closing = True
        self.setTimeout(None)
        if self._session_timer is not None and self._session_timer.active():
            self._session_timer.cancel()
        self._session_timer = None
        if self._data is not None:
            self._data.spool.abort()
            self._data = None
        self._inbuf.clear()
        key, self._connection_key = self._connection_key, None
        if key is not None:
            self.factory.connection_limiter.release(key)

    def timeoutConnection(self) -> None:
        self._close(421, "4.4.2", "Idle timeout, closing connection")

    def _progressed(self) -> None:
        """The session moved on: a first greeting, a sender, a new recipient, DATA and each line of
        the message, STARTTLS. Only this restarts the idle timer; NOOP, RSET and the like are answered
        but leave it running, so a client that never sends mail cannot hold its slot."""
        now = self.factory.reactor.seconds()
        self._last_progress = now
        if self._busy:
            self._busy_since = now
        else:
            self.setTimeout(self.timeout)

    def _junk(self) -> bool:
        """Count a command that moves nothing on; True when that was one too many and the session closed."""
        self._junk_commands += 1
        if self._junk_commands > self.limits.max_junk_commands:
            self._close(421, "4.7.0", "Too many commands without mail, closing connection")
            return True
        return False

    def _session_expired(self) -> None:
        self._session_timer = None
        if self._busy:
            # Never cut a delivery short: close as soon as its reply has been sent.
            self._expire_when_idle = True
            return
        self._close(421, "4.4.2", "Session too long, closing connection")

    def _close(self, code: int, enhanced: str, text: str) -> None:
        self._reply(code, enhanced, text)
        self._closing = True
        self._inbuf.clear()
        self._io.loseConnection()

    # -- replies ------------------------------------------------------------------------------

    def _reply(self, code: int, enhanced: str, text: str) -> None:
        if not self._closing:
            self.sendCode(code, f"{enhanced} {text}".encode("ascii"))

    def _error(self, code: int, enhanced: str, text: str) -> None:
        """Reply with a client error, closing the session once it has made too many."""
        self._reply(code, enhanced, text)
        self._errors += 1
        if self._errors >= self.limits.max_errors_per_connection and not self._closing:
            self._close(421, "4.7.0", "Too many errors, closing connection")

    # -- input framing ------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        # The idle timer is reset per complete line (_handle_line), not per byte.
        self._inbuf += data
        self._process()

    def _line_limit(self) -> int:
        """Longest line content (CRLF excluded) allowed in the current state."""
        if self._data is not None:
            return self.limits.max_data_line - 2 + 1  # one octet of dot-stuffing
        return self.limits.max_command_line - 2

    def _process(self) -> None:
        if self._processing:
            return
        self._processing = True
        try:
            self._process_lines()
        finally:
            self._processing = False
        if self._busy and not self._paused and len(self._inbuf) > self.limits.max_pipeline_buffer:
            self._paused = True
            self._io.pauseProducing()

    def _process_lines(self) -> None:
        buffer = self._inbuf
        while not self._busy and not self._closing and buffer:
            if self._data is not None and not self._skipping_long_line and self._take_data_lines():
                continue
            end = buffer.find(b"\r\n")
            if self._skipping_long_line:
                if end < 0:
                    keep_cr = buffer.endswith(b"\r")
                    buffer.clear()
                    if keep_cr:
                        buffer += b"\r"
                    return
                del buffer[: end + 2]
                self._skipping_long_line = False
                continue
            limit = self._line_limit()
            if end < 0:
                if len(buffer) > limit + 1:  # +1: a CR whose LF has not arrived yet
                    self._skipping_long_line = True
                    self._line_too_long()
                    continue
                return
            if end > limit:
                del buffer[: end + 2]
                self._line_too_long()
                continue
            line = bytes(buffer[:end])
            del buffer[: end + 2]
            self._handle_line(line)

    def _take_data_lines(self) -> bool:
        """Handle every complete DATA line in the buffer in one pass; whether there was one.

        A plain line is one ``_data_line`` would write unchanged: within the length limit, not
        starting with a dot (so neither the end of data nor dot-stuffed), without a bare CR or LF.
        Runs of plain lines go to the spool as they stand, CRLFs included, in one write with one
        idle-timer reset; every other line goes through ``_handle_line`` as before. The buffer is
        split once per call, so hostile input (a dot on every line) costs no more than plain text.
        The pass stops at the end of data or when a handler makes the session wait.
        """
        buffer = self._inbuf
        last = buffer.rfind(b"\r\n")
        if last < 0:
            return False
        block = bytes(buffer[: last + 2])
        lines = block.split(b"\r\n")
        del lines[-1]  # the empty piece after the final CRLF
        limit = self._line_limit()
        if (
            block.count(b"\r") == block.count(b"\n") == len(lines)  # every CR and LF is one CRLF
            and not block.startswith(b".")
            and b"\n." not in block
            and max(map(len, lines)) <= limit
        ):
            del buffer[: len(block)]
            self._spool_plain(block)
            return True
        run_start = consumed = 0
        for line in lines:
            if not (line.startswith(b".") or len(line) > limit or b"\r" in line or b"\n" in line):
                consumed += len(line) + 2
                continue
            self._spool_plain(block[run_start:consumed])
            consumed += len(line) + 2
            run_start = consumed
            if len(line) > limit:
                self._line_too_long()
            else:
                self._handle_line(line)
            if self._data is None or self._busy or self._closing:
                break
        else:
            self._spool_plain(block[run_start:consumed])
        del buffer[:consumed]
        return True

    def _spool_plain(self, lines: bytes) -> None:
        """Spool a run of plain DATA lines (possibly empty); the idle timer restarts once for the run."""
        if lines:
            self._progressed()
            assert self._data is not None
            self._spool_data(self._data, lines)

    def _spool_data(self, transaction: _DataTransaction, data: bytes) -> None:
        """Append message bytes to the spool, failing the transaction on a spool error or past SIZE."""
        if transaction.failure is not None:
            return  # the message is refused already; read on to its end
        try:
            transaction.spool.write(data)
        except OSError:
            log.failure("cannot write to the spool")
            transaction.fail(451, "4.3.0", "Local error in processing")
            return
        if transaction.spool.oversized:
            transaction.fail(552, "5.3.4", "Message size exceeds fixed maximum message size")

    def _line_too_long(self) -> None:
        if self._data is not None:
            self._data.fail(
                552,
                "5.5.2",
                f"Message line longer than {self.limits.max_data_line} octets",
            )
        else:
            self._error(
                500,
                "5.5.2",
                f"Command line longer than {self.limits.max_command_line} octets",
            )

    def _handle_line(self, line: bytes) -> None:
        try:
            if self._data is not None:
                self._progressed()
                result = self._data_line(line)
            else:
                result = self._command_line(line)
        except Exception:  # noqa: BLE001 - a Twisted edge: answer 451, never crash the session
            log.failure("SMTP command handler failed")
            self._reply(451, "4.3.0", "Local error in processing")
            return
        if result is not None:
            self._busy = True
            self._busy_since = self.factory.reactor.seconds()
            self.setTimeout(None)
            result.addErrback(self._handler_failed)
            result.addBoth(self._resume)

    def _handler_failed(self, failure: Failure) -> None:
        log.failure("SMTP command handler failed", failure=failure)
        self._reply(451, "4.3.0", "Local error in processing")

    def _resume(self, _: object) -> None:
        self._busy = False
        if self._closing:
            return
        if self._expire_when_idle:
            self._close(421, "4.4.2", "Session too long, closing connection")
            return
        now = self.factory.reactor.seconds()
        self._last_progress += now - self._busy_since
        self.setTimeout(max(0.0, self._last_progress + self.timeout - now))
        if self._paused:
            self._paused = False
            self._io.resumeProducing()
        self._process()

    # -- commands -----------------------------------------------------------------------------

    def _command_line(self, line: bytes) -> Deferred[None] | None:
        if b"\r" in line or b"\n" in line:
            self._error(500, "5.5.2", "Bare CR or LF in a command; commands end with CRLF")
            return None
        parts = line.strip(b" \t").split(None, 1)
        if not parts:
            self._error(500, "5.5.2", "Syntax error: empty command")
            return None
        verb = parts[0].upper()
        handler = self._commands.get(verb)
        if handler is None:
            self._error(502, "5.5.1", "Command not implemented")
            return None
        return handler(parts[1].strip(b" \t") if len(parts) == 2 else b"")

    def _reset_transaction(self) -> None:
        self._mail_from = None
        self._recipients = []

    def _greet(self, argument: bytes, *, esmtp: bool) -> str | None:
        repeated = self._helo_name is not None
        if repeated and self._junk():
            return None
        if not argument:
            self._error(501, "5.5.4", "EHLO and HELO need a domain or address literal")
            return None
        name = argument.decode("ascii", "replace")[:255]
        self._helo_name = _HELO_UNSAFE.sub("?", name)
        self._esmtp = esmtp
        self._reset_transaction()
        if not repeated:
            self._progressed()
        return self._helo_name

    def _cmd_helo(self, argument: bytes) -> None:
        if self._greet(argument, esmtp=False) is not None:
            self.sendCode(250, self.host)

    def _cmd_ehlo(self, argument: bytes) -> None:
        if self._greet(argument, esmtp=True) is None:
            return
        lines = [
            self.host + b" Hello " + self._ip.encode("ascii", "replace"),
            b"SIZE %d" % self.limits.max_message_size,
            b"8BITMIME",
            b"ENHANCEDSTATUSCODES",
            b"PIPELINING",
        ]
        if self.canStartTLS and not self._secure:
            lines.append(b"STARTTLS")
        self.sendCode(250, b"\n".join(lines))

    def _cmd_starttls(self, argument: bytes) -> None:
        if argument:
            self._error(501, "5.5.4", "STARTTLS takes no argument")
        elif self._secure:
            self._error(503, "5.5.1", "TLS already active")
        elif not self.canStartTLS:
            self._error(454, "4.7.0", "TLS not available")
        else:
            self._reply(220, "2.0.0", "Ready to start TLS")
            # Anything pipelined behind STARTTLS arrived in clear text: never act on it.
            self._inbuf.clear()
            self._io.startTLS(self.ctx)
            self._secure = True
            self.startedTLS = True
            self._helo_name = None
            self._esmtp = False
            self._reset_transaction()
            self._progressed()

    def _cmd_mail(self, argument: bytes) -> None:
        if self._messages >= self.limits.max_messages_per_connection:
            self._close(421, "4.7.0", "Too many messages on one connection, closing")
            return
        if self._helo_name is None:
            self._error(503, "5.5.1", "Send EHLO or HELO first")
            return
        if self._mail_from is not None:
            self._error(503, "5.5.1", "Sender already given")
            return
        match = _MAIL_RE.match(argument)
        if match is None:
            self._error(501, "5.5.4", "Syntax: MAIL FROM:<address> [parameters]")
            return
        path = self._parse_path(match.group(1))
        if path is None:
            self._error(553, "5.1.7", "Bad sender address syntax")
            return
        for param in (match.group(2) or b"").split():
            key, _, value = param.partition(b"=")
            key = key.upper()
            if key == b"SIZE" and _SIZE_VALUE.match(value):
                if int(value) > self.limits.max_message_size:
                    self._error(552, "5.3.4", "Message size exceeds fixed maximum message size")
                    return
            elif key == b"BODY" and value.upper() in (b"7BIT", b"8BITMIME"):
                pass
            else:
                self._error(555, "5.5.4", "Unsupported MAIL parameter")
                return
        self._mail_from = path
        self._recipients = []
        self._progressed()
        self._reply(250, "2.1.0", "Sender ok")

    def _parse_path(self, raw: bytes) -> str | None:
        """The address inside <>, source route dropped; ``None`` when it is unusable."""
        if len(raw) > self.limits.max_path_length or not _PATH_CHARS.match(raw):
            return None
        path = raw.decode("ascii")
        if path.startswith("@"):  # RFC 5321 §4.1.2 source route: accept and ignore
            _, colon, path = path.partition(":")
            if not colon:
                return None
        return path

    def _cmd_rcpt(self, argument: bytes) -> Deferred[None] | None:
        if self._mail_from is None:
            self._error(503, "5.5.1", "Send MAIL first")
            return None
        match = _RCPT_RE.match(argument)
        if match is None:
            self._error(501, "5.5.4", "Syntax: RCPT TO:<address>")
            return None
        if match.group(2):
            self._error(555, "5.5.4", "Unsupported RCPT parameter")
            return None
        if len(self._recipients) >= self.limits.max_recipients:
            self._reply(452, "4.5.3", "Too many recipients")
            return None
        path = self._parse_path(match.group(1))
        local, at, domain = (path or "").rpartition("@")
        if path is not None and not at and path.lower() == "postmaster":
            local, domain = "postmaster", min(self.factory.domains)
        if not local or not domain or len(local) > 64:
            self._error(501, "5.1.3", "Bad recipient address syntax")
            return None
        if domain.startswith("["):
            self._error(550, "5.7.1", "Relaying denied")
            return None
        try:
            domain = normalise_domain(domain)
        except ValueError:
            self._error(501, "5.1.2", "Bad destination domain")
            return None
        if domain not in self.factory.domains:
            self._error(550, "5.7.1", "Relaying denied")
            return None
        return Deferred.fromCoroutine(self._resolve(f"{local.lower()}@{domain}"))

    async def _resolve(self, address: str) -> None:
        try:
            recipient = await self.factory.inbox.resolve(address, self._mail_from or "")
        except Exception:  # noqa: BLE001 - a Twisted edge: answer 451, never crash the session
            log.failure("recipient lookup failed")
            self._reply(451, "4.3.0", "Temporary failure looking up the recipient")
            return
        if recipient is None:
            self._error(550, "5.1.1", "No such user here")
            return
        if recipient.moved_to is not None:
            # RFC 5321 §3.4: the user moved to another appliance (docs/moving.md); a permanent reply that names
            # the new address (a plain ASCII address: the directory checked it when the account moved).
            moved = recipient.moved_to
            shown = f" <{moved}>" if _MOVED_TO.fullmatch(moved) else ""
            self._error(551, "5.1.6", f"User not local; please try{shown}")
            return
        if recipient.over_quota:
            # Temporary: the sender keeps the message for this recipient and tries again later.
            self._reply(452, "4.2.2", "Mailbox full, try again later")
            return
        if all(r.user != recipient.user for r in self._recipients):
            self._recipients.append(recipient)
            self._progressed()
        self._reply(250, "2.1.5", "Recipient ok")

    def _cmd_data(self, argument: bytes) -> None:
        if argument:
            self._error(501, "5.5.4", "DATA takes no argument")
            return
        if self._mail_from is None:
            self._error(503, "5.5.1", "Send MAIL first")
            return
        if not self._recipients:
            self._error(554, "5.5.1", "No valid recipients")
            return
        queue_id = secrets.token_hex(8).upper()
        header = self._received_header(queue_id)
        spool = SpoolWriter(
            self.factory.spool_dir,
            memory_limit=self.limits.spool_memory_limit,
            max_size=self.limits.max_message_size + len(header),
        )
        envelope = Envelope(
            client_ip=self._ip,
            helo=self._helo_name or "",
            mail_from=self._mail_from,
            authserv_id=self.factory.hostname,
            local_domains=tuple(sorted(self.factory.domains)),
        )
        self._data = _DataTransaction(spool, queue_id, self._mail_from, self._recipients, envelope)
        self._reset_transaction()
        try:
            spool.write(header)
        except OSError:
            log.failure("cannot write to the spool")
            self._data.fail(451, "4.3.0", "Local error in processing")
        self._progressed()
        self._reply(354, "2.0.0", "End data with <CR><LF>.<CR><LF>")

    def _cmd_rset(self, argument: bytes) -> None:
        if self._junk():
            return
        self._reset_transaction()
        self._reply(250, "2.0.0", "Reset")

    def _cmd_noop(self, argument: bytes) -> None:
        if not self._junk():
            self._reply(250, "2.0.0", "Ok")

    def _cmd_vrfy(self, argument: bytes) -> None:
        if not self._junk():
            self._reply(252, "2.5.0", "Cannot VRFY; send the message and delivery will be attempted")

    def _cmd_help(self, argument: bytes) -> None:
        if not self._junk():
            self._reply(214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT STARTTLS")

    def _cmd_quit(self, argument: bytes) -> None:
        self._close(221, "2.0.0", "Bye")

    # -- DATA ---------------------------------------------------------------------------------

    def _data_line(self, line: bytes) -> Deferred[None] | None:
        transaction = self._data
        assert transaction is not None
        if line == b".":
            self._data = None
            return self._end_of_data(transaction)
        if line.startswith(b"."):
            line = line[1:]
        if b"\r" in line or b"\n" in line:
            transaction.fail(
                554,
                "5.6.0",
                "Bare CR or LF in message data is not allowed; message rejected",
            )
        self._spool_data(transaction, line + b"\r\n")
        return None

    def _end_of_data(self, transaction: _DataTransaction) -> Deferred[None] | None:
        if transaction.failure is not None:
            code, enhanced, text = transaction.failure
            if code >= 500:
                self._error(code, enhanced, text)
            else:
                self._reply(code, enhanced, text)
            return None
        try:
            message = transaction.spool.finish()
        except (SpoolError, OSError):
            log.failure("cannot finish the spool")
            self._reply(451, "4.3.0", "Local error in processing")
            return None
        self._messages += 1
        return Deferred.fromCoroutine(self._deliver(message, transaction))

    async def _deliver(self, message: SpooledMessage, transaction: _DataTransaction) -> None:
        try:
            await self.factory.inbox.deliver(
                message, transaction.mail_from, list(transaction.recipients), envelope=transaction.envelope
            )
        except MessageRejected as refusal:
            # The judge refused where the message came from (550 5.7.1), or could not tell for now (451 4.7.0).
            log.info(
                "delivery of {queue_id} refused: {code} {enhanced}",
                queue_id=transaction.queue_id,
                code=refusal.code,
                enhanced=refusal.enhanced,
            )
            self._reply(refusal.code, refusal.enhanced, refusal.text)
        except MailboxFull:
            # SMTP has one reply to DATA for every recipient (LMTP would have one each): the whole
            # message is refused, temporarily, and nothing was stored for anyone.
            log.info("delivery of {queue_id} refused: a mailbox is full", queue_id=transaction.queue_id)
            self._reply(452, "4.2.2", "Mailbox full for a recipient; try again later")
        except MessageRefused:
            log.info("delivery of {queue_id} refused: the message cannot be processed", queue_id=transaction.queue_id)
            self._reply(554, "5.6.0", "Message content cannot be processed; not delivered")
        except Exception as exc:  # noqa: BLE001 - any inbox failure means 451
            # The exception text could quote the message, so only its type is logged.
            log.error(
                "delivery of {queue_id} failed: {error_type}",
                queue_id=transaction.queue_id,
                error_type=type(exc).__name__,
            )
            self._reply(451, "4.3.0", "Local error in processing; try again later")
        else:
            self._junk_commands = 0
            self._reply(250, "2.0.0", f"Ok: queued as {transaction.queue_id}")
        finally:
            message.close()

    def _received_header(self, queue_id: str) -> bytes:
        """The RFC 5321 §4.4 trace header for the transaction now starting."""
        protocol = ("ESMTP" if self._esmtp else "SMTP") + ("S" if self._secure else "")
        ip = self._ip
        literal = f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"
        lines = [
            f"Received: from {self._helo_name or 'unknown'} ({literal})",
            f"\tby {self.factory.hostname} (mailiverse) with {protocol} id {queue_id}",
        ]
        tls = self._tls_description()
        if tls:
            lines.append(f"\t({tls})")
        recipients = self._recipients
        when = datetime.datetime.fromtimestamp(self.factory.reactor.seconds(), datetime.UTC)
        stamp = email.utils.format_datetime(when)
        # Naming several recipients would show Bcc recipients to the others.
        if len(recipients) == 1:
            lines.append(f"\tfor <{recipients[0].address}>; {stamp}")
        else:
            lines.append(f"\t; {stamp}")
        return ("\r\n".join(lines) + "\r\n").encode("ascii", "replace")

    def _tls_description(self) -> str | None:
        if not self._secure:
            return None
        try:
            handle = self._io.getHandle()
            version = handle.get_protocol_version_name()
            cipher = handle.get_cipher_name()
        except Exception:  # noqa: BLE001 - a Twisted edge: answer 451, never crash the session
            return None
        if not version or not cipher:
            return None
        return f"version={version} cipher={cipher}"


def _peer_ip(address: IAddress) -> str:
    host = getattr(address, "host", None)
    if isinstance(host, str):
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            return host
    return str(address)
