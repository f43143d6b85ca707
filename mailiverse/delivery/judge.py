"""The authenticity of one received message: SPF, DKIM, ARC and DMARC, checked in a delivery worker.

The checks are the field's libraries': pyspf (through authheaders' ``check_spf``), dkimpy for DKIM and
ARC, authheaders' ``check_dmarc`` for DMARC. Every DNS lookup they make goes to the message's
``Enquirer`` (``delivery/dnschannel.py``), never to a socket: dkimpy and authheaders take a lookup
function, and pyspf's module-level ``DNSLookup`` is replaced, once, by one that asks the enquirer of the
calling thread. What the libraries leave out is added here:

* every DKIM signature is verified (up to ``MAX_SIGNATURES``), not only the first;
* a key that does not exist or does not parse is ``permerror`` and a lookup without answer
  ``temperror`` (RFC 6376 §6.1.2), where dkimpy says only "not valid";
* an ``rsa-sha1`` signature that verifies is ``policy``, not ``pass`` (RFC 8301);
* nothing the sender's DNS writes (SPF explanations, DMARC comments) is kept.

Two of authheaders' helpers are replaced when this module is imported (at the end, with why): the
address-to-domain one, which cut domains at their first hyphen, and the organisational-domain one,
which re-read its suffix list from a file on every call.

What the appliance does with the results is ``delivery/policy.py``; the header they become is
``delivery/resultsheader.py``.
"""

from __future__ import annotations

import functools
import importlib.resources
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from email.utils import getaddresses
from typing import Any

import authheaders
import dkim
import spf
from authheaders import dmarc_lookup
from authres import DKIMAuthenticationResult, SPFAuthenticationResult
from publicsuffix2 import PublicSuffixList

from mailiverse.contracts import normalise_domain
from mailiverse.delivery.dnschannel import DnsUnavailable, Enquirer, dns_name
from mailiverse.delivery.policy import decide, decisive_report, with_spam
from mailiverse.delivery.spamcheck import builtin_report, gtube
from mailiverse.delivery.verdicts import RESULTS, AuthResult, Judgement, JudgeRequest, plain_name

#: Signatures verified per message; more are not looked at (each costs a lookup and a body hash).
MAX_SIGNATURES = 8
#: DNS questions each check may ask, so that SPF's many lookups cannot starve DMARC (the sum stays
#: within framing.MAX_ENQUIRIES).
SPF_MAILFROM_ENQUIRIES = 20
SPF_HELO_ENQUIRIES = 5
DKIM_ENQUIRIES = MAX_SIGNATURES
ARC_ENQUIRIES = 10
DMARC_ENQUIRIES = 4


def judge(raw: bytes, request: JudgeRequest, enquirer: Enquirer | None) -> Judgement:
    """Check ``raw`` as ``request`` says, then for spam; without DNS (no ``enquirer``) only the
    local-domain rule, GTUBE and the spam filter's report apply."""
    header_section = raw[: _header_end(raw)]
    from_domains = from_header_domains(header_section)
    local_only = decide((), from_domains, request)
    if local_only.refused:
        return local_only  # a local From is refused whatever DNS says, so nothing is looked up
    test_string = gtube(raw)
    if test_string is not None:
        return with_spam(local_only, test_string)
    if enquirer is None or not request.dns:
        return with_spam(local_only, request.filter_report)
    spf_results = _spf(request, enquirer)
    dkim_results = _dkim(raw, enquirer)
    arc_result = _arc(raw, enquirer) if b"arc-seal" in header_section.lower() else AuthResult("arc", "none")
    dmarc_result = _dmarc(header_section, spf_results[0], dkim_results, from_domains, request, enquirer)
    results = (*spf_results, *dkim_results, arc_result, dmarc_result)
    judgement = decide(results, from_domains, request)
    if judgement.refused:
        return judgement
    builtin = builtin_report(results, request, enquirer)
    return with_spam(judgement, decisive_report(builtin, request.filter_report))


def from_header_domains(header_section: bytes) -> frozenset[str]:
    """The domains of every address in every From field, as DMARC reads them."""
    try:
        headers, _ = dkim.rfc822_parse(header_section + b"\r\n")
    except Exception:  # noqa: BLE001 - hostile headers: the twin's own reading of From is checked too
        return frozenset()
    domains: set[str] = set()
    for name, value in headers:
        if name.lower() == b"from":
            text = value.replace(b"\r\n", b"").decode(errors="ignore").strip()
            domains.update(_domain(address.rpartition("@")[2]) for _, address in getaddresses([text]))
    domains.discard("")
    return frozenset(domains)


def _domain(text: str) -> str:
    """A domain as DNS asks for it: A-labels, lower case, no trailing dot (the text as it is if not a name)."""
    text = text.strip().rstrip(".>").lower()
    try:
        return normalise_domain(text)
    except ValueError:
        return text


def _header_end(raw: bytes) -> int:
    end = raw.find(b"\r\n\r\n")
    return len(raw) if end < 0 else end + 2


# -- SPF ---------------------------------------------------------------------------------------


