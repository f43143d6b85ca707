"""Accounts of the HTTPS API: sign-up, SRP login, fresh proofs, password change, deletion, database sessions."""

from mailiverse.accounts.errors import AccountError
from mailiverse.accounts.pending import DatabasePendingLogins
from mailiverse.accounts.service import (
    AccountService,
    LoginStart,
    SignupPolicy,
    SignupRequest,
)
from mailiverse.accounts.sessions import DatabaseSessionStore

__all__ = [
    "AccountError",
    "AccountService",
    "DatabasePendingLogins",
    "DatabaseSessionStore",
    "LoginStart",
    "SignupPolicy",
    "SignupRequest",
]
