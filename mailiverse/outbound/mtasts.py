"""MTA-STS (RFC 8461) for direct delivery: a recipient domain's policy, looked up, fetched, parsed and kept.

A domain that publishes ``_mta-sts.<domain> TXT "v=STSv1; id=..."`` serves its policy at
``https://mta-sts.<domain>/.well-known/mta-sts.txt``. :class:`MtaSts` asks the appliance's resolver for the
TXT record, fetches the policy with :class:`~mailiverse.webfetch.WebFetch` (verified TLS, no redirects, at
most 64 KiB), parses it strictly (:func:`parse_policy`) and keeps it for its ``max_age``, in memory (a
restart forgets every policy, so the first delivery after one trusts DNS and HTTPS afresh).

As §5.1 asks: a TXT record whose ``id`` matches the kept policy's means no fetch; a changed ``id`` or an
expired policy means a new fetch; a missing TXT record, a failed lookup or a failed fetch leaves the kept,
unexpired policy in force, and without one the domain is treated as having none. What the transport does
with a policy (only matching MX hosts, verified TLS) is in ``transport.py``.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mailiverse.dns import DnsRecord, DnsTemporaryError, IDnsResolver, InvalidDnsQuery
from mailiverse.logs import Logger
from mailiverse.webfetch import FetchError, WebFetch

log = Logger()

Mode = Literal["enforce", "testing", "none"]
MODES: tuple[Mode, ...] = ("enforce", "testing", "none")
#: RFC 8461 §3.2: a policy is at most 64 KiB; max_age at most 31557600 s (a year).
MAX_POLICY_BYTES = 64 * 1024
MAX_AGE_LIMIT_S = 31_557_600
#: More MX patterns than any domain needs is a policy written to cost its readers.
MAX_MX_PATTERNS = 100
#: Domains whose policies are kept; the least recently used one goes first.
MAX_KEPT_DOMAINS = 10_000
POLICY_PATH = "/.well-known/mta-sts.txt"

_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_EXTENSION_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_TXT_EXTENSION_VALUE = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]+")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_WSP = " \t"


class PolicyError(ValueError):
    """A policy that breaks RFC 8461's grammar; the message says which rule (it goes to the log only)."""


@dataclass(frozen=True)
class Policy:
    """One domain's policy: its mode, the MX host patterns it allows, and for how long it holds."""

    mode: Mode
    mx: tuple[str, ...]
    max_age: int
    id: str = ""

    def allows(self, host: str) -> bool:
        """Whether the MX host ``host`` matches one of the policy's ``mx`` patterns (§4.1)."""
        return any(mx_matches(pattern, host) for pattern in self.mx)


def mx_matches(pattern: str, host: str) -> bool:
    """§4.1: a pattern equals the host name, or ``*.`` stands for exactly one left-most label of it."""
    host = host.lower().rstrip(".")
    if pattern.startswith("*."):
        head, dot, rest = host.partition(".")
        return bool(head and dot) and rest == pattern[2:]
    return host == pattern


def txt_policy_id(records: Sequence[DnsRecord]) -> str | None:
    """The ``id`` of the one ``v=STSv1`` TXT record (§3.1), or None when there is none, more than one, or it is
    malformed: then the domain is treated as publishing no policy."""
    candidates = [r for r in records if isinstance(r, bytes) and r.startswith(b"v=STSv1;")]
    if len(candidates) != 1:
        return None
    try:
        text = candidates[0].decode("ascii")
    except UnicodeDecodeError:
        return None
    fields = [part.strip(_WSP) for part in text.split(";")]
    if fields and fields[-1] == "":
        fields.pop()  # a trailing separator is allowed
    if fields[0] != "v=STSv1":
        return None
    found: str | None = None
    for field in fields[1:]:
        name, eq, value = field.partition("=")
        if not eq or not _EXTENSION_NAME.fullmatch(name):
            return None
        if name == "id":
            if found is not None or not _ID.fullmatch(value):
                return None
            found = value
        elif not _TXT_EXTENSION_VALUE.fullmatch(value):
            return None
    return found


def _mx_pattern(value: str) -> str:
    pattern = value.lower()
    name = pattern[2:] if pattern.startswith("*.") else pattern
    name = name[:-1] if name.endswith(".") else name
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise PolicyError(f"mx {value[:80]!r} is not a host name or *.host name pattern")
    return ("*." if pattern.startswith("*.") else "") + name


