"""The exceptions every crypto format raises, with one generic decryption message."""

from __future__ import annotations

#: The only text a decryption failure ever carries, whatever went wrong.
GENERIC_DECRYPTION_MESSAGE = "message could not be decrypted"


class CryptoError(Exception):
    """A cryptographic operation was refused (bad key, bad parameter, bad input)."""


class DecryptionError(CryptoError):
    """Any failure to decrypt or authenticate; deliberately says nothing about why.

    Bad padding, a wrong key, a tampered tag, truncation, an unknown version and a
    bad length field all raise this same error with the same message, so that
    callers cannot turn the difference into an oracle.
    """

    def __init__(self) -> None:
        super().__init__(GENERIC_DECRYPTION_MESSAGE)
