"""How many body bytes a web request may send, decided from its headers before the body arrives.

The web front end owns the listener, so it reads every body and enforces the limit; a front end
mounted under it (the legacy ``/Mailiverse/`` routes) says what its own requests may send by
providing ``IBodyGate``. A request without a credential that verifies gets ``ANONYMOUS_BODY_BYTES``.
"""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from zope.interface import Interface

#: The body cap of a request that carries no credential that verifies: a sign-up (its key block and
#: public key, about 5 KiB with a 4096-bit key) fits with room to spare, a flood does not.
ANONYMOUS_BODY_BYTES = 16 * 1024


@dataclass(frozen=True)
class BodyAllowance:
    """The most body bytes a request may send, and the JSON error it gets when it sends more."""

    limit: int
    status: int = 413
    error: str = "body_too_large"
    message: str = "the request body is larger than this route accepts"


#: The allowance of a request without a credential that verifies.
ANONYMOUS_ALLOWANCE = BodyAllowance(ANONYMOUS_BODY_BYTES)

#: Decided at once, or after a check (a database look-up) that the web front end awaits.
Allowance = BodyAllowance | Coroutine[Any, Any, BodyAllowance]


class IBodyGate(Interface):
    """A resource mounted under the web listener that decides the body allowance of its own requests."""

    def body_allowance(request: Any, path: bytes) -> Allowance:
        """The allowance of ``request`` (its method, URI and headers are known, its body is not) for
        ``path``, the path below the mount point (``/StorePut``)."""


__all__ = ["ANONYMOUS_ALLOWANCE", "ANONYMOUS_BODY_BYTES", "Allowance", "BodyAllowance", "IBodyGate"]
