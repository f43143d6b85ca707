"""Fixtures for the DNS tests: a real DNS server in the test's reactor (tests/support/dnsserver.py)."""

from __future__ import annotations

from tests.support.dnsserver import dns_server  # noqa: F401 - a fixture
