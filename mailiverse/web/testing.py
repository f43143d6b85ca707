"""An in-memory ``IOutbound`` for tests of the send route: it records what would have left the machine."""

from __future__ import annotations

from dataclasses import dataclass, field

from zope.interface import implementer

from mailiverse.web.interfaces import IOutbound


@dataclass(frozen=True)
class Submitted:
    """One message handed to the outbound queue."""

    queue_id: str
    user: str
    mail_from: str
    recipients: tuple[str, ...]
    message: bytes


@implementer(IOutbound)
@dataclass
class MemoryOutbound:
    """Records each submission and returns queue ids ``q1``, ``q2``, ...; with ``fail`` set, raises."""

    submitted: list[Submitted] = field(default_factory=list)
    fail: bool = False

    async def submit(
        self, *, user: str, mail_from: str, recipients: list[str], message: bytes
    ) -> str:
        if self.fail:
            raise RuntimeError("the outbound queue is unavailable")
        queue_id = f"q{len(self.submitted) + 1}"
        self.submitted.append(
            Submitted(queue_id, user, mail_from, tuple(recipients), bytes(message))
        )
        return queue_id
