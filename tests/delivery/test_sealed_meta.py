"""What a delivery worker tells the main process besides the ciphertext: the size and the sender's domain.

The worker's answer is hostile output: anything but a plain DNS name is dropped, so a message (or a
subverted worker) cannot put text of its choosing into the appliance's log.
"""

from __future__ import annotations

import pytest

from mailiverse.crypto.keys import generate_private_key, public_key_der
from mailiverse.delivery.sealing import SealedMeta, SealJob, seal_message
from mailiverse.mime.limits import Limits
from tests.support.waiting import MemorySink


def _seal(raw: bytes) -> SealedMeta:
    job = SealJob("Mail/In/a", "Mail/In/a.json", 1, (("v2", public_key_der(generate_private_key())),), Limits())
    return seal_message(raw, job, MemorySink())


@pytest.mark.parametrize(
    ("headers", "domain"),
    [
        (b"From: Bob <bob@Remote.TEST>\r\n", "remote.test"),
        (b"Sender: list@lists.example.net\r\n", "lists.example.net"),
        (b"From: no address here\r\n", ""),
        (b"From: =?utf-8?b?4pyJ?= <x@b\xc3\xbccher.example>\r\n", ""),
        (b"Subject: no sender at all\r\n", ""),
    ],
)
def test_the_sender_domain_comes_from_the_twin(headers: bytes, domain: str) -> None:
    raw = headers + b"To: alice@example.org\r\n\r\nbody\r\n"
    meta = _seal(raw)
    assert meta == SealedMeta(size=len(raw), sender_domain=domain)
    assert SealedMeta.from_wire(meta.to_wire()) == meta


@pytest.mark.parametrize(
    "wire",
    [
        {"size": 10, "sender_domain": "evil.test\nERROR forged line"},
        {"size": 10, "sender_domain": "a" * 300},
        {"size": 10, "sender_domain": 7},
        {"size": 10},
    ],
)
def test_a_workers_odd_domain_is_dropped(wire: dict[str, object]) -> None:
    assert SealedMeta.from_wire(wire) == SealedMeta(size=10, sender_domain="")


@pytest.mark.parametrize("wire", [[], {"size": "10"}, {"size": -1}, {"size": True}, {}])
def test_a_workers_broken_answer_is_refused(wire: object) -> None:
    """The pool treats the ValueError as a protocol break: the worker is killed, the sender gets 451."""
    with pytest.raises(ValueError):
        SealedMeta.from_wire(wire)
