"""What judging a message is asked to do and what it found, as values both sides of the worker pipe share.

The appliance asks with a ``JudgeRequest`` (inside the ``SealJob``); the worker answers with a
``Judgement`` (inside ``SealedMeta``): each check's result, the one-word verdict the clients show, and
what the appliance does with the message. From a worker the judgement is hostile output:
``Judgement.from_wire`` keeps only known words and plain DNS names, so it can neither forge a log
line nor an SMTP reply (the reply texts are the appliance's own, chosen by ``reason``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

METHODS = frozenset({"spf", "dkim", "dmarc", "arc"})
#: RFC 8601's result words, for every method together.
RESULTS = frozenset({"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror", "policy"})
#: The sender as the clients show it: DMARC passed (aligned), nothing proved either way, or it failed.
VERDICTS = frozenset({"verified", "unverified", "failed"})
#: What the appliance does: store, store in the spam folder, refuse for good, refuse for now.
ACTIONS = frozenset({"accept", "quarantine", "reject", "defer"})
#: Why a message is refused or quarantined ("" when it is accepted as it is): its authenticity, or
#: spam (refused outright, deferred by the filter, greylisted, or filed in the spam folder); or an end-to-end
#: carrier with no envelope for a recipient's key (``envelope-key``).
REASONS = frozenset(
    {
        "",
        "local-domain",
        "dmarc-reject",
        "dmarc-quarantine",
        "dns",
        "spam",
        "spam-defer",
        "greylist",
        "spam-quarantine",
        "envelope-key",
    }
)
IDENTITIES = frozenset({"", "mailfrom", "helo"})
POLICIES = frozenset({"", "none", "quarantine", "reject"})

_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_")


def plain_name(value: object) -> str:
    """``value`` lower-cased if it looks like a DNS name (at most 253 letters, digits, dots, hyphens,
    underscores), else ""."""
    if not isinstance(value, str) or not 0 < len(value) <= 253:
        return ""
    name = value.lower().rstrip(".")
    return name if name and set(name) <= _NAME_CHARACTERS else ""


def _word(value: object, allowed: frozenset[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{value!r} is not one of the judgement's words")
    return value


#: The spam filter's actions (rspamd's words; the built-in check uses "no action", "add header" and "reject").
SPAM_ACTIONS = frozenset({"no action", "greylist", "add header", "rewrite subject", "soft reject", "reject"})
CHECKERS = frozenset({"rspamd", "built-in"})
#: Rule names a report keeps (the first ones), and how they look: upper-case words.
MAX_SYMBOLS = 48
_SYMBOL_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def symbol_names(values: object) -> tuple[str, ...]:
    """The rule names among ``values`` that look like one (upper-case letters, digits, underscores; at most
    64 characters), at most ``MAX_SYMBOLS`` of them: a filter's output cannot put anything else in the twin."""
    if not isinstance(values, (list, tuple)):
        return ()
    names = [v for v in values if isinstance(v, str) and 0 < len(v) <= 64 and set(v) <= _SYMBOL_CHARACTERS]
    return tuple(dict.fromkeys(names))[:MAX_SYMBOLS]


def _score(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or abs(value) > 1e6:
        raise ValueError("a spam score is a finite number")
    return round(float(value), 2)


@dataclass(frozen=True)
class SpamReport:
    """One spam check's outcome: who checked, the action it asks for, its score against its threshold, and
    the rules that fired (names only: nothing of the message)."""

    checker: str
    action: str
    score: float = 0.0
    threshold: float = 0.0
    symbols: tuple[str, ...] = ()

    @property
    def is_spam(self) -> bool:
        return self.action != "no action"

    def to_wire(self) -> dict[str, Any]:
        return {
            "checker": self.checker,
            "action": self.action,
            "score": self.score,
            "threshold": self.threshold,
            "symbols": list(self.symbols),
        }

    @classmethod
    def from_wire(cls, value: object) -> SpamReport:
        if not isinstance(value, dict):
            raise ValueError("a spam report is a JSON object")
        return cls(
            checker=_word(value.get("checker"), CHECKERS),
            action=_word(value.get("action"), SPAM_ACTIONS),
            score=_score(value.get("score", 0.0)),
            threshold=_score(value.get("threshold", 0.0)),
            symbols=symbol_names(value.get("symbols", [])),
        )

    def twin_member(self) -> dict[str, Any]:
        """The twin's top-level ``spam`` member."""
        return {"spam": self.is_spam, **self.to_wire()}


@dataclass(frozen=True)
class JudgeRequest:
    """What the worker judges a message by: how it arrived, who judges, and what to trust.

    Without ``dns`` (the appliance has no resolver) only the rule that needs none applies: a From in
    one of ``local_domains`` is refused.
    """

    client_ip: str
    helo: str
    mail_from: str
    authserv_id: str
    local_domains: tuple[str, ...]
    trusted_arc_sealers: tuple[str, ...] = ()
    dns: bool = True
    #: DNS blocklist zones the connecting address is looked up in (``--dnsbl``).
    dnsbl_zones: tuple[str, ...] = ()
    #: The spam filter's report when the appliance has one (``--rspamd``): asked before the worker runs.
    filter_report: SpamReport | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "client_ip": self.client_ip,
            "helo": self.helo,
            "mail_from": self.mail_from,
            "authserv_id": self.authserv_id,
            "local_domains": list(self.local_domains),
            "trusted_arc_sealers": list(self.trusted_arc_sealers),
            "dns": self.dns,
            "dnsbl_zones": list(self.dnsbl_zones),
            "filter_report": None if self.filter_report is None else self.filter_report.to_wire(),
        }

    @classmethod
    def from_wire(cls, value: dict[str, Any]) -> JudgeRequest:
        return cls(
            client_ip=str(value["client_ip"]),
            helo=str(value["helo"]),
            mail_from=str(value["mail_from"]),
            authserv_id=str(value["authserv_id"]),
            local_domains=tuple(str(d) for d in value["local_domains"]),
            trusted_arc_sealers=tuple(str(d) for d in value["trusted_arc_sealers"]),
            dns=bool(value["dns"]),
            dnsbl_zones=tuple(str(z) for z in value.get("dnsbl_zones", ())),
            filter_report=None if value.get("filter_report") is None else SpamReport.from_wire(value["filter_report"]),
        )


