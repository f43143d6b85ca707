"""``mailiverse-deliver``: a local delivery agent that hands one message on stdin to the appliance over LMTP.

For an MTA that delivers by running a command: Postfix's ``mailbox_command`` or a pipe(8) transport, a
``.forward`` file, sendmail's prog mailer. The message is read from stdin (bounded by ``--max-size``,
kept in memory only), the envelope comes from the options or from the environment local(8) sets
(``SENDER``, ``RECIPIENT``, ``ORIGINAL_RECIPIENT``), and the appliance's ``--lmtp`` listener does the
delivery, so the message goes through the same pipeline (judged, sealed, stored) as one over SMTP.

The exit status is what Postfix and sendmail read (sysexits.h), with one short reason on stderr that
they put in their log or the bounce (never the message, never an address):

====  ==============  =========================================================================
 0    delivered       every recipient got the message
 64   EX_USAGE        bad options, no recipient or no sender known
 65   EX_DATAERR      the message cannot be delivered as it is: empty, larger than ``--max-size``,
                      a line over 998 octets, a bare CR (permanent: Postfix bounces with 5.6.0)
 67   EX_NOUSER       no such user (550 5.1.1 from the appliance)
 69   EX_UNAVAILABLE  any other permanent refusal (5xx), e.g. the judgement refused the message
 75   EX_TEMPFAIL     try again later: a 4xx reply (mailbox full, judgement deferred, local error),
                      the socket missing or refusing connections, a timeout, a broken dialogue
====  ==============  =========================================================================

With several recipients there is one exit status for all: 0 only if all got the message, 75 if any
should be retried (the MTA then tries them all again; the appliance keeps a message it already stored
for an account once), else the permanent code, which bounces the message for all of them. Postfix
pipe(8) transports should therefore set ``*_destination_recipient_limit = 1``.

A plain blocking socket and the standard library only: the command runs once per message, so it must
start fast and need no reactor.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
from collections.abc import Sequence
from typing import BinaryIO, NoReturn

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_UNAVAILABLE = 69
EX_TEMPFAIL = 75

#: The appliance's default ``--max-message-size`` (``config.DEFAULT_MAX_MESSAGE_SIZE``; a test checks they agree).
DEFAULT_MAX_SIZE = 50 * 1024 * 1024
DEFAULT_SOCKET = "/run/mailiverse/lmtp.sock"
#: Longest line of a message, CRLF excluded (RFC 5321 §4.5.3.1.6), as the appliance accepts it.
MAX_LINE = 998
MAX_RECIPIENTS = 100
#: What may be read past ``--max-size`` for an mbox ``From `` line the MTA put first.
MBOX_FROM_ROOM = 4096
MAX_REPLY_LINE = 4096
#: An mbox ``From `` line (pipe(8) flag F, local(8) to a command) is the MTA's, not part of the message.
_MBOX_FROM = re.compile(rb"^From (?![ \t]*:)")
_REPLY = re.compile(rb"^([2-5][0-9][0-9])([ -])(.*)$")
_ENHANCED = re.compile(r"^([245]\.[0-9]{1,3}\.[0-9]{1,3})\b")
_ADDRESS = re.compile(r"^[\x21-\x7e]{1,256}$")


class Failed(Exception):
    """Delivery ends with ``status``; ``reason`` is the one line printed on stderr."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise Failed(EX_USAGE, f"usage: {message}")


def _arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = _Parser(
        prog="mailiverse-deliver",
        description="Deliver one message from stdin to the mailiverse appliance over LMTP (for mailbox_command, "
        "pipe(8) or .forward). Exit 0 delivered, 75 try again later, 67 no such user, 69 refused, "
        "65 bad message, 64 usage.",
    )
    parser.add_argument(
        "-a",
        "--recipient",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="recipient (repeatable; default: $RECIPIENT, else $ORIGINAL_RECIPIENT, as Postfix's local(8) sets them)",
    )
    parser.add_argument("-f", "--from", dest="sender", metavar="ADDRESS", help="envelope sender (default: $SENDER)")
    parser.add_argument(
        "--socket",
        metavar="PATH",
        help=f"the appliance's --lmtp unix socket (default: $MAILIVERSE_LMTP, else {DEFAULT_SOCKET})",
    )
    parser.add_argument("--lmtp", metavar="ENDPOINT", help="unix:PATH or tcp:HOST:PORT instead of --socket")
    parser.add_argument(
        "--max-size",
        type=int,
        default=DEFAULT_MAX_SIZE,
        metavar="BYTES",
        help=f"largest message accepted (default {DEFAULT_MAX_SIZE}, the appliance's default)",
    )
    parser.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS", help="for each reply (default 600)")
    parser.add_argument("--hostname", default=None, help="the name given in LHLO (default: this host's name)")
    args = parser.parse_args(argv)
    if args.max_size <= 0 or args.timeout <= 0:
        raise Failed(EX_USAGE, "usage: --max-size and --timeout must be positive")
    return args


