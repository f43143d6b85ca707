"""The bridge's IMAP server: IMAP4rev1 (Twisted's ``IMAP4Server``) with IDLE, UIDPLUS, MOVE, SPECIAL-USE and
UNSELECT, over one ``IMailState`` on 127.0.0.1.

One piece, past the usual size, because every command shares the connection's state: the selected mailbox as the
client was last told it (sequence numbers, flags), the queue of pipelined commands, and the IDLE poll. Message
rendering lives in ``imap_fetch.py`` and ``imap_message.py``, SEARCH in ``imap_search.py``, the syntax in
``imap_syntax.py``.

What is taken from Twisted: the line and literal framing, the greeting, CAPABILITY, LOGOUT, the connection timeout and
the FETCH attribute parser. What is replaced, and why:

- commands run one at a time per connection (pipelined lines wait), because each may wait on the appliance and a
  FETCH must not see sequence numbers move under it; Twisted serialises only FETCH;
- every error becomes ``BAD``/``NO`` with a fixed text: Twisted sends ``str(exception)`` to the client;
- argument parsing (quoted strings with escapes, literals anywhere, literal size limits, no ``{n+}``), because
  Twisted's reads past a literal wrongly, writes large literals to a temporary file (plaintext on disk) and takes
  any size;
- the mailbox commands, FETCH, SEARCH, STORE, COPY, EXPUNGE work on a snapshot (``_Selected``) refreshed from the
  state with ``deferToThread``: Twisted's ``IMailbox`` is synchronous, the state blocks;
- IDLE: Twisted only answers ``+`` and waits for DONE; here it polls ``view(refresh=True)``;
- LOGIN/AUTHENTICATE PLAIN against the run's local password (``localauth.LocalLogin``), throttled.

STARTTLS is offered when a TLS context is given; LOGINDISABLED never is: the port listens on 127.0.0.1 only, and
mbsync, offlineimap and Thunderbird configured without TLS must still log in (they refuse or fail outright when a
server announces LOGINDISABLED). With ``implicit_tls`` this module wraps the factory in TLS itself.
"""

from __future__ import annotations

import binascii
import inspect
import re
import weakref
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar, ParamSpec, TypeVar

from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import IProtocolFactory, ITLSTransport
from twisted.internet.protocol import ServerFactory, connectionDone
from twisted.internet.task import LoopingCall, deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.mail import imap4
from twisted.mail.imap4 import IllegalClientResponse, IllegalMailboxEncoding, LiteralString
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from mailiverse.client.bridge import imap_syntax as syntax
from mailiverse.client.bridge.imap_fetch import CONTENT_ITEMS, Loaded, fetch_response, sets_seen, text_of
from mailiverse.client.bridge.imap_search import (
    CHARSETS,
    Candidate,
    Key,
    SearchSyntaxError,
    SequenceSet,
    Token,
    matches,
    needs_content,
    parse_keys,
    tokenize,
)
from mailiverse.client.bridge.localauth import LocalLogin, Throttle
from mailiverse.client.bridge.model import (
    INBOX,
    SPAM,
    SPECIAL_USE,
    SYSTEM_FLAGS,
    TRASH,
    BridgeError,
    IMailState,
    MailboxView,
    MessageRef,
)
from mailiverse.client.errors import ClientError
from mailiverse.logs import Logger

log = Logger()
P = ParamSpec("P")
T = TypeVar("T")

#: Longest command line (without literals).
LINE_LIMIT = 64 * 1024
#: Largest APPEND literal; larger gets ``NO [TOOBIG]`` before a byte of it is read.
MESSAGE_LIMIT = 64 * 1024 * 1024
#: Largest literal for any other argument (a password, a mailbox name, a search string).
STRING_LIMIT = 64 * 1024
#: Seconds between two looks at the mailbox while a client IDLEs.
DEFAULT_POLL_INTERVAL = 5.0
#: While a command waits longer than this for the state (the first view of a large mailbox decrypts every message
#: once to learn its exact size), an untagged ``OK`` is sent every as many seconds, so the mail app's inactivity
#: timeout (mbsync's is 20 s) does not end the session.
KEEPALIVE_S = 5.0
#: Failed logins after which one connection is closed.
FAILURES_PER_CONNECTION = 3
#: COPY is a move in this store (a message lives in one mailbox), so it is offered only where a mail app copies
#: to mean "file it away": the trash, spam, back to the inbox.
COPY_TARGETS = (TRASH, SPAM, INBOX)
#: Decrypted messages a connection keeps for its next command (clients fetch a message's parts one by one).
CACHED_MESSAGES = 8
CACHED_BYTES = 96 * 1024 * 1024

PERMANENT_FLAGS = syntax.flags_wire(SYSTEM_FLAGS)[:-1] + b" \\*)"
_UNAVAILABLE = b"[UNAVAILABLE] the appliance did not answer"
_LOGIN_REFUSED = b"[UNAVAILABLE] the appliance refused the bridge's new login; restart the bridge"


class _Refusal(Exception):
    """A command refused with ``NO`` and this (fixed, content-free) text."""

    def __init__(self, text: bytes) -> None:
        super().__init__(text.decode("ascii", "replace"))
        self.text = text


