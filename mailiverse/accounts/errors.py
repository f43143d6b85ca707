"""The one error type of the account services: a stable code, an HTTP status and a message safe to show."""

from __future__ import annotations


class AccountError(Exception):
    """A refusal the API turns into ``{"error": code, "message": message}`` with ``status``.

    ``retry_after`` (seconds) is set for rate limits. Messages never carry secrets.
    """

    def __init__(self, code: str, message: str, status: int = 400, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after


def auth_failed() -> AccountError:
    """The single answer to any failed proof: wrong password, unknown user, bad A, used handle."""
    return AccountError("auth_failed", "authentication failed", 401)


def rate_limited(retry_after: int) -> AccountError:
    """Too many attempts from this address or for this account."""
    return AccountError("rate_limited", "too many attempts; try again later", 429, max(1, retry_after))