@dataclass(frozen=True)
class AuthResult:
    """One check's outcome: ``method`` and ``result`` (RFC 8601 words) and what it was about.

    ``domain`` is the SPF identity's domain, DKIM's ``d=``, DMARC's From domain or the ARC chain's
    latest sealer; ``selector`` DKIM's ``s=``; ``identity`` which SPF identity (``mailfrom`` or
    ``helo``); ``policy`` the DMARC policy that applied.
    """

    method: str
    result: str
    domain: str = ""
    selector: str = ""
    identity: str = ""
    policy: str = ""

    def to_wire(self) -> dict[str, str]:
        wire = {"method": self.method, "result": self.result, "domain": self.domain, "selector": self.selector}
        if self.identity:
            wire["identity"] = self.identity
        if self.policy:
            wire["policy"] = self.policy
        return wire

    @classmethod
    def from_wire(cls, value: object) -> AuthResult:
        if not isinstance(value, dict):
            raise ValueError("a check's result is a JSON object")
        return cls(
            method=_word(value.get("method"), METHODS),
            result=_word(value.get("result"), RESULTS),
            domain=plain_name(value.get("domain")),
            selector=plain_name(value.get("selector")),
            identity=_word(value.get("identity", ""), IDENTITIES),
            policy=_word(value.get("policy", ""), POLICIES),
        )


#: Results one message may report (a few of each method; more signatures are not verified).
MAX_RESULTS = 32


@dataclass(frozen=True)
class Judgement:
    """The checks of one message, the verdict the clients show, and the appliance's action."""

    verdict: str
    action: str = "accept"
    reason: str = ""
    results: tuple[AuthResult, ...] = ()
    #: The spam check whose report decided (the filter's, else the built-in one's); None when none ran.
    spam: SpamReport | None = None

    @property
    def refused(self) -> bool:
        """Nothing is to be stored: the message is refused for good or for now."""
        return self.action in ("reject", "defer")

    @property
    def quarantined(self) -> bool:
        return self.action == "quarantine"

    def to_wire(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "action": self.action,
            "reason": self.reason,
            "results": [result.to_wire() for result in self.results],
            "spam": None if self.spam is None else self.spam.to_wire(),
        }

    @classmethod
    def from_wire(cls, value: object) -> Judgement:
        if not isinstance(value, dict):
            raise ValueError("a judgement is a JSON object")
        results = value.get("results")
        if not isinstance(results, list) or len(results) > MAX_RESULTS:
            raise ValueError("a judgement's results are a short list")
        return cls(
            verdict=_word(value.get("verdict"), VERDICTS),
            action=_word(value.get("action"), ACTIONS),
            reason=_word(value.get("reason"), REASONS),
            results=tuple(AuthResult.from_wire(result) for result in results),
            spam=None if value.get("spam") is None else SpamReport.from_wire(value["spam"]),
        )

    def twin_member(self) -> dict[str, Any]:
        """The twin's top-level ``authentication`` member (original clients ignore members they do not know)."""
        member: dict[str, Any] = {"verdict": self.verdict, "results": [result.to_wire() for result in self.results]}
        if self.quarantined:
            member["quarantined"] = True
        return member