class StateCaller:
    """One ``IMailState`` reached from the reactor: each call runs in the reactor's thread pool, one at a time, in
    the order asked (all connections of all listeners over the same state share one caller)."""

    def __init__(self, state: IMailState, reactor: Any) -> None:
        self.state = state
        self._reactor = reactor
        self._lock = DeferredLock()
        self._mailboxes: tuple[str, ...] | None = None

    async def call(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        await self._lock.acquire()
        try:
            pool = self._reactor.getThreadPool()
            return await deferToThreadPool(self._reactor, pool, function, *args, **kwargs)
        finally:
            self._lock.release()

    async def mailboxes(self) -> tuple[str, ...]:
        """The mailbox names (fixed for a run: asked once)."""
        if self._mailboxes is None:
            self._mailboxes = tuple(await self.call(self.state.mailboxes))
        return self._mailboxes


_callers: weakref.WeakValueDictionary[int, StateCaller] = weakref.WeakValueDictionary()


def state_caller(state: IMailState, reactor: Any) -> StateCaller:
    """The one caller of ``state`` (a caller keeps its state alive, so the ``id`` cannot be reused meanwhile)."""
    caller = _callers.get(id(state))
    if caller is None or caller.state is not state:
        caller = StateCaller(state, reactor)
        _callers[id(state)] = caller
    return caller


@dataclass
class _Selected:
    """The selected mailbox as this client was last told it: position in ``messages`` + 1 is the sequence number.
    A message gone from the store stays here until the client may be told (RFC 3501 §7.4.1: no EXPUNGE during
    FETCH, STORE or SEARCH)."""

    name: str
    readonly: bool
    uidvalidity: int
    uidnext: int
    messages: list[MessageRef] = field(default_factory=list)


class BridgeIMAPServer(imap4.IMAP4Server):
    """One client connection. Command tables (``<state>_<COMMAND>``) name the handler and its argument parsers,
    as Twisted's do; handlers that wait are coroutines run one at a time."""

    IDENT = b"mailiverse bridge ready"
    MAX_LENGTH = LINE_LIMIT
    blocked: list[bytes] | None = None  # type: ignore[assignment]
    _pendingLiteral: Any = None
    factory: BridgeIMAPFactory

    def __init__(self, factory: BridgeIMAPFactory) -> None:
        super().__init__(chal={}, contextFactory=factory.tls)
        self.factory = factory
        self.callLater = factory.reactor.callLater  # type: ignore[method-assign]
        self._selected: _Selected | None = None
        self._failures = 0
        self._drop_pipelined = False
        self._idle_tag: bytes | None = None
        self._idle_loop: LoopingCall | None = None
        self._idle_poll: Deferred[None] | None = None
        self._cache: OrderedDict[str, Loaded] = OrderedDict()
        self._size_mismatch_logged = False
        self._sasl: Deferred[bytes] | None = None

    # --- framing and dispatch ------------------------------------------------------------------------------------

    def lineReceived(self, line: bytes) -> None:
        if self.blocked is not None and self.parseState == "command":
            self.blocked.append(line)
            return
        self.resetTimeout()
        self._drop_pipelined = False
        try:
            getattr(self, "parse_" + self.parseState)(line)
        except Exception as error:  # noqa: BLE001 - whatever went wrong, the client gets BAD and no traceback
            log.warn("bridge IMAP: a line failed ({error_type})", error_type=type(error).__name__)
            self.parseState = "command"
            self.sendBadResponse(None, b"Server error")

    def lineLengthExceeded(self, line: bytes) -> None:
        self.sendLine(b"* BYE Line too long (the limit is %d octets)" % LINE_LIMIT)
        self._connection().loseConnection()

    def _unblock(self) -> None:
        commands, self.blocked = self.blocked, None
        while commands and self.blocked is None:
            self.lineReceived(commands.pop(0))
            if self._drop_pipelined:
                # That line was STARTTLS: lines sent with it in plaintext must not be read as if they came over
                # TLS (CVE-2011-0411).
                commands.clear()
                self._drop_pipelined = False
        if self.blocked is not None and commands:
            self.blocked.extend(commands)

    def parse_command(self, line: bytes) -> None:
        parts = line.split(None, 2)
        if not parts:
            self.sendBadResponse(None, b"Empty command line")
            return
        tag = parts[0]
        if not syntax.valid_tag(tag):
            self.sendBadResponse(None, b"Invalid tag")
            return
        if len(parts) < 2:
            self.sendBadResponse(tag, b"Missing command")
            return
        self.dispatchCommand(tag, parts[1].upper(), parts[2] if len(parts) == 3 else b"")

    def lookupCommand(self, cmd: bytes) -> Any:
        return self.COMMANDS.get((self.state, cmd.upper()))

    def dispatchCommand(self, tag: bytes, cmd: bytes, rest: bytes, uid: bool | None = None) -> None:
        entry = self.lookupCommand(cmd)
        if entry is None:
            valid_in = {state for state, name in self.COMMANDS if name == cmd}
            if self.state == "unauth" and valid_in:
                self.sendBadResponse(tag, b"Log in first")
            elif self.state == "auth" and "select" in valid_in:
                self.sendBadResponse(tag, b"Select a mailbox first")
            elif valid_in:
                self.sendBadResponse(tag, b"Already logged in")
            else:
                self.sendBadResponse(tag, b"Unknown command")
            return
        Deferred.fromCoroutine(self._dispatch(tag, entry, rest, uid))

    async def _dispatch(self, tag: bytes, entry: tuple[Any, ...], rest: bytes, uid: bool | None) -> None:
        handler, parsers = entry[0], entry[1:]
        args: list[Any] = []
        try:
            for parser in parsers:
                if not callable(parser):
                    args.append(parser)
                    continue
                parsed = parser(self, rest)
                if inspect.isawaitable(parsed):
                    parsed = await parsed
                value, rest = parsed
                args.append(value)
            if rest.strip():
                raise IllegalClientResponse("too many arguments")
            outcome = handler(self, tag, *args, **({} if uid is None else {"uid": uid}))
        except Exception as error:  # noqa: BLE001 - mapped to a response in _answer_error
            self._answer_error(tag, error)
            return
        if inspect.iscoroutine(outcome):
            await self._serialized(tag, outcome)

    async def _serialized(self, tag: bytes, work: Coroutine[Any, Any, None]) -> None:
        """Run a command that waits; lines that arrive meanwhile wait for it."""
        if self.blocked is None:
            self.blocked = []
        try:
            await work
        except Exception as error:  # noqa: BLE001 - mapped to a response in _answer_error
            self._answer_error(tag, error)
        finally:
            self._unblock()

    def _answer_error(self, tag: bytes, error: Exception) -> None:
        if isinstance(error, syntax.NonSynchronizingLiteral):
            self.sendBadResponse(tag, b"Non-synchronizing literals are not supported")
            self._bye(b"Cannot read on after a non-synchronizing literal")
        elif isinstance(error, _Refusal):
            self.sendNegativeResponse(tag, error.text)
        elif isinstance(error, BridgeError):
            self.sendNegativeResponse(tag, syntax.response_text(str(error)))
        elif isinstance(error, IllegalMailboxEncoding):
            self.sendBadResponse(tag, b"Mailbox name is not modified UTF-7")
        elif isinstance(error, (IllegalClientResponse, SearchSyntaxError)):
            self.sendBadResponse(tag, syntax.response_text(str(error)))
        elif isinstance(error, ClientError) and error.code == "login_refused":
            self.sendNegativeResponse(tag, _LOGIN_REFUSED)
        else:
            log.warn("bridge IMAP: a command failed ({error_type})", error_type=type(error).__name__)
            self.sendNegativeResponse(tag, _UNAVAILABLE)

    def _connection(self) -> Any:
        assert self.transport is not None
        return self.transport

    def _write(self, data: bytes) -> None:
        self._connection().write(data)

    def _bye(self, text: bytes) -> None:
        self.sendUntaggedResponse(b"BYE " + text)
        self._connection().loseConnection()

    def sendContinuationRequest(self, msg: bytes | None = b"Ready for additional command text") -> None:
        self.sendLine(b"+ " + (msg or b""))

    def listCapabilities(self) -> list[bytes]:
        caps = [b"IMAP4rev1"]
        if self.state == "unauth":
            if self._can_start_tls():
                caps.append(b"STARTTLS")
            caps.append(b"AUTH=PLAIN")
        return caps + [b"IDLE", b"UIDPLUS", b"MOVE", b"SPECIAL-USE", b"UNSELECT", b"NAMESPACE"]

    def _can_start_tls(self) -> bool:
        return (
            self.factory.tls is not None
            and not self.factory.implicit_tls
            and not self.startedTLS
            and ITLSTransport(self.transport, None) is not None
        )

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stop_idle_loop()
        self._cache.clear()
        self._selected = None
        super().connectionLost(reason)

    # --- argument parsers (called as parser(self, line) -> (value, rest), possibly awaited) ---------------------

    def _read_literal(self, size: int) -> Deferred[tuple[bytes, bytes]]:
        """Ask for a literal of ``size`` octets; fires with it and the rest of the line after it (in memory)."""
        reading: Deferred[tuple[bytes, bytes]] = Deferred()
        self.parseState = "pending"
        self._pendingLiteral = LiteralString(size, reading)
        self.sendContinuationRequest(b"Ready for %d octets" % size)
        self.setRawMode()
        return reading

    async def _arg_astring(self, line: bytes, *, wildcards: bool = False) -> tuple[bytes, bytes]:
        line = line.lstrip(b" ")
        if not line:
            raise IllegalClientResponse("missing argument")
        if line[:1] == b'"':
            return syntax.quoted(line)
        if line[:1] == b"{":
            size = syntax.literal_size(line)
            if size is None:
                raise IllegalClientResponse("malformed literal")
            if size > STRING_LIMIT:
                raise IllegalClientResponse("literal too long")
            return await self._read_literal(size)
        return syntax.atom(line, astring=True, wildcards=wildcards)

    async def _arg_mailbox(self, line: bytes) -> tuple[str, bytes]:
        raw, rest = await self._arg_astring(line)
        return syntax.decode_mailbox(raw), rest

    def _arg_atom(self, line: bytes) -> tuple[bytes, bytes]:
        line = line.lstrip(b" ")
        if not line:
            raise IllegalClientResponse("missing argument")
        return syntax.atom(line)

    def _arg_rest(self, line: bytes) -> tuple[bytes, bytes]:
        return line, b""

    def _arg_seqset(self, line: bytes) -> tuple[SequenceSet, bytes]:
        word, _, rest = line.lstrip(b" ").partition(b" ")
        return SequenceSet.parse(word), rest

    def _arg_flags(self, line: bytes) -> tuple[list[str], bytes]:
        return syntax.flag_list(line)

    def _arg_fetch(self, line: bytes) -> tuple[list[Any], bytes]:
        parser = imap4._FetchParser()
        try:
            parser.parseString(line.strip())
        except Exception:  # noqa: BLE001 - Twisted's parser raises bare Exceptions for bad syntax
            raise IllegalClientResponse("bad FETCH attributes") from None
        if not parser.result:
            raise IllegalClientResponse("missing FETCH attributes")
        return parser.result, b""

    def _arg_status_items(self, line: bytes) -> tuple[list[bytes], bytes]:
        line = line.lstrip(b" ")
        end = line.find(b")")
        if not line.startswith(b"(") or end < 0:
            raise IllegalClientResponse("STATUS items must be a parenthesised list")
        return line[1:end].upper().split(), line[end + 1 :]

    async def _arg_append(self, line: bytes) -> tuple[tuple[list[str], int | None, bytes], bytes]:
        line = line.lstrip(b" ")
        flags: list[str] = []
        if line.startswith(b"("):
            flags, line = syntax.flag_list(line)
            line = line.lstrip(b" ")
        when: int | None = None
        if line.startswith(b'"'):
            value, line = syntax.quoted(line)
            when = syntax.date_time(value)
            line = line.lstrip(b" ")
        size = syntax.literal_size(line)
        if size is None:
            raise IllegalClientResponse("APPEND needs the message as a literal")
        if size > MESSAGE_LIMIT:
            raise _Refusal(b"[TOOBIG] Messages are limited to %d octets" % MESSAGE_LIMIT)
        data, rest = await self._read_literal(size)
        return (flags, when, data), rest

    async def _arg_list(self, line: bytes) -> tuple[tuple[bool, str, str], bytes]:
        """``[(selection options)] reference pattern [RETURN (...)]``: whether only special-use mailboxes are
        wanted, the reference and the pattern."""
        line = line.lstrip(b" ")
        special_only = False
        if line.startswith(b"("):
            end = line.find(b")")
            if end < 0:
                raise IllegalClientResponse("unbalanced parentheses")
            special_only = b"SPECIAL-USE" in line[1:end].upper().split()
            line = line[end + 1 :]
        reference, line = await self._arg_astring(line, wildcards=True)
        pattern, line = await self._arg_astring(line, wildcards=True)
        line = line.strip()
        if line.upper().startswith(b"RETURN"):
            line = b""
        return (special_only, syntax.decode_mailbox(reference), syntax.decode_mailbox(pattern)), line

    async def _arg_search(self, line: bytes) -> tuple[list[Key], bytes]:
        tokens: list[Token] = []
        while True:
            more, size = tokenize(line)
            tokens += more
            if size is None:
                break
            if size > STRING_LIMIT:
                raise IllegalClientResponse("literal too long")
            value, line = await self._read_literal(size)
            tokens.append(Token("string", value))
        if tokens and tokens[0].kind == "atom" and tokens[0].value.upper() == b"CHARSET":
            if len(tokens) < 2 or tokens[1].value.upper() not in CHARSETS:
                raise _Refusal(b"[BADCHARSET (US-ASCII UTF-8)] Unsupported charset")
            tokens = tokens[2:]
        return parse_keys(tokens), b""

    # --- not authenticated ---------------------------------------------------------------------------------------

    def _cmd_noop(self, tag: bytes) -> Coroutine[Any, Any, None] | None:
        if self._selected is None:
            self.sendPositiveResponse(tag, b"NOOP completed")
            return None
        return self._refresh_and_answer(tag, b"NOOP completed")

    def _cmd_starttls(self, tag: bytes) -> None:
        if self.startedTLS or self.factory.implicit_tls:
            self.sendBadResponse(tag, b"TLS is already on")
        elif not self._can_start_tls():
            self.sendNegativeResponse(tag, b"TLS is not available")
        else:
            self.clearLineBuffer()
            self._drop_pipelined = True
            self.sendPositiveResponse(tag, b"Begin TLS negotiation now")
            self._connection().startTLS(self.factory.tls)
            self.startedTLS = True

    async def _cmd_login(self, tag: bytes, user: bytes, password: bytes) -> None:
        await self._log_in(tag, user, password)

    async def _cmd_authenticate(self, tag: bytes, mechanism: bytes, initial: bytes) -> None:
        if mechanism.upper() != b"PLAIN":
            raise _Refusal(b"Only AUTHENTICATE PLAIN is offered")
        response = initial.strip()
        if not response:
            self._sasl = Deferred()
            self.parseState = "sasl"
            self.sendContinuationRequest(b"")
            response = (await self._sasl).strip()
        if response == b"*":
            raise IllegalClientResponse("AUTHENTICATE cancelled")
        try:
            decoded = b"" if response == b"=" else binascii.a2b_base64(response, strict_mode=True)
        except (binascii.Error, ValueError):
            raise IllegalClientResponse("AUTHENTICATE response is not base64") from None
        parts = decoded.split(b"\0")
        if len(parts) != 3 or parts[0] not in (b"", parts[1]):
            raise IllegalClientResponse("AUTHENTICATE PLAIN needs authzid NUL user NUL password")
        await self._log_in(tag, parts[1], parts[2])

    def parse_sasl(self, line: bytes) -> None:
        waiting, self._sasl = self._sasl, None
        self.parseState = "command"
        if waiting is not None:
            waiting.callback(line)

    async def _log_in(self, tag: bytes, user: bytes, password: bytes) -> None:
        login = self.factory.login
        locked = login.throttle.locked()
        if locked:
            self.sendNegativeResponse(tag, b"[UNAVAILABLE] Too many failed logins; try again in %d s" % (locked + 1))
            self._bye(b"Too many failed logins")
            return
        if login.matches(user, password):
            login.throttle.succeeded()
            self.state = "auth"
            self.setTimeout(self.POSTAUTH_TIMEOUT)
            self.sendPositiveResponse(tag, b"[CAPABILITY " + b" ".join(self.listCapabilities()) + b"] Logged in")
            return
        login.throttle.failed()
        self._failures += 1
        log.info("bridge IMAP: a failed login")
        await deferLater(self.factory.reactor, login.throttle.failure_delay)
        self.sendNegativeResponse(tag, b"[AUTHENTICATIONFAILED] Invalid credentials")
        if self._failures >= FAILURES_PER_CONNECTION or login.throttle.locked():
            self._bye(b"Too many failed logins")

    # --- authenticated: mailboxes --------------------------------------------------------------------------------

    async def _call(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.factory.mail.call(function, *args, **kwargs)

    async def _call_alive(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``_call`` for a command that may wait long before it answers anything (SELECT, EXAMINE, STATUS, NOOP):
        an untagged ``OK`` every ``KEEPALIVE_S`` while it waits. Only where no response is half written."""
        ticker = LoopingCall(self._still_working)
        ticker.clock = self.factory.reactor
        ticker.start(KEEPALIVE_S, now=False)
        try:
            return await self._call(function, *args, **kwargs)
        finally:
            ticker.stop()

    def _still_working(self) -> None:
        if self.transport is not None:
            self.sendUntaggedResponse(b"OK still working")

    async def _mailbox(self, name: str, *, missing: bytes = b"[NONEXISTENT] No such mailbox") -> str:
        """The state's name for ``name`` (INBOX in any case), or NO."""
        for known in await self.factory.mail.mailboxes():
            if known == name or (known == INBOX and name.upper() == INBOX):
                return known
        raise _Refusal(missing)

    def _leave(self) -> None:
        self._stop_idle_loop()
        self._selected = None
        self._cache.clear()
        if self.state == "select":
            self.state = "auth"

    async def _cmd_select(self, tag: bytes, name: str, readonly: bool, command: bytes) -> None:
        self._leave()
        mailbox = await self._mailbox(name)
        view = await self._call_alive(self.factory.mail.state.view, mailbox, refresh=True)
        selected = _Selected(mailbox, readonly, view.uidvalidity, view.uidnext, list(view.messages))
        self._selected = selected
        self.state = "select"
        keywords = sorted({flag for ref in view.messages for flag in ref.flags if not flag.startswith("\\")})
        self.sendUntaggedResponse(b"%d EXISTS" % len(selected.messages))
        self.sendUntaggedResponse(b"0 RECENT")
        self.sendUntaggedResponse(b"FLAGS " + syntax.flags_wire([*SYSTEM_FLAGS, *keywords]))
        self.sendUntaggedResponse(b"OK [PERMANENTFLAGS %s] Flags kept" % (b"()" if readonly else PERMANENT_FLAGS))
        unseen = next((n for n, ref in enumerate(selected.messages, 1) if "\\Seen" not in ref.flags), None)
        if unseen is not None:
            self.sendUntaggedResponse(b"OK [UNSEEN %d] First unseen" % unseen)
        self.sendUntaggedResponse(b"OK [UIDVALIDITY %d] UIDs valid" % view.uidvalidity)
        self.sendUntaggedResponse(b"OK [UIDNEXT %d] Predicted next UID" % view.uidnext)
        mode = b"READ-ONLY" if readonly else b"READ-WRITE"
        self.sendPositiveResponse(tag, b"[%s] %s completed" % (mode, command))

    async def _cmd_list(self, tag: bytes, request: tuple[bool, str, str], command: bytes) -> None:
        special_only, reference, pattern = request
        if not pattern:
            self.sendUntaggedResponse(command + b' (\\Noselect) "/" ""')
            self.sendPositiveResponse(tag, command + b" completed")
            return
        wanted = _wildcard(reference + pattern)
        for name in await self.factory.mail.mailboxes():
            use = SPECIAL_USE.get(name)
            if special_only and use is None:
                continue
            if not (wanted.fullmatch(name) or (name == INBOX and re.fullmatch(wanted.pattern, name, re.IGNORECASE))):
                continue
            attributes = b"\\HasNoChildren" + (b" " + use.encode() if use else b"")
            self.sendUntaggedResponse(b'%s (%s) "/" %s' % (command, attributes, syntax.encode_mailbox(name)))
        self.sendPositiveResponse(tag, command + b" completed")

    async def _cmd_status(self, tag: bytes, name: str, items: list[bytes]) -> None:
        mailbox = await self._mailbox(name)
        unknown = [
            item for item in items if item not in (b"MESSAGES", b"RECENT", b"UIDNEXT", b"UIDVALIDITY", b"UNSEEN")
        ]
        if unknown or not items:
            raise IllegalClientResponse("unknown STATUS item")
        view = await self._call_alive(self.factory.mail.state.view, mailbox, refresh=True)
        values = {
            b"MESSAGES": len(view.messages),
            b"RECENT": 0,
            b"UIDNEXT": view.uidnext,
            b"UIDVALIDITY": view.uidvalidity,
            b"UNSEEN": sum(1 for ref in view.messages if "\\Seen" not in ref.flags),
        }
        shown = b" ".join(b"%s %d" % (item, values[item]) for item in items)
        self.sendUntaggedResponse(b"STATUS %s (%s)" % (syntax.encode_mailbox(mailbox), shown))
        self.sendPositiveResponse(tag, b"STATUS completed")

    async def _cmd_create(self, tag: bytes, name: str) -> None:
        if name.rstrip("/") in await self.factory.mail.mailboxes() or name.upper() == INBOX:
            raise _Refusal(b"[ALREADYEXISTS] That mailbox exists")
        raise _Refusal(b"[CANNOT] The bridge's mailboxes are fixed")

    async def _cmd_fixed(self, tag: bytes, name: str, other: str | None = None) -> None:
        raise _Refusal(b"[CANNOT] The bridge's mailboxes are fixed")

    async def _cmd_subscribe(self, tag: bytes, name: str, command: bytes) -> None:
        await self._mailbox(name)
        self.sendPositiveResponse(tag, command + b" completed")

    def _cmd_namespace(self, tag: bytes) -> None:
        self.sendUntaggedResponse(b'NAMESPACE (("" "/")) NIL NIL')
        self.sendPositiveResponse(tag, b"NAMESPACE completed")

    async def _cmd_append(self, tag: bytes, name: str, message: tuple[list[str], int | None, bytes]) -> None:
        flags, when, data = message
        mailbox = await self._mailbox(name, missing=b"[TRYCREATE] No such mailbox")
        uid = await self._call(self.factory.mail.state.append, mailbox, data, flags, when)
        view = await self._call(self.factory.mail.state.view, mailbox)
        if self._selected is not None and self._selected.name == mailbox:
            self._absorb(view, allow_expunge=False)
        self.sendPositiveResponse(tag, b"[APPENDUID %d %d] APPEND completed" % (view.uidvalidity, uid))

    # --- IDLE (RFC 2177) -----------------------------------------------------------------------------------------

    def _cmd_idle(self, tag: bytes) -> None:
        self._idle_tag = tag
        self.parseState = "idling"
        self.sendContinuationRequest(b"idling")
        if self._selected is not None:
            self._idle_loop = LoopingCall(self._poll_once)
            self._idle_loop.clock = self.factory.reactor
            self._idle_loop.start(self.factory.poll_interval, now=False)

    def _poll_once(self) -> Deferred[None]:
        self._idle_poll = Deferred.fromCoroutine(self._poll())
        return self._idle_poll

    async def _poll(self) -> None:
        selected = self._selected
        if selected is None:
            return
        try:
            view = await self._call(self.factory.mail.state.view, selected.name, refresh=True)
        except Exception as error:  # noqa: BLE001 - an appliance hiccup must not end IDLE; the next poll retries
            log.warn("bridge IMAP: an IDLE poll failed ({error_type})", error_type=type(error).__name__)
            return
        finally:
            self._idle_poll = None
        if self._selected is selected:
            self._absorb(view, allow_expunge=True)

    def parse_idling(self, line: bytes) -> None:
        tag, self._idle_tag = self._idle_tag, None
        self.parseState = "command"
        self._stop_idle_loop()
        polling = self._idle_poll
        if line.strip().upper() != b"DONE":
            self.sendBadResponse(tag, b"IDLE ends with DONE")
            return
        if polling is None:
            self.sendPositiveResponse(tag, b"IDLE terminated")
            return
        # A poll is on its way: let its news go out before the tagged answer and before the next command.
        self.blocked = []

        def finish(_: object) -> None:
            self.sendPositiveResponse(tag, b"IDLE terminated")
            self._unblock()

        polling.addBoth(finish)

    def _stop_idle_loop(self) -> None:
        loop, self._idle_loop = self._idle_loop, None
        if loop is not None and loop.running:
            loop.stop()

    # --- selected: telling the client what changed ----------------------------------------------------------------

    def _require_selected(self) -> _Selected:
        if self._selected is None:
            raise IllegalClientResponse("no mailbox selected")
        return self._selected

    def _absorb(
        self,
        view: MailboxView,
        *,
        allow_expunge: bool,
        quiet: frozenset[int] | set[int] = frozenset(),
        gone: frozenset[int] | set[int] = frozenset(),
    ) -> None:
        """Bring the snapshot to ``view`` and tell the client: EXPUNGE (only where allowed), FETCH FLAGS for flags
        changed elsewhere (not for ``quiet`` UIDs, which the command answers itself), EXISTS for new mail.
        ``gone`` UIDs are removed even if ``view`` still lists them (the command just moved or deleted them)."""
        selected = self._require_selected()
        if view.uidvalidity != selected.uidvalidity:
            self._bye(b"[UIDVALIDITY] The mailbox was rebuilt; select it again")
            return
        fresh = {ref.uid: ref for ref in view.messages if ref.uid not in gone}
        old = selected.messages
        lines: list[bytes] = []
        if allow_expunge:
            for position in range(len(old), 0, -1):
                if old[position - 1].uid not in fresh:
                    lines.append(b"%d EXPUNGE" % position)
            kept = [ref for ref in old if ref.uid in fresh]
        else:
            kept = list(old)
        updated: list[MessageRef] = []
        for position, ref in enumerate(kept, 1):
            now = fresh.get(ref.uid)
            if now is None:
                updated.append(ref)
                continue
            if now.flags != ref.flags and ref.uid not in quiet:
                lines.append(b"%d FETCH (UID %d FLAGS %s)" % (position, ref.uid, syntax.flags_wire(now.flags)))
            updated.append(now)
        highest = max((ref.uid for ref in old), default=0)
        added = [ref for ref in view.messages if ref.uid > highest and ref.uid not in gone]
        updated += added
        if added:
            lines.append(b"%d EXISTS" % len(updated))
        selected.messages = updated
        selected.uidnext = max(selected.uidnext, view.uidnext)
        for line in lines:
            self.sendUntaggedResponse(line)

    async def _refresh_and_answer(self, tag: bytes, text: bytes) -> None:
        selected = self._require_selected()
        view = await self._call_alive(self.factory.mail.state.view, selected.name, refresh=True)
        self._absorb(view, allow_expunge=True)
        self.sendPositiveResponse(tag, text)

    def _resolve(self, numbers: SequenceSet, uid: bool) -> list[tuple[int, MessageRef]]:
        """The (sequence number, message) pairs a set names: UIDs that do not exist are skipped (RFC 3501 §6.4.8),
        sequence numbers that do not exist are an error."""
        messages = self._require_selected().messages
        if uid:
            if not messages:
                return []
            ranges = numbers.resolve(messages[-1].uid)
            return [(n, ref) for n, ref in enumerate(messages, 1) if any(lo <= ref.uid <= hi for lo, hi in ranges)]
        if not messages or numbers.highest(len(messages)) > len(messages):
            raise IllegalClientResponse("no such message")
        ranges = numbers.resolve(len(messages))
        return [(n, ref) for n, ref in enumerate(messages, 1) if any(lo <= n <= hi for lo, hi in ranges)]

    async def _load(self, ref: MessageRef) -> Loaded:
        loaded = self._cache.get(ref.key)
        if loaded is not None:
            self._cache.move_to_end(ref.key)
            return loaded
        loaded = Loaded(await self._call(self.factory.mail.state.message, ref.key))
        if len(loaded.data) != ref.size and not self._size_mismatch_logged:
            self._size_mismatch_logged = True
            log.warn("bridge IMAP: a listed size differs from the message's; RFC822.SIZE follows the message")
        self._cache[ref.key] = loaded
        while len(self._cache) > CACHED_MESSAGES or sum(len(x.data) for x in self._cache.values()) > CACHED_BYTES:
            if len(self._cache) == 1:
                break
            self._cache.popitem(last=False)
        return loaded

    # --- selected: the commands ----------------------------------------------------------------------------------

    async def _cmd_check(self, tag: bytes) -> None:
        await self._refresh_and_answer(tag, b"CHECK completed")

    async def _cmd_close(self, tag: bytes) -> None:
        selected = self._require_selected()
        if not selected.readonly:
            await self._call(self.factory.mail.state.expunge, selected.name)
        self._leave()
        self.sendPositiveResponse(tag, b"CLOSE completed")

    def _cmd_unselect(self, tag: bytes) -> None:
        self._leave()
        self.sendPositiveResponse(tag, b"UNSELECT completed")

    async def _cmd_expunge(self, tag: bytes, numbers: SequenceSet | None = None, uid: bool = False) -> None:
        selected = self._require_selected()
        if selected.readonly:
            raise _Refusal(b"The mailbox is read-only (EXAMINE)")
        uids = None if numbers is None else [ref.uid for _, ref in self._resolve(numbers, True)]
        removed: list[int] = []
        if uids != []:
            removed = await self._call(self.factory.mail.state.expunge, selected.name, uids)
            view = await self._call(self.factory.mail.state.view, selected.name)
            self._absorb(view, allow_expunge=True, gone=set(removed))
        self.sendPositiveResponse(tag, b"EXPUNGE completed")

    async def _cmd_uid_expunge(self, tag: bytes, numbers: SequenceSet, uid: bool = True) -> None:
        await self._cmd_expunge(tag, numbers, uid=True)

    def _cmd_uid(self, tag: bytes, command: bytes, rest: bytes) -> None:
        entry = _UID_COMMANDS.get(command.upper())
        if entry is None:
            raise IllegalClientResponse("unknown UID command")
        Deferred.fromCoroutine(self._dispatch(tag, entry, rest, True))

    async def _cmd_search(self, tag: bytes, keys: list[Key], uid: bool = False) -> None:
        selected = self._require_selected()
        messages = list(selected.messages)
        last_uid = messages[-1].uid if messages else 0
        content = needs_content(keys)
        reactor = self.factory.reactor
        found: list[int] = []
        for sequence, ref in enumerate(messages, 1):
            candidate = Candidate(sequence, ref, len(messages), last_uid)
            if content:
                try:
                    loaded = await self._load(ref)
                except BridgeError:
                    continue  # gone from the store meanwhile: it matches nothing
                candidate.fields = loaded.tree.fields
                candidate.text = partial(text_of, loaded)
                hit = await deferToThreadPool(reactor, reactor.getThreadPool(), matches, keys, candidate)
            else:
                hit = matches(keys, candidate)
            if hit:
                found.append(ref.uid if uid else sequence)
        self.sendUntaggedResponse(b" ".join([b"SEARCH", *(b"%d" % number for number in found)]))
        self.sendPositiveResponse(tag, b"SEARCH completed")

    async def _cmd_fetch(self, tag: bytes, numbers: SequenceSet, items: list[Any], uid: bool = False) -> None:
        selected = self._require_selected()
        targets = self._resolve(numbers, uid)
        if uid and not any(item.type == "uid" for item in items):
            items = [imap4._FetchParser.UID(), *items]
        with_flags: set[int] = set()
        if not selected.readonly and any(sets_seen(item) for item in items):
            unseen = [ref.uid for _, ref in targets if "\\Seen" not in ref.flags]
            if unseen:
                view = await self._call(self.factory.mail.state.set_flags, selected.name, unseen, ["\\Seen"], "add")
                self._absorb(view, allow_expunge=False, quiet=set(unseen))
                with_flags = set(unseen)
                now = {ref.uid: ref for ref in selected.messages}
                targets = [(n, now.get(ref.uid, ref)) for n, ref in targets]
        content = any(item.type in CONTENT_ITEMS for item in items)
        for sequence, ref in targets:
            loaded = await self._load(ref) if content else None
            self._write(fetch_response(sequence, ref, items, loaded, ref.uid in with_flags))
        self.sendPositiveResponse(tag, b"FETCH completed")

    async def _cmd_store(
        self, tag: bytes, numbers: SequenceSet, mode: bytes, flags: list[str], uid: bool = False
    ) -> None:
        selected = self._require_selected()
        mode = mode.upper()
        silent = mode.endswith(b".SILENT")
        how = {b"FLAGS": "set", b"+FLAGS": "add", b"-FLAGS": "remove"}.get(mode.removesuffix(b".SILENT"))
        if how is None:
            raise IllegalClientResponse("STORE takes FLAGS, +FLAGS or -FLAGS")
        if selected.readonly:
            raise _Refusal(b"The mailbox is read-only (EXAMINE)")
        targets = self._resolve(numbers, uid)
        uids = [ref.uid for _, ref in targets]
        if uids:
            view = await self._call(self.factory.mail.state.set_flags, selected.name, uids, flags, how)
            self._absorb(view, allow_expunge=False, quiet=set(uids))
            if not silent:
                for sequence, ref in enumerate(selected.messages, 1):
                    if ref.uid in uids:
                        shown = b" UID %d" % ref.uid if uid else b""
                        self.sendUntaggedResponse(
                            b"%d FETCH (FLAGS %s%s)" % (sequence, syntax.flags_wire(ref.flags), shown)
                        )
        self.sendPositiveResponse(tag, b"STORE completed")

    async def _move(self, numbers: SequenceSet, name: str, uid: bool, *, copy: bool) -> tuple[list[int], bytes]:
        """Move the messages; their old UIDs and the COPYUID response code (empty when nothing moved)."""
        selected = self._require_selected()
        target = await self._mailbox(name, missing=b"[TRYCREATE] No such mailbox")
        if target == selected.name:
            raise _Refusal(b"[CANNOT] The messages are already in that mailbox")
        if copy and target not in COPY_TARGETS:
            raise _Refusal(
                b"[CANNOT] A message lives in one mailbox here: COPY only files into INBOX, Trash or Spam; use MOVE"
            )
        if selected.readonly:
            raise _Refusal(b"[CANNOT] The mailbox is read-only (EXAMINE)")
        uids = [ref.uid for _, ref in self._resolve(numbers, uid)]
        if not uids:
            return [], b""
        pairs = await self._call(self.factory.mail.state.move, selected.name, uids, target)
        if not pairs:
            return [], b""
        validity = (await self._call(self.factory.mail.state.view, target)).uidvalidity
        old = syntax.uid_set([a for a, _ in pairs])
        new = syntax.uid_set([b for _, b in pairs])
        return [a for a, _ in pairs], b"[COPYUID %d %s %s]" % (validity, old, new)

    async def _cmd_copy(self, tag: bytes, numbers: SequenceSet, name: str, uid: bool = False) -> None:
        # The source keeps showing the messages until the client expunges (or the next NOOP tells it they went):
        # STORE \Deleted and EXPUNGE after a COPY then touch nothing, as the state never deletes a moved message.
        _, code = await self._move(numbers, name, uid, copy=True)
        self.sendPositiveResponse(tag, (code + b" " if code else b"") + b"COPY completed")

    async def _cmd_move(self, tag: bytes, numbers: SequenceSet, name: str, uid: bool = False) -> None:
        selected = self._require_selected()
        moved, code = await self._move(numbers, name, uid, copy=False)
        if code:
            self.sendUntaggedResponse(b"OK " + code + b" Moved")
            view = await self._call(self.factory.mail.state.view, selected.name)
            self._absorb(view, allow_expunge=True, gone=set(moved))
        self.sendPositiveResponse(tag, b"MOVE completed")

    # --- the command table -----------------------------------------------------------------------------------------

    #: (state, COMMAND) -> (handler, argument parsers or constants...), as Twisted's ``<state>_<COMMAND>`` tuples.
    COMMANDS: ClassVar[dict[tuple[str, bytes], tuple[Any, ...]]] = {}


def _register(states: str, command: bytes, *entry: Any) -> None:
    for state in states.split():
        BridgeIMAPServer.COMMANDS[(state, command)] = entry


_ANY, _AUTHED, _SELECTED = "unauth auth select", "auth select", "select"
_S = BridgeIMAPServer
_register(_ANY, b"CAPABILITY", imap4.IMAP4Server.do_CAPABILITY)
_register(_ANY, b"LOGOUT", imap4.IMAP4Server.do_LOGOUT)
_register(_ANY, b"NOOP", _S._cmd_noop)
_register("unauth", b"STARTTLS", _S._cmd_starttls)
_register("unauth", b"LOGIN", _S._cmd_login, _S._arg_astring, _S._arg_astring)
_register("unauth", b"AUTHENTICATE", _S._cmd_authenticate, _S._arg_atom, _S._arg_rest)
_register(_AUTHED, b"SELECT", _S._cmd_select, _S._arg_mailbox, False, b"SELECT")
_register(_AUTHED, b"EXAMINE", _S._cmd_select, _S._arg_mailbox, True, b"EXAMINE")
_register(_AUTHED, b"LIST", _S._cmd_list, _S._arg_list, b"LIST")
_register(_AUTHED, b"LSUB", _S._cmd_list, _S._arg_list, b"LSUB")
_register(_AUTHED, b"STATUS", _S._cmd_status, _S._arg_mailbox, _S._arg_status_items)
_register(_AUTHED, b"CREATE", _S._cmd_create, _S._arg_mailbox)
_register(_AUTHED, b"DELETE", _S._cmd_fixed, _S._arg_mailbox)
_register(_AUTHED, b"RENAME", _S._cmd_fixed, _S._arg_mailbox, _S._arg_mailbox)
_register(_AUTHED, b"SUBSCRIBE", _S._cmd_subscribe, _S._arg_mailbox, b"SUBSCRIBE")
_register(_AUTHED, b"UNSUBSCRIBE", _S._cmd_subscribe, _S._arg_mailbox, b"UNSUBSCRIBE")
_register(_AUTHED, b"NAMESPACE", _S._cmd_namespace)
_register(_AUTHED, b"APPEND", _S._cmd_append, _S._arg_mailbox, _S._arg_append)
_register(_AUTHED, b"IDLE", _S._cmd_idle)
_register(_SELECTED, b"CHECK", _S._cmd_check)
_register(_SELECTED, b"CLOSE", _S._cmd_close)
_register(_SELECTED, b"UNSELECT", _S._cmd_unselect)
_register(_SELECTED, b"EXPUNGE", _S._cmd_expunge)
_register(_SELECTED, b"SEARCH", _S._cmd_search, _S._arg_search)
_register(_SELECTED, b"FETCH", _S._cmd_fetch, _S._arg_seqset, _S._arg_fetch)
_register(_SELECTED, b"STORE", _S._cmd_store, _S._arg_seqset, _S._arg_atom, _S._arg_flags)
_register(_SELECTED, b"COPY", _S._cmd_copy, _S._arg_seqset, _S._arg_mailbox)
_register(_SELECTED, b"MOVE", _S._cmd_move, _S._arg_seqset, _S._arg_mailbox)
_register(_SELECTED, b"UID", _S._cmd_uid, _S._arg_atom, _S._arg_rest)
#: What UID may prefix: the command's own entry, except UID EXPUNGE, which takes a set where EXPUNGE takes none.
_UID_COMMANDS = {
    **{name: _S.COMMANDS[("select", name)] for name in (b"FETCH", b"STORE", b"SEARCH", b"COPY", b"MOVE")},
    b"EXPUNGE": (_S._cmd_uid_expunge, _S._arg_seqset),
}


def _wildcard(pattern: str) -> re.Pattern[str]:
    """A LIST pattern as a regular expression (``*`` anything, ``%`` anything but the delimiter)."""
    parts = [".*" if char == "*" else "[^/]*" if char == "%" else re.escape(char) for char in pattern]
    return re.compile("".join(parts), re.DOTALL)


class BridgeIMAPFactory(ServerFactory):
    """Makes the connections of one IMAP listener; holds what they share."""

    def __init__(
        self,
        mail: StateCaller,
        login: LocalLogin,
        *,
        tls: Any,
        implicit_tls: bool,
        reactor: Any,
        poll_interval: float,
    ) -> None:
        self.mail = mail
        self.login = login
        self.tls = tls
        self.implicit_tls = implicit_tls
        self.reactor = reactor
        self.poll_interval = poll_interval

    def buildProtocol(self, addr: Any) -> Any:
        return BridgeIMAPServer(self)


def imap_factory(
    state: IMailState,
    username: str,
    password: str | bytes,
    *,
    tls: Any | None,
    implicit_tls: bool,
    reactor: Any,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    login: LocalLogin | None = None,
) -> IProtocolFactory:
    """The protocol factory of one IMAP listener over ``state``, for the one local user ``username``.

    ``tls`` is a server TLS context factory (``CertificateOptions``, a ``ContextFactory``); with it STARTTLS is
    offered. With ``implicit_tls`` the returned factory is already wrapped in TLS (listen with a plain ``tcp:``
    endpoint). ``login`` shares the run's ``LocalLogin`` (and so its throttle, and the account's addresses as user
    names) with the SMTP side; without it one is made from ``username`` and ``password``. Listeners over the same
    ``state`` share one queue of calls to it.
    """
    if implicit_tls and tls is None:
        raise ValueError("implicit TLS needs a TLS context (tls=None given)")
    if login is None:
        secret = password.decode("utf-8") if isinstance(password, bytes) else password
        login = LocalLogin(username, secret, Throttle(reactor))
    factory = BridgeIMAPFactory(
        state_caller(state, reactor),
        login,
        tls=tls,
        implicit_tls=implicit_tls,
        reactor=reactor,
        poll_interval=poll_interval,
    )
    if implicit_tls:
        wrapped: IProtocolFactory = TLSMemoryBIOFactory(tls, False, factory)  # type: ignore[arg-type]
        return wrapped
    return factory
