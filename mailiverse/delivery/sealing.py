"""The CPU work of one delivery as a pure function: message bytes and public keys in, sealed objects out.

Judging where a message came from when it is asked to (``delivery/judge.py``: its only way out is
the DNS questions of its ``Enquirer``), then the MIME parse, the JSON twin, zlib and each recipient's
envelope. Nothing here reaches a database, a configuration or a private key, so a delivery worker
process (``delivery/worker.py``) runs it on hostile input with nothing worth stealing; with
``--workers 0`` the appliance runs it on a thread.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import IO, Any, Protocol

from mailiverse.contracts import normalise_domain
from mailiverse.crypto.keys import load_public_key
from mailiverse.delivery.compression import choose_strategy
from mailiverse.delivery.dnschannel import Enquirer
from mailiverse.delivery.encrypt import seal_into
from mailiverse.delivery.verdicts import Judgement, JudgeRequest, plain_name
from mailiverse.mime.carrier import CarriedEnvelope, CarrierError, parse_carrier, valid_key_base
from mailiverse.mime.limits import Limits


@dataclass(frozen=True)
class SealJob:
    """What sealing one message needs besides its bytes: object paths, time, and each recipient's key.

    With ``judge`` the message is judged first; ``spam_original_path`` is then where the original goes
    for the recipients whose mail a failed DMARC quarantine sends to the spam folder (``files_spam``).
    """

    original_path: str
    twin_path: str
    now_ms: int
    #: (envelope format, public key as stored), one per recipient, in delivery order.
    keys: tuple[tuple[str, bytes], ...]
    limits: Limits
    judge: JudgeRequest | None = None
    spam_original_path: str = ""
    #: Per recipient (as ``keys``), the address the message was delivered to (an alias, or the account's
    #: own name), recorded in that recipient's twin as ``delivered_to``; empty: not recorded.
    addresses: tuple[str, ...] = ()
    #: Per recipient (as ``keys``), the ids of the keys it holds, given for mail from outside that may be an
    #: end-to-end carrier (mime/carrier.py): its envelopes are then stored instead of sealing the carrier.
    key_ids: tuple[tuple[str, ...], ...] = ()

    def to_wire(self) -> dict[str, Any]:
        """The job as JSON-able values (keys as Latin-1 text, which maps every byte)."""
        return {
            "original_path": self.original_path,
            "twin_path": self.twin_path,
            "now_ms": self.now_ms,
            "keys": [[fmt, key.decode("latin-1")] for fmt, key in self.keys],
            "limits": asdict(self.limits),
            "judge": None if self.judge is None else self.judge.to_wire(),
            "spam_original_path": self.spam_original_path,
            "addresses": list(self.addresses),
            "key_ids": [list(ids) for ids in self.key_ids],
        }

    @classmethod
    def from_wire(cls, value: dict[str, Any]) -> SealJob:
        return cls(
            original_path=str(value["original_path"]),
            twin_path=str(value["twin_path"]),
            now_ms=int(value["now_ms"]),
            keys=tuple((str(fmt), str(key).encode("latin-1")) for fmt, key in value["keys"]),
            limits=Limits(**value["limits"]),
            judge=None if value.get("judge") is None else JudgeRequest.from_wire(value["judge"]),
            spam_original_path=str(value.get("spam_original_path", "")),
            addresses=tuple(str(a) for a in value.get("addresses", ())),
            key_ids=tuple(tuple(str(i) for i in ids) for ids in value.get("key_ids", ())),
        )


def files_spam(envelope_format: str) -> bool:
    """Whether quarantined mail of an account goes to its spam folder: not for v1 accounts, whose original
    clients list only ``Mail/In`` (there the twin's ``authentication`` member marks it)."""
    return envelope_format != "v1"


@dataclass(frozen=True)
class SealedMeta:
    """What the main process learns about the message besides the ciphertext.

    The size, and the domain of the sender as the twin names it (From, else Sender), for its debug
    log: not the address, and nothing of the content. For a judged message, the ``judgement``: when
    it refuses the message, no object was sealed. From a worker it is hostile output: ``from_wire``
    keeps a domain only if it is plain DNS characters and a judgement only of known words, so it
    cannot forge a log line or a reply.
    """

    size: int
    sender_domain: str = ""
    judgement: Judgement | None = None
    #: For a judged message: the From address the clients show (the screener's sender; never logged)
    #: and the stamps of its X-Hashcash fields (at most ``MAX_STAMPS``, each a short printable line).
    from_address: str = ""
    stamps: tuple[str, ...] = ()
    #: For an end-to-end carrier whose envelopes were written instead of sealed objects: the key base the
    #: sender's device chose (their twins name it), under which they are stored.
    key_base: str = ""

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"size": self.size, "sender_domain": self.sender_domain}
        if self.key_base:
            wire["key_base"] = self.key_base
        if self.judgement is not None:
            wire["judgement"] = self.judgement.to_wire()
        if self.from_address:
            wire["from_address"] = self.from_address
        if self.stamps:
            wire["stamps"] = list(self.stamps)
        return wire

    @classmethod
    def from_wire(cls, value: object) -> SealedMeta:
        if not isinstance(value, dict):
            raise ValueError("sealed-message metadata is a JSON object")
        size = value.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError("a sealed message's size is a whole number")
        judgement = value.get("judgement")
        stamps = value.get("stamps", [])
        if not isinstance(stamps, list) or len(stamps) > MAX_STAMPS:
            raise ValueError("a sealed message's stamps are a short list")
        return cls(
            size=size,
            sender_domain=plain_name(value.get("sender_domain")),
            judgement=None if judgement is None else Judgement.from_wire(judgement),
            from_address=plain_address(value.get("from_address", "")),
            stamps=tuple(s for s in (_stamp_text(v) for v in stamps) if s),
            key_base=_key_base(value.get("key_base", "")),
        )


