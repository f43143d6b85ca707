"""``twistd mailiverse --trust-ca FILE`` (repeatable): PEM trust roots added to the system's for outbound TLS; each
file read at start-up, and a missing, unreadable or non-PEM one stops the start with an error naming the option
and the file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from twisted.python import usage

from mailiverse.testing import issue_test_certificate
from tests.support.harness import BIN
from tests.support.options import parse


def test_no_extra_roots_by_default(tmp_path: Path) -> None:
    """Without the option only the system's roots are trusted."""
    assert parse(tmp_path).trust_ca == ()


def test_repeated_files_are_kept_in_order_once_each(tmp_path: Path) -> None:
    """Each --trust-ca adds a file (a CA, or a bundle of several certificates); a repeated one counts once."""
    first = issue_test_certificate(tmp_path / "a", ["a.test"]).ca_cert_path
    bundle = issue_test_certificate(tmp_path / "b", ["b.test"]).cert_path  # leaf and CA: two certificates
    config = parse(tmp_path, "--trust-ca", str(first), "--trust-ca", str(bundle), "--trust-ca", str(first))
    assert config.trust_ca == (first, bundle)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "No such file"),
        (b"", "no readable PEM certificate"),
        (b"not a certificate at all\n", "no readable PEM certificate"),
        (b"-----BEGIN CERTIFICATE-----\nbm90IGRlcg==\n-----END CERTIFICATE-----\n", "no readable PEM certificate"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "no readable PEM certificate"),
    ],
    ids=["missing", "empty", "text", "broken-pem", "a-key"],
)
def test_a_bad_file_is_refused_naming_the_option_and_file(tmp_path: Path, content: bytes | None, why: str) -> None:
    """A file that is missing, empty, or holds no well-formed certificate is a usage error naming --trust-ca and it."""
    path = tmp_path / "roots.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(usage.UsageError, match=why) as raised:
        parse(tmp_path, "--trust-ca", str(path))
    assert str(raised.value).startswith(f"--trust-ca {path}")


def test_a_directory_or_unreadable_file_is_refused(tmp_path: Path) -> None:
    """A directory is no file of certificates; a file the appliance may not read is refused too (unless root)."""
    with pytest.raises(usage.UsageError, match="Is a directory"):
        parse(tmp_path, "--trust-ca", str(tmp_path))
    locked = issue_test_certificate(tmp_path / "pki", ["a.test"]).ca_cert_path
    locked.chmod(0)
    try:
        if os.geteuid() != 0:
            with pytest.raises(usage.UsageError, match="Permission denied"):
                parse(tmp_path, "--trust-ca", str(locked))
    finally:
        locked.chmod(0o600)


def test_twistd_does_not_start_with_a_bad_file(tmp_path: Path) -> None:
    """The real ``twistd mailiverse`` stops at once, before making any data, and says which option and file."""
    bad = tmp_path / "not-a-ca.pem"
    bad.write_text("hello\n")
    data = tmp_path / "data"
    run = subprocess.run(
        [
            str(BIN / "twistd"),
            "-n",
            "mailiverse",
            "--data-dir",
            str(data),
            "--domain",
            "example.org",
            "--trust-ca",
            str(bad),
        ],
        capture_output=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert run.returncode != 0
    assert f"--trust-ca {bad} holds no readable PEM certificate".encode() in run.stdout + run.stderr
    assert not data.exists()