def _spf(request: JudgeRequest, enquirer: Enquirer) -> list[AuthResult]:
    """The SPF result of the MAIL FROM (of the HELO name for a bounce), first, then of the HELO name."""
    helo = plain_name(request.helo) if "." in request.helo else ""
    sender_domain = plain_name(request.mail_from.rpartition("@")[2]) if request.mail_from else helo
    if not request.client_ip:
        # Mail handed over by an MTA in front (LMTP, mailiverse-deliver) whose trace named no client: there is no
        # address to check, so SPF says nothing ("none"), and DMARC rests on DKIM alone.
        return [AuthResult("spf", "none", domain=sender_domain, identity="mailfrom" if request.mail_from else "helo")]
    with _spf_through(enquirer), enquirer.allowance(SPF_MAILFROM_ENQUIRIES):
        first = _spf_result(request.client_ip, request.mail_from, request.helo)
    results = [AuthResult("spf", first, domain=sender_domain, identity="mailfrom" if request.mail_from else "helo")]
    if request.mail_from and helo:
        with _spf_through(enquirer), enquirer.allowance(SPF_HELO_ENQUIRIES):
            results.append(AuthResult("spf", _spf_result(request.client_ip, "", helo), domain=helo, identity="helo"))
    return results


def _spf_result(ip: str, sender: str, helo: str) -> str:
    try:
        result = authheaders.check_spf(ip, sender, helo).result
    except Exception:  # noqa: BLE001 - pyspf on hostile input (an odd HELO, a broken record)
        return "permerror"
    return result if result in RESULTS else "permerror"


_thread = threading.local()
_LIBRARY_SPF_LOOKUP: Callable[..., Any] = spf.DNSLookup


def _spf_dns_lookup(name: str, qtype: str, strict: object = True, timeout: float = 20) -> list[Any]:
    """pyspf's ``DNSLookup``: through the enquirer of this thread's message (the library's own elsewhere)."""
    enquirer: Enquirer | None = getattr(_thread, "enquirer", None)
    if enquirer is None:
        return list(_LIBRARY_SPF_LOOKUP(name, qtype, strict, timeout))
    try:
        records = enquirer.lookup(name, qtype)
    except DnsUnavailable as error:
        raise spf.TempError(f"DNS {error}") from None
    # pyspf wants TXT as the record's strings (bytes), addresses and names as text, MX as (preference, name).
    return [((name, qtype), (r.encode("latin-1"),) if qtype == "TXT" and isinstance(r, str) else r) for r in records]


spf.DNSLookup = _spf_dns_lookup


@contextmanager
def _spf_through(enquirer: Enquirer) -> Iterator[None]:
    """pyspf's lookups on this thread go to ``enquirer`` inside the block."""
    _thread.enquirer = enquirer
    try:
        yield
    finally:
        _thread.enquirer = None


# -- DKIM and ARC ------------------------------------------------------------------------------


class _KeyLookup:
    """dkimpy's ``dnsfunc`` for signature keys: the first TXT record, noting when the key is missing or unusable."""

    def __init__(self, enquirer: Enquirer) -> None:
        self._enquirer = enquirer
        self.asked = False
        self.unusable = False

    def __call__(self, name: str | bytes, timeout: float = 5) -> str | None:
        self.asked = True
        records = self._enquirer.txt(name)
        if not records:
            self.unusable = True
            return None
        try:
            dkim.evaluate_pk(name, records[0].encode("ascii"))
        except Exception:  # noqa: BLE001 - any malformed key is one the signature cannot be verified with
            self.unusable = True
        return records[0]


def _dkim(raw: bytes, enquirer: Enquirer) -> list[AuthResult]:
    try:
        verifier = dkim.DKIM(raw, minkey=1024)
    except Exception:  # noqa: BLE001 - a message dkimpy cannot parse has no signature it can verify
        return [AuthResult("dkim", "permerror")]
    count = sum(1 for name, _ in verifier.headers if name.lower() == b"dkim-signature")
    if not count:
        return [AuthResult("dkim", "none")]
    with enquirer.allowance(DKIM_ENQUIRIES):
        return [_signature(verifier, index, enquirer) for index in range(min(count, MAX_SIGNATURES))]


def _signature(verifier: dkim.DKIM, index: int, enquirer: Enquirer) -> AuthResult:
    key = _KeyLookup(enquirer)
    verifier.signature_fields = {}
    try:
        valid = verifier.verify(idx=index, dnsfunc=key)
    except DnsUnavailable:
        result = "temperror"
    except dkim.ValidationError:
        # Raised before the key is fetched, the signature itself is unusable (a missing tag, expired);
        # after, its body hash did not match.
        result = "fail" if key.asked else "permerror"
    except Exception:  # noqa: BLE001 - dkimpy on a malformed signature or key
        result = "permerror"
    else:
        if valid:
            result = "policy" if verifier.signature_fields.get(b"a") == b"rsa-sha1" else "pass"
        else:
            result = "permerror" if key.unusable else "fail"
    fields: dict[bytes, bytes] = verifier.signature_fields
    return AuthResult("dkim", result, domain=_tag(fields, b"d"), selector=_tag(fields, b"s"))