#: X-Hashcash stamps a message may carry to the screener, and the longest one.
MAX_STAMPS = 8
MAX_STAMP_CHARS = 512


def plain_address(value: object) -> str:
    """``value`` lower-cased if it is a plain address (printable ASCII, no spaces, one @, at most 254
    characters, a plain DNS name after the @), else ""."""
    if not isinstance(value, str) or not 2 < len(value) <= 254 or not value.isascii() or value.count("@") != 1:
        return ""
    local, _, domain = value.lower().partition("@")
    if not local or not local.isprintable() or any(c.isspace() or c in '<>\\"' for c in local):
        return ""
    return f"{local}@{domain}" if plain_name(domain) == domain else ""


def _key_base(value: object) -> str:
    if value == "":
        return ""
    if not valid_key_base(value):
        raise ValueError("a carried message's key base is <digits>_<digits>")
    return str(value)


def _stamp_text(value: object) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_STAMP_CHARS:
        return ""
    return value if value.isascii() and value.isprintable() else ""


def header_stamps(raw: bytes) -> tuple[str, ...]:
    """The values of the message's X-Hashcash header fields (unfolded), at most ``MAX_STAMPS``."""
    end = raw.find(b"\r\n\r\n")
    section = raw[: len(raw) if end < 0 else end + 2]
    if b"x-hashcash" not in section.lower():
        return ()
    found: list[str] = []
    for line in section.replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ").split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() == b"x-hashcash":
            text = _stamp_text(value.strip().decode("ascii", "replace"))
            if text:
                found.append(text)
            if len(found) == MAX_STAMPS:
                break
    return tuple(found)


def _from_addresses(twin: dict[str, Any]) -> list[str]:
    """The twin's From (else Sender) addresses as text ("" for one it could not decode)."""
    try:
        entries = list(twin["addresses"]["from"])
    except (KeyError, TypeError):
        return []
    addresses = []
    for entry in entries:
        try:
            addresses.append(base64.b64decode(entry["email"]).decode("utf-8"))
        except (KeyError, TypeError, ValueError):
            addresses.append("")
    return addresses


def displayed_domains(twin: dict[str, Any]) -> list[str]:
    """The domain of each From the clients will show, in A-label form where it is a valid name."""
    domains = []
    for address in _from_addresses(twin):
        domain = address.rpartition("@")[2].strip().rstrip(".").lower()
        try:
            domains.append(normalise_domain(domain))
        except ValueError:
            domains.append(domain)
    return domains


def sender_domain(twin: dict[str, Any]) -> str:
    """The domain of the twin's first From (else Sender) address, or "" when it has none usable."""
    addresses = _from_addresses(twin)
    return plain_name(addresses[0].rpartition("@")[2]) if addresses else ""


class ObjectSink(Protocol):
    """Where the sealed objects go, in order: per recipient, the original, then the twin."""

    def begin(self) -> IO[bytes]:
        """A writable file for the next object."""

    def end(self, out: IO[bytes]) -> None:
        """The object written to ``out`` is complete."""


