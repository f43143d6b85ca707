"""The password KDF description a login start answers with: the account's own, or a stable decoy.

The description is public (docs/auth.md, "The password KDF"). A name with no usable modern login (no
account, a legacy or disabled one) gets a decoy shaped like a new account's: Argon2id with today's
parameters and a salt that is an HMAC of the name under the server secret, so asking twice gives the
same answer, as it would for a real account. The server never runs Argon2: it only stores and checks
descriptions.
"""

from __future__ import annotations

import hashlib
import hmac

from mailiverse.accounts.errors import AccountError
from mailiverse.auth.keys import subkey
from mailiverse.crypto.kdf import PBKDF2_RULE, SALT_BYTES, InvalidKdf, KdfParams, new_kdf, parse_kdf, parse_kdf_text
from mailiverse.store.users import User

_DECOY_LABEL = "kdf decoy salt"


def decoy_kdf(server_secret: bytes, name: str) -> KdfParams:
    """The stable fake description of ``name`` (a canonical user name)."""
    key = subkey(server_secret, _DECOY_LABEL)
    salt = hmac.new(key, name.encode("ascii"), hashlib.sha256).digest()[:SALT_BYTES]
    return new_kdf(salt)


def stored_kdf(user: User) -> KdfParams:
    """The account's description; no stored one means the original fixed-salt PBKDF2 rule."""
    if user.kdf is None:
        return PBKDF2_RULE
    return parse_kdf_text(user.kdf)


def login_kdf(server_secret: bytes, name: str, user: User | None) -> KdfParams:
    """What login start tells about ``name``: the account's description if ``user`` can log in, else the decoy.

    The decoy is computed every time, so real and unknown names cost the same.
    """
    decoy = decoy_kdf(server_secret, name)
    if user is None:
        return decoy
    try:
        return stored_kdf(user)
    except InvalidKdf:
        # Only a damaged row gets here; its login cannot succeed whatever the client derives.
        return decoy


def check_new_kdf(value: object) -> str | None:
    """The stored form of a description a client sends with a new verifier, or None for none given.

    None keeps the original PBKDF2 rule (clients from before Argon2id send no ``kdf``); an explicit
    ``{"kdf": "pbkdf2-sha256"}`` means the same. A malformed or too weak description is ``invalid_kdf``.
    """
    if value is None:
        return None
    try:
        params = parse_kdf(value)
    except InvalidKdf as error:
        raise AccountError("invalid_kdf", error.message) from None
    return params.canonical() if params.is_argon2id else None


__all__ = ["PBKDF2_RULE", "check_new_kdf", "decoy_kdf", "login_kdf", "stored_kdf"]
