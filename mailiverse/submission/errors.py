"""The one error of the submission service: a stable code, the HTTP status it maps to, a message safe to show."""

from __future__ import annotations

from mailiverse.contracts.errors import Refusal


class SubmissionError(Refusal):
    """A refused submission; front ends map ``code`` and ``status`` to their own wire (JSON, legacy text)."""


__all__ = ["SubmissionError"]