def seal_message(raw: bytes, job: SealJob, sink: ObjectSink, enquirer: Enquirer | None = None) -> SealedMeta:
    """Write ``2 × len(job.keys)`` sealed objects to ``sink``: zlib(original) and zlib(twin) per recipient.

    A judged message (``job.judge``) is judged first, asking its DNS questions of ``enquirer``; when
    the judgement refuses it, nothing is written. Otherwise the stored original gets our
    ``Authentication-Results`` header and the twin an ``authentication`` member.
    """
    size = len(raw)
    judgement = None
    if job.judge is not None:
        # Imported here: the main process (which seals only with --workers 0) need not carry the
        # judge's libraries; a worker imports them before it isolates itself (worker.py, _warm_up).
        from mailiverse.delivery.judge import judge
        from mailiverse.delivery.resultsheader import restamp, results_header

        judgement = judge(raw, job.judge, enquirer)
        if judgement.refused:
            return SealedMeta(size=size, judgement=judgement)
        if judgement.results:
            raw = restamp(raw, job.judge.authserv_id, results_header(job.judge.authserv_id, judgement.results))
    # Imported here: the main process seals only with --workers 0 (a worker imports it before it isolates itself).
    from mailiverse.mime.twin import convert_document, iter_twin

    # The document refers to the raw bytes instead of copying attachment bodies, and its JSON text
    # is encrypted batch by batch: the message exists in memory about once.
    # Every stored twin's HTML is made safe (mime/safehtml.py); the original stays as it came.
    twin = convert_document(
        raw, original_path=job.original_path, written_ms=job.now_ms, limits=job.limits, streamed=True, safe_html=True
    )
    if job.judge is not None and judgement is not None:
        from mailiverse.delivery.policy import as_displayed

        judgement = as_displayed(judgement, displayed_domains(twin), job.judge)
        if judgement.refused:
            return SealedMeta(size=size, sender_domain=sender_domain(twin), judgement=judgement)
        if judgement.results or judgement.quarantined:
            twin["authentication"] = judgement.twin_member()
        if judgement.spam is not None:
            twin["spam"] = judgement.spam.twin_member()
    carried_base, carried = _carried(raw, job)
    if carried is not None:
        if any(envelope is None for envelope in carried):
            refusal = Judgement(verdict="unverified", action="reject", reason="envelope-key")
            return SealedMeta(size=size, sender_domain=sender_domain(twin), judgement=refusal)
        for envelope in carried:
            assert envelope is not None
            for data in (envelope.original, envelope.twin):
                out = sink.begin()
                out.write(data)
                sink.end(out)
        return dataclasses.replace(_meta(size, twin, judgement, raw), key_base=carried_base)
    strategy = choose_strategy(raw)  # one choice for both objects: the twin carries the same text
    view = memoryview(raw)
    for index, (fmt, key) in enumerate(job.keys):
        public_key = load_public_key(key)
        if index < len(job.addresses) and job.addresses[index]:
            twin["delivered_to"] = job.addresses[index]
        else:
            twin.pop("delivered_to", None)
        if judgement is not None and judgement.quarantined:
            twin["original"] = job.spam_original_path if files_spam(fmt) else job.original_path
        out = sink.begin()
        seal_into(out, fmt, public_key, _pieces(view), strategy)
        sink.end(out)
        out = sink.begin()
        seal_into(out, fmt, public_key, iter_twin(twin), strategy)
        sink.end(out)
    return _meta(size, twin, judgement, raw)


def _carried(raw: bytes, job: SealJob) -> tuple[str, list[CarriedEnvelope | None] | None]:
    """Per recipient, the carrier's envelope sealed to a key it holds (None where there is none); None when the
    message is no well-formed carrier (it is then sealed as the ordinary message it also is) or the job gives no
    key ids (mail from the appliance's own users is never unpacked)."""
    if len(job.key_ids) != len(job.keys):
        return "", None
    try:
        carrier = parse_carrier(raw, len(raw))
    except CarrierError:
        return "", None
    if carrier is None:
        return "", None
    return carrier.key_base, [carrier.for_keys(ids) for ids in job.key_ids]


def _meta(size: int, twin: dict[str, Any], judgement: Judgement | None, raw: bytes) -> SealedMeta:
    if judgement is None:
        return SealedMeta(size=size, sender_domain=sender_domain(twin))
    froms = _from_addresses(twin)
    return SealedMeta(
        size=size,
        sender_domain=sender_domain(twin),
        judgement=judgement,
        from_address=plain_address(froms[0]) if len(froms) == 1 else "",
        stamps=header_stamps(raw),
    )


def _pieces(view: memoryview, size: int = 1024 * 1024) -> Iterator[bytes]:
    """The message in 1 MiB pieces, copied one piece at a time."""
    for start in range(0, len(view), size):
        yield bytes(view[start : start + size])