def parse_policy(body: bytes) -> Policy:
    """A policy file (§3.2) as a :class:`Policy`; :class:`PolicyError` for anything its grammar does not allow.

    Lines end in CRLF or LF; each is ``key: value`` with no space before the colon; ``version: STSv1``,
    ``mode`` and ``max_age`` appear once each, ``mx`` at least once unless the mode is ``none``; other keys are
    extensions and are ignored (§3.2), but must still be well formed. ``max_age`` over a year counts as a year.
    """
    if len(body) > MAX_POLICY_BYTES:
        raise PolicyError(f"the policy is over {MAX_POLICY_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyError("the policy is not UTF-8") from None
    lines = text.split("\n")
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    while lines and lines[-1] == "":
        lines.pop()  # the final line terminator (and blank lines after it)
    singles: dict[str, str] = {}
    mx: list[str] = []
    for number, line in enumerate(lines, 1):
        key, colon, rest = line.partition(":")
        if not colon or not _EXTENSION_NAME.fullmatch(key):
            raise PolicyError(f"line {number} is not 'key: value'")
        value = rest.strip(_WSP)
        if not value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise PolicyError(f"line {number} ({key}) has an empty value or control characters")
        if key == "mx":
            if len(mx) == MAX_MX_PATTERNS:
                raise PolicyError(f"the policy has more than {MAX_MX_PATTERNS} mx patterns")
            mx.append(_mx_pattern(value))
        elif key in ("version", "mode", "max_age"):
            if key in singles:
                raise PolicyError(f"{key} appears more than once")
            singles[key] = value
    if singles.get("version") != "STSv1":
        raise PolicyError("the policy has no 'version: STSv1'")
    mode = singles.get("mode")
    if mode not in MODES:
        raise PolicyError("the policy's mode is not enforce, testing or none")
    max_age = singles.get("max_age", "")
    if not max_age.isascii() or not max_age.isdigit() or len(max_age) > 10:
        raise PolicyError("the policy's max_age is not a number of seconds (at most 10 digits)")
    if not mx and mode != "none":
        raise PolicyError(f"a policy in mode {mode} names no mx")
    return Policy(mode, tuple(dict.fromkeys(mx)), min(int(max_age), MAX_AGE_LIMIT_S))


@dataclass(frozen=True)
class _Kept:
    policy: Policy
    expires: float


class MtaSts:
    """The MTA-STS policies of recipient domains, as direct delivery asks for them; one per appliance.

    ``resolver`` is the appliance's (``--dns-server``), ``fetch`` its one :class:`WebFetch` (its trust roots:
    the system's and ``--trust-ca``), ``clock`` gives ``seconds()`` (the reactor).
    """

    def __init__(
        self, resolver: IDnsResolver, fetch: WebFetch, clock: Any, *, max_domains: int = MAX_KEPT_DOMAINS
    ) -> None:
        self._resolver = resolver
        self._fetch = fetch
        self._clock = clock
        self._max_domains = max_domains
        self._kept: OrderedDict[str, _Kept] = OrderedDict()

    def _still_kept(self, domain: str) -> _Kept | None:
        kept = self._kept.get(domain)
        if kept is not None and kept.expires <= self._clock.seconds():
            del self._kept[domain]
            return None
        if kept is not None:
            self._kept.move_to_end(domain)
        return kept

    async def policy(self, domain: str) -> Policy | None:
        """``domain``'s policy in force now, or None when it has none (or none could be had and none is kept)."""
        domain = domain.lower().rstrip(".")
        kept = self._still_kept(domain)
        try:
            answer = await self._resolver.lookup(f"_mta-sts.{domain}", "TXT")
        except (DnsTemporaryError, InvalidDnsQuery):
            return kept.policy if kept else None
        policy_id = txt_policy_id(answer.records)
        if policy_id is None:
            return kept.policy if kept else None
        if kept is not None and kept.policy.id == policy_id:
            return kept.policy
        try:
            policy = await self._fetch_policy(domain)
        except (FetchError, PolicyError) as error:
            log.info(
                "MTA-STS: no policy for {domain} ({why}); {fallback}",
                domain=domain,
                why=str(error),
                fallback="the one fetched before holds" if kept else "delivering as if it published none",
            )
            return kept.policy if kept else None
        policy = Policy(policy.mode, policy.mx, policy.max_age, policy_id)
        self._kept[domain] = _Kept(policy, self._clock.seconds() + policy.max_age)
        self._kept.move_to_end(domain)
        while len(self._kept) > self._max_domains:
            self._kept.popitem(last=False)
        log.debug("MTA-STS: {domain} policy {id}: mode {mode}", domain=domain, id=policy_id, mode=policy.mode)
        return policy

    async def _fetch_policy(self, domain: str) -> Policy:
        fetched = await self._fetch.get(
            f"https://mta-sts.{domain}{POLICY_PATH}", max_bytes=MAX_POLICY_BYTES, accept="text/plain"
        )
        if fetched.status != 200:
            raise FetchError(f"mta-sts.{domain} answered HTTP {fetched.status}, not 200")
        media_type = fetched.content_type.split(";", 1)[0].strip().lower()
        if media_type != "text/plain":
            raise FetchError(f"mta-sts.{domain} served the policy as {media_type[:60]!r}, not text/plain")
        return parse_policy(fetched.body)
