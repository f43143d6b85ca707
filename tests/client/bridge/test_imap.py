"""The bridge's IMAP server (``mailiverse/client/bridge/imap.py``) on a real 127.0.0.1 port, over the in-memory
state of ``fake_state.py``: Python's ``imaplib`` (and a raw socket where the exact bytes matter) as the client, run
in a thread while the reactor serves."""

from __future__ import annotations

import email
import email.header
import imaplib
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet import ssl as twisted_ssl
from twisted.internet.threads import deferToThread

from mailiverse.client.bridge.imap import imap_factory
from mailiverse.client.bridge.localauth import LocalLogin, Throttle
from mailiverse.client.bridge.model import DRAFTS, INBOX, TRASH, BridgeError
from mailiverse.testing import issue_test_certificate
from tests.client.bridge.fake_state import EXAMPLES, MULTIPART, NON_ASCII, PLAIN, FakeMailState

T = TypeVar("T")
USER = "alice"
PASSWORD = "Zq3-local_password-8Yt"
POLL = 0.2

# imaplib (Python 3.11) knows neither MOVE nor IDLE; MOVE only needs to be allowed through ``uid()``.
imaplib.Commands.setdefault("MOVE", ("SELECTED",))


@dataclass
class Served:
    state: FakeMailState
    port: int
    login: LocalLogin

    def imap(self, *, log_in: bool = True) -> imaplib.IMAP4:
        connection = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        if log_in:
            connection.login(USER, PASSWORD)
        return connection

    def raw(self) -> RawClient:
        return RawClient(self.port)


def _listen(factory: Any) -> Any:
    return reactor.listenTCP(0, factory, interface="127.0.0.1")


@pytest.fixture
def served() -> Iterator[Served]:
    """The IMAP factory over a fresh fake state, on a free port (failed logins answered after 10 ms)."""
    state = FakeMailState()
    login = LocalLogin(USER, PASSWORD, Throttle(reactor, failure_delay=0.01, max_failures=5, lockout=60.0))
    factory = imap_factory(
        state, USER, PASSWORD, tls=None, implicit_tls=False, reactor=reactor, poll_interval=POLL, login=login
    )
    port = _listen(factory)
    try:
        yield Served(state, port.getHost().port, login)
    finally:
        pytest_twisted.blockon(port.stopListening())


async def in_thread(function: Callable[[], T]) -> T:
    return await deferToThread(function)


