"""Fixtures for the client tests: the real web app on a real HTTPS port on 127.0.0.1
(helpers in tests/support/client.py).

The app is built exactly as the web tests build it (``tests.support.webapi.make_api``: real SQLite,
real sessions, a settable clock, an in-memory outbound queue) and served by Twisted with a
certificate from a throwaway test CA, so the client's TLS pinning is exercised for real.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor, ssl

from mailiverse.store.db import Database
from mailiverse.testing import issue_test_certificate
from mailiverse.testing_db import sqlite_url
from tests.support.client import Served
from tests.support.webapi import make_api


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """The web app (first sign-up free, then invites) on a real TLS port."""
    database = Database.open(sqlite_url(tmp_path))
    api, delivery = make_api(database, tmp_path)
    issued = issue_test_certificate(tmp_path / "certs", ["localhost"])
    context = ssl.DefaultOpenSSLContextFactory(str(issued.key_path), str(issued.cert_path))
    port = reactor.listenSSL(0, api.app.site(), context, interface="127.0.0.1")  # type: ignore[attr-defined]
    try:
        yield Served(api, int(port.getHost().port), issued.ca_cert_path, issued.cert_path)
    finally:
        pytest_twisted.blockon(port.stopListening())
        delivery.stop()
        database.close()
