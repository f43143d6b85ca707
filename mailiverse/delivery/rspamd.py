"""rspamd, the appliance's spam filter (``--rspamd URL``): each received message checked, and trained from clients.

The appliance talks to rspamd's controller worker (port 11334 by default; it serves ``/checkv2`` and
the learning commands), over HTTP on the operator's own machine or network:

* ``check``: ``POST /checkv2`` with the message and its SMTP facts as rspamd's request headers (``IP``,
  ``Helo``, ``From``, ``Rcpt``, ``Queue-Id``, ``MTA-Name``); the answer becomes a ``SpamReport``
  (the action, score, threshold and the names of the rules that fired: nothing of the message).
  Runs in the main process, which holds the message's bytes while it streams them to a delivery
  worker; the worker gets the report with the rest of what it judges by.
* ``learn``: ``POST /learnspam`` or ``/learnham`` with a message a user marked (the clients' "this is
  spam" / "not spam", with the user's consent). Nothing of it is kept here.

Every exchange is bounded: a timeout, the size of rspamd's answer, and how many run at once. When
rspamd cannot be asked (down, slow, answering nonsense) ``check`` returns None: the message is
delivered unchecked and the failure logged (without the message), never lost.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import DeferredSemaphore

from mailiverse.contracts import Envelope
from mailiverse.delivery.verdicts import SPAM_ACTIONS, SpamReport, symbol_names
from mailiverse.httpbody import BodyTooLarge, read_bounded
from mailiverse.logs import Logger

log = Logger()

#: The largest answer read from rspamd (a report with every symbol is a few KiB).
MAX_ANSWER_BYTES = 1024 * 1024
#: Checks and learning requests in flight at once; more wait their turn.
MAX_CONCURRENT = 16
CHECK_SECONDS = 20.0
LEARN_SECONDS = 30.0
#: Messages larger than this are not handed to rspamd (its own default limit is 50 MB; spam is small).
MAX_CHECKED_BYTES = 20 * 1024 * 1024


class SpamFilterUnavailable(Exception):
    """rspamd could not be asked, or its answer made no sense."""


@dataclass(frozen=True)
class LearnOutcome:
    """What learning one message did: ``learned``, or not and why (``already learned``)."""

    learned: bool
    reason: str = ""


def parse_rspamd_url(text: str) -> str:
    """``--rspamd``'s value, checked: an ``http``/``https`` URL with a host, and no query, fragment or
    credentials (the password goes in a file); returned without a trailing slash. ValueError says why."""
    parsed = urllib.parse.urlsplit(text.strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"{text[:80]!r} is not an http:// or https:// URL, e.g. http://127.0.0.1:11334")
    if parsed.query or parsed.fragment or parsed.username or parsed.password:
        raise ValueError(f"{text[:80]!r} has a query, fragment or credentials; give them in --rspamd-password-file")
    try:
        parsed.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise ValueError(f"{text[:80]!r} has no valid port") from None
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, parsed.path.rstrip("/"), "", ""))


def report_of(answer: object) -> SpamReport:
    """rspamd's ``/checkv2`` answer as a report; SpamFilterUnavailable when it is not one."""
    if not isinstance(answer, dict):
        raise SpamFilterUnavailable("the answer is not a JSON object")
    action = answer.get("action")
    if action not in SPAM_ACTIONS:
        raise SpamFilterUnavailable("the answer names no known action")
    symbols = answer.get("symbols")
    names = sorted(symbols) if isinstance(symbols, dict) else []
    try:
        return SpamReport.from_wire(
            {
                "checker": "rspamd",
                "action": action,
                "score": answer.get("score", 0.0),
                "threshold": answer.get("required_score", 0.0),
                "symbols": symbol_names(names),
            }
        )
    except ValueError:
        raise SpamFilterUnavailable("the answer's score is not a number") from None