class RawClient:
    """A socket that speaks IMAP by hand: whole responses, literals read by their announced size."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.greeting = self.response()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def start_tls(self, context: ssl.SSLContext) -> None:
        assert not self.buffer, "plaintext left unread before the TLS handshake"
        self.sock = context.wrap_socket(self.sock, server_hostname="localhost")

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def response(self) -> bytes:
        """One response, its literals inlined as ``{n}\\r\\n<bytes>``."""
        line = self._line()
        whole = line
        while (found := re.search(rb"\{(\d+)\}$", line)) is not None:
            data = self._exactly(int(found.group(1)))
            line = self._line()
            whole += b"\r\n" + data + line
        return whole

    def command(self, tag: bytes, text: bytes) -> list[bytes]:
        """Send ``tag text`` and read up to the tagged answer (included, last)."""
        self.send(tag + b" " + text + b"\r\n")
        return self.until(tag)

    def until(self, tag: bytes) -> list[bytes]:
        responses = []
        while True:
            response = self.response()
            responses.append(response)
            if response.startswith(tag + b" "):
                return responses

    def closed(self) -> bool:
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except (ConnectionResetError, TimeoutError):
            return False

    def close(self) -> None:
        self.sock.close()


def _log_in(raw: RawClient) -> None:
    assert raw.command(b"L", b"LOGIN " + USER.encode() + b" " + PASSWORD.encode())[-1].startswith(b"L OK")


# --- login and capabilities ---------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_login_accepts_the_local_password_only(served: Served) -> None:
    """LOGIN and AUTHENTICATE PLAIN succeed with the local user and password; a wrong password gets
    NO [AUTHENTICATIONFAILED]."""

    def run() -> tuple[str, str, str]:
        good = served.imap(log_in=False)
        typ_good, _ = good.login(USER, PASSWORD)
        good.logout()
        plain = served.imap(log_in=False)
        typ_plain, _ = plain.authenticate("PLAIN", lambda _: f"\0{USER}\0{PASSWORD}".encode())
        plain.logout()
        bad = served.imap(log_in=False)
        with pytest.raises(imaplib.IMAP4.error) as refused:
            bad.login(USER, PASSWORD + "x")
        bad.shutdown()
        return typ_good, typ_plain, str(refused.value)

    typ_good, typ_plain, refused = await in_thread(run)
    assert (typ_good, typ_plain) == ("OK", "OK")
    assert "AUTHENTICATIONFAILED" in refused


@pytest_twisted.ensureDeferred
async def test_failed_logins_disconnect_then_lock_out(served: Served) -> None:
    """Three failures end a connection; after five in a row even the right password is refused for a while."""

    def run() -> tuple[list[bytes], bool, list[bytes]]:
        raw = served.raw()
        answers = [raw.command(b"A%d" % n, b"LOGIN alice wrong")[-1] for n in range(3)]
        closed = raw.closed()
        raw.close()
        again = served.raw()
        for n in range(2):
            again.command(b"B%d" % n, b"LOGIN alice wrong")
        locked = served.raw()
        answer = locked.command(b"C", b"LOGIN alice " + PASSWORD.encode())
        locked.close()
        again.close()
        return answers, closed, answer

    answers, closed, locked = await in_thread(run)
    assert all(answer.startswith(b"A") and b" NO [AUTHENTICATIONFAILED]" in answer for answer in answers)
    assert closed
    assert locked[-1].startswith(b"C NO [UNAVAILABLE] Too many failed logins")


@pytest_twisted.ensureDeferred
async def test_capability_lists_the_extensions(served: Served) -> None:
    """CAPABILITY names IDLE, UIDPLUS, MOVE, SPECIAL-USE and AUTH=PLAIN, and never LOGINDISABLED."""

    def run() -> tuple[set[str], set[str]]:
        connection = served.imap(log_in=False)
        before = {c.upper() for c in connection.capabilities}
        connection.login(USER, PASSWORD)
        _, data = connection.capability()
        connection.logout()
        return before, set(data[0].decode().split())

    before, after = await in_thread(run)
    assert {"IMAP4REV1", "IDLE", "UIDPLUS", "MOVE", "SPECIAL-USE", "AUTH=PLAIN", "UNSELECT"} <= before
    assert "LOGINDISABLED" not in before
    assert "STARTTLS" not in before  # no TLS context in this fixture
    assert {"IDLE", "UIDPLUS", "MOVE", "SPECIAL-USE"} <= after


# --- mailboxes ----------------------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_list_shows_the_six_mailboxes_with_special_use(served: Served) -> None:
    """LIST gives exactly the state's mailboxes with \\Sent, \\Drafts, \\Junk, \\Trash; LIST (SPECIAL-USE) only
    those four."""

    def run() -> tuple[list[bytes], list[bytes]]:
        raw = served.raw()
        _log_in(raw)
        everything = raw.command(b"A", b'LIST "" "*"')
        special = raw.command(b"B", b'LIST (SPECIAL-USE) "" "*"')
        raw.close()
        return everything, special

    everything, special = await in_thread(run)
    assert everything[:-1] == [
        b'* LIST (\\HasNoChildren) "/" "INBOX"',
        b'* LIST (\\HasNoChildren \\Sent) "/" "Sent"',
        b'* LIST (\\HasNoChildren \\Drafts) "/" "Drafts"',
        b'* LIST (\\HasNoChildren \\Junk) "/" "Spam"',
        b'* LIST (\\HasNoChildren) "/" "Screener"',
        b'* LIST (\\HasNoChildren \\Trash) "/" "Trash"',
    ]
    assert [line.split(b'"/" ')[1] for line in special[:-1]] == [b'"Sent"', b'"Drafts"', b'"Spam"', b'"Trash"']


@pytest_twisted.ensureDeferred
async def test_select_reports_the_mailbox_numbers(served: Served) -> None:
    """SELECT gives EXISTS, RECENT 0, FLAGS, PERMANENTFLAGS with \\*, UNSEEN, UIDVALIDITY, UIDNEXT, READ-WRITE;
    EXAMINE is READ-ONLY; STATUS agrees."""

    def run() -> tuple[list[bytes], list[bytes], list[bytes]]:
        raw = served.raw()
        _log_in(raw)
        selected = raw.command(b"A", b"SELECT INBOX")
        examined = raw.command(b"B", b"EXAMINE inbox")
        status = raw.command(b"C", b"STATUS Trash (MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT)")
        raw.close()
        return selected, examined, status

    selected, examined, status = await in_thread(run)
    assert selected == [
        b"* 3 EXISTS",
        b"* 0 RECENT",
        b"* FLAGS (\\Answered \\Deleted \\Draft \\Flagged \\Seen)",
        b"* OK [PERMANENTFLAGS (\\Answered \\Deleted \\Draft \\Flagged \\Seen \\*)] Flags kept",
        b"* OK [UNSEEN 1] First unseen",
        b"* OK [UIDVALIDITY 1000] UIDs valid",
        b"* OK [UIDNEXT 4] Predicted next UID",
        b"A OK [READ-WRITE] SELECT completed",
    ]
    assert examined[-1] == b"B OK [READ-ONLY] EXAMINE completed"
    assert b"* OK [PERMANENTFLAGS ()] Flags kept" in examined
    assert status[0] == b'* STATUS "Trash" (MESSAGES 0 UIDNEXT 1 UIDVALIDITY 1005 UNSEEN 0 RECENT 0)'


@pytest_twisted.ensureDeferred
async def test_mailboxes_cannot_be_created_deleted_or_renamed(served: Served) -> None:
    """CREATE, DELETE and RENAME get NO [CANNOT] (CREATE of an existing one NO [ALREADYEXISTS]); SELECT of an
    unknown mailbox NO [NONEXISTENT]."""

    def run() -> list[bytes]:
        raw = served.raw()
        _log_in(raw)
        answers = [
            raw.command(b"A", b"CREATE Projects")[-1],
            raw.command(b"B", b"CREATE Trash")[-1],
            raw.command(b"C", b"DELETE Sent")[-1],
            raw.command(b"D", b"RENAME Spam Junk")[-1],
            raw.command(b"E", b"SELECT Projects")[-1],
        ]
        raw.close()
        return answers

    answers = await in_thread(run)
    assert [answer.split(b"]")[0] for answer in answers] == [
        b"A NO [CANNOT",
        b"B NO [ALREADYEXISTS",
        b"C NO [CANNOT",
        b"D NO [CANNOT",
        b"E NO [NONEXISTENT",
    ]


# --- FETCH --------------------------------------------------------------------------------------------------------


def _literal_after(response: bytes, label: bytes) -> bytes:
    """The literal that follows ``label`` in a FETCH response."""
    start = response.index(label) + len(label)
    found = re.match(rb" \{(\d+)\}\r\n", response[start:])
    assert found is not None, response[start : start + 40]
    begin = start + found.end()
    return response[begin : begin + int(found.group(1))]


@pytest_twisted.ensureDeferred
async def test_fetch_returns_every_item_byte_exact(served: Served) -> None:
    """FETCH of FLAGS, UID, INTERNALDATE, RFC822.SIZE, ENVELOPE, BODY[], BODY[HEADER], BODY[HEADER.FIELDS],
    BODY[TEXT], BODY[n.MIME], BODY[n] and a partial body: sections are slices of the stored bytes and
    RFC822.SIZE is the length of BODY[]."""

    def run() -> dict[str, bytes]:
        raw = served.raw()
        _log_in(raw)
        raw.command(b"S", b"SELECT INBOX")
        out = {
            "meta": raw.command(b"A", b"UID FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)")[0],
            "full": raw.command(b"B", b"FETCH 1 (BODY.PEEK[] RFC822.SIZE)")[0],
            "header": raw.command(b"C", b"FETCH 1 BODY.PEEK[HEADER]")[0],
            "fields": raw.command(b"D", b"FETCH 1 (BODY.PEEK[HEADER.FIELDS (Subject Message-ID)])")[0],
            "not": raw.command(b"E", b"FETCH 1 (BODY.PEEK[HEADER.FIELDS.NOT (Received Return-Path Date From To Cc)])")[
                0
            ],
            "text": raw.command(b"F", b"FETCH 1 BODY.PEEK[TEXT]")[0],
            "mime": raw.command(b"G", b"FETCH 2 BODY.PEEK[2.MIME]")[0],
            "part": raw.command(b"H", b"FETCH 2 BODY.PEEK[1.1]")[0],
            "partial": raw.command(b"I", b"FETCH 1 BODY.PEEK[]<10.25>")[0],
            "utf8": raw.command(b"J", b"FETCH 3 (ENVELOPE RFC822.SIZE BODY.PEEK[])")[0],
        }
        raw.close()
        return out

    out = await in_thread(run)
    header, _, text = PLAIN.partition(b"\r\n\r\n")
    assert out["meta"].startswith(b"* 1 FETCH (")
    assert b"UID 1" in out["meta"] and b"FLAGS ()" in out["meta"]
    assert b'INTERNALDATE "03-Mar-2025 11:06:40 +0000"' in out["meta"]
    assert b"RFC822.SIZE %d" % len(PLAIN) in out["meta"]
    assert (
        b'ENVELOPE ("Tue, 04 Mar 2025 10:15:00 +0100" "Lunch on Friday" (("Alice Example" NIL "alice" "example.com"))'
        b' (("Alice Example" NIL "alice" "example.com")) (("Alice Example" NIL "alice" "example.com"))'
        b' (("Bob" NIL "bob" "example.org")) ((NIL NIL "carol" "example.net")) NIL NIL "<lunch-1@example.com>")'
    ) in out["meta"]
    assert _literal_after(out["full"], b"BODY[]") == PLAIN
    assert b"RFC822.SIZE %d" % len(_literal_after(out["full"], b"BODY[]")) in out["full"]
    assert _literal_after(out["header"], b"BODY[HEADER]") == header + b"\r\n\r\n"
    assert _literal_after(out["fields"], b"BODY[HEADER.FIELDS (SUBJECT MESSAGE-ID)]") == (
        b"Subject: Lunch on Friday\r\nMessage-ID: <lunch-1@example.com>\r\n\r\n"
    )
    assert _literal_after(out["not"], b"BODY[HEADER.FIELDS.NOT (RECEIVED RETURN-PATH DATE FROM TO CC)]") == (
        b"Subject: Lunch on Friday\r\nMessage-ID: <lunch-1@example.com>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    assert _literal_after(out["text"], b"BODY[TEXT]") == text
    assert _literal_after(out["mime"], b"BODY[2.MIME]") == (
        b'Content-Type: application/pdf; name="q1-report.pdf"\r\n'
        b'Content-Disposition: attachment; filename="q1-report.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\nContent-Description: The report\r\n\r\n"
    )
    assert _literal_after(out["part"], b"BODY[1.1]") == b"The numbers are in the spreadsheet: revenue is up."
    assert _literal_after(out["partial"], b"BODY[]<10>") == PLAIN[10:35]
    assert _literal_after(out["utf8"], b"BODY[]") == NON_ASCII
    assert b"RFC822.SIZE %d" % len(NON_ASCII) in out["utf8"]
    assert b'"=?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?="' in out["utf8"]
    assert b'(("=?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?=" NIL "juergen" "example.de"))' in out["utf8"]
    assert served.state.flags_of(INBOX, 1) == set()  # every fetch above was a PEEK


@pytest_twisted.ensureDeferred
async def test_bodystructure_of_a_multipart_message(served: Served) -> None:
    """BODYSTRUCTURE of multipart/mixed (alternative text + html, a base64 PDF attachment) and BODY of a plain
    message, with sizes and line counts taken from the bytes."""

    def run() -> tuple[bytes, bytes]:
        raw = served.raw()
        _log_in(raw)
        raw.command(b"S", b"EXAMINE INBOX")
        structure = raw.command(b"A", b"FETCH 2 BODYSTRUCTURE")[0]
        body = raw.command(b"B", b"FETCH 1 BODY")[0]
        raw.close()
        return structure, body

    structure, body = await in_thread(run)
    plain = b"The numbers are in the spreadsheet: revenue is up.\r\n"
    html = b"<p>The numbers are in the spreadsheet: <b>revenue</b> is up.</p>\r\n"
    pdf = (
        b"JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSPj4Kc3RyZWFtCkhlbGxv\r\n"
        b"IHJlcG9ydAplbmRzdHJlYW0KZW5kb2JqCg=="
    )
    assert MULTIPART.count(pdf) == 1
    expected = (
        b'(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" %d 1 NIL NIL NIL NIL)'
        b'("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "7BIT" %d 1 NIL NIL NIL NIL) "ALTERNATIVE"'
        b' ("BOUNDARY" "inner") NIL NIL NIL)'
        b'("APPLICATION" "PDF" ("NAME" "q1-report.pdf") NIL "The report" "BASE64" %d NIL'
        b' ("ATTACHMENT" ("FILENAME" "q1-report.pdf")) NIL NIL) "MIXED" ("BOUNDARY" "==outer==") NIL NIL NIL'
    ) % (len(plain) - 2, len(html) - 2, len(pdf))
    assert structure == b"* 2 FETCH (BODYSTRUCTURE (" + expected + b"))"
    text = PLAIN.partition(b"\r\n\r\n")[2]
    assert body == b'* 1 FETCH (BODY ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" %d %d))' % (
        len(text),
        len(text.splitlines()),
    )


@pytest_twisted.ensureDeferred
async def test_fetching_a_body_sets_seen_but_peek_does_not(served: Served) -> None:
    """BODY[] and RFC822 set \\Seen (and say so in FLAGS); BODY.PEEK[] does not; in EXAMINE nothing does."""

    def run() -> tuple[bytes, bytes, bytes]:
        raw = served.raw()
        _log_in(raw)
        raw.command(b"E", b"EXAMINE INBOX")
        raw.command(b"A", b"FETCH 3 BODY[TEXT]")
        raw.command(b"S", b"SELECT INBOX")
        peek = raw.command(b"B", b"FETCH 1 BODY.PEEK[]")[0]
        seen = raw.command(b"C", b"FETCH 1 BODY[]")[0]
        rfc822 = raw.command(b"D", b"FETCH 2 RFC822")[0]
        raw.close()
        return peek, seen, rfc822

    peek, seen, rfc822 = await in_thread(run)
    assert b"FLAGS" not in peek
    assert seen.endswith(b" FLAGS (\\Seen))")
    assert _literal_after(rfc822, b"RFC822") == MULTIPART and rfc822.endswith(b" FLAGS (\\Seen))")
    assert served.state.flags_of(INBOX, 1) == {"\\Seen"}
    assert served.state.flags_of(INBOX, 2) == {"\\Seen"}
    assert served.state.flags_of(INBOX, 3) == set()


# --- STORE, SEARCH ------------------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_store_flags_round_trip(served: Served) -> None:
    """+FLAGS, -FLAGS and FLAGS reach the state and come back in FETCH; .SILENT answers without FETCH; keywords
    are kept."""

    def run() -> dict[str, Any]:
        connection = served.imap()
        connection.select(INBOX)
        out: dict[str, Any] = {"add": connection.store("1:2", "+FLAGS", "(\\Flagged $Work)")[1]}
        out["state_after_add"] = served.state.flags_of(INBOX, 2)
        out["remove"] = connection.uid("STORE", "2", "-FLAGS", "(\\Flagged)")[1]
        out["silent"] = connection.store("3", "FLAGS.SILENT", "(\\Answered \\Seen)")[1]
        out["fetch"] = connection.fetch("1:3", "(FLAGS)")[1]
        connection.logout()
        return out

    out = await in_thread(run)
    assert out["add"] == [b"1 (FLAGS (\\Flagged $Work))", b"2 (FLAGS (\\Flagged $Work))"]
    assert out["state_after_add"] == {"\\Flagged", "$Work"}
    assert out["remove"] == [b"2 (FLAGS ($Work) UID 2)"]
    assert out["silent"] == [None]
    assert out["fetch"] == [
        b"1 (FLAGS (\\Flagged $Work))",
        b"2 (FLAGS ($Work))",
        b"3 (FLAGS (\\Answered \\Seen))",
    ]
    assert served.state.flags_of(INBOX, 3) == {"\\Answered", "\\Seen"}


@pytest_twisted.ensureDeferred
async def test_search_over_headers_text_flags_and_uids(served: Served) -> None:
    """SEARCH FROM, SUBJECT (RFC 2047 decoded, sent as a UTF-8 literal), TEXT, BODY (quoted-printable decoded),
    UNSEEN, OR/NOT, sequence sets and UID ranges, as sequence numbers and as UIDs."""

    def run() -> dict[str, Any]:
        connection = served.imap()
        connection.select(INBOX)
        connection.store("2", "+FLAGS", "(\\Seen)")
        out: dict[str, Any] = {
            "from": connection.search(None, "FROM", "alice")[1],
            "text": connection.search(None, "TEXT", "revenue")[1],
            "header_text": connection.search(None, "TEXT", "noodle")[1],
            "body": connection.search(None, "BODY", '"bis bald"')[1],
            "unseen": connection.search(None, "UNSEEN")[1],
            "or_not": connection.search(None, "OR", "FROM", "dave", "NOT", "SUBJECT", "lunch")[1],
            "uid_range": connection.uid("SEARCH", "UID", "2:*")[1],
            "sequence": connection.search(None, "2:3", "UNSEEN")[1],
            "none": connection.search(None, "SUBJECT", "nothing-like-this")[1],
            "larger": connection.search(None, "LARGER", str(len(PLAIN)))[1],
        }
        connection.literal = "Grüße".encode()  # type: ignore[assignment]  # imaplib sends bytes as they are
        out["utf8"] = connection.search("UTF-8", "SUBJECT")[1]
        connection.literal = "Café".encode()  # type: ignore[assignment]
        out["utf8_body"] = connection.uid("SEARCH", "CHARSET", "UTF-8", "BODY")[1]
        connection.logout()
        return out

    out = await in_thread(run)
    assert out["from"] == [b"1"]
    assert out["text"] == [b"2"]
    assert out["header_text"] == [b"1"]
    assert out["body"] == [b"3"]
    assert out["unseen"] == [b"1 3"]
    assert out["or_not"] == [b"2 3"]
    assert out["uid_range"] == [b"2 3"]
    assert out["sequence"] == [b"3"]
    assert out["none"] == [b""]
    assert out["larger"] == [b" ".join(b"%d" % n for n, m in enumerate(EXAMPLES, 1) if len(m) > len(PLAIN))]
    assert out["utf8"] == [b"3"]
    assert out["utf8_body"] == [b"3"]


# --- MOVE, COPY, APPEND, EXPUNGE ----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_uid_move_answers_copyuid_and_expunge(served: Served) -> None:
    """UID MOVE sends OK [COPYUID] with Trash's UIDVALIDITY and new UIDs, then EXPUNGE; the state moved it."""

    def run() -> list[bytes]:
        raw = served.raw()
        _log_in(raw)
        raw.command(b"S", b"SELECT INBOX")
        answer = raw.command(b"A", b"UID MOVE 1:2 Trash")
        raw.close()
        return answer

    answer = await in_thread(run)
    assert answer == [
        b"* OK [COPYUID 1005 1:2 1:2] Moved",
        b"* 2 EXPUNGE",
        b"* 1 EXPUNGE",
        b"A OK MOVE completed",
    ]
    assert served.state.uids(INBOX) == [3]
    assert served.state.uids(TRASH) == [1, 2]
    assert served.state.body_of(TRASH, 1) == PLAIN


