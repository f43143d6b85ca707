"""``twistd mailiverse --trusted-proxy CIDR`` (repeatable): parsed into the configuration, refused with an
error naming the option when the value is no network or when there is no ``--web-plain`` listener."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from twisted.python import usage

from tests.support.options import parse


def test_repeated_trusted_proxies_are_kept_in_order(tmp_path: Path) -> None:
    """Each --trusted-proxy adds one network; a bare address is a /32 (or /128)."""
    config = parse(
        tmp_path,
        "--web-plain",
        "tcp:8080",
        "--trusted-proxy",
        "10.0.0.0/8",
        "--trusted-proxy",
        "2001:db8::/32",
        "--trusted-proxy",
        "192.0.2.10",
    )
    assert config.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
        ipaddress.ip_network("192.0.2.10/32"),
    )


def test_no_trusted_proxy_by_default(tmp_path: Path) -> None:
    """Without the option no peer is trusted, with or without --web-plain."""
    assert parse(tmp_path).trusted_proxies == ()
    assert parse(tmp_path, "--web-plain", "tcp:8080").trusted_proxies == ()


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("10.0.0.1/8", "host bits"),
        ("proxy.example.org", "CIDR"),
        ("10.0.0.0/40", "not a valid"),
        ("0.0.0.0/0", "every peer"),
    ],
)
def test_bad_network_is_refused_naming_the_option(tmp_path: Path, value: str, why: str) -> None:
    """A value that is not one IP network (or trusts everyone) stops start-up with the option and value named."""
    with pytest.raises(usage.UsageError, match=why) as raised:
        parse(tmp_path, "--web-plain", "tcp:8080", "--trusted-proxy", value)
    assert f"--trusted-proxy {value!r}" in str(raised.value) or f"--trusted-proxy {value}" in str(raised.value)


@pytest.mark.parametrize("web_plain", [[], ["--web-plain", "none"]])
def test_trusted_proxy_needs_a_plain_listener(tmp_path: Path, web_plain: list[str]) -> None:
    """Forwarding headers are read only on --web-plain listeners, so --trusted-proxy without one is refused."""
    with pytest.raises(usage.UsageError, match="--web-plain") as raised:
        parse(tmp_path, *web_plain, "--trusted-proxy", "10.0.0.0/8")
    assert "--trusted-proxy" in str(raised.value)