def _envelope(args: argparse.Namespace, environ: dict[str, str]) -> tuple[str, list[str]]:
    """The sender and the recipients, from the options or Postfix's environment."""
    recipients = list(args.recipient)
    if not recipients:
        fallback = environ.get("RECIPIENT") or environ.get("ORIGINAL_RECIPIENT")
        recipients = [fallback] if fallback else []
    if not recipients:
        raise Failed(EX_USAGE, "usage: no recipient: give -a ADDRESS (or run from Postfix, which sets $RECIPIENT)")
    if len(recipients) > MAX_RECIPIENTS:
        raise Failed(EX_USAGE, f"usage: at most {MAX_RECIPIENTS} recipients")
    sender = args.sender if args.sender is not None else environ.get("SENDER")
    if sender is None:
        raise Failed(EX_USAGE, "usage: no sender: give -f ADDRESS (-f '' for a bounce) or set $SENDER")
    sender = sender.strip().strip("<>")
    if sender and not _ADDRESS.match(sender):
        raise Failed(EX_USAGE, "usage: the sender is not a plain address")
    for recipient in recipients:
        if not _ADDRESS.match(recipient) or "@" not in recipient:
            raise Failed(EX_USAGE, "usage: a recipient is not a full address (a local part and a domain)")
    return sender, recipients


def _connect(args: argparse.Namespace, environ: dict[str, str]) -> socket.socket:
    """A connected socket to the appliance's LMTP listener; every failure is temporary (75)."""
    target = args.lmtp or "unix:" + (args.socket or environ.get("MAILIVERSE_LMTP") or DEFAULT_SOCKET)
    kind, _, rest = target.partition(":")
    try:
        if kind == "unix" and rest:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(args.timeout)
            try:
                sock.connect(rest)
            except BaseException:
                sock.close()
                raise
            return sock
        host, _, port = rest.rpartition(":")
        if kind == "tcp" and host and port.isdigit():
            return socket.create_connection((host.strip("[]"), int(port)), timeout=args.timeout)
    except OSError as error:
        raise Failed(EX_TEMPFAIL, f"cannot reach the appliance's LMTP listener: {error.strerror or error}") from None
    raise Failed(EX_USAGE, "usage: --lmtp is unix:PATH or tcp:HOST:PORT")


def read_message(stream: BinaryIO, max_size: int) -> bytes:
    """The message on ``stream`` in CRLF form, dot-stuffed and ended with ``CRLF.CRLF`` for DATA."""
    raw = stream.read(max_size + MBOX_FROM_ROOM + 1)
    if len(raw) > max_size + MBOX_FROM_ROOM:
        raise Failed(EX_DATAERR, f"the message is larger than {max_size} octets")
    if _MBOX_FROM.match(raw):
        raw = raw[raw.find(b"\n") + 1 :] if b"\n" in raw else b""
    if not raw.strip():
        raise Failed(EX_DATAERR, "the message is empty")
    lines = raw.split(b"\n")
    if lines[-1] == b"":
        del lines[-1]
    size = 0
    for index, line in enumerate(lines):
        if line.endswith(b"\r"):
            line = lines[index] = line[:-1]
        if b"\r" in line:
            raise Failed(EX_DATAERR, "the message has a bare CR (line endings are CRLF or LF)")
        if len(line) > MAX_LINE:
            raise Failed(EX_DATAERR, f"the message has a line longer than {MAX_LINE} octets")
        if line.startswith(b"."):
            lines[index] = b"." + line
            size -= 1
        size += len(line) + 2
        if size > max_size:
            raise Failed(EX_DATAERR, f"the message is larger than {max_size} octets")
    lines.append(b".\r\n")
    return b"\r\n".join(lines)