@pytest_twisted.ensureDeferred
async def test_copy_files_into_trash_and_a_later_expunge_keeps_it(served: Served) -> None:
    """COPY to Trash moves (OK [COPYUID]); the client's STORE \\Deleted + EXPUNGE afterwards deletes nothing;
    COPY to Sent is NO [CANNOT]."""

    def run() -> dict[str, Any]:
        raw = served.raw()
        _log_in(raw)
        raw.command(b"S", b"SELECT INBOX")
        out: dict[str, Any] = {"copy": raw.command(b"A", b"UID COPY 2 Trash")}
        raw.command(b"B", b"UID STORE 2 +FLAGS.SILENT (\\Deleted)")
        out["expunge"] = raw.command(b"C", b"EXPUNGE")
        out["refused"] = raw.command(b"D", b"UID COPY 1 Sent")
        raw.close()
        return out

    out = await in_thread(run)
    assert out["copy"] == [b"A OK [COPYUID 1005 2 1] COPY completed"]
    # The copy left INBOX (a message lives in one mailbox): EXPUNGE tells the client so and deletes nothing.
    assert out["expunge"] == [b"* 2 EXPUNGE", b"C OK EXPUNGE completed"]
    assert out["refused"][-1].startswith(b"D NO [CANNOT] ")
    assert served.state.uids(TRASH) == [1]
    assert served.state.body_of(TRASH, 1) == MULTIPART
    assert served.state.uids(INBOX) == [1, 3]


