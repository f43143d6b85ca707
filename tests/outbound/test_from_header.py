"""The outbound queue prepares and DKIM-signs only a message with exactly one From header field
(issue 16, finding 9: a second From, however spelt, is never signed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailiverse.outbound.dkim import dkim_key_path, load_or_create_dkim_key, sign_message
from mailiverse.outbound.errors import SubmissionRejected
from mailiverse.outbound.message import prepare_message

SECOND_FROMS = [
    b"From: a@example.com\r\nFrom\t: ceo@example.com\r\nTo: b@remote.test\r\n\r\nbody\r\n",
    b"From: a@example.com\r\nTo: b@remote.test\r\nfrom: ceo@example.com\r\n\r\nbody\r\n",
    b"From: a@example.com\r\nTo: b@remote.test\r\nFrom : ceo@example.com\r\n\r\nbody\r\n",
]


@pytest.mark.parametrize("raw", SECOND_FROMS)
def test_prepare_refuses_a_second_from(raw: bytes) -> None:
    """A message with a second From line (any case, whitespace before the colon) is refused, not queued."""
    with pytest.raises(SubmissionRejected) as refused:
        prepare_message(raw, sender_domain="example.com")
    assert refused.value.code == "invalid_message"


@pytest.mark.parametrize("raw", SECOND_FROMS[:2])
def test_dkim_signs_no_message_with_a_second_from(raw: bytes, tmp_path: Path) -> None:
    """The signer itself refuses a message with two From header fields."""
    load_or_create_dkim_key(tmp_path, "example.com")
    with pytest.raises(ValueError, match="exactly one From"):
        sign_message(
            raw,
            domain="example.com",
            selector="sel",
            private_key_pem=dkim_key_path(tmp_path, "example.com").read_bytes(),
        )
