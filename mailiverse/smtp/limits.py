"""The numbers that bound every SMTP session: sizes, counts and time."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SmtpLimits:
    """Limits of the ESMTP receiver; defaults follow RFC 5321 §4.5.3 where it sets one."""

    #: largest message accepted (advertised with SIZE), in octets, not counting our trace header
    max_message_size: int = 52_428_800
    #: longest command line, CRLF included (RFC 5321 §4.5.3.1.4)
    max_command_line: int = 512
    #: longest text line in DATA, CRLF included (RFC 5321 §4.5.3.1.6); one extra octet is allowed for dot-stuffing
    max_data_line: int = 1000
    #: recipients per transaction (RFC 5321 §4.5.3.1.8 asks for at least 100)
    max_recipients: int = 100
    #: messages accepted on one connection before it is closed with 421
    max_messages_per_connection: int = 100
    #: error replies on one connection before it is closed with 421
    max_errors_per_connection: int = 10
    #: simultaneous connections from one client: an IPv4 address, or an IPv6 /64 (one host or site)
    max_connections_per_ip: int = 10
    #: simultaneous connections on the SMTP listeners that share one count (the appliance's all do)
    max_connections: int = 200
    #: seconds without progress before the session is closed with 421 4.4.2.  Progress is a
    #: greeting, a sender, a new recipient, message data, STARTTLS; a byte at a time, NOOP, RSET,
    #: HELP, VRFY, a second EHLO or a repeated recipient are not, so none of them can hold a slot
    idle_timeout: float = 300.0
    #: NOOP, RSET, HELP, VRFY and repeated HELO/EHLO allowed between accepted messages; the next
    #: one is answered 421 4.7.0 and the connection closes (Postfix's smtpd_junk_command_limit)
    max_junk_commands: int = 100
    #: seconds one connection may last in all, however busy, before it is closed with 421
    max_session_seconds: float = 3600.0
    #: seconds allowed for one delivery to the inbox before the client gets 451
    delivery_timeout: float = 600.0
    #: bytes kept in memory per spooled message before it spills to an encrypted temp file
    spool_memory_limit: int = 256 * 1024
    #: unprocessed input kept while a reply is pending (pipelining); beyond it reading is paused
    max_pipeline_buffer: int = 64 * 1024
    #: longest reverse-path or forward-path inside <> (RFC 5321 §4.5.3.1.3)
    max_path_length: int = 256

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value <= 0:
                raise ValueError(f"SmtpLimits.{name} must be positive, got {value!r}")
        if self.max_command_line < 64:
            raise ValueError("SmtpLimits.max_command_line must be at least 64 octets")
        if self.max_data_line < 80:
            raise ValueError("SmtpLimits.max_data_line must be at least 80 octets")