@pytest_twisted.ensureDeferred
async def test_append_answers_appenduid(served: Served) -> None:
    """APPEND with flags and a date-time stores the bytes in the state and answers OK [APPENDUID]; into the
    selected mailbox it announces EXISTS."""
    draft = b"From: alice@example.com\r\nSubject: draft\r\n\r\nNot finished yet.\r\n"

    def run() -> tuple[Any, Any, list[bytes]]:
        connection = served.imap()
        appended = connection.append(DRAFTS, "(\\Draft \\Seen)", '"05-Mar-2025 12:00:00 +0100"', draft)
        missing = connection.append("Nowhere", None, None, draft)
        raw = served.raw()
        _log_in(raw)
        raw.command(b"S", b"SELECT INBOX")
        raw.send(b"A APPEND INBOX {%d}\r\n" % len(draft))
        assert raw.response().startswith(b"+ ")
        raw.send(draft + b"\r\n")
        into_selected = raw.until(b"A")
        raw.close()
        connection.logout()
        return appended, missing, into_selected

    appended, missing, into_selected = await in_thread(run)
    assert appended == ("OK", [b"[APPENDUID 1002 1] APPEND completed"])
    assert missing[0] == "NO" and b"[TRYCREATE]" in missing[1][0]
    assert served.state.body_of(DRAFTS, 1) == draft
    assert served.state.flags_of(DRAFTS, 1) == {"\\Draft", "\\Seen"}
    assert into_selected == [b"* 4 EXISTS", b"A OK [APPENDUID 1000 4] APPEND completed"]