class RspamdClient:
    """One rspamd controller at ``url`` (from ``parse_rspamd_url``), asked through a treq ``HTTPClient``."""

    def __init__(
        self,
        url: str,
        http: Any,
        reactor: Any,
        *,
        password: str | None = None,
        check_seconds: float = CHECK_SECONDS,
        learn_seconds: float = LEARN_SECONDS,
    ) -> None:
        self.url = url
        self._http = http
        self._reactor = reactor
        self._password = password
        self._check_seconds = check_seconds
        self._learn_seconds = learn_seconds
        self._gate = DeferredSemaphore(MAX_CONCURRENT)

    @classmethod
    def connect(cls, url: str, reactor: Any, *, password: str | None = None, **timeouts: float) -> RspamdClient:
        """A client keeping its connections to rspamd open between messages."""
        from treq.client import HTTPClient
        from twisted.web.client import Agent, HTTPConnectionPool

        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = MAX_CONCURRENT
        return cls(url, HTTPClient(Agent(reactor, pool=pool)), reactor, password=password, **timeouts)

    async def check(
        self, raw: bytes, envelope: Envelope, recipients: Sequence[str], queue_id: str
    ) -> SpamReport | None:
        """rspamd's report on ``raw`` (received as ``envelope`` says, for ``recipients``), or None when it
        could not be had (logged; the message goes on unchecked)."""
        if len(raw) > MAX_CHECKED_BYTES:
            return None
        headers = {
            b"IP": [_header_value(envelope.client_ip)],
            b"Helo": [_header_value(envelope.helo)],
            b"From": [_header_value(envelope.mail_from)],
            b"Rcpt": [_header_value(r) for r in recipients[:100]],
            b"Queue-Id": [_header_value(queue_id)],
            b"MTA-Name": [_header_value(envelope.authserv_id)],
        }
        try:
            code, answer = await self._post("/checkv2", raw, headers, self._check_seconds)
            if code != 200:
                raise SpamFilterUnavailable(f"rspamd answered HTTP {code}")
            return report_of(answer)
        except Exception as error:  # noqa: BLE001 - whatever went wrong, the message is delivered unchecked
            log.warn(
                "spam filter: no report ({why}); message {queue_id} delivered unchecked",
                why=_why(error),
                queue_id=queue_id,
            )
            return None

    async def learn(self, raw: bytes, kind: str) -> LearnOutcome:
        """Teach rspamd that ``raw`` is ``spam`` or ``ham``; SpamFilterUnavailable when it could not."""
        if kind not in ("spam", "ham"):
            raise ValueError("a message is learned as spam or ham")
        try:
            code, answer = await self._post(f"/learn{kind}", raw, {}, self._learn_seconds)
        except SpamFilterUnavailable:
            raise
        except Exception as error:  # noqa: BLE001 - a refused connection, a timeout: said by type only
            raise SpamFilterUnavailable(_why(error)) from None
        if code == 200 and isinstance(answer, dict) and answer.get("success") is True:
            return LearnOutcome(True)
        if code == 204:
            # rspamd skipped it (its body, which says why, is dropped: a 204 has none): too few words for Bayes.
            return LearnOutcome(False, "too little text to learn from")
        message = answer.get("error", "") if isinstance(answer, dict) else ""
        if isinstance(message, str) and "already learned" in message:
            return LearnOutcome(False, "already learned")
        raise SpamFilterUnavailable(f"rspamd refused to learn (HTTP {code})")

    async def _post(self, path: str, body: bytes, headers: dict[bytes, list[bytes]], seconds: float) -> tuple[int, Any]:
        request_headers = dict(headers)
        if self._password is not None:
            request_headers[b"Password"] = [self._password.encode("utf-8")]
        await self._gate.acquire()
        try:
            pending = self._exchange(self.url + path, body, request_headers)
            code, answer = await _within(pending, seconds, self._reactor)
            return int(code), answer
        finally:
            self._gate.release()

    async def _exchange(self, url: str, body: bytes, headers: dict[bytes, list[bytes]]) -> tuple[int, Any]:
        response = await self._http.post(url, data=body, headers=headers)
        try:
            content = await read_bounded(response, MAX_ANSWER_BYTES)
        except BodyTooLarge:
            raise SpamFilterUnavailable("rspamd's answer is too large") from None
        if response.code == 204:
            return 204, None
        try:
            answer = json.loads(content)
        except ValueError:
            raise SpamFilterUnavailable("rspamd's answer is not JSON") from None
        return int(response.code), answer


async def _within(coroutine: Any, seconds: float, reactor: Any) -> Any:
    from twisted.internet.defer import ensureDeferred

    pending = ensureDeferred(coroutine)
    pending.addTimeout(seconds, reactor)
    return await pending


def _header_value(text: str) -> bytes:
    """``text`` as a request header value: printable ASCII only (an SMTP value could carry anything)."""
    return "".join(c for c in text if c.isascii() and c.isprintable())[:512].encode("ascii")


def _why(error: BaseException) -> str:
    # The text of an exception here names rspamd's address or status at most, never the message; the
    # type alone is enough for a timeout or a refused connection.
    return str(error) if isinstance(error, SpamFilterUnavailable) else type(error).__name__
