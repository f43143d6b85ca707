"""The LMTP receiver (RFC 2033): an MTA on this host hands mail to the appliance's delivery pipeline.

``MailiverseLMTP`` is the hardened ESMTP receiver (``smtp/server.py``) with LMTP's three differences,
so every limit, the CRLF-only framing, the ordering of pipelined commands and the encrypted spool
are the same code:

* ``LHLO`` greets; ``HELO`` and ``EHLO`` are refused with 500 (RFC 2033 §4.1). No STARTTLS: the
  listener is a unix socket or loopback TCP (``smtp/lmtp_endpoint.py``), as trusted as the MTA.
* After the final dot there is one reply per accepted recipient, in RCPT order (§4.2). The message is
  stored for all of them in one ``IInbox.deliver`` (one judgement, one sealing pass, one commit, as
  over SMTP); when that says a mailbox is full (``MailboxFull``: nothing was stored for anyone) it is
  delivered again to each recipient alone, so those with room get it (250) and the full ones 452
  4.2.2. A judgement (``MessageRejected``), an unprocessable message (``MessageRefused``) or a local
  error (451 4.3.0) concerns the message, and every recipient gets that reply. Unknown users are
  refused at RCPT (550 5.1.1) as over SMTP.
* Its own connection count: every connection comes from the one MTA, so the per-client cap is the
  total cap (the MTA's lmtp client opens several at once).

How the message arrived, for the receipt-time judgement (``Envelope``: client address, HELO, MAIL
FROM for SPF, DKIM and DMARC): the LMTP client is the local MTA, not the sender, so its address
says nothing. The MTA wrote where it received the message from at the top of the header: the
topmost ``Received`` field, e.g. Postfix's ``from mail.example.net (mail.example.net [192.0.2.7])``
or Exim's ``from [192.0.2.7] (helo=mail.example.net)``. That field is as trustworthy as the MTA (a
sender can forge fields below it, never above), so its address literal and HELO name are judged,
with the LMTP MAIL FROM. When the topmost field names no address, or a loopback one (mail submitted
on the MTA's host, or re-injected by a content filter), the origin is unknown, and the message is
judged with no client address: SPF cannot be evaluated (recorded as ``spf=none``: the judge asks
nothing for an empty address), no DNS blocklist is asked, and DMARC rests on DKIM alone. Pretending
the MTA's own address had sent it would make SPF fail for every domain that publishes ``-all``.
"""

from __future__ import annotations

import datetime
import email.utils
import ipaddress
import re
from collections.abc import Iterable
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IReactorTime

from mailiverse.auth.connections import ConnectionLimiter
from mailiverse.contracts import Envelope, IInbox, MailboxFull, MessageRefused, MessageRejected, Recipient
from mailiverse.logs import Logger
from mailiverse.smtp.limits import SmtpLimits
from mailiverse.smtp.server import MailiverseESMTP, SmtpServerFactory, _DataTransaction
from mailiverse.spool import SpooledMessage, SpoolError

log = Logger()

#: Octets of the message's head kept (in memory only) to find the topmost Received field.
HEAD_LIMIT = 8192
_FROM_CLAUSE = re.compile(rb"^[ \t]*from[ \t]+(\S+)(.*?)(?:[ \t]by[ \t]|;|$)", re.IGNORECASE | re.DOTALL)
_ADDRESS_LITERAL = re.compile(rb"\[(?:IPv6:)?([0-9A-Fa-f:.]{2,45})\]")
_EXIM_HELO = re.compile(rb"\bhelo=([^\s()]+)", re.IGNORECASE)
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9.\-:\[\]_]")

Reply = tuple[int, str, str]


def relay_client(head: bytes) -> tuple[str, str] | None:
    """The (address, HELO name) the topmost ``Received`` field in ``head`` names, or None when it names
    no usable address (none, a loopback or unspecified one) or ``head`` holds no complete such field."""
    end = head.find(b"\r\n\r\n")
    complete = head[: end + 2] if end >= 0 else head[: head.rfind(b"\r\n") + 2]
    lines = complete.split(b"\r\n")[:-1]
    for index, line in enumerate(lines):
        if line[:1] in (b" ", b"\t"):
            continue
        name, colon, value = line.partition(b":")
        if not colon or name.strip().lower() != b"received":
            continue
        folded = [value]
        rest = lines[index + 1 :]
        for following in rest:
            if following[:1] not in (b" ", b"\t"):
                break
            folded.append(following)
        else:
            if end < 0:
                return None  # the field may go on past what was kept
        return _from_clause(b" ".join(folded))
    return None


