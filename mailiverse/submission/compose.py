"""Build a message from the API's structured fields (who a raw message is from: ``sender.py``).

The composition itself is ``mailiverse/mime/compose.py`` (the client composes the same bytes on the device
for end-to-end mail); here its refusals become the submission's ``SubmissionError``.
"""

from __future__ import annotations

from mailiverse.mime import compose as composer
from mailiverse.mime.compose import MAX_SUBJECT_LENGTH, Composed
from mailiverse.submission.headers import submission_errors


def checked_address(text: object) -> str:
    """``normalise_address`` with the submission's error: ``invalid_address``."""
    with submission_errors():
        return composer.checked_address(text)


def compose(message: Composed, *, default_from: str, hostname: str, now_ms: int) -> bytes:
    """RFC 5322 bytes of a structured message (Bcc is never written into it); see ``mime/compose.py``."""
    with submission_errors():
        return composer.compose(message, default_from=default_from, hostname=hostname, now_ms=now_ms)


__all__ = ["MAX_SUBJECT_LENGTH", "Composed", "checked_address", "compose"]
