"""What a client sealed on its device, as the submission service is handed it (docs/e2e.md §2).

Local recipients' envelopes are stored as they came (``IInbox.deliver_sealed``); a remote recipient's travels
in a carrier (``mime/carrier.py``), one per recipient so no recipient learns of another's envelope, with the
copy for that domain's organisation key when the sender's device sealed one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mailiverse.contracts import SealedObjects
from mailiverse.mime.carrier import CarriedEnvelope, CarrierError, build_carrier
from mailiverse.submission.errors import SubmissionError

#: Stamps a sealed message may carry for the recipients' screeners.
MAX_STAMPS = 8


@dataclass(frozen=True)
class SealedMessage:
    """One message sealed on the sender's device: per recipient address its envelope, per domain the
    organisation's copy, and the sender's own copy for ``Mail/Sent``."""

    key_base: str
    envelopes: tuple[tuple[str, SealedObjects], ...]
    organisation: tuple[tuple[str, SealedObjects], ...] = ()
    sent: SealedObjects | None = None
    from_address: str | None = None
    stamps: tuple[str, ...] = ()
    #: The Sent copy's key base ("": the message's).
    sent_key_base: str = ""

    def organisation_copies(self) -> dict[str, SealedObjects]:
        return dict(self.organisation)


def carrier_for(
    message: SealedMessage, mail_from: str, recipient: str, envelope: SealedObjects, hostname: str, now_ms: int
) -> bytes:
    """The carrier of ``recipient``'s envelope (and its domain's organisation copy, if any)."""
    carried = [CarriedEnvelope(envelope.key_id, envelope.original, envelope.twin)]
    copy = message.organisation_copies().get(recipient.rpartition("@")[2].lower())
    if copy is not None and copy.key_id != envelope.key_id:
        carried.append(CarriedEnvelope(copy.key_id, copy.original, copy.twin))
    try:
        return build_carrier(
            mail_from=mail_from,
            to=recipient,
            key_base=message.key_base,
            envelopes=carried,
            hostname=hostname,
            now_ms=now_ms,
        )
    except CarrierError as error:
        raise SubmissionError("invalid_request", str(error)) from None


def sealed_size(objects: Sequence[SealedObjects]) -> int:
    return sum(len(o.original) + len(o.twin) for o in objects)


__all__ = ["MAX_STAMPS", "SealedMessage", "carrier_for", "sealed_size"]
