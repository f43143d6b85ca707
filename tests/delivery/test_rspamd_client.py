"""The appliance's rspamd client against a hostile or broken peer: a real HTTP server on 127.0.0.1 that
answers nonsense, too much, too late or not at all. A check that cannot be had is None (the message is
delivered unchecked); learning that cannot be done is SpamFilterUnavailable; nothing waits forever."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from mailiverse.contracts import Envelope
from mailiverse.delivery.rspamd import MAX_ANSWER_BYTES, RspamdClient, SpamFilterUnavailable, parse_rspamd_url

ENVELOPE = Envelope("192.0.2.7", "mx.remote.test\r\nX-Evil: 1", "ann@remote.test", "mail.example.org", ("example.org",))
MESSAGE = b"From: ann@remote.test\r\nSubject: hi\r\n\r\nHello.\r\n"
Behaviour = Callable[[Any], Any]


class _Peer(Resource):
    isLeaf = True

    def __init__(self, behaviour: Behaviour) -> None:
        super().__init__()
        self.behaviour = behaviour
        self.seen: list[tuple[bytes, dict[bytes, list[bytes]], bytes]] = []

    def render_POST(self, request: Any) -> Any:  # noqa: N802 - twisted.web's name
        headers = {name.lower(): values for name, values in request.requestHeaders.getAllRawHeaders()}
        self.seen.append((request.path, headers, request.content.read()))
        return self.behaviour(request)


@pytest_twisted.async_yield_fixture
async def peer() -> AsyncIterator[tuple[_Peer, str]]:
    resource = _Peer(lambda request: b"{}")
    port = reactor.listenTCP(0, Site(resource), interface="127.0.0.1")
    try:
        yield resource, f"http://127.0.0.1:{port.getHost().port}"
    finally:
        await port.stopListening()


def _json(value: object, code: int = 200) -> Behaviour:
    def answer(request: Any) -> bytes:
        request.setResponseCode(code)
        return json.dumps(value).encode()

    return answer


async def _check(url: str) -> Any:
    client = RspamdClient.connect(url, reactor, check_seconds=1.0, learn_seconds=1.0)
    return await client.check(MESSAGE, ENVELOPE, ["bob@example.org"], "17_3")


@pytest_twisted.ensureDeferred
async def test_a_check_sends_the_message_and_its_smtp_facts_as_rspamds_headers(peer: tuple[_Peer, str]) -> None:
    resource, url = peer
    resource.behaviour = _json({"action": "add header", "score": 7.25, "required_score": 15, "symbols": {"X_Y": {}}})
    report = await _check(url)
    assert report is not None and (report.action, report.score, report.threshold, report.symbols) == (
        "add header",
        7.25,
        15.0,
        ("X_Y",),
    )
    ((path, headers, body),) = resource.seen
    assert (path, body) == (b"/checkv2", MESSAGE)
    assert headers[b"ip"] == [b"192.0.2.7"] and headers[b"rcpt"] == [b"bob@example.org"]
    assert headers[b"helo"] == [b"mx.remote.testX-Evil: 1"]  # the line break of a hostile HELO is gone
    assert headers[b"queue-id"] == [b"17_3"] and b"x-evil" not in headers


@pytest.mark.parametrize(
    "behaviour",
    [
        _json({"action": "delete everything", "score": 1}),
        _json({"action": "reject", "score": "lots"}),
        _json(["not", "an", "object"]),
        _json({"action": "reject"}, code=500),
        lambda request: b"<html>not json</html>",
        lambda request: b"{" + b" " * (MAX_ANSWER_BYTES + 10) + b"}",
        lambda request: NOT_DONE_YET,  # never answers: the check's timeout ends it
    ],
    ids=["unknown-action", "score-text", "not-object", "http-500", "not-json", "too-large", "silent"],
)
@pytest_twisted.ensureDeferred
async def test_a_broken_answer_is_no_report_and_the_message_goes_on(
    peer: tuple[_Peer, str], behaviour: Behaviour
) -> None:
    resource, url = peer
    resource.behaviour = behaviour
    assert await _check(url) is None


@pytest_twisted.ensureDeferred
async def test_no_rspamd_at_all_is_no_report() -> None:
    from tests.support.harness import free_port

    assert await _check(f"http://127.0.0.1:{free_port()}") is None


@pytest.mark.parametrize(
    ("behaviour", "outcome"),
    [
        (_json({"success": True}), (True, "")),
        (_json({"error": "<x@y> has been already learned as spam, ignore it"}, code=208), (False, "already learned")),
        (lambda request: (request.setResponseCode(204), b"")[1], (False, "too little text to learn from")),
    ],
)
@pytest_twisted.ensureDeferred
async def test_learning_outcomes(peer: tuple[_Peer, str], behaviour: Behaviour, outcome: tuple[bool, str]) -> None:
    resource, url = peer
    resource.behaviour = behaviour
    client = RspamdClient.connect(url, reactor, password="s3cret", learn_seconds=1.0)
    learned = await client.learn(MESSAGE, "spam")
    assert (learned.learned, learned.reason) == outcome
    ((path, headers, _body),) = resource.seen
    assert path == b"/learnspam" and headers[b"password"] == [b"s3cret"]


@pytest.mark.parametrize(
    "behaviour",
    [_json({"error": "no"}, code=500), lambda request: b"nonsense", lambda request: NOT_DONE_YET],
    ids=["refused", "not-json", "silent"],
)
@pytest_twisted.ensureDeferred
async def test_learning_that_fails_says_so(peer: tuple[_Peer, str], behaviour: Behaviour) -> None:
    resource, url = peer
    resource.behaviour = behaviour
    client = RspamdClient.connect(url, reactor, learn_seconds=1.0)
    with pytest.raises(SpamFilterUnavailable):
        await client.learn(MESSAGE, "ham")
    with pytest.raises(ValueError):
        await client.learn(MESSAGE, "eggs")


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("http://127.0.0.1:11334", "http://127.0.0.1:11334"),
        ("https://rspamd.lan/controller/", "https://rspamd.lan/controller"),
    ],
)
def test_the_rspamd_url_option(text: str, url: str) -> None:
    assert parse_rspamd_url(text) == url


@pytest.mark.parametrize(
    "text", ["127.0.0.1:11334", "ftp://x", "http://", "http://u:p@h", "http://h/?q=1", "http://h:99999"]
)
def test_a_bad_rspamd_url_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rspamd_url(text)