class _Session:
    """One LMTP dialogue over a blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def reply(self) -> tuple[int, str]:
        """The next reply: its code and its last line's text (with the enhanced code)."""
        text = ""
        for _ in range(100):
            while b"\r\n" not in self.buffer:
                if len(self.buffer) > MAX_REPLY_LINE:
                    raise Failed(EX_TEMPFAIL, "the appliance sent a reply line without end")
                try:
                    data = self.sock.recv(65536)
                except TimeoutError:
                    raise Failed(EX_TEMPFAIL, "timed out waiting for the appliance") from None
                except OSError as error:
                    raise Failed(
                        EX_TEMPFAIL, f"connection to the appliance failed: {error.strerror or error}"
                    ) from None
                if not data:
                    raise Failed(EX_TEMPFAIL, "the appliance closed the connection")
                self.buffer += data
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            match = _REPLY.match(line)
            if match is None:
                raise Failed(EX_TEMPFAIL, "the appliance sent something that is not an LMTP reply")
            text = match.group(3).decode("ascii", "replace")
            if match.group(2) == b" ":
                return int(match.group(1)), text
        raise Failed(EX_TEMPFAIL, "the appliance sent a reply of over 100 lines")

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as error:
            raise Failed(EX_TEMPFAIL, f"connection to the appliance failed: {error.strerror or error}") from None

    def command(self, line: str) -> tuple[int, str]:
        self.send(line.encode("ascii") + b"\r\n")
        return self.reply()


def _status_of(code: int, text: str) -> int:
    """The exit status of an LMTP refusal."""
    if code < 500:
        return EX_TEMPFAIL
    enhanced = _ENHANCED.match(text)
    detail = enhanced.group(1) if enhanced else ""
    if detail == "5.1.1":
        return EX_NOUSER
    if detail == "5.3.4" or detail.startswith("5.6."):
        return EX_DATAERR
    return EX_UNAVAILABLE


def _reason(code: int, text: str) -> str:
    printable = "".join(c for c in text if c.isprintable())[:200]
    return f"the appliance answered {code} {printable}"


def deliver(sock: socket.socket, sender: str, recipients: list[str], message: bytes, hostname: str) -> None:
    """Speak LMTP on ``sock``; returns when every recipient got the message, raises ``Failed`` otherwise."""
    session = _Session(sock)
    code, text = session.reply()
    if code != 220:
        raise Failed(_status_of(code, text), _reason(code, text))
    code, text = session.command(f"LHLO {hostname}")
    if code != 250:
        raise Failed(_status_of(code, text), _reason(code, text))
    code, text = session.command(f"MAIL FROM:<{sender}> SIZE={len(message)}")
    if code != 250:
        raise Failed(_status_of(code, text), _reason(code, text))
    refusals: list[tuple[int, str]] = []
    accepted = 0
    for recipient in recipients:
        code, text = session.command(f"RCPT TO:<{recipient}>")
        if code == 250:
            accepted += 1
        else:
            refusals.append((code, text))
    if accepted:
        code, text = session.command("DATA")
        if code != 354:
            raise Failed(_status_of(code, text), _reason(code, text))
        session.send(message)
        for _ in range(accepted):
            code, text = session.reply()
            if code != 250:
                refusals.append((code, text))
    try:
        session.command("QUIT")
    except Failed:
        pass  # the outcome is known already
    if refusals:
        # The worst for the MTA to act on: retry if any recipient may still get it, else the permanent reason.
        code, text = min(refusals, key=lambda reply: (reply[0] >= 500, reply))
        raise Failed(_status_of(code, text), _reason(code, text))


def run(argv: Sequence[str], stdin: BinaryIO, environ: dict[str, str]) -> int:
    """The whole command: the exit status, having printed the reason of a failure on stderr."""
    try:
        args = _arguments(argv)
        sender, recipients = _envelope(args, environ)
        message = read_message(stdin, args.max_size)
        with _connect(args, environ) as sock:
            deliver(sock, sender, recipients, message, args.hostname or socket.gethostname() or "localhost")
    except Failed as failure:
        print(f"mailiverse-deliver: {failure.reason}", file=sys.stderr)
        return failure.status
    return EX_OK


def main() -> NoReturn:
    sys.exit(run(sys.argv[1:], sys.stdin.buffer, dict(os.environ)))


if __name__ == "__main__":
    main()