def _from_clause(value: bytes) -> tuple[str, str] | None:
    match = _FROM_CLAUSE.match(value)
    if match is None:
        return None
    name, comment = match.group(1), match.group(2)
    literal = _ADDRESS_LITERAL.search(name) or _ADDRESS_LITERAL.search(comment)
    if literal is None:
        return None
    try:
        address = ipaddress.ip_address(literal.group(1).decode("ascii"))
    except ValueError:
        return None
    if address.is_loopback or address.is_unspecified:
        return None
    exim = _EXIM_HELO.search(comment)
    helo = (exim.group(1) if exim else name).decode("ascii", "replace")[:255]
    return str(address), _NAME_UNSAFE.sub("?", helo)


class LmtpServerFactory(SmtpServerFactory):
    """Builds one ``MailiverseLMTP`` per connection to an ``--lmtp`` listener."""

    def __init__(
        self,
        inbox: IInbox,
        *,
        hostname: str,
        domains: Iterable[str],
        limits: SmtpLimits,
        spool_dir: Path,
        reactor: IReactorTime,
        connections: ConnectionLimiter | None = None,
    ) -> None:
        if connections is None:
            connections = ConnectionLimiter(limits.max_connections, limits.max_connections)
        super().__init__(
            inbox,
            hostname=hostname,
            domains=domains,
            limits=limits,
            starttls=None,
            implicit_tls=False,
            spool_dir=spool_dir,
            reactor=reactor,
            connections=connections,
        )

    def buildProtocol(self, addr: IAddress | None) -> MailiverseLMTP:
        return MailiverseLMTP(self)