@pytest_twisted.ensureDeferred
async def test_uid_expunge_removes_only_the_named_messages(served: Served) -> None:
    """With 1 and 2 flagged \\Deleted, UID EXPUNGE 2 removes only 2; CLOSE then expunges 1 silently."""

    def run() -> tuple[list[bytes], list[bytes]]:
        raw = served.raw()
        _log_in(raw)
        raw.command(b"S", b"SELECT INBOX")
        raw.command(b"A", b"STORE 1:2 +FLAGS.SILENT (\\Deleted)")
        expunged = raw.command(b"B", b"UID EXPUNGE 2")
        closed = raw.command(b"C", b"CLOSE")
        raw.close()
        return expunged, closed

    expunged, closed = await in_thread(run)
    assert expunged == [b"* 2 EXPUNGE", b"B OK EXPUNGE completed"]
    assert closed == [b"C OK CLOSE completed"]
    assert served.state.uids(INBOX) == [3]


# --- IDLE and changes from elsewhere ------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_idle_announces_new_mail_within_the_poll_interval(served: Served) -> None:
    """During IDLE a message delivered to the state is announced with EXISTS within the poll interval, a flag
    changed elsewhere with FETCH FLAGS; DONE ends IDLE with OK."""

    def run() -> tuple[bytes, float, bytes, list[bytes]]:
        raw = served.raw()
        _log_in(raw)
        raw.command(b"S", b"SELECT INBOX")
        raw.send(b"I IDLE\r\n")
        continuation = raw.response()
        started = time.monotonic()
        served.state.deliver(INBOX, PLAIN.replace(b"Lunch", b"Dinner"))
        exists = raw.response()
        waited = time.monotonic() - started
        served.state.set_flags(INBOX, [1], ["\\Flagged"], "add")
        flagged = raw.response()
        raw.send(b"DONE\r\n")
        done = raw.until(b"I")
        raw.close()
        return continuation, waited, exists + b"|" + flagged, done

    continuation, waited, news, done = await in_thread(run)
    assert continuation.startswith(b"+ ")
    assert news == b"* 4 EXISTS|* 1 FETCH (UID 1 FLAGS (\\Flagged))"
    assert waited < POLL * 10
    assert done == [b"I OK IDLE terminated"]


