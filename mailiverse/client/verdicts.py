"""What a message's JSON twin says about its sender and about spam, read defensively, and the words the CLI shows.

The appliance adds two members to the twin of mail it receives from outside (docs/api.md): ``authentication``
(whether the sender's domain proved the message is theirs) and ``spam`` (what the spam check found). The client
reads them after decrypting the twin; it must not import the server's own readers (the client is a separate
program), so it has its own reader here, which keeps only the words it knows and plain DNS names: a malformed
or hostile member (wrong types, unknown words, huge lists, control characters) yields "nothing known" for that
part, never an exception and never text that reaches the terminal unchecked. Mail without these members
(internal mail, Sent, older mail) has no verdict and shows none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: The sender verdicts of the contract: DMARC passed (aligned), nothing proved either way, or it failed.
SENDER_VERDICTS = frozenset({"verified", "unverified", "failed"})
#: The spam checkers a client names; another word is shown as no name.
CHECKERS = frozenset({"rspamd", "built-in"})
#: How many check results are looked at (the appliance records a few per method).
MAX_RESULTS = 32
#: Scores beyond this are not believable and are not shown.
MAX_SCORE = 1_000_000.0
_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_")


def plain_name(value: object) -> str:
    """``value`` lower-cased if it is a plain DNS name (at most 253 letters, digits, dots, hyphens,
    underscores), else ""."""
    if not isinstance(value, str) or not 0 < len(value) <= 253:
        return ""
    name = value.lower().rstrip(".")
    return name if name and set(name) <= _NAME_CHARACTERS else ""


def _number(value: object) -> float | None:
    # bool is an int to Python; JSON true is not a score.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) and abs(number) <= MAX_SCORE else None


@dataclass(frozen=True)
class SpamCheck:
    """The twin's ``spam`` member: whether it is spam and, when known, the score, threshold and checker."""

    spam: bool
    score: float | None = None
    threshold: float | None = None
    checker: str = ""


@dataclass(frozen=True)
class Verdicts:
    """What the twin says: ``sender`` is one of :data:`SENDER_VERDICTS` or "" (no ``authentication`` member)."""

    sender: str = ""
    #: The domain DMARC verified ("" when not verified, or not a plain name).
    verified_domain: str = ""
    #: The appliance filed the message as spam because the sender's DMARC policy asked for it.
    quarantined: bool = False
    spam_check: SpamCheck | None = None

    @property
    def is_spam(self) -> bool:
        """Whether the message is to be shown as spam (the spam check said so, or DMARC quarantined it)."""
        return self.quarantined or (self.spam_check is not None and self.spam_check.spam)

    @property
    def known(self) -> bool:
        return bool(self.sender) or self.spam_check is not None


NONE = Verdicts()
QUARANTINED_LINE = "Spam: yes (the sender's domain asks that mail failing its checks be treated as spam)"


def _verified_domain(results: object) -> str:
    if not isinstance(results, list):
        return ""
    for result in results[:MAX_RESULTS]:
        if isinstance(result, dict) and result.get("method") == "dmarc" and result.get("result") == "pass":
            return plain_name(result.get("domain"))
    return ""


def _sender(member: object) -> tuple[str, str, bool]:
    """(verdict, verified domain, quarantined) of an ``authentication`` member."""
    if member is None:
        return "", "", False
    if not isinstance(member, dict):
        # Present but unreadable: the message came from outside and nothing about it is proven.
        return "unverified", "", False
    verdict = member.get("verdict")
    if not isinstance(verdict, str) or verdict not in SENDER_VERDICTS:
        verdict = "unverified"
    quarantined = member.get("quarantined") is True
    domain = _verified_domain(member.get("results")) if verdict == "verified" else ""
    return verdict, domain, quarantined


def _spam_check(member: object) -> SpamCheck | None:
    if not isinstance(member, dict) or not isinstance(member.get("spam"), bool):
        return None
    checker = member.get("checker")
    return SpamCheck(
        spam=member["spam"],
        score=_number(member.get("score")),
        threshold=_number(member.get("threshold")),
        checker=checker if isinstance(checker, str) and checker in CHECKERS else "",
    )


def read_verdicts(twin: Any) -> Verdicts:
    """The verdicts of a decrypted twin (any JSON value); :data:`NONE` when it carries none."""
    if not isinstance(twin, dict):
        return NONE
    sender, domain, quarantined = _sender(twin.get("authentication"))
    check = _spam_check(twin.get("spam"))
    if not sender and check is None:
        return NONE
    return Verdicts(sender, domain, quarantined, check)


def listing_words(verdicts: Verdicts, spam: bool) -> str:
    """The extra last column of ``ls``: the sender verdict, then ``spam`` when the message is to be shown
    as spam, comma-separated ("" when the twin has no verdict)."""
    if not verdicts.known:
        return ""
    words = [verdicts.sender or "-"]
    if spam:
        words.append("spam")
    return ",".join(words)


def _score(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def sender_line(verdicts: Verdicts, from_address: str) -> str | None:
    """The ``read`` line about the sender, or None for mail without an ``authentication`` member.

    ``from_address`` must already be safe for a terminal; "" when the message names no sender.
    """
    if verdicts.sender == "verified":
        return f"Sender: verified ({verdicts.verified_domain})" if verdicts.verified_domain else "Sender: verified"
    if verdicts.sender == "failed":
        shown = from_address or "the sender it shows"
        return (
            f"Warning: this message failed the checks that prove who sent it; it may not be from {shown}. "
            "Do not trust links or requests in it."
        )
    if verdicts.sender == "unverified":
        return "Sender: not verified"
    return None


def spam_line(verdicts: Verdicts) -> str | None:
    """The ``read`` line about spam, or None when the twin says nothing about it."""
    check = verdicts.spam_check
    if check is not None and (check.spam or not verdicts.quarantined):
        details = []
        if check.score is not None:
            threshold = f" of {_score(check.threshold)}" if check.threshold is not None else ""
            details.append(f"score {_score(check.score)}{threshold}")
        if check.checker:
            details.append(check.checker)
        return f"Spam: {'yes' if check.spam else 'no'}" + (f" ({', '.join(details)})" if details else "")
    if verdicts.quarantined:
        return QUARANTINED_LINE
    return None
