"""ACME for front ends sharing a metabase: answers any of them serves, one order under a lease, one certificate."""

from __future__ import annotations

import datetime
import socket
import ssl as stdlib_ssl
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from cryptography import x509
from twisted.internet import defer, ssl
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface.verify import verifyObject

from mailiverse.acme.certs import ensure_placeholder, needs_certificate
from mailiverse.acme.client import AcmeClient, new_account_key_pem
from mailiverse.acme.http01 import ChallengeResource, ChallengeStore, IChallengeStore, acme_http_resource
from mailiverse.acme.service import RETRY_INTERVAL, CertificateRenewal
from mailiverse.acme.shared import DatabaseChallengeStore, SharedCertificates
from mailiverse.store.db import Database
from mailiverse.testing_db import create_postgres_database, drop_postgres_database, require_postgres
from mailiverse.tls import TLSContexts, ensure_self_signed
from tests.support import pebble
from tests.support.database import shared_url, two_fronts  # noqa: F401 - fixtures
from tests.support.harness import free_port

TEST_NAME = "mail.mailiverse.test"
TOKEN = "abcdefghijklmnop_-0123456789"
Fronts = tuple[Database, Database]


async def _get(resource: Resource, token: str) -> tuple[int, bytes]:
    """GET the challenge ``token`` of ``resource`` over a real HTTP port on 127.0.0.1."""
    import treq
    from twisted.internet import reactor

    listener = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(Site(resource))
    try:
        port = listener.getHost().port
        response = await treq.get(f"http://127.0.0.1:{port}/.well-known/acme-challenge/{token}", timeout=10)
        return response.code, await response.content()
    finally:
        await listener.stopListening()


def test_both_challenge_stores_provide_the_interface(two_fronts: Fronts) -> None:  # noqa: F811
    """The memory and the metabase challenge stores provide IChallengeStore."""
    from twisted.internet import reactor

    assert verifyObject(IChallengeStore, ChallengeStore())
    assert verifyObject(IChallengeStore, DatabaseChallengeStore(two_fronts[0], reactor))


@pytest_twisted.ensureDeferred
async def test_an_answer_placed_on_one_front_end_is_served_by_the_other(two_fronts: Fronts) -> None:  # noqa: F811
    """A key authorization placed through one database is served over HTTP by the other until withdrawn."""
    from twisted.internet import reactor

    placing, serving = DatabaseChallengeStore(two_fronts[0], reactor), DatabaseChallengeStore(two_fronts[1], reactor)
    assert await _get(acme_http_resource(serving), TOKEN) == (404, b"no such challenge\n")
    await placing.place(TOKEN, f"{TOKEN}.thumb")
    assert await _get(acme_http_resource(serving), TOKEN) == (200, f"{TOKEN}.thumb".encode())
    assert await _get(acme_http_resource(serving), "../etc/passwd") == (404, b"no such challenge\n")
    await placing.withdraw(TOKEN)
    assert await _get(acme_http_resource(serving), TOKEN) == (404, b"no such challenge\n")


@pytest_twisted.ensureDeferred
async def test_answers_expire_and_are_bounded(two_fronts: Fronts) -> None:  # noqa: F811
    """An answer is served until its time is up, then purged; malformed tokens and a 101st answer are refused."""
    clock = Clock()
    clock.advance(1_700_000_000)
    store = DatabaseChallengeStore(two_fronts[0], clock, ttl_ms=60_000)
    other = DatabaseChallengeStore(two_fronts[1], clock, ttl_ms=60_000)
    await store.place(TOKEN, "answer")
    clock.advance(59)
    assert await other.lookup(TOKEN) == "answer"
    clock.advance(2)
    assert await other.lookup(TOKEN) is None
    with pytest.raises(ValueError):
        await store.place("not a token!", "x")
    for n in range(100):
        await store.place(f"{n:020d}", "x")  # the expired one is purged to make room
    with pytest.raises(ValueError, match="too many"):
        await other.place("b" * 30, "x")
    await store.place(f"{0:020d}", "y")  # replacing a pending answer is not one more


