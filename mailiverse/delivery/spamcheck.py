"""The built-in spam check of a received message, run in the delivery worker beside the judge.

Three signals, each cheap and explainable (docs/running.md lists them):

* GTUBE, the standard test string (the raw message contains it): refused outright, ``554 5.7.1``;
* the connecting address listed in a DNS blocklist the operator named (``--dnsbl ZONE``), asked over
  the message's ``Enquirer`` like every other lookup (an answer in 127.0.0.0/8 is a listing; the
  127.255.255.0/24 answers are a list's own error codes, not listings, and no answer is no listing);
* the sender's authentication failing (SPF, DKIM, DMARC, ARC results from ``delivery/judge.py``).

Each signal adds its weight to a score; at ``THRESHOLD`` or above the message is spam and goes to the
spam folder ("add header", in rspamd's words). When the appliance has a spam filter (``--rspamd``) its
report comes in the request and the more severe of the two decides (``delivery/policy.py``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from mailiverse.delivery.dnschannel import DnsUnavailable, Enquirer, dns_name
from mailiverse.delivery.policy import trusted_arc
from mailiverse.delivery.verdicts import AuthResult, JudgeRequest, SpamReport

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
#: The score at which a message is spam.
THRESHOLD = 5.0
#: What each signal adds: one blocklist listing alone makes spam; failed authentication needs three failures
#: (SPF, DKIM and DMARC: a forgery whose signature broke too), or two and a listing.
WEIGHTS = {
    "DNSBL_LISTED": 5.0,
    "SPF_FAIL": 2.0,
    "SPF_SOFTFAIL": 1.0,
    "DKIM_FAIL": 2.0,
    "DMARC_FAIL": 2.0,
    "ARC_FAIL": 1.0,
}
#: Blocklist zones asked per message (each one question).
MAX_DNSBL_ZONES = 8
_LISTING = ipaddress.ip_network("127.0.0.0/8")
_LIST_ERRORS = ipaddress.ip_network("127.255.255.0/24")


def gtube(raw: bytes) -> SpamReport | None:
    """The report refusing ``raw`` when it carries the GTUBE test string."""
    if GTUBE in raw:
        return SpamReport("built-in", "reject", 1000.0, THRESHOLD, ("GTUBE",))
    return None


def builtin_report(results: Sequence[AuthResult], request: JudgeRequest, enquirer: Enquirer | None) -> SpamReport:
    """The built-in check's report of a message whose authentication gave ``results``."""
    # A chain sealed by a trusted forwarder vouches for the message: what forwarding broke is not held against it.
    symbols = [] if trusted_arc(results, request) else _authentication_symbols(results)
    if enquirer is not None and request.dnsbl_zones:
        with enquirer.allowance(MAX_DNSBL_ZONES):
            if listed(request.client_ip, request.dnsbl_zones, enquirer):
                symbols.insert(0, "DNSBL_LISTED")
    score = sum(WEIGHTS[symbol] for symbol in symbols)
    action = "add header" if score >= THRESHOLD else "no action"
    return SpamReport("built-in", action, score, THRESHOLD, tuple(symbols))


def _authentication_symbols(results: Sequence[AuthResult]) -> list[str]:
    symbols = []
    spf = next((r for r in results if r.method == "spf"), None)  # the MAIL FROM's (or a bounce's HELO's)
    if spf is not None and spf.result in ("fail", "softfail"):
        symbols.append("SPF_FAIL" if spf.result == "fail" else "SPF_SOFTFAIL")
    signatures = [r for r in results if r.method == "dkim"]
    if any(r.result == "fail" for r in signatures) and not any(r.result == "pass" for r in signatures):
        symbols.append("DKIM_FAIL")
    if any(r.method == "dmarc" and r.result == "fail" for r in results):
        symbols.append("DMARC_FAIL")
    if any(r.method == "arc" and r.result == "fail" for r in results):
        symbols.append("ARC_FAIL")
    return symbols


def query_name(client_ip: str, zone: str) -> str:
    """The blocklist question for ``client_ip`` in ``zone`` (RFC 5782): the address's labels reversed
    (nibbles for IPv6); "" for something that is not an address or a zone."""
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return ""
    reversed_labels = address.reverse_pointer.rsplit(".", 2)[0]  # without in-addr.arpa / ip6.arpa
    return dns_name(f"{reversed_labels}.{zone}") if dns_name(zone) else ""


def listed(client_ip: str, zones: Sequence[str], enquirer: Enquirer) -> bool:
    """Whether any of ``zones`` lists ``client_ip``; a lookup without answer counts as no listing."""
    for zone in zones[:MAX_DNSBL_ZONES]:
        name = query_name(client_ip, zone)
        if not name:
            continue
        try:
            records = enquirer.lookup(name, "A")
        except DnsUnavailable:
            continue
        for record in records:
            try:
                address = ipaddress.ip_address(str(record))
            except ValueError:
                continue
            if address in _LISTING and address not in _LIST_ERRORS:
                return True
    return False
