"""An in-memory ``IMailState`` for the IMAP protocol tests: the six mailboxes, real RFC 5322 messages, and the
contract's rules (a message lives in one mailbox; EXPUNGE never deletes a message moved away; UIDs only grow).

Thread-safe, as the server calls it from the reactor's thread pool. ``deliver`` adds mail as the appliance would;
``fail_with`` makes the next call raise, to see how the server answers.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from mailiverse.client.bridge.model import INBOX, MAILBOXES, BridgeError, MailboxView, MessageRef

PLAIN = (
    b"Return-Path: <alice@example.com>\r\n"
    b"Date: Tue, 04 Mar 2025 10:15:00 +0100\r\n"
    b"From: Alice Example <alice@example.com>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Cc: carol@example.net\r\n"
    b"Subject: Lunch on Friday\r\n"
    b"Message-ID: <lunch-1@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"\r\n"
    b"Shall we meet at the noodle bar at noon?\r\n"
    b"-- \r\n"
    b"Alice\r\n"
)

MULTIPART = (
    b"Date: Wed, 05 Mar 2025 08:00:00 +0000\r\n"
    b"From: Dave <dave@example.com>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: Quarterly report attached\r\n"
    b"Message-ID: <report-7@example.com>\r\n"
    b"In-Reply-To: <ask-6@example.org>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="==outer=="\r\n'
    b"\r\n"
    b"This is a multi-part message in MIME format.\r\n"
    b"--==outer==\r\n"
    b'Content-Type: multipart/alternative; boundary="inner"\r\n'
    b"\r\n"
    b"--inner\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 7bit\r\n"
    b"\r\n"
    b"The numbers are in the spreadsheet: revenue is up.\r\n"
    b"--inner\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b"<p>The numbers are in the spreadsheet: <b>revenue</b> is up.</p>\r\n"
    b"--inner--\r\n"
    b"--==outer==\r\n"
    b'Content-Type: application/pdf; name="q1-report.pdf"\r\n'
    b'Content-Disposition: attachment; filename="q1-report.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"Content-Description: The report\r\n"
    b"\r\n"
    b"JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSPj4Kc3RyZWFtCkhlbGxv\r\n"
    b"IHJlcG9ydAplbmRzdHJlYW0KZW5kb2JqCg==\r\n"
    b"--==outer==--\r\n"
    b"Epilogue is ignored.\r\n"
)

NON_ASCII = (
    b"Date: Thu, 06 Mar 2025 19:30:00 +0100\r\n"
    b"From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.de>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=\r\n"
    b"Message-ID: <gruesse@example.de>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Sch=C3=B6ne Gr=C3=BC=C3=9Fe vom Rhein, und bis bald im Caf=C3=A9.\r\n"
)

EXAMPLES = (PLAIN, MULTIPART, NON_ASCII)


@dataclass
class _Stored:
    key: str
    flags: set[str]
    internal_ms: int


@dataclass
class _Box:
    uidvalidity: int
    uidnext: int = 1
    messages: dict[int, _Stored] = field(default_factory=dict)


class FakeMailState:
    """The contract of ``IMailState`` kept in memory."""

    def __init__(self, *, with_examples: bool = True) -> None:
        self._lock = threading.Lock()
        self._boxes = {name: _Box(uidvalidity=1000 + n) for n, name in enumerate(MAILBOXES)}
        self._bodies: dict[str, bytes] = {}
        self._keys = 0
        self.calls: list[str] = []
        self.refreshes = 0
        self._failure: Exception | None = None
        if with_examples:
            for n, message in enumerate(EXAMPLES):
                self.deliver(INBOX, message, internal_ms=1_741_000_000_000 + n * 86_400_000)

    # --- test helpers -------------------------------------------------------------------------------------------

    def deliver(
        self, mailbox: str, message: bytes, *, flags: Sequence[str] = (), internal_ms: int = 1_741_500_000_000
    ) -> int:
        """Store a message as the appliance would (new mail)."""
        with self._lock:
            return self._add(mailbox, message, flags, internal_ms)

    def fail_with(self, error: Exception) -> None:
        """The next call raises ``error``."""
        with self._lock:
            self._failure = error

    def flags_of(self, mailbox: str, uid: int) -> set[str]:
        with self._lock:
            return set(self._boxes[mailbox].messages[uid].flags)

    def uids(self, mailbox: str) -> list[int]:
        with self._lock:
            return sorted(self._boxes[mailbox].messages)

    def body_of(self, mailbox: str, uid: int) -> bytes:
        with self._lock:
            return self._bodies[self._boxes[mailbox].messages[uid].key]

    def _add(self, mailbox: str, message: bytes, flags: Sequence[str], internal_ms: int) -> int:
        box = self._boxes[mailbox]
        self._keys += 1
        key = f"Mail/In_Json/m{self._keys}"
        self._bodies[key] = message
        uid = box.uidnext
        box.uidnext += 1
        box.messages[uid] = _Stored(key, set(flags), internal_ms)
        return uid

    def _enter(self, name: str) -> None:
        self.calls.append(name)
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def _box(self, mailbox: str) -> _Box:
        if mailbox not in self._boxes:
            raise BridgeError("no such mailbox")
        return self._boxes[mailbox]

    def _view(self, mailbox: str) -> MailboxView:
        box = self._box(mailbox)
        refs = tuple(
            MessageRef(uid, stored.key, frozenset(stored.flags), len(self._bodies[stored.key]), stored.internal_ms)
            for uid, stored in sorted(box.messages.items())
        )
        return MailboxView(mailbox, box.uidvalidity, box.uidnext, refs)

    # --- IMailState ---------------------------------------------------------------------------------------------

    def mailboxes(self) -> Sequence[str]:
        with self._lock:
            self._enter("mailboxes")
            return MAILBOXES

    def view(self, mailbox: str, *, refresh: bool = False) -> MailboxView:
        with self._lock:
            self._enter("view")
            if refresh:
                self.refreshes += 1
            return self._view(mailbox)

    def message(self, key: str) -> bytes:
        with self._lock:
            self._enter("message")
            if key not in self._bodies:
                raise BridgeError("that message is gone")
            return self._bodies[key]

    def set_flags(self, mailbox: str, uids: Sequence[int], flags: Sequence[str], mode: str) -> MailboxView:
        with self._lock:
            self._enter("set_flags")
            box = self._box(mailbox)
            for uid in uids:
                stored = box.messages.get(uid)
                if stored is None:
                    continue
                if mode == "set":
                    stored.flags = set(flags)
                elif mode == "add":
                    stored.flags |= set(flags)
                elif mode == "remove":
                    stored.flags -= set(flags)
                else:
                    raise ValueError(mode)
            return self._view(mailbox)

    def expunge(self, mailbox: str, uids: Sequence[int] | None = None) -> list[int]:
        with self._lock:
            self._enter("expunge")
            box = self._box(mailbox)
            gone = [
                uid
                for uid, stored in sorted(box.messages.items())
                if "\\Deleted" in stored.flags and (uids is None or uid in uids)
            ]
            for uid in gone:
                del self._bodies[box.messages.pop(uid).key]
            return gone

    def move(self, mailbox: str, uids: Sequence[int], target: str) -> list[tuple[int, int]]:
        with self._lock:
            self._enter("move")
            source, destination = self._box(mailbox), self._box(target)
            pairs = []
            for uid in uids:
                stored = source.messages.pop(uid, None)
                if stored is None:
                    continue
                new_uid = destination.uidnext
                destination.uidnext += 1
                destination.messages[new_uid] = stored
                pairs.append((uid, new_uid))
            return pairs

    def append(self, mailbox: str, message: bytes, flags: Sequence[str], internal_ms: int | None) -> int:
        with self._lock:
            self._enter("append")
            self._box(mailbox)
            return self._add(mailbox, message, flags, 1_741_600_000_000 if internal_ms is None else internal_ms)