def _tag(fields: dict[bytes, bytes], tag: bytes) -> str:
    value = fields.get(tag, b"")
    return plain_name(value.decode("ascii", "replace")) if isinstance(value, bytes) else ""


def _arc(raw: bytes, enquirer: Enquirer) -> AuthResult:
    """The ARC chain's validation (RFC 8617) and, when it has one, its latest sealer."""
    try:
        with enquirer.allowance(ARC_ENQUIRIES):
            state, sets, _ = dkim.ARC(raw, minkey=1024).verify(dnsfunc=_KeyLookup(enquirer))
    except DnsUnavailable:
        return AuthResult("arc", "temperror")
    except Exception:  # noqa: BLE001 - dkimpy on a malformed chain
        return AuthResult("arc", "fail")
    result = {b"pass": "pass", b"none": "none"}.get(state, "fail")
    sealer = sets[0].get("as-domain", b"") if sets else b""
    return AuthResult("arc", result, domain=plain_name(sealer.decode("ascii", "replace")))


# -- DMARC -------------------------------------------------------------------------------------


class _PolicyLookup:
    """authheaders' DMARC ``dnsfunc``: at ``_dmarc.`` names the one DMARC record (none if several,
    RFC 7489 §6.6.3), elsewhere the first TXT record."""

    def __init__(self, enquirer: Enquirer) -> None:
        self._enquirer = enquirer

    def __call__(self, name: str, timeout: float = 5) -> str | None:
        records = self._enquirer.txt(name)
        if dns_name(name).startswith("_dmarc."):
            policies = [record for record in records if record.startswith("v=DMARC1")]
            return policies[0] if len(policies) == 1 else None
        return records[0] if records else None


def _dmarc(
    header_section: bytes,
    spf_result: AuthResult,
    dkim_results: Sequence[AuthResult],
    from_domains: Iterable[str],
    request: JudgeRequest,
    enquirer: Enquirer,
) -> AuthResult:
    # DMARC counts the MAIL FROM's SPF, or the HELO's for a bounce (RFC 7489 §3.1.2).
    sender = request.mail_from or f"postmaster@{request.helo}"
    spf_found = SPFAuthenticationResult(result=spf_result.result, smtp_mailfrom=sender)
    signature = _aligned_pass(dkim_results, from_domains)
    dkim_found = None if signature is None else DKIMAuthenticationResult(result="pass", header_d=signature.domain)
    try:
        with enquirer.allowance(DMARC_ENQUIRIES):
            found = authheaders.check_dmarc(
                header_section + b"\r\n", spf_found, dkim_found, dnsfunc=_PolicyLookup(enquirer)
            )
    except DnsUnavailable:
        return AuthResult("dmarc", "temperror", domain=min(from_domains, default=""))
    except Exception:  # noqa: BLE001 - authheaders on a malformed record or From
        return AuthResult("dmarc", "permerror", domain=min(from_domains, default=""))
    result = found.result if found.result in RESULTS else "permerror"
    policy = getattr(found, "policy", None) or ""
    return AuthResult(
        "dmarc",
        result,
        domain=plain_name(getattr(found, "header_from", "") or ""),
        policy=policy if policy in ("none", "quarantine", "reject") else "",
    )


def _aligned_pass(results: Sequence[AuthResult], from_domains: Iterable[str]) -> AuthResult | None:
    """The passing signature DMARC should see: of a From domain, else of its organisation, else any."""
    passes = [r for r in results if r.method == "dkim" and r.result == "pass" and r.domain]
    domains = set(from_domains)
    organisations = {org_domain(d) for d in domains}
    for candidates in (
        [r for r in passes if r.domain in domains],
        [r for r in passes if org_domain(r.domain) in organisations],
        passes,
    ):
        if candidates:
            return candidates[0]
    return None


def _domain_part(address: str | bytes) -> str:
    """authheaders' ``get_domain_part``, mended: its pattern ``@([a-z0-9.]+)`` stops at a hyphen, so DMARC
    looked up ``_dmarc.my`` for ``bob@my-bank.test`` and found no policy. IndexError without a domain, as before."""
    text = address.decode("utf-8", "replace") if isinstance(address, bytes) else address
    domain = _domain(text.rpartition("@")[2]) if "@" in text else ""
    if not domain:
        raise IndexError("the address has no domain")
    return domain


def _load_org_domain() -> Callable[[str], str]:
    ref = importlib.resources.files("authheaders") / "public_suffix_list.txt"
    with ref.open(encoding="utf-8") as suffixes:
        psl = PublicSuffixList(suffixes)
    return functools.lru_cache(maxsize=4096)(psl.get_public_suffix)


#: A domain's organisational domain, by authheaders' own public suffix list, read once: authheaders
#: re-reads and re-parses the file on every call, which a worker (that can open no file) cannot.
org_domain = _load_org_domain()
dmarc_lookup.get_org_domain = org_domain
authheaders.get_org_domain = org_domain
authheaders.get_domain_part = _domain_part
