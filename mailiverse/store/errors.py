"""The store's error types: one hierarchy callers can catch and act on."""

from __future__ import annotations

from mailiverse.contracts import paths as _paths


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""


class InvalidInput(StoreError, ValueError):
    """An argument breaks a limit or a format rule; the message names which."""


class InvalidPath(InvalidInput, _paths.InvalidPath):
    """An object path or prefix the store refuses; also the contracts' ``InvalidPath``, so front ends catch one type."""


class ObjectTooLarge(InvalidInput):
    """An object body exceeds the size limit given to the store."""


class UserExists(StoreError):
    """A user with this (canonical) name already exists."""


class UserNotFound(StoreError, LookupError):
    """No user has this id or name."""


class ObjectNotFound(StoreError, LookupError):
    """No object exists at this path for this user."""


class VersionConflict(StoreError):
    """A conditional write or delete found a different version than the caller expected."""


class OverQuota(StoreError):
    """A write would take the account's stored bytes past its quota; nothing was written."""


class ReactorThreadAccess(AssertionError):
    """The database was touched on the reactor thread while the reactor was running."""


class HomeUnavailable(StoreError):
    """The database an account lives in (its home, store/homes.py) does not answer; try again later.

    SMTP and LMTP answer 451, the API 503: the other homes' accounts are unaffected.
    """


class HomeMoving(HomeUnavailable):
    """The account is being moved to another home (``mailiverse-admin user move-home``) for a few seconds."""
