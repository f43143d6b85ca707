"""TLS on every listener, probed with `openssl s_client`: only TLS 1.2 and 1.3, only forward-secret AEAD ciphers."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.support.harness import Appliance

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed"),
]

#: TLS 1.2 suites we accept as strong: ECDHE or DHE key exchange with AES-GCM or ChaCha20-Poly1305
STRONG_12 = ("ECDHE-", "DHE-")
STRONG_BULK = ("GCM", "CHACHA20")
TLS13_ALLOWED = {"TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    appliance = Appliance(tmp_path_factory.mktemp("tls") / "app")
    appliance.start()
    try:
        yield appliance
    finally:
        appliance.stop()


def _listeners(app: Appliance) -> dict[str, list[str]]:
    return {
        "smtp-starttls": ["-connect", f"127.0.0.1:{app.smtp_port}", "-starttls", "smtp"],
        "smtps": ["-connect", f"127.0.0.1:{app.smtps_port}"],
        "https": ["-connect", f"127.0.0.1:{app.web_port}"],
    }


def _handshake(target: list[str], *options: str) -> tuple[bool, str]:
    """True when the handshake completed; the output names protocol and cipher."""
    result = subprocess.run(
        ["openssl", "s_client", *target, "-servername", "mail.example.org", *options],
        input=b"",
        capture_output=True,
        timeout=30,
    )
    out = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    ok = result.returncode == 0 and "Cipher is (NONE)" not in out and "New, " in out
    return ok, out


def _ciphers(spec: str) -> list[str]:
    out = subprocess.run(["openssl", "ciphers", "-tls1_2", spec], capture_output=True, check=True, timeout=30)
    return [c for c in out.stdout.decode().strip().split(":") if c]


@pytest.mark.parametrize("listener", ["smtp-starttls", "smtps", "https"])
@pytest.mark.parametrize("version", ["-ssl3", "-tls1", "-tls1_1"])
def test_old_protocols_are_refused(app: Appliance, listener: str, version: str) -> None:
    """SSL 3, TLS 1.0 and 1.1 handshakes fail even when the client allows them (SECLEVEL=0)."""
    ok, out = _handshake(_listeners(app)[listener], version, "-cipher", "ALL:@SECLEVEL=0")
    if "unknown option" in out or "Option unknown" in out:
        pytest.skip(f"this openssl cannot offer {version}")
    assert not ok, out[-2000:]


@pytest.mark.parametrize("listener", ["smtp-starttls", "smtps", "https"])
@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_modern_protocols_are_offered(app: Appliance, listener: str, version: str) -> None:
    """TLS 1.2 and TLS 1.3 handshakes succeed with a strong, forward-secret AEAD cipher."""
    ok, out = _handshake(_listeners(app)[listener], version)
    assert ok, out[-2000:]
    cipher = next(line.split()[-1] for line in out.splitlines() if "Cipher is" in line)
    if version == "-tls1_3":
        assert cipher in TLS13_ALLOWED
    else:
        assert cipher.startswith(STRONG_12) and any(b in cipher for b in STRONG_BULK), cipher


@pytest.mark.parametrize(
    "listener",
    [
        pytest.param("smtp-starttls", marks=pytest.mark.slow),
        pytest.param("smtps", marks=pytest.mark.slow),
        "https",  # all listeners share one context factory; the quick run probes one of them
    ],
)
def test_every_accepted_tls12_cipher_is_strong(app: Appliance, listener: str, record_property) -> None:
    """Offering each TLS 1.2 suite openssl knows, one at a time: only ECDHE/DHE with GCM or ChaCha20 succeed."""
    accepted = []
    for cipher in _ciphers("ALL:COMPLEMENTOFALL:@SECLEVEL=0"):
        ok, _ = _handshake(_listeners(app)[listener], "-tls1_2", "-cipher", f"{cipher}:@SECLEVEL=0")
        if ok:
            accepted.append(cipher)
    record_property("accepted", accepted)
    print(f"{listener}: TLS 1.2 accepted {accepted}")
    assert accepted, "no TLS 1.2 suite accepted"
    weak = [c for c in accepted if not (c.startswith(STRONG_12) and any(b in c for b in STRONG_BULK))]
    assert weak == []
