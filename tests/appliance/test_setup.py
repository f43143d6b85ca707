"""First-boot set-up: the service's option file, DKIM keys, DNS records, their check, and the systemd unit."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.names import authority, dns

from mailiverse.admin.setup.configure import SetupError, SetupOptions, check_dns, prepare, read_env_options
from mailiverse.dnsrecords import mail_records, txt_strings, zone_text

APPLIANCE = Path(__file__).resolve().parents[2] / "appliance"


def _options(tmp_path: Path, **changes: object) -> SetupOptions:
    values: dict[str, object] = {
        "domains": ("Example.ORG",),
        "data_dir": tmp_path / "data",
        "hostname": "mail.example.org",
        "env_file": tmp_path / "mailiverse.env",
    }
    values.update(changes)
    return SetupOptions(**values)  # type: ignore[arg-type]


def test_prepare_writes_options_dkim_key_and_placeholder(tmp_path: Path) -> None:
    """Set-up writes the twistd options, a 0600 DKIM key and the ACME placeholder certificate the options name."""
    result = prepare(_options(tmp_path, acme_email="postmaster@example.org"))
    options = read_env_options(tmp_path / "mailiverse.env")
    assert options == list(result.options)
    assert options[options.index("--domain") + 1] == "example.org"
    assert options[options.index("--smtp") + 1] == "tcp:25" and options[options.index("--web") + 1] == "tcp:443"
    cert = Path(options[options.index("--tls-cert") + 1])
    assert cert.is_file() and Path(options[options.index("--tls-key") + 1]).stat().st_mode & 0o777 == 0o600
    (key,) = result.dkim_keys
    assert key.name == "dkim-example.org.key.pem" and key.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "mailiverse.env").stat().st_mode & 0o777 == 0o640
    kinds = {(r.rtype, r.name) for r in result.records}
    assert ("MX", "example.org") in kinds and ("TXT", "_dmarc.example.org") in kinds
    assert ("TXT", "mailiverse._domainkey.example.org") in kinds and ("TXT", "_smtp._tls.example.org") in kinds


def test_prepare_keeps_the_dkim_key_on_a_second_run(tmp_path: Path) -> None:
    """Running set-up again reuses the DKIM key, so the published record stays valid."""
    first = prepare(_options(tmp_path, acme=False))
    before = first.dkim_keys[0].read_bytes()
    second = prepare(_options(tmp_path, acme=False, production_ports=False))
    assert second.dkim_keys[0].read_bytes() == before
    assert "--smtp" not in second.options and "--tls-cert" not in second.options


@pytest.mark.parametrize(
    "bad",
    [
        {"domains": ()},
        {"domains": ("not a domain",)},
        {"acme_email": "nobody"},
        {"acme_directory": "http://insecure.example/dir"},
    ],
)
def test_bad_answers_are_refused_with_a_message(tmp_path: Path, bad: dict[str, object]) -> None:
    """Missing or malformed answers stop set-up before anything is written."""
    with pytest.raises(SetupError):
        prepare(_options(tmp_path, **bad))
    assert not (tmp_path / "mailiverse.env").exists()


def test_long_dkim_txt_is_split_into_255_octet_strings() -> None:
    """A 2048-bit DKIM key record is written as several quoted strings that join back to the value."""
    value = "v=DKIM1; k=rsa; p=" + "A" * 392
    parts = txt_strings(value)
    assert all(len(p) <= 255 for p in parts) and "".join(parts) == value
    text = zone_text(mail_records("example.org", "mail.example.org", value, selector="s"))
    assert 's._domainkey.example.org.\t3600\tIN\tTXT\t( "' in text


class _Zone(authority.FileAuthority):
    """twisted.names' own authoritative resolver, loaded from a dict instead of a zone file."""

    def loadFile(self, source: dict[str, list[object]]) -> None:  # noqa: N802 -- Twisted's name
        soa = dns.Record_SOA(mname="ns.example.org", rname="hostmaster.example.org", serial=1)
        self.soa = (b"example.org", soa)
        self.records = {b"example.org": [soa]}
        for name, rrs in source.items():
            self.records.setdefault(name.encode("ascii"), []).extend(rrs)