@pytest_twisted.ensureDeferred
async def test_noop_announces_messages_expunged_elsewhere(served: Served) -> None:
    """A message removed by another client shows as EXPUNGE at NOOP, never during FETCH."""

    def run() -> tuple[list[bytes], list[bytes]]:
        raw = served.raw()
        _log_in(raw)
        raw.command(b"S", b"SELECT INBOX")
        served.state.move(INBOX, [2], TRASH)
        during_fetch = raw.command(b"A", b"FETCH 1:3 (UID)")
        at_noop = raw.command(b"B", b"NOOP")
        raw.close()
        return during_fetch, at_noop

    during_fetch, at_noop = await in_thread(run)
    assert during_fetch == [
        b"* 1 FETCH (UID 1)",
        b"* 2 FETCH (UID 2)",
        b"* 3 FETCH (UID 3)",
        b"A OK FETCH completed",
    ]
    assert at_noop == [b"* 2 EXPUNGE", b"B OK NOOP completed"]


# --- TLS ----------------------------------------------------------------------------------------------------------


@pytest.fixture
def tls_served(tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    """A STARTTLS listener and an implicit-TLS one over one state, with a certificate from a test CA."""
    issued = issue_test_certificate(tmp_path / "certs", ["localhost"])
    context = twisted_ssl.DefaultOpenSSLContextFactory(str(issued.key_path), str(issued.cert_path))
    state = FakeMailState()
    plain = _listen(imap_factory(state, USER, PASSWORD.encode(), tls=context, implicit_tls=False, reactor=reactor))
    implicit = _listen(imap_factory(state, USER, PASSWORD.encode(), tls=context, implicit_tls=True, reactor=reactor))
    try:
        yield plain.getHost().port, implicit.getHost().port, issued.ca_cert_path
    finally:
        pytest_twisted.blockon(plain.stopListening())
        pytest_twisted.blockon(implicit.stopListening())


@pytest_twisted.ensureDeferred
async def test_starttls_and_implicit_tls(tls_served: tuple[int, int, Path]) -> None:
    """STARTTLS is offered, upgrades with the test certificate and is then no longer offered; the implicit-TLS
    port speaks TLS from the first byte and does not offer it; LOGIN works on both."""
    plain_port, implicit_port, ca = tls_served

    def run() -> dict[str, Any]:
        context = ssl.create_default_context(cafile=str(ca))
        connection = imaplib.IMAP4("localhost", plain_port, timeout=10)
        out: dict[str, Any] = {"before": set(connection.capabilities)}
        out["starttls"] = connection.starttls(context)[0]
        out["cipher"] = connection.sock.version()  # type: ignore[attr-defined]
        out["after"] = set(connection.capability()[1][0].decode().split())
        out["login"] = connection.login(USER, PASSWORD)[0]
        out["select"] = connection.select(INBOX)[1]
        connection.logout()
        implicit = imaplib.IMAP4_SSL("localhost", implicit_port, ssl_context=context, timeout=10)
        out["implicit"] = set(implicit.capabilities)
        out["implicit_login"] = implicit.login(USER, PASSWORD)[0]
        implicit.logout()
        return out

    out = await in_thread(run)
    assert "STARTTLS" in out["before"] and "LOGINDISABLED" not in out["before"]
    assert out["starttls"] == "OK" and out["cipher"].startswith("TLSv1.")
    assert "STARTTLS" not in out["after"]
    assert (out["login"], out["select"]) == ("OK", [b"3"])
    assert "STARTTLS" not in out["implicit"] and "IMAP4REV1" in out["implicit"]
    assert out["implicit_login"] == "OK"


# --- hostile input and errors -------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_hostile_input_gets_bad_or_no_and_the_server_goes_on(served: Served) -> None:
    """Malformed and huge literals, bad modified UTF-7, unknown commands, commands before login, bad FETCH and
    sequence sets, garbage bytes: each gets a tagged BAD or NO (no continuation for a refused literal), and the
    connection keeps working."""

    def run() -> dict[str, Any]:
        raw = served.raw()
        out: dict[str, Any] = {
            "before_login": raw.command(b"a1", b"SELECT INBOX")[-1],
            "unknown": raw.command(b"a2", b"FROBNICATE now")[-1],
            "malformed_literal": raw.command(b"a3", b"LOGIN {abc}")[-1],
            "huge_literal": raw.command(b"a4", b"LOGIN {999999999999}")[-1],
            "garbage": raw.command(b"a5", b"\x00\xff\xfe LOGIN")[-1],
        }
        _log_in(raw)
        out["huge_append"] = raw.command(b"b1", b"APPEND INBOX {999999999999}")
        out["bad_utf7"] = [
            raw.command(b"b2", b"SELECT &Jjo")[-1],
            raw.command(b"b3", b'SELECT "&AOk"')[-1],
            raw.command(b"b4", b"SELECT \xc3\xa9")[-1],
            raw.command(b"b5", b"STATUS &ZeVnLIqe- (MESSAGES)")[-1],
        ]
        raw.command(b"s", b"SELECT INBOX")
        out["bad_fetch"] = raw.command(b"c1", b"FETCH 1 (FLAGS BODY[NONSENSE])")[-1]
        out["bad_set"] = raw.command(b"c2", b"FETCH 0:x FLAGS")[-1]
        out["beyond"] = raw.command(b"c3", b"FETCH 99 FLAGS")[-1]
        out["bad_search"] = raw.command(b"c4", b"SEARCH FROM")[-1]
        out["bad_charset"] = raw.command(b"c5", b"SEARCH CHARSET KOI8-R TEXT x")[-1]
        out["bad_flag"] = raw.command(b"c6", b"STORE 1 +FLAGS (\\Bogus)")[-1]
        out["bad_store_mode"] = raw.command(b"c7", b"STORE 1 REPLACE (\\Seen)")[-1]
        raw.send(b"c8 IDLE\r\n")
        out["idle_not_done"] = raw.response()
        raw.send(b"STOP\r\n")
        out["idle_end"] = raw.until(b"c8")[-1]
        out["still_works"] = raw.command(b"c9", b"UID FETCH 1 (UID)")
        raw.close()
        return out

    out = await in_thread(run)
    assert out["before_login"] == b"a1 BAD Log in first"
    assert out["unknown"] == b"a2 BAD Unknown command"
    assert out["malformed_literal"].startswith(b"a3 BAD")
    assert out["huge_literal"] == b"a4 BAD literal too long"
    assert out["garbage"] == b"* BAD Invalid tag" or out["garbage"].startswith(b"a5 BAD")
    assert out["huge_append"] == [b"b1 NO [TOOBIG] Messages are limited to 67108864 octets"]
    assert [answer[:6] for answer in out["bad_utf7"][:3]] == [b"b2 BAD", b"b3 BAD", b"b4 BAD"]
    assert out["bad_utf7"][3] == b"b5 NO [NONEXISTENT] No such mailbox"  # valid UTF-7, just not a mailbox
    for key in ("bad_fetch", "bad_set", "beyond", "bad_search", "bad_flag", "bad_store_mode"):
        assert out[key].split(b" ")[1] == b"BAD", (key, out[key])
    assert out["bad_charset"].startswith(b"c5 NO [BADCHARSET")
    assert out["idle_not_done"].startswith(b"+ ")
    assert out["idle_end"] == b"c8 BAD IDLE ends with DONE"
    assert out["still_works"] == [b"* 1 FETCH (UID 1)", b"c9 OK FETCH completed"]


@pytest_twisted.ensureDeferred
async def test_garbage_tag_and_closing_inputs(served: Served) -> None:
    """A line of garbage gets an untagged BAD; an overlong line (over 64 KiB) and a non-synchronizing literal
    get BYE and the connection is closed; a new connection is served as before."""

    def run() -> dict[str, Any]:
        raw = served.raw()
        out: dict[str, Any] = {"garbage": raw.command(b"x", b"")[-1:]}
        raw.send(b"\x00\xff garbage\r\n")
        out["untagged"] = raw.response()
        raw.send(b"a " + b"A" * (70 * 1024) + b"\r\n")
        out["overlong"] = raw.response()
        out["overlong_closed"] = raw.closed()
        raw.close()
        other = served.raw()
        other.send(b"b LOGIN {5+}\r\nalice\r\n")
        out["nonsync"] = [other.response(), other.response()]
        out["nonsync_closed"] = other.closed()
        other.close()
        fresh = served.imap()
        out["fresh"] = fresh.select(INBOX)
        fresh.logout()
        return out

    out = await in_thread(run)
    assert out["garbage"] == [b"x BAD Missing command"]
    assert out["untagged"] == b"* BAD Invalid tag"
    assert out["overlong"].startswith(b"* BYE Line too long")
    assert out["overlong_closed"]
    assert out["nonsync"][0] == b"b BAD Non-synchronizing literals are not supported"
    assert out["nonsync"][1].startswith(b"* BYE")
    assert out["nonsync_closed"]
    assert out["fresh"] == ("OK", [b"3"])


@pytest_twisted.ensureDeferred
async def test_errors_from_the_state_become_no(served: Served) -> None:
    """A BridgeError is answered NO with its message; any other failure NO [UNAVAILABLE] without details; the
    connection goes on."""

    def run() -> list[bytes]:
        raw = served.raw()
        _log_in(raw)
        raw.command(b"S", b"SELECT INBOX")
        served.state.fail_with(BridgeError("the store refused the change"))
        refused = raw.command(b"A", b"STORE 1 +FLAGS (\\Seen)")[-1]
        served.state.fail_with(RuntimeError("secret details: bob@example.org"))
        broken = raw.command(b"B", b"FETCH 1 BODY[]")[-1]
        after = raw.command(b"C", b"FETCH 1 (UID FLAGS)")[-1]
        raw.close()
        return [refused, broken, after]

    refused, broken, after = await in_thread(run)
    assert refused == b"A NO the store refused the change"
    assert broken == b"B NO [UNAVAILABLE] the appliance did not answer"
    assert after == b"C OK FETCH completed"


@pytest_twisted.ensureDeferred
async def test_pipelined_commands_are_answered_in_order(served: Served) -> None:
    """Commands sent in one write, some waiting on the state, are answered one after another in order."""

    def run() -> list[bytes]:
        raw = served.raw()
        raw.send(
            b"a LOGIN alice " + PASSWORD.encode() + b"\r\nb SELECT INBOX\r\nc UID STORE 1 +FLAGS (\\Seen)\r\n"
            b"d UID FETCH 1 (FLAGS)\r\ne NOOP\r\n"
        )
        responses = raw.until(b"e")
        raw.close()
        return [line for line in responses if not line.startswith(b"* ") or b"FETCH" in line]

    responses = await in_thread(run)
    assert [line.split(b" ")[0] for line in responses if not line.startswith(b"*")] == [b"a", b"b", b"c", b"d", b"e"]
    assert b"* 1 FETCH (FLAGS (\\Seen) UID 1)" in responses
    fetch_answer = responses.index(b"* 1 FETCH (UID 1 FLAGS (\\Seen))")
    assert responses[fetch_answer + 1].startswith(b"d OK")


def test_message_from_the_fixtures_parses() -> None:
    """The fixture messages are what the tests say: a plain one, a multipart with an attachment, a non-ASCII one."""
    assert email.message_from_bytes(PLAIN).get_content_type() == "text/plain"
    multipart = email.message_from_bytes(MULTIPART)
    assert [part.get_content_type() for part in multipart.walk()] == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "application/pdf",
    ]
    assert str(
        email.header.make_header(email.header.decode_header(email.message_from_bytes(NON_ASCII)["subject"]))
    ) == ("Grüße aus Köln")


