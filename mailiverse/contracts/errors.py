"""The shape every part's refusal has: a stable code, a status, a message safe to show, a retry hint.

The account services (``AccountError``), the submission service (``SubmissionError``) and the web
layer (``ApiError``) each raise their own subclass; front ends map any ``Refusal`` to their wire in
one place (the JSON API: ``{"error": code, "message": message}`` with ``status``).
"""

from __future__ import annotations


class Refusal(Exception):
    """A refusal: ``code`` is stable, ``status`` is the HTTP status it maps to, ``message`` never carries secrets.

    ``retry_after`` (seconds) comes with a rate limit, for an HTTP ``Retry-After``.
    """

    def __init__(self, code: str, message: str, status: int = 400, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after


__all__ = ["Refusal"]