@pytest_twisted.ensureDeferred
async def test_one_front_end_holds_the_lease_until_it_lapses(two_fronts: Fronts) -> None:  # noqa: F811
    """The renewal lease is one holder's; kept while it works, taken over once it lapses, held after a failure."""
    clock = Clock()
    clock.advance(1_700_000_000)
    first = SharedCertificates(two_fronts[0], TEST_NAME, clock, owner="host-a:1:aa", lease_ttl=120)
    second = SharedCertificates(two_fronts[1], TEST_NAME, clock, owner="host-b:2:bb", lease_ttl=120)
    assert await first.take_lease() and not await second.take_lease()
    clock.advance(100)
    assert await first.keep_lease() and await second.lease_holder() == first.owner
    clock.advance(100)
    assert not await second.take_lease()  # kept: still first's
    clock.advance(121)  # first died without a word
    assert not await first.keep_lease()
    assert await second.take_lease() and await first.lease_holder() == second.owner
    await second.release_lease()
    assert await first.lease_holder() is None
    assert await first.take_lease()
    await first.release_lease(hold_for=RETRY_INTERVAL)  # a failed order: nobody asks the CA again for an hour
    clock.advance(RETRY_INTERVAL - 1)
    assert not await second.take_lease()
    clock.advance(2)
    assert await second.take_lease()


def _issued(names: tuple[str, ...], key_pem: bytes, days: int) -> bytes:
    from tests.appliance.test_acme_names import _issued_chain

    return _issued_chain(names, key_pem, days)


class _FakeCa:
    """An ACME client stand-in that issues (or fails) and counts its orders."""

    def __init__(self, fail: bool = False, days: int = 90) -> None:
        self.orders = 0
        self.fail = fail
        self.days = days

    async def issue(self, names: tuple[str, ...], challenges: IChallengeStore, key_pem: bytes) -> bytes:
        self.orders += 1
        if self.fail:
            raise RuntimeError("the CA is down")
        return _issued(tuple(names), key_pem, self.days)


def _front(folder: Path, database: Database, ca: Any, clock: Any) -> tuple[CertificateRenewal, Path, list[int]]:
    cert_path, key_path = folder / "acme.crt", folder / "acme.key"
    ensure_placeholder(cert_path, key_path, TEST_NAME)
    reloads: list[int] = []
    renewal = CertificateRenewal(
        ca,
        DatabaseChallengeStore(database, clock),
        cert_path,
        key_path,
        (TEST_NAME,),
        lambda: reloads.append(1),
        clock,
        shared=SharedCertificates(database, TEST_NAME, clock),
    )
    return renewal, cert_path, reloads


@pytest_twisted.ensureDeferred
async def test_a_failed_order_holds_the_lease_and_a_published_certificate_is_loaded(
    two_fronts: Fronts,  # noqa: F811
    tmp_path: Path,
) -> None:
    """After a failed order no other front end orders for the retry interval; what one issues, the other loads."""
    clock = Clock()
    clock.advance(datetime.datetime.now(datetime.UTC).timestamp())
    cas = [_FakeCa(fail=True), _FakeCa()]
    fronts = []
    for index, (database, ca) in enumerate(zip(two_fronts, cas, strict=True)):
        (tmp_path / str(index)).mkdir()
        fronts.append(_front(tmp_path / str(index), database, ca, clock))
    (first, first_cert, first_reloads), (second, second_cert, second_reloads) = fronts
    with pytest.raises(RuntimeError):
        await first.check()
    assert await second.check() is False and cas[1].orders == 0  # the lease is held for the retry interval
    clock.advance(RETRY_INTERVAL + 1)
    assert await second.check() is True and cas[1].orders == 1 and second_reloads == [1]
    cas[0].fail = False
    assert await first.check() is True and cas[0].orders == 1 and first_reloads == [1]  # loaded, not ordered
    assert first_cert.read_bytes() == second_cert.read_bytes()
    assert (tmp_path / "0" / "acme.key").read_bytes() == (tmp_path / "1" / "acme.key").read_bytes()
    assert not needs_certificate(first_cert, (TEST_NAME,))
    assert await first.check() is False and await second.check() is False


# -- with a real ACME server ---------------------------------------------------------------------------------


class _CountingClient:
    """The real ACME client, noting which front end is ordering (for the HTTP port to send the CA elsewhere)."""

    def __init__(self, client: AcmeClient, index: int, ordering: list[int]) -> None:
        self._client = client
        self._index = index
        self._ordering = ordering
        self.orders = 0

    async def issue(self, names: tuple[str, ...], challenges: IChallengeStore, key_pem: bytes) -> bytes:
        self.orders += 1
        self._ordering.append(self._index)
        return await self._client.issue(names, challenges, key_pem)


