"""Header fields of the messages the appliance builds, with the submission's error.

The rules (no value can end a header line and start another; the written header block is read back) live in
``mailiverse/mime/compose.py``, where the client uses them too. Here each refusal becomes the submission's
``SubmissionError`` with the same code and message, for the front ends that map it to their wire.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from mailiverse.mime import compose as rules
from mailiverse.mime.compose import FORBIDDEN_IN_HEADERS, MAX_HEADER_LINE, MAX_HEADER_VALUE_CHARS, is_clean
from mailiverse.submission.errors import SubmissionError

if TYPE_CHECKING:
    from email.headerregistry import Address
    from email.message import EmailMessage


@contextmanager
def submission_errors() -> Iterator[None]:
    """Turn the composer's ``ComposeError`` into ``SubmissionError`` (same code, same message, 400)."""
    try:
        yield
    except rules.ComposeError as error:
        raise SubmissionError(error.code, error.message) from None


def check_text(what: str, value: str) -> str:
    """``value`` when it holds no line break or control character, also inside RFC 2047 encoded words;
    SubmissionError naming ``what`` otherwise."""
    with submission_errors():
        return rules.check_text(what, value)


def set_header(message: EmailMessage, name: str, value: str | Address, what: str) -> None:
    """Set ``name`` after checking ``value`` as given and as the email package decoded it."""
    with submission_errors():
        rules.set_header(message, name, value, what)


def serialized(message: EmailMessage) -> bytes:
    """The message's bytes, once its written header block holds exactly the fields that were set."""
    with submission_errors():
        return rules.serialized(message)


def check_serialized_head(data: bytes, names: Sequence[str]) -> None:
    """Refuse ``data`` unless its header block is exactly the fields ``names``, in order (``mime/compose.py``)."""
    with submission_errors():
        rules.check_serialized_head(data, names)


__all__ = [
    "FORBIDDEN_IN_HEADERS",
    "MAX_HEADER_LINE",
    "MAX_HEADER_VALUE_CHARS",
    "check_serialized_head",
    "check_text",
    "is_clean",
    "serialized",
    "set_header",
    "submission_errors",
]
