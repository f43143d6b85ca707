"""The stored original's Authentication-Results header: well-formed RFC 8601 from the results, the only one in
the appliance's name, and no other byte of the message changed."""

from __future__ import annotations

import pytest
from authres import AuthenticationResultsHeader

from mailiverse.delivery.resultsheader import authserv_id_of, restamp, results_header
from mailiverse.delivery.verdicts import AuthResult

RESULTS = (
    AuthResult("spf", "pass", domain="remote.test", identity="mailfrom"),
    AuthResult("spf", "none", domain="mx.remote.test", identity="helo"),
    AuthResult("dkim", "pass", domain="remote.test", selector="sel"),
    AuthResult("arc", "none"),
    AuthResult("dmarc", "pass", domain="remote.test", policy="reject"),
)
BODY = b"Received: from x ([192.0.2.10])\r\n\tby mail.example.org; Sat, 21 Nov 2026\r\nFrom: bob@remote.test\r\n"


def test_the_header_parses_back_to_the_same_results() -> None:
    """authres reads our header back: the authserv-id, and each method, result and property in order."""
    header = results_header("mail.example.org", RESULTS)
    assert header.endswith(b"\r\n") and all(len(line) < 100 for line in header.split(b"\r\n"))
    parsed = AuthenticationResultsHeader.parse(header.decode().replace("\r\n", "").strip())
    assert parsed.authserv_id == "mail.example.org"
    assert [(r.method, r.result) for r in parsed.results] == [(r.method, r.result) for r in RESULTS]
    props = [{f"{p.type}.{p.name}": p.value for p in r.properties} for r in parsed.results]
    assert props[0] == {"smtp.mailfrom": "remote.test"}
    assert props[1] == {"smtp.helo": "mx.remote.test"}
    assert props[2] == {"header.d": "remote.test", "header.s": "sel"}
    assert props[4] == {"header.from": "remote.test", "policy.dmarc": "reject"}


def test_no_results_is_the_none_form() -> None:
    """RFC 8601's no-result: ``authserv-id; none``."""
    assert results_header("mail.example.org", ()) == b"Authentication-Results: mail.example.org;\r\n\tnone\r\n"


@pytest.mark.parametrize(
    "forged",
    [
        b"Authentication-Results: mail.example.org; dkim=pass header.d=bank.test\r\n",
        b"authentication-results:MAIL.EXAMPLE.ORG;spf=pass\r\n",
        b"Authentication-Results: (a (nested) comment) mail.example.org (another);\r\n\tdmarc=pass\r\n",
        b'Authentication-Results: "mail.example.org"; dmarc=pass\r\n',
        b"Authentication-Results:\r\n mail.example.org 1; arc=pass\r\n",
    ],
)
def test_an_incoming_header_in_our_name_is_removed(forged: bytes) -> None:
    """Whatever its spelling, folding or comments, a header claiming our authserv-id goes; ours comes first."""
    raw = BODY + forged + b"Subject: x\r\n\r\nAuthentication-Results: mail.example.org; in the body\r\n"
    header = results_header("mail.example.org", RESULTS)
    assert restamp(raw, "mail.example.org", header) == header + raw.replace(forged, b"")


def test_other_headers_stay_byte_for_byte() -> None:
    """Results of other hosts, look-alike names and everything else are kept exactly as they came."""
    kept = (
        b"Authentication-Results: mx.google.com; dkim=pass\r\n"
        b"Authentication-Results: mail.example.org.evil.test; dkim=pass\r\n"
        b"X-Authentication-Results: mail.example.org; dkim=pass\r\n"
    )
    raw = BODY + kept + b"Subject: x\r\n\r\nbody\r\n"
    assert restamp(raw, "mail.example.org", b"AR\r\n") == b"AR\r\n" + raw


def test_the_authserv_id_is_read_past_comments_and_quotes() -> None:
    """The authserv-id is the first token after CFWS, or a quoted string."""
    assert authserv_id_of(" (x (y) \\) z) Host.Test; spf=pass") == "host.test"
    assert authserv_id_of(' "quoted.test"; none') == "quoted.test"
    assert authserv_id_of("host.test(comment);none") == "host.test"
