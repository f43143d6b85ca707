"""Device tokens: a device that has logged in to an account is recognised at its next login.

A per-account failure budget protects against guessing, but anyone can spend it, and then the
owner is locked out too. A device token fixes that (the "device cookie" scheme): every
successful login hands the device a token bound to the account, and later attempts that
present a valid one are counted against that device's own budget instead of the account's
and the address's. Strangers can exhaust the shared budgets but cannot mint a token, so the
owner's known devices keep working; a token only ever buys its holder a budget of its own,
never access.

The token is stateless, so any front end sharing the database's server secret checks it:
``version (1) | device id (16) | issued at, seconds (8) | HMAC-SHA-256 tag, truncated (16)``,
URL-safe base64 without padding (55 characters). The tag covers the account name too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import struct

from mailiverse.auth.clock import TimeSource, as_clock
from mailiverse.auth.keys import subkey
from mailiverse.auth.sessions import host_cookie

#: The browser's cookie for the token: ``__Host-`` so no sibling host can set or read it.
DEVICE_COOKIE = "__Host-mv-device"
#: Seconds a token stays valid; every successful login renews it.
DEVICE_TOKEN_LIFETIME = 180 * 24 * 3600
#: Seconds a token's issue time may lie ahead of this front end's clock (clock skew).
CLOCK_SKEW = 300

_VERSION = 1
_ID_BYTES = 16
_TAG_BYTES = 16
_HEAD = struct.Struct(">B16sQ")
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{55}", re.ASCII)


class DeviceTokens:
    """Issue and check device tokens under a key derived from the server secret."""

    def __init__(self, server_secret: bytes, clock: TimeSource = None, lifetime: int = DEVICE_TOKEN_LIFETIME) -> None:
        self._key = subkey(server_secret, "device-token")
        self._now = as_clock(clock)
        self.lifetime = lifetime

    def _tag(self, username: str, head: bytes) -> bytes:
        message = b"mailiverse device\x00" + username.encode("utf-8") + b"\x00" + head
        return hmac.new(self._key, message, hashlib.sha256).digest()[:_TAG_BYTES]

    def _seal(self, username: str, device: bytes) -> str:
        head = _HEAD.pack(_VERSION, device, int(self._now()))
        raw = head + self._tag(username, head)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def issue(self, username: str) -> str:
        """A token for a new device of ``username``."""
        return self._seal(username, secrets.token_bytes(_ID_BYTES))

    def reissue(self, username: str, device: str | None) -> str:
        """A fresh token for ``device`` (an id from ``verify``), or for a new device if it is ``None``."""
        if device is None:
            return self.issue(username)
        return self._seal(username, bytes.fromhex(device))

    def renew(self, username: str, token: object) -> str:
        """``token`` with a fresh issue time if it is valid for ``username``; else a new device's token."""
        return self.reissue(username, self.verify(username, token))

    def verify(self, username: str, token: object) -> str | None:
        """The device id (hex) that ``token`` names for ``username``, or ``None`` if it names none."""
        device = self._device(username, token)
        return device.hex() if device is not None else None

    def _device(self, username: str, token: object) -> bytes | None:
        if not isinstance(token, str) or not _TOKEN_SHAPE.fullmatch(token):
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=")
        except (binascii.Error, ValueError):
            return None
        head, tag = raw[: _HEAD.size], raw[_HEAD.size :]
        if len(tag) != _TAG_BYTES or not hmac.compare_digest(tag, self._tag(username, head)):
            return None
        version, device, issued = _HEAD.unpack(head)
        age = self._now() - issued
        if version != _VERSION or not -CLOCK_SKEW <= age <= self.lifetime:
            return None
        return bytes(device)


def is_well_formed_device_token(token: object) -> bool:
    """Whether ``token`` has the shape of a device token (says nothing of its validity)."""
    return isinstance(token, str) and _TOKEN_SHAPE.fullmatch(token) is not None


def device_cookie(token: str, max_age: int = DEVICE_TOKEN_LIFETIME) -> str:
    """The ``Set-Cookie`` value that hands ``token`` to the browser (HttpOnly, Secure, SameSite=Strict)."""
    if not is_well_formed_device_token(token):
        raise ValueError("not a device token")
    return host_cookie(DEVICE_COOKIE, token, max_age)


def clear_device_cookie() -> str:
    """The ``Set-Cookie`` value that makes the browser forget its device token (account deleted)."""
    return host_cookie(DEVICE_COOKIE, "", 0)


__all__ = [
    "CLOCK_SKEW",
    "DEVICE_COOKIE",
    "DEVICE_TOKEN_LIFETIME",
    "DeviceTokens",
    "clear_device_cookie",
    "device_cookie",
    "is_well_formed_device_token",
]
