"""The CPU work of one delivery as a pure function: message bytes and public keys in, sealed objects out.

MIME parse, the JSON twin, zlib and each recipient's envelope. Nothing here reaches a database,
a configuration or a private key, so a delivery worker process (``delivery/worker.py``) runs it on
hostile input with nothing worth stealing; with ``--workers 0`` the appliance runs it on a thread.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import IO, Any, Protocol

from mailiverse.crypto.keys import load_public_key
from mailiverse.delivery.compression import choose_strategy
from mailiverse.delivery.encrypt import seal_into
from mailiverse.mime.limits import Limits
from mailiverse.mime.twin import convert_document, iter_twin


@dataclass(frozen=True)
class SealJob:
    """What sealing one message needs besides its bytes: object paths, time, and each recipient's key."""

    original_path: str
    twin_path: str
    now_ms: int
    #: (envelope format, public key as stored), one per recipient, in delivery order.
    keys: tuple[tuple[str, bytes], ...]
    limits: Limits

    def to_wire(self) -> dict[str, Any]:
        """The job as JSON-able values (keys as Latin-1 text, which maps every byte)."""
        return {
            "original_path": self.original_path,
            "twin_path": self.twin_path,
            "now_ms": self.now_ms,
            "keys": [[fmt, key.decode("latin-1")] for fmt, key in self.keys],
            "limits": asdict(self.limits),
        }

    @classmethod
    def from_wire(cls, value: dict[str, Any]) -> SealJob:
        return cls(
            original_path=str(value["original_path"]),
            twin_path=str(value["twin_path"]),
            now_ms=int(value["now_ms"]),
            keys=tuple((str(fmt), str(key).encode("latin-1")) for fmt, key in value["keys"]),
            limits=Limits(**value["limits"]),
        )


@dataclass(frozen=True)
class SealedMeta:
    """What the main process learns about the message besides the ciphertext (for its debug log).

    The size, and the domain of the sender as the twin names it (From, else Sender): not the
    address, and nothing of the content. From a worker it is hostile output: ``from_wire`` keeps
    a domain only if it is plain DNS characters, so it cannot forge a log line.
    """

    size: int
    sender_domain: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {"size": self.size, "sender_domain": self.sender_domain}

    @classmethod
    def from_wire(cls, value: object) -> SealedMeta:
        if not isinstance(value, dict):
            raise ValueError("sealed-message metadata is a JSON object")
        size = value.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError("a sealed message's size is a whole number")
        return cls(size=size, sender_domain=_plain_domain(value.get("sender_domain")))


_DOMAIN_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")


def _plain_domain(value: object) -> str:
    """``value`` lower-cased if it looks like a DNS name (at most 253 letters, digits, dots, hyphens), else ""."""
    if not isinstance(value, str) or not 0 < len(value) <= 253:
        return ""
    domain = value.lower()
    return domain if set(domain) <= _DOMAIN_CHARACTERS else ""


def sender_domain(twin: dict[str, Any]) -> str:
    """The domain of the twin's first From (else Sender) address, or "" when it has none usable."""
    try:
        email = base64.b64decode(twin["addresses"]["from"][0]["email"]).decode("utf-8")
    except (KeyError, IndexError, TypeError, ValueError):
        return ""
    return _plain_domain(email.rpartition("@")[2])


class ObjectSink(Protocol):
    """Where the sealed objects go, in order: per recipient, the original, then the twin."""

    def begin(self) -> IO[bytes]:
        """A writable file for the next object."""

    def end(self, out: IO[bytes]) -> None:
        """The object written to ``out`` is complete."""


def seal_message(raw: bytes, job: SealJob, sink: ObjectSink) -> SealedMeta:
    """Write ``2 × len(job.keys)`` sealed objects to ``sink``: zlib(original) and zlib(twin) per recipient."""
    # The document refers to the raw bytes instead of copying attachment bodies, and its JSON text
    # is encrypted batch by batch: the message exists in memory about once.
    twin = convert_document(
        raw, original_path=job.original_path, written_ms=job.now_ms, limits=job.limits, streamed=True
    )
    strategy = choose_strategy(raw)  # one choice for both objects: the twin carries the same text
    view = memoryview(raw)
    for fmt, key in job.keys:
        public_key = load_public_key(key)
        out = sink.begin()
        seal_into(out, fmt, public_key, _pieces(view), strategy)
        sink.end(out)
        out = sink.begin()
        seal_into(out, fmt, public_key, iter_twin(twin), strategy)
        sink.end(out)
    return SealedMeta(size=len(raw), sender_domain=sender_domain(twin))


def _pieces(view: memoryview, size: int = 1024 * 1024) -> Iterator[bytes]:
    """The message in 1 MiB pieces, copied one piece at a time."""
    for start in range(0, len(view), size):
        yield bytes(view[start : start + size])
