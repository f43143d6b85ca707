"""The errors the outbound queue raises to its callers, each with a stable machine-readable code."""

from __future__ import annotations


class OutboundError(Exception):
    """Outbound mail could not be queued; ``code`` is stable, the text is safe to show a user."""

    code = "outbound_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class SubmissionRejected(OutboundError, ValueError):
    """The submission itself is unacceptable (bad address, too large, outbound disabled...)."""

    code = "submission_rejected"


class QueueKeyError(OutboundError):
    """The queue key file is missing, unreadable or malformed; the text names the file."""

    code = "queue_key"


class QueuedBodyUnreadable(OutboundError):
    """A queued body failed to decrypt (wrong key or tampering); deliberately says nothing more."""

    code = "queued_body_unreadable"