@pytest_twisted.ensureDeferred
async def test_after_starttls_pipelined_commands_all_answered_and_plaintext_ones_dropped(
    tls_served: tuple[int, int, Path],
) -> None:
    """A command sent in plaintext together with STARTTLS is discarded, not run over TLS (CVE-2011-0411); after
    the upgrade, FETCHes pipelined in one write (as mbsync does) are all answered, in order."""
    plain_port, _, ca = tls_served

    def run() -> tuple[list[bytes], list[bytes], list[bytes]]:
        raw = RawClient(plain_port)
        raw.send(b"a STARTTLS\r\nb LOGIN alice " + PASSWORD.encode() + b"\r\n")
        started = [raw.response()]
        raw.start_tls(ssl.create_default_context(cafile=str(ca)))
        injected = raw.command(b"c", b"SELECT INBOX")
        _log_in(raw)
        raw.command(b"s", b"SELECT INBOX")
        raw.send(b"d UID FETCH 1 (BODY.PEEK[])\r\ne UID FETCH 2 (BODY.PEEK[])\r\nf UID FETCH 3 (BODY.PEEK[])\r\n")
        fetched = raw.until(b"f")
        raw.close()
        return started, injected, fetched

    started, injected, fetched = await in_thread(run)
    assert started == [b"a OK Begin TLS negotiation now"]
    assert injected == [b"c BAD Log in first"]  # the plaintext LOGIN never ran
    assert [line.split(b" ")[0] for line in fetched if not line.startswith(b"*")] == [b"d", b"e", b"f"]
    assert [_literal_after(line, b"BODY[]") for line in fetched if line.startswith(b"*")] == [
        PLAIN,
        MULTIPART,
        NON_ASCII,
    ]


@pytest_twisted.ensureDeferred
async def test_a_slow_select_sends_keep_alive_lines(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first view of a large mailbox may take long (every message decrypted once): while SELECT waits, an
    untagged OK arrives every KEEPALIVE_S, so a mail app's inactivity timeout does not end the session."""
    from mailiverse.client.bridge import imap as imap_module

    monkeypatch.setattr(imap_module, "KEEPALIVE_S", 0.2)
    original = served.state.view

    def slow_view(mailbox: str, *, refresh: bool = False) -> Any:
        time.sleep(1.0)
        return original(mailbox, refresh=refresh)

    monkeypatch.setattr(served.state, "view", slow_view)

    def run() -> list[bytes]:
        raw = served.raw()
        _log_in(raw)
        answer = raw.command(b"A", b"SELECT INBOX")
        raw.close()
        return answer

    answer = await in_thread(run)
    assert answer[-1].startswith(b"A OK")
    assert answer.count(b"* OK still working") >= 3, answer
    assert all(line.startswith(b"* ") for line in answer[:-1])
