"""The one error type of the account services: a stable code, an HTTP status and a message safe to show."""

from __future__ import annotations

from mailiverse.contracts.errors import Refusal


class AccountError(Refusal):
    """A refusal of the account services (sign-up, login, sessions); messages never carry secrets."""


def auth_failed() -> AccountError:
    """The single answer to any failed proof: wrong password, unknown user, bad A, used handle."""
    return AccountError("auth_failed", "authentication failed", 401)


def rate_limited(retry_after: int) -> AccountError:
    """Too many attempts from this address or for this account."""
    return AccountError("rate_limited", "too many attempts; try again later", 429, max(1, retry_after))