def _zone(records: dict[str, list[object]]) -> authority.FileAuthority:
    return _Zone(records)


@pytest_twisted.ensureDeferred
async def test_dns_check_tells_published_different_and_missing_apart() -> None:
    """Against a real twisted.names zone: a matching MX is ok, another SPF is different, no DMARC is missing."""
    records = mail_records("example.org", "mail.example.org", "v=DKIM1; k=rsa; p=AAAA", selector="mailiverse")
    dkim_value = [r for r in records if r.name.startswith("mailiverse._domainkey")][0].value
    zone = _zone(
        {
            "example.org": [dns.Record_MX(10, b"mail.example.org"), dns.Record_TXT(b"v=spf1 a ~all")],
            "mailiverse._domainkey.example.org": [dns.Record_TXT(dkim_value.encode("ascii"))],
        }
    )
    results = {(r.record.rtype, r.record.name): r for r in await check_dns(zone, tuple(records))}
    assert results[("MX", "example.org")].status == "ok"
    assert results[("TXT", "example.org")].status == "different"
    assert results[("TXT", "example.org")].found == ("v=spf1 a ~all",)
    assert results[("TXT", "mailiverse._domainkey.example.org")].status == "ok"
    assert results[("TXT", "_dmarc.example.org")].status == "missing"


def test_setup_command_prints_the_records(tmp_path: Path) -> None:
    """``python -m mailiverse.admin setup`` prints the configuration and the zone lines a new owner publishes."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mailiverse.admin",
            "--data-dir",
            str(tmp_path / "data"),
            "setup",
            "--domain",
            "example.org",
            "--config",
            str(tmp_path / "env"),
            "--no-dns-check",
            "--no-acme",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "example.org.\t3600\tIN\tMX\t10 example.org." in result.stdout
    assert "v=DKIM1; k=rsa; p=" in result.stdout and "Then start the service" in result.stdout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """The unit (and the worker units it requires), with its commands pointing at this checkout, passes
    ``systemd-analyze verify``."""
    twistd = Path(sys.executable).parent / "twistd"
    unit = (APPLIANCE / "mailiverse.service").read_text()
    assert "ExecStart=/opt/mailiverse/bin/twistd -n --uid mailiverse --gid mailiverse --pidfile= mailiverse" in unit
    for hardening in (
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/mailiverse",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "RestrictAddressFamilies=",
        "SystemCallFilter=@system-service",
        "Restart=on-failure",
    ):
        assert hardening in unit
    # with the delivery workers' socket and template unit it requires, every command pointing at this checkout
    bin_dir = str(twistd.parent)
    for name in ("mailiverse.service", "mailiverse-worker.socket", "mailiverse-worker@.service"):
        text = (APPLIANCE / name).read_text().replace("/opt/mailiverse/bin/python", sys.executable)
        (tmp_path / name).write_text(text.replace("/opt/mailiverse/bin", bin_dir))
    units = [str(tmp_path / "mailiverse.service"), str(tmp_path / "mailiverse-worker.socket")]
    verify = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr


def test_prepare_publishes_the_discovery_record_with_the_log_key(tmp_path: Path) -> None:
    """The `_mailiverse` TXT record names the key directory and the log key the appliance will sign with (the
    same key on a second run, and the one `/.well-known/mailiverse` serves: tests/web/test_keys_api.py)."""
    import base64

    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from mailiverse.config import DataDir
    from mailiverse.store.keylog import load_log_key

    first = prepare(_options(tmp_path))
    (record,) = [r for r in first.records if r.name == "_mailiverse.example.org"]
    log_key_file = DataDir(tmp_path / "data").log_key_file
    raw = load_log_key(log_key_file).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert record.rtype == "TXT" and record.value == (
        "v=mailiverse1; directory=https://mail.example.org/.well-known/mailiverse; "
        f"log=ed25519:{base64.b64encode(raw).decode()}"
    )
    assert log_key_file.stat().st_mode & 0o777 == 0o600
    again = prepare(_options(tmp_path))
    assert [r for r in again.records if r.name == "_mailiverse.example.org"] == [record]
