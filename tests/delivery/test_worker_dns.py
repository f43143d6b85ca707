"""A delivery worker's DNS questions over its pipe: real worker processes judge a message with the appliance's
resolver answering, each question once; a worker that asks unbidden or too often is killed."""

from __future__ import annotations

import base64
import dataclasses
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import dkim
import pytest
import pytest_twisted
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet import reactor

from mailiverse.crypto.formats import open_mail_object
from mailiverse.crypto.keys import generate_private_key, public_key_der
from mailiverse.delivery import framing
from mailiverse.delivery.pool import WorkerLost, WorkerPool
from mailiverse.delivery.sealing import SealJob
from mailiverse.delivery.verdicts import JudgeRequest
from mailiverse.mime.limits import Limits
from tests.support.fakedns import FakeResolver
from tests.support.waiting import until

PRIVATE_KEY = generate_private_key()
PUBLIC_KEY = public_key_der(PRIVATE_KEY)
_SIGNER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
MESSAGE = b"From: Bob <bob@remote.test>\r\nTo: alice@example.org\r\nSubject: hello\r\n\r\nHi Alice.\r\n"
JUDGE = JudgeRequest("192.0.2.10", "mx.remote.test", "bob@remote.test", "mail.example.org", ("example.org",))


def _job(judge: JudgeRequest | None = JUDGE) -> SealJob:
    return SealJob("Mail/In/1_2", "Mail/In_Json/1_2", 1, (("v2", PUBLIC_KEY),), Limits(), judge, "Mail/Spam/1_2")


def _signed() -> bytes:
    key = _SIGNER.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    signature: bytes = dkim.sign(MESSAGE, b"sel", b"remote.test", key, include_headers=[b"from", b"subject"])
    return signature + MESSAGE


def _resolver() -> FakeResolver:
    key = _SIGNER.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return FakeResolver(
        {
            ("remote.test", "TXT"): ("v=spf1 ip4:192.0.2.10 -all",),
            ("sel._domainkey.remote.test", "TXT"): ("v=DKIM1; p=" + base64.b64encode(key).decode(),),
            ("_dmarc.remote.test", "TXT"): ("v=DMARC1; p=reject",),
        }
    )


async def _started(workers: WorkerPool) -> WorkerPool:
    workers.startService()
    await until(lambda: len(workers._idle) == workers.size)
    return workers


async def _stopped(workers: WorkerPool) -> None:
    workers.stopService()
    await until(lambda: not workers._workers)


@pytest_twisted.async_yield_fixture
async def pool(tmp_path: Path) -> AsyncIterator[WorkerPool]:
    workers = await _started(WorkerPool(1, reactor=reactor, tmp_dir=str(tmp_path)))
    try:
        yield workers
    finally:
        await _stopped(workers)


@pytest_twisted.ensureDeferred
async def test_a_worker_asks_each_question_of_the_appliance_once(pool: WorkerPool) -> None:
    """An isolated worker (no sockets) judges a signed message: its SPF, DKIM and DMARC lookups reach the
    appliance's resolver, each once; the stored original starts with the results header."""
    resolver = _resolver()
    objects, meta = await pool.seal(_signed(), _job(), resolve=resolver.lookup)
    assert meta.judgement is not None and (meta.judgement.verdict, meta.judgement.action) == ("verified", "accept")
    assert sorted(resolver.asked) == sorted(set(resolver.asked))
    assert ("sel._domainkey.remote.test", "TXT") in resolver.asked
    assert ("_dmarc.remote.test", "TXT") in resolver.asked
    original = open_mail_object(PRIVATE_KEY, objects[0].read())
    assert original.startswith(b"Authentication-Results: mail.example.org;\r\n\tspf=pass smtp.mailfrom=remote.test;")
    assert original.endswith(_signed()[-len(MESSAGE) :])


@pytest_twisted.ensureDeferred
async def test_a_refused_message_comes_back_without_objects(pool: WorkerPool) -> None:
    """Unsigned mail from an address SPF refuses, under p=reject: the worker returns its judgement, nothing sealed."""
    resolver = _resolver()
    judge = dataclasses.replace(JUDGE, client_ip="198.51.100.7")
    objects, meta = await pool.seal(MESSAGE, _job(judge), resolve=resolver.lookup)
    assert objects == []
    assert meta.judgement is not None and meta.judgement.reason == "dmarc-reject"


@pytest_twisted.ensureDeferred
async def test_a_resolver_failure_reaches_the_worker_as_temperror(pool: WorkerPool) -> None:
    """The resolver raises DnsTemporaryError for _dmarc: the worker's DMARC is temperror and the message deferred."""
    resolver = _resolver()
    resolver.failing = ("_dmarc.remote.test",)
    objects, meta = await pool.seal(_signed(), _job(), resolve=resolver.lookup)
    assert objects == []
    assert meta.judgement is not None and (meta.judgement.action, meta.judgement.reason) == ("defer", "dns")


FLOOD = textwrap.dedent(
    """
    import json, os, struct
    header = struct.Struct(">cI")
    def read(size):
        data = b""
        while len(data) < size:
            piece = os.read(0, size - len(data))
            if not piece:
                raise SystemExit(0)
            data += piece
        return data
    def send(tag, value):
        payload = json.dumps(value).encode()
        os.write(1, header.pack(tag, len(payload)) + payload)
    send(b"H", {"isolation": []})
    tag, length = header.unpack(read(header.size))
    request = json.loads(read(length))
    read(request["size"])
    n = 0
    while True:
        send(b"Q", {"name": "n%d.flood.test" % n, "type": "TXT"})
        n += 1
        tag, length = header.unpack(read(header.size))
        read(length)
    """
)


class _FloodingPool(WorkerPool):
    """A pool whose workers speak the protocol but ask DNS question after question."""

    def worker_argv(self) -> list[str]:
        return [sys.executable, "-I", "-c", FLOOD]


@pytest.mark.parametrize(("judge", "answered"), [(JUDGE, framing.MAX_ENQUIRIES), (None, 0)])
@pytest_twisted.ensureDeferred
async def test_a_worker_that_asks_too_much_or_unbidden_is_killed(
    tmp_path: Path, judge: JudgeRequest | None, answered: int
) -> None:
    """A judged message's worker gets MAX_ENQUIRIES answers, then is killed at its next question; a worker asking
    about a message that is not judged is killed at its first. Either way the message gets WorkerLost (451)."""
    resolver = FakeResolver()
    workers = await _started(_FloodingPool(1, reactor=reactor, tmp_dir=str(tmp_path)))
    try:
        with pytest.raises(WorkerLost):
            await workers.seal(MESSAGE, _job(judge), resolve=resolver.lookup)
        assert len(resolver.asked) == answered
    finally:
        await _stopped(workers)
