"""The store: one database door, the schema and its migrations, and repositories of plain dataclasses."""

from mailiverse.store.db import Database
from mailiverse.store.errors import (
    InvalidInput,
    InvalidPath,
    ObjectNotFound,
    ObjectTooLarge,
    OverQuota,
    ReactorThreadAccess,
    StoreError,
    UserExists,
    UserNotFound,
    VersionConflict,
)
from mailiverse.store.objects import CHUNK_SIZE, NewestCursor, ObjectInfo, validate_path, validate_prefix
from mailiverse.store.users import User

__all__ = [
    "CHUNK_SIZE",
    "Database",
    "InvalidInput",
    "InvalidPath",
    "NewestCursor",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectTooLarge",
    "OverQuota",
    "ReactorThreadAccess",
    "StoreError",
    "User",
    "UserExists",
    "UserNotFound",
    "VersionConflict",
    "validate_path",
    "validate_prefix",
]
