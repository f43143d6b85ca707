"""What the appliance does with a judged message: the verdict the clients show and the action SMTP takes.

Pure rules over the checks' results (``delivery/judge.py``), run in the delivery worker:

* a From in one of the appliance's own domains (or its host name), arriving from outside, is refused
  (``550 5.7.1``) whatever that domain's DNS says: its users send only through the logged-in paths;
* DMARC ``pass`` is a verified sender;
* DMARC ``fail`` under ``p=reject`` is refused (``550 5.7.1``), under ``p=quarantine`` filed as spam,
  unless an ARC chain sealed by a trusted sealer vouches for the message (a mailing list that kept the
  original From); when a lookup the outcome hangs on had no answer, the message is deferred instead
  (``451 4.7.0``), since a retry may pass;
* no answer for DMARC itself defers the message: its policy is unknown;
* spam (``with_spam``): the more severe of the spam filter's report and the built-in check's decides:
  ``reject`` refuses (``554 5.7.1``), ``soft reject`` and ``greylist`` defer (``451 4.7.1``), ``add
  header`` and ``rewrite subject`` file the message in the spam folder. A message the authenticity
  rules already refuse stays refused for that reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from mailiverse.delivery.verdicts import AuthResult, Judgement, JudgeRequest, SpamReport

#: How severe each spam action is; the more severe of two reports decides.
SPAM_SEVERITY = {"no action": 0, "add header": 1, "rewrite subject": 1, "greylist": 2, "soft reject": 3, "reject": 4}
#: What each spam action makes of the message: (action, reason).
_SPAM_OUTCOMES = {
    "reject": ("reject", "spam"),
    "soft reject": ("defer", "spam-defer"),
    "greylist": ("defer", "greylist"),
    "add header": ("quarantine", "spam-quarantine"),
    "rewrite subject": ("quarantine", "spam-quarantine"),
}


def claims_local_domain(from_domains: Iterable[str], request: JudgeRequest) -> bool:
    """Whether a From domain is one the appliance serves, or its own host name."""
    own = {domain.lower() for domain in request.local_domains} | {request.authserv_id.lower()}
    return any(domain in own for domain in from_domains)


def decide(results: Sequence[AuthResult], from_domains: Iterable[str], request: JudgeRequest) -> Judgement:
    """The judgement of a message whose checks gave ``results`` and whose From names ``from_domains``."""
    found = tuple(results)
    if claims_local_domain(from_domains, request):
        return Judgement("failed", "reject", "local-domain", found)
    dmarc = next((r for r in found if r.method == "dmarc"), None)
    if dmarc is None or dmarc.result in ("none", "permerror"):
        return Judgement("unverified", results=found)
    if dmarc.result == "pass":
        return Judgement("verified", results=found)
    if dmarc.result == "temperror":
        return Judgement("unverified", "defer", "dns", found)
    if trusted_arc(found, request):
        return Judgement("unverified", results=found)
    if dmarc.policy in ("reject", "quarantine") and _undecided(found):
        return Judgement("failed", "defer", "dns", found)
    if dmarc.policy == "reject":
        return Judgement("failed", "reject", "dmarc-reject", found)
    if dmarc.policy == "quarantine":
        return Judgement("failed", "quarantine", "dmarc-quarantine", found)
    return Judgement("failed", results=found)


def decisive_report(builtin: SpamReport | None, filtered: SpamReport | None) -> SpamReport | None:
    """The report that decides: the more severe; the filter's when they are as severe."""
    if builtin is None or filtered is None:
        return filtered or builtin
    return builtin if SPAM_SEVERITY[builtin.action] > SPAM_SEVERITY[filtered.action] else filtered


def with_spam(judgement: Judgement, report: SpamReport | None) -> Judgement:
    """``judgement`` with the spam check's ``report`` recorded and applied."""
    if report is None:
        return judgement
    judged = dataclasses.replace(judgement, spam=report)
    if judgement.refused or report.action not in _SPAM_OUTCOMES:
        return judged
    action, reason = _SPAM_OUTCOMES[report.action]
    if action == "quarantine" and judgement.quarantined:
        return judged  # filed as spam already, for DMARC's reason
    return dataclasses.replace(judged, action=action, reason=reason)


def as_displayed(judgement: Judgement, displayed_domains: Iterable[str], request: JudgeRequest) -> Judgement:
    """``judgement`` held against the From the clients will show (the twin's), which another parser read.

    A displayed local From is refused like any other; a sender is "verified" only when the displayed
    From is the domain DMARC verified, so a header only one of the parsers understands cannot lend
    one domain's pass to another.
    """
    shown = set(displayed_domains)
    if not judgement.refused and claims_local_domain(shown, request):
        return dataclasses.replace(judgement, verdict="failed", action="reject", reason="local-domain")
    if judgement.verdict == "verified":
        dmarc = next(r for r in judgement.results if r.method == "dmarc")
        if shown != {dmarc.domain}:
            return dataclasses.replace(judgement, verdict="unverified")
    return judgement


def trusted_arc(results: Sequence[AuthResult], request: JudgeRequest) -> bool:
    """Whether a passing ARC chain was sealed last by a sealer the operator trusts (``--trusted-arc-sealer``)."""
    trusted = {sealer.lower() for sealer in request.trusted_arc_sealers}
    return any(r.method == "arc" and r.result == "pass" and r.domain in trusted for r in results)


def _undecided(results: Sequence[AuthResult]) -> bool:
    """Whether a check DMARC counts went unanswered: the MAIL FROM's SPF (the first SPF result) or a DKIM signature."""
    spf = next((r for r in results if r.method == "spf"), None)
    if spf is not None and spf.result == "temperror":
        return True
    return any(r.method == "dkim" and r.result == "temperror" for r in results)
