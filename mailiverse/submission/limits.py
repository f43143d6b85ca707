"""The hourly send limit: how many recipients one account may send to, whichever front end it sends from.

A token bucket per account (``auth.ratelimit``) of ``per_hour`` recipients that refills evenly over an
hour: an account may send to ``per_hour`` recipients at once, and to ``per_hour`` an hour after that.
Every recipient counts, local or remote. The budget lives in memory, where a restart gives every
account its full budget back, or, for front ends sharing a metabase, in the metabase
(``rate_limits``, ``mailiverse.store.ratebuckets``), where all of them spend from one.
"""

from __future__ import annotations

from mailiverse.auth.clock import TimeSource
from mailiverse.auth.ratelimit import Budget, Decision, IRateLimiter, IRateLimits, TokenBucketLimiter
from mailiverse.submission.errors import SubmissionError

#: The period the budget refills over, in seconds.
HOUR = 3600.0


class SendLimit:
    """Reserve recipients from an account's hourly budget before sending; give them back if nothing was sent."""

    def __init__(
        self,
        per_hour: int,
        clock: TimeSource = None,
        max_accounts: int = 100_000,
        rate_limits: IRateLimits | None = None,
    ) -> None:
        self.per_hour = per_hour
        budget = Budget(per_hour, HOUR)
        self._buckets: IRateLimiter = (
            TokenBucketLimiter(budget, clock, max_accounts)
            if rate_limits is None
            else rate_limits.limiter("send-per-hour", budget)
        )

    async def reserve(self, user: str, recipients: int) -> None:
        """Spend ``recipients`` of ``user``'s budget, or raise SubmissionError (429 ``rate_limited`` with a
        retry time; 400 ``invalid_recipients`` for more recipients than a whole hour's budget)."""
        if recipients > self.per_hour:
            raise SubmissionError(
                "invalid_recipients", f"an account may send to at most {self.per_hour} recipients an hour"
            )
        decision: Decision = await self._buckets.spend(user, recipients)
        if not decision.allowed:
            raise SubmissionError(
                "rate_limited",
                f"you have sent to {self.per_hour} recipients in the last hour; try again later",
                429,
                retry_after=max(1, decision.retry_after_seconds),
            )

    async def release(self, user: str, recipients: int) -> None:
        """Give back what ``reserve`` spent for a message that was neither delivered nor queued."""
        await self._buckets.give_back(user, recipients)


__all__ = ["HOUR", "SendLimit"]
