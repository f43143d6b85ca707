"""The bridge's local login: one user name and a random password made for this run, checked in constant time,
with failed attempts slowed down and, after a run of them, refused outright for a while.

The local password only guards the ports on this machine; the account password never reaches a mail app. The
throttle is one for all local connections (they all come from the same few addresses), shared by IMAP and SMTP
when both are given the same ``LocalLogin``.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime

#: 24 URL-safe characters: 144 bits, and nothing a mail app's settings field or a shell would mangle.
PASSWORD_BYTES = 18


def new_local_password() -> str:
    """A fresh random local password (24 URL-safe characters)."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


@dataclass
class Throttle:
    """Failed logins: each refusal is answered after ``failure_delay`` seconds; after ``max_failures`` in a row
    every attempt is refused unchecked for ``lockout`` seconds. A success clears the count."""

    reactor: IReactorTime
    failure_delay: float = 1.0
    max_failures: int = 5
    lockout: float = 60.0
    failures: int = 0
    locked_until: float = 0.0

    def locked(self) -> float:
        """Seconds the lock still holds (0 when not locked)."""
        return max(0.0, self.locked_until - self.reactor.seconds())

    def failed(self) -> None:
        self.failures += 1
        if self.failures >= self.max_failures:
            self.locked_until = self.reactor.seconds() + self.lockout
            self.failures = 0

    def succeeded(self) -> None:
        self.failures = 0


class LocalLogin:
    """The run's user name and local password, and the throttle in front of them."""

    def __init__(self, username: str, password: str, throttle: Throttle, *, addresses: Sequence[str] = ()) -> None:
        self.username = username
        #: Mail apps often fill in the address as the user name: the account's own addresses are taken too.
        self._names = [name.lower().encode("utf-8") for name in (username, *addresses)]
        self._password = password.encode("utf-8")
        self.throttle = throttle

    def matches(self, username: str | bytes, password: str | bytes) -> bool:
        """Whether both match, compared in constant time (the user name case-insensitively)."""
        name = (username.encode("utf-8") if isinstance(username, str) else username).lower()
        secret = password.encode("utf-8") if isinstance(password, str) else password
        good_name = False
        for known in self._names:
            good_name |= hmac.compare_digest(name, known)
        good_password = hmac.compare_digest(secret, self._password)
        return good_name and good_password
