"""An HTTP client's response body read with a ceiling: what a peer the appliance asks (an ACME CA, rspamd)
may make it hold."""

from __future__ import annotations

from typing import Any


class BodyTooLarge(Exception):
    """The response announced or sent more than the caller's limit."""


async def read_bounded(response: Any, limit: int) -> bytes:
    """The body of a treq ``response``, at most ``limit`` bytes; BodyTooLarge as soon as it announces or sends
    more (the rest is not read)."""
    import treq

    length = response.length
    if isinstance(length, int) and length > limit:
        raise BodyTooLarge(f"the response announces {length} bytes, over {limit}")
    pieces: list[bytes] = []
    total = 0

    def collect(data: bytes) -> None:
        nonlocal total
        total += len(data)
        if total > limit:
            raise BodyTooLarge(f"the response is over {limit} bytes")
        pieces.append(data)

    await treq.collect(response, collect)
    return b"".join(pieces)
