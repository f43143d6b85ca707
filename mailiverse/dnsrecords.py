"""The DNS records a mail domain served by this appliance must publish, as data and as zone-file text.

It imports neither the admin tools nor the server: ``mailiverse-admin setup`` prints these records,
and the web front end serves :func:`mta_sts_policy` at ``https://mta-sts.<domain>/``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailiverse.config import normalize_domain

#: TXT character-strings are at most 255 octets (RFC 1035 §3.3); longer values are split.
TXT_STRING_LIMIT = 255


@dataclass(frozen=True)
class DnsRecord:
    """One record to publish: ``name`` is absolute without the trailing dot; ``value`` is the record data."""

    name: str
    rtype: str
    value: str
    purpose: str


def mail_records(
    domain: str,
    hostname: str,
    dkim_value: str,
    *,
    selector: str,
    report_address: str | None = None,
    policy_id: str = "1",
    log_key: str | None = None,
) -> list[DnsRecord]:
    """MX, SPF, DKIM, DMARC, MTA-STS and TLS-RPT for ``domain`` received at ``hostname``; with ``log_key`` (the
    base64 Ed25519 public key of the key directory's log) the mailiverse discovery record too."""
    domain = normalize_domain(domain)
    hostname = normalize_domain(hostname, "--hostname")
    report = report_address or f"postmaster@{domain}"
    records = [
        DnsRecord(domain, "MX", f"10 {hostname}.", "mail for the domain goes to this appliance"),
        DnsRecord(domain, "TXT", "v=spf1 mx -all", "SPF: only the MX host sends the domain's mail"),
        DnsRecord(f"{selector}._domainkey.{domain}", "TXT", dkim_value, "DKIM public key of outgoing mail"),
        DnsRecord(
            f"_dmarc.{domain}",
            "TXT",
            f"v=DMARC1; p=quarantine; adkim=s; aspf=s; rua=mailto:{report}",
            "DMARC: unauthenticated mail claiming the domain is quarantined",
        ),
        DnsRecord(
            f"_mta-sts.{domain}",
            "TXT",
            f"v=STSv1; id={policy_id}",
            "MTA-STS: senders fetch https://mta-sts.<domain>/.well-known/mta-sts.txt",
        ),
        DnsRecord(f"mta-sts.{domain}", "CNAME", f"{hostname}.", "MTA-STS policy host (the appliance's web service)"),
        DnsRecord(
            f"_smtp._tls.{domain}",
            "TXT",
            f"v=TLSRPTv1; rua=mailto:{report}",
            "TLS-RPT: where senders report TLS failures",
        ),
    ]
    if log_key is not None:
        records.append(discovery_record(domain, hostname, log_key))
    return records


#: The version tag that starts the discovery TXT record (docs/keys.md, "Discovery").
DISCOVERY_VERSION = "mailiverse1"


def discovery_record(domain: str, hostname: str, log_key: str) -> DnsRecord:
    """``_mailiverse.<domain>`` TXT: this domain is served by a mailiverse appliance, where its key directory is,
    and the log key that signs its heads (so a sender can pin it before the first HTTPS request)."""
    domain = normalize_domain(domain)
    hostname = normalize_domain(hostname, "--hostname")
    return DnsRecord(
        f"_mailiverse.{domain}",
        "TXT",
        f"v={DISCOVERY_VERSION}; directory=https://{hostname}/.well-known/mailiverse; log=ed25519:{log_key}",
        "mailiverse: the key directory other appliances seal to, and its log key",
    )


def mta_sts_policy(hostname: str, mode: str = "testing", max_age: int = 604800) -> str:
    """The policy file served at ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` (RFC 8461 §3.2)."""
    if mode not in ("testing", "enforce", "none"):
        raise ValueError("the MTA-STS mode is testing, enforce or none")
    hostname = normalize_domain(hostname, "--hostname")
    return f"version: STSv1\r\nmode: {mode}\r\nmx: {hostname}\r\nmax_age: {int(max_age)}\r\n"


def txt_strings(value: str) -> list[str]:
    """Split a TXT value into character-strings of at most 255 octets."""
    data = value.encode("ascii")
    return [data[i : i + TXT_STRING_LIMIT].decode("ascii") for i in range(0, len(data), TXT_STRING_LIMIT)] or [""]


def zone_text(records: list[DnsRecord]) -> str:
    """The records as zone-file lines (absolute names, TXT split into quoted strings), each after a comment."""
    lines: list[str] = []
    for record in records:
        if record.rtype == "TXT":
            data = " ".join('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"' for s in txt_strings(record.value))
            if len(record.value) > TXT_STRING_LIMIT:
                data = f"( {data} )"
        else:
            data = record.value
        lines.append(f"; {record.purpose}")
        lines.append(f"{record.name}.\t3600\tIN\t{record.rtype}\t{data}")
    return "\n".join(lines) + "\n"
