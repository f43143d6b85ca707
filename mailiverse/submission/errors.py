"""The one error of the submission service: a stable code, the HTTP status it maps to, a message safe to show."""

from __future__ import annotations


class SubmissionError(Exception):
    """A refused submission; front ends map ``code`` and ``status`` to their own wire (JSON, legacy text).

    ``retry_after`` (seconds) comes with a rate limit, for an HTTP ``Retry-After``.
    """

    def __init__(self, code: str, message: str, status: int = 400, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after


__all__ = ["SubmissionError"]
