"""Check published DNS records against the ones set-up asks for, through a twisted.names resolver.

The resolver is any ``twisted.internet.interfaces.IResolver`` (``twisted.names.client`` in use, an
in-memory ``twisted.names.authority`` zone in tests), so the check is the same code either way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from twisted.internet.defer import Deferred, TimeoutError
from twisted.names import dns, error

from mailiverse.dnsrecords import DnsRecord

Status = Literal["ok", "missing", "different", "unanswered"]
_SPACE = re.compile(r"\s+")
#: Seconds each lookup may take before the record is reported as unanswered.
LOOKUP_TIMEOUT = (2, 5)


@dataclass(frozen=True)
class CheckResult:
    """What DNS says about one expected record; ``found`` are the values of the same kind that were seen."""

    record: DnsRecord
    status: Status
    found: tuple[str, ...]


def _norm(value: str) -> str:
    return _SPACE.sub(" ", value.strip().rstrip(";")).lower()


def _tag(value: str) -> str:
    """The record kind of a TXT value: its ``v=`` tag (``v=spf1``, ``v=dkim1``...)."""
    return _norm(value).split(" ", 1)[0].rstrip(";")


def _answers(result: Any, rtype: int) -> list[Any]:
    answers = result[0] if isinstance(result, tuple) else result
    return [rr.payload for rr in answers if rr.type == rtype]


async def _lookup(resolver: Any, record: DnsRecord) -> list[str]:
    method = {"MX": "lookupMailExchange", "TXT": "lookupText", "CNAME": "lookupCanonicalName"}[record.rtype]
    lookup: Deferred[Any] = getattr(resolver, method)(record.name, timeout=LOOKUP_TIMEOUT)
    result = await lookup
    if record.rtype == "MX":
        return [f"{p.preference} {p.name.name.decode('ascii').lower()}." for p in _answers(result, dns.MX)]
    if record.rtype == "CNAME":
        return [f"{p.name.name.decode('ascii').lower()}." for p in _answers(result, dns.CNAME)]
    return [b"".join(p.data).decode("utf-8", "replace") for p in _answers(result, dns.TXT)]


async def check_record(resolver: Any, record: DnsRecord) -> CheckResult:
    """Look ``record`` up and compare: ``ok``, ``missing``, ``different`` (same kind, other value) or ``unanswered``."""
    try:
        values = await _lookup(resolver, record)
    except (error.DomainError, error.AuthoritativeDomainError):
        return CheckResult(record, "missing", ())
    except (TimeoutError, error.DNSServerError, error.DNSQueryRefusedError, error.DNSNameError, error.DNSUnknownError):
        return CheckResult(record, "unanswered", ())
    expected = _norm(record.value)
    if record.rtype == "TXT":
        same_kind = tuple(v for v in values if _tag(v) == _tag(record.value))
    elif record.rtype == "MX":
        same_kind = tuple(values)
        expected_host = expected.split(" ", 1)[1]
        if any(_norm(v).split(" ", 1)[1] == expected_host for v in values):
            return CheckResult(record, "ok", same_kind)
    else:
        same_kind = tuple(values)
    if any(_norm(v) == expected for v in same_kind):
        return CheckResult(record, "ok", same_kind)
    return CheckResult(record, "different" if same_kind else "missing", same_kind)


async def check_records(resolver: Any, records: list[DnsRecord]) -> list[CheckResult]:
    """Check every record, one after another (a handful of queries; no need to flood a resolver)."""
    return [await check_record(resolver, record) for record in records]


def report(results: list[CheckResult]) -> str:
    """One line per record: status, type and name, and what was found when it differs."""
    lines = []
    for r in results:
        line = f"{r.status:<10} {r.record.rtype:<5} {r.record.name}"
        if r.status == "different":
            line += "  (found: " + " | ".join(v[:80] for v in r.found) + ")"
        lines.append(line)
    return "\n".join(lines) + "\n"