def lmtp_server_factory(
    inbox: IInbox,
    *,
    hostname: str,
    domains: Iterable[str],
    limits: SmtpLimits,
    spool_dir: Path,
    reactor: IReactorTime | None = None,
) -> LmtpServerFactory:
    """The protocol factory of one ``--lmtp`` listener (its own connection count, sized by ``limits``)."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    assert reactor is not None
    return LmtpServerFactory(
        inbox, hostname=hostname, domains=domains, limits=limits, spool_dir=spool_dir, reactor=reactor
    )


class MailiverseLMTP(MailiverseESMTP):
    """One LMTP session from the local MTA: LHLO, one reply per recipient after DATA."""

    greeting_text = b"LMTP mailiverse"

    def __init__(self, factory: SmtpServerFactory) -> None:
        super().__init__(factory)
        self._head: bytearray | None = None
        commands = self._commands
        del commands[b"STARTTLS"]
        commands[b"HELO"] = commands[b"EHLO"] = self._cmd_not_lmtp
        commands[b"LHLO"] = self._cmd_lhlo

    # -- commands -----------------------------------------------------------------------------

    def _cmd_not_lmtp(self, argument: bytes) -> None:
        self._error(500, "5.5.1", "This is LMTP: greet with LHLO (RFC 2033)")

    def _cmd_lhlo(self, argument: bytes) -> None:
        if self._greet(argument, esmtp=True) is None:
            return
        lines = [
            self.host,
            b"SIZE %d" % self.limits.max_message_size,
            b"8BITMIME",
            b"ENHANCEDSTATUSCODES",
            b"PIPELINING",
        ]
        self.sendCode(250, b"\n".join(lines))

    def _cmd_help(self, argument: bytes) -> None:
        if not self._junk():
            self._reply(214, "2.0.0", "Commands: LHLO MAIL RCPT DATA RSET NOOP QUIT")

    def _cmd_data(self, argument: bytes) -> None:
        super()._cmd_data(argument)
        self._head = bytearray() if self._data is not None else None

    # -- DATA ---------------------------------------------------------------------------------

    def _spool_data(self, transaction: _DataTransaction, data: bytes) -> None:
        head = self._head
        if head is not None and len(head) < HEAD_LIMIT:
            head += data[: HEAD_LIMIT - len(head)]
        super()._spool_data(transaction, data)

    def _end_of_data(self, transaction: _DataTransaction) -> Deferred[None] | None:
        head, self._head = bytes(self._head or b""), None
        count = len(transaction.recipients)
        if transaction.failure is not None:
            code, enhanced, text = transaction.failure
            self._replies([(code, enhanced, text)] * count)
            if code >= 500:
                self._error_counted()
            return None
        try:
            message = transaction.spool.finish()
        except (SpoolError, OSError):
            log.failure("cannot finish the spool")
            self._replies([(451, "4.3.0", "Local error in processing")] * count)
            return None
        self._messages += 1
        client = relay_client(head)
        ip, helo = client if client is not None else ("", "")
        transaction.envelope = Envelope(
            client_ip=ip,
            helo=helo,
            mail_from=transaction.mail_from,
            authserv_id=transaction.envelope.authserv_id,
            local_domains=transaction.envelope.local_domains,
        )
        return Deferred.fromCoroutine(self._deliver_each(message, transaction))

    def _error_counted(self) -> None:
        """Count one client error for a refused message (however many recipients heard about it)."""
        self._errors += 1
        if self._errors >= self.limits.max_errors_per_connection and not self._closing:
            self._close(421, "4.7.0", "Too many errors, closing connection")

    def _replies(self, replies: list[Reply]) -> None:
        for code, enhanced, text in replies:
            self._reply(code, enhanced, text)

    async def _deliver_each(self, message: SpooledMessage, transaction: _DataTransaction) -> None:
        recipients = list(transaction.recipients)
        try:
            reply, full = await self._deliver_to(message, transaction, recipients)
            replies = [reply] * len(recipients)
            if full and len(recipients) > 1:
                # Nothing was stored for anyone: each recipient alone, so only the full mailboxes miss out.
                replies = [(await self._deliver_to(message, transaction, [r]))[0] for r in recipients]
        finally:
            message.close()
        if all(code == 250 for code, _, _ in replies):
            self._junk_commands = 0
        self._replies(replies)

    async def _deliver_to(
        self, message: SpooledMessage, transaction: _DataTransaction, recipients: list[Recipient]
    ) -> tuple[Reply, bool]:
        """Deliver to ``recipients`` together: the reply each of them gets, and whether a mailbox was full."""
        queue_id = transaction.queue_id
        try:
            await self.factory.inbox.deliver(message, transaction.mail_from, recipients, envelope=transaction.envelope)
        except MessageRejected as refusal:
            log.info(
                "LMTP delivery of {queue_id} refused: {code} {enhanced}",
                queue_id=queue_id,
                code=refusal.code,
                enhanced=refusal.enhanced,
            )
            return (refusal.code, refusal.enhanced, refusal.text), False
        except MailboxFull:
            log.info("LMTP delivery of {queue_id}: a mailbox is full", queue_id=queue_id)
            return (452, "4.2.2", "Mailbox full, try again later"), True
        except MessageRefused:
            log.info("LMTP delivery of {queue_id} refused: the message cannot be processed", queue_id=queue_id)
            return (554, "5.6.0", "Message content cannot be processed; not delivered"), False
        except Exception as exc:  # noqa: BLE001 - any inbox failure means 451
            # The exception text could quote the message, so only its type is logged.
            log.error(
                "LMTP delivery of {queue_id} failed: {error_type}", queue_id=queue_id, error_type=type(exc).__name__
            )
            return (451, "4.3.0", "Local error in processing; try again later"), False
        return (250, "2.0.0", f"Ok: delivered as {queue_id}"), False

    def _received_header(self, queue_id: str) -> bytes:
        """The trace field for the transaction now starting: from the MTA, over LMTP (RFC 3848)."""
        try:
            ip = str(ipaddress.ip_address(self._ip))
            origin = f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"
        except ValueError:
            origin = "local socket"
        recipients = self._recipients
        when = datetime.datetime.fromtimestamp(self.factory.reactor.seconds(), datetime.UTC)
        stamp = email.utils.format_datetime(when)
        lines = [
            f"Received: from {self._helo_name or 'unknown'} ({origin})",
            f"\tby {self.factory.hostname} (mailiverse) with LMTP id {queue_id}",
            # Naming several recipients would show Bcc recipients to the others.
            f"\tfor <{recipients[0].address}>; {stamp}" if len(recipients) == 1 else f"\t; {stamp}",
        ]
        return ("\r\n".join(lines) + "\r\n").encode("ascii", "replace")