class _ToTheOtherFrontEnd(Resource):
    """The CA's validation requests, answered by the front end that did not place the order."""

    isLeaf = True

    def __init__(self, stores: list[IChallengeStore], ordering: list[int]) -> None:
        super().__init__()
        self._stores = stores
        self._ordering = ordering
        self.answered_by: list[int] = []

    def render_GET(self, request: Any) -> Any:
        assert self._ordering, "a validation request before any order"
        other = 1 - self._ordering[-1]
        self.answered_by.append(other)
        request.postpath = request.postpath[2:]  # past .well-known/acme-challenge
        return ChallengeResource(self._stores[other]).render_GET(request)


def _served_serial(port: int) -> int:
    ctx = stdlib_ssl.SSLContext(stdlib_ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = stdlib_ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=TEST_NAME) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


@pytest.mark.postgres
@pytest.mark.skipif(not pebble.available(), reason="Debian's pebble package is not installed (apt-get install pebble)")
@pytest_twisted.ensureDeferred
async def test_two_front_ends_on_one_metabase_order_once_from_pebble(tmp_path: Path) -> None:
    """Two front ends check at once: one orders, pebble's validation reaches the other, both serve the certificate."""
    import treq.client
    from twisted.internet import reactor, threads

    require_postgres()
    url = create_postgres_database("mv_acme")
    databases = [Database.open(url), Database.open(url)]
    listeners: list[Any] = []
    ca = None
    try:
        ordering: list[int] = []
        stores: list[IChallengeStore] = [DatabaseChallengeStore(db, reactor) for db in databases]
        validation = _ToTheOtherFrontEnd(stores, ordering)
        http_port = await threads.deferToThread(free_port)
        listeners.append(
            await serverFromString(reactor, f"tcp:{http_port}:interface=127.0.0.1").listen(Site(validation))
        )
        ca = await threads.deferToThread(pebble.start, tmp_path / "pebble", http_port)
        trust = ssl.Certificate.loadPEM(ca.api_ca.read_bytes())
        http = treq.client.HTTPClient(Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trustRoot=trust)))
        clients, renewals, ports, cert_paths = [], [], [], []
        for index, database in enumerate(databases):
            data = tmp_path / f"front{index}"
            cert_path, key_path = data / "tls" / "acme.crt", data / "tls" / "acme.key"
            ensure_placeholder(cert_path, key_path, TEST_NAME)
            contexts = TLSContexts(self_signed=ensure_self_signed(data, TEST_NAME), ca=(cert_path, key_path))
            listener = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
                TLSMemoryBIOFactory(contexts.server_context_factory("ca"), False, Factory.forProtocol(Protocol))
            )
            listeners.append(listener)
            acme = AcmeClient(ca.directory, new_account_key_pem(), http, reactor, poll_interval=0.2)
            client = _CountingClient(acme, index, ordering)
            renewal = CertificateRenewal(
                client,  # type: ignore[arg-type]
                stores[index],
                cert_path,
                key_path,
                (TEST_NAME,),
                contexts.reload,
                reactor,
                shared=SharedCertificates(database, TEST_NAME, reactor),
            )
            clients.append(client)
            renewals.append(renewal)
            ports.append(listener.getHost().port)
            cert_paths.append(cert_path)

        checks = await defer.gatherResults(
            [Deferred.fromCoroutine(renewal.check()) for renewal in renewals], consumeErrors=True
        )
        assert sorted(client.orders for client in clients) == [0, 1]  # only one front end ordered
        orderer = ordering[0]
        other = 1 - orderer
        assert checks[orderer] is True
        assert validation.answered_by and set(validation.answered_by) == {other}
        if not checks[other]:  # it found the lease taken and left the order to the holder
            assert await renewals[other].check() is True  # the next poll loads what the holder published
        assert clients[other].orders == 0
        assert cert_paths[0].read_bytes() == cert_paths[1].read_bytes()
        assert not needs_certificate(cert_paths[other], (TEST_NAME,))
        serials = [await threads.deferToThread(_served_serial, port) for port in ports]
        issued = x509.load_pem_x509_certificate(cert_paths[0].read_bytes())
        assert serials == [issued.serial_number, issued.serial_number]
        assert "Pebble" in issued.issuer.rfc4514_string()
        assert [await renewal.check() for renewal in renewals] == [False, False]
        assert await SharedCertificates(databases[0], TEST_NAME, reactor).lease_holder() is None
    finally:
        for listener in listeners:
            await listener.stopListening()
        if ca is not None:
            ca.stop()
        for database in databases:
            database.close()
        drop_postgres_database(url)
