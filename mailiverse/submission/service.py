"""Send for a logged-in user: route each recipient, deliver local mail, queue remote mail, file the Sent copy.

Every front end that lets a user send (the JSON API, the legacy ``Send`` relay, later the bridge
and federation) calls ``Submission.submit``. Local recipients go through the same ``IInbox`` as
SMTP, so the message never leaves the machine and is sealed by the delivery pipeline's code;
remote recipients go to the ``IOutbound`` queue; the sender's own copy is filed in ``Mail/Sent``
through the same ``IInbox``, sealed to the sender's key.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from mailiverse.auth.clock import TimeSource
from mailiverse.auth.ratelimit import IRateLimits
from mailiverse.config import DEFAULT_SEND_LIMIT_PER_HOUR
from mailiverse.contracts import (
    INBOX_FOLDER,
    SENT_FOLDER,
    EnvelopeRefused,
    IInbox,
    IOutbound,
    MailboxFull,
    MessageRejected,
    Recipient,
    SealedObjects,
)
from mailiverse.failures import describe
from mailiverse.logs import Logger
from mailiverse.spool import SpooledMessage
from mailiverse.submission.compose import checked_address
from mailiverse.submission.errors import SubmissionError
from mailiverse.submission.limits import SendLimit
from mailiverse.submission.sealed import SealedMessage, carrier_for
from mailiverse.submission.sender import claimed_from, own_address, sender_of

log = Logger()

#: Most recipients one message may have.
MAX_RECIPIENTS = 100


@dataclass(frozen=True)
class Submitter:
    """Who sends: the account name, the addresses they may send from, and the account the inbox resolved."""

    user: str
    addresses: tuple[str, ...]
    account: object | None = None


@dataclass(frozen=True)
class Submitted:
    """Where a message went: local and remote recipients, the queue id, the Sent copy's path."""

    mail_from: str
    local: tuple[str, ...]
    remote: tuple[str, ...]
    queue_id: str | None
    sent_path: str | None


class Submission:
    """The appliance's one way for a user's mail to go out (or stay in)."""

    def __init__(
        self,
        inbox: IInbox,
        domains: Sequence[str],
        *,
        outbound: IOutbound | None = None,
        max_message_size: int = 50 * 1024 * 1024,
        send_limit_per_hour: int = DEFAULT_SEND_LIMIT_PER_HOUR,
        clock: TimeSource = None,
        on_sent: Callable[[str, Sequence[str]], Awaitable[None]] | None = None,
        hostname: str = "localhost",
        rate_limits: IRateLimits | None = None,
    ) -> None:
        """``on_sent(user, recipients)`` hears of every message sent (the screener approves whom a user
        writes to); its failure is logged, never the sending's. ``rate_limits`` (front ends sharing a
        metabase) holds the hourly send limit; by default it lives in this process's memory."""
        self._on_sent = on_sent
        self.hostname = hostname
        self._inbox = inbox
        self.domains = tuple(d.lower() for d in domains)
        self.outbound = outbound
        self.max_message_size = max_message_size
        self.send_limit = SendLimit(send_limit_per_hour, clock, rate_limits=rate_limits)

    def addresses_of(self, user: str) -> tuple[str, ...]:
        """The account's addresses: its name at every served domain."""
        return tuple(f"{user}@{domain}" for domain in self.domains)

    def submitter(self, user: str, account: object | None = None) -> Submitter:
        """The ``Submitter`` of an account with its addresses at every served domain."""
        return Submitter(user=user, addresses=self.addresses_of(user), account=account)

    def is_local(self, address: str) -> bool:
        """Whether ``address`` is at a domain this appliance serves."""
        return address.rpartition("@")[2].lower() in self.domains

    async def submit(
        self,
        sender: Submitter,
        message: bytes,
        recipients: Sequence[str] | None = None,
        *,
        mail_from: str | None = None,
        sent_copy: bool = True,
    ) -> Submitted:
        """Send ``message`` (RFC 5322 bytes) from ``sender``; SubmissionError says why not.

        The message must carry exactly one From holding one address of ``sender``, whichever front end
        calls; it is the envelope sender unless ``mail_from`` (also one of the sender's addresses) is
        given. Recipients default to To, Cc and Bcc.
        Nothing is delivered or queued unless every recipient can be routed, the account's hourly send
        limit has room for every recipient (429 otherwise; a message that is refused gives its
        recipients back), and no mailbox the message goes to is full (507): a local recipient's, and
        the sender's own when a Sent copy is kept. The Sent copy counts against the sender's quota.
        """
        if not message or len(message) > self.max_message_size:
            raise SubmissionError("message_too_large", f"a message must be 1 to {self.max_message_size} bytes", 413)
        addresses = await self._with_alias(sender, claimed_from(message))
        header_from, listed = sender_of(message, addresses)
        if mail_from is None:
            mail_from = header_from
        else:
            mail_from = own_address(checked_address(mail_from), addresses, "envelope sender")
        wanted = list(recipients) if recipients is not None else listed
        targets = list(dict.fromkeys(checked_address(a) for a in wanted))
        if not 1 <= len(targets) <= MAX_RECIPIENTS:
            raise SubmissionError("invalid_recipients", f"give 1 to {MAX_RECIPIENTS} recipients")
        await self.send_limit.reserve(sender.user, len(targets))
        try:
            if sent_copy:
                await self._require_room(mail_from)
            local, remote = await self._route(targets)
            if remote and self.outbound is None:
                raise SubmissionError(
                    "remote_delivery_disabled", "this appliance does not send mail to other domains", 422
                )
            if local:
                await self._deliver(message, mail_from, local)
        except BaseException:
            await self.send_limit.release(sender.user, len(targets))  # nothing has left
            raise
        try:
            queue_id = await self._queue(sender, mail_from, remote, message) if remote else None
        except BaseException:
            if not local:
                await self.send_limit.release(sender.user, len(targets))
            raise
        sent_path = await self._file_sent_copy(sender, mail_from, message) if sent_copy else None
        await self._note_sent(sender.user, targets)
        return Submitted(
            mail_from=mail_from,
            local=tuple(r.address for r in local),
            remote=tuple(remote),
            queue_id=queue_id,
            sent_path=sent_path,
        )

    async def submit_sealed(self, sender: Submitter, message: SealedMessage) -> Submitted:
        """Store or send ``message``, sealed on the sender's device (docs/e2e.md §2); SubmissionError says why not.

        The same rules as ``submit`` for who the sender is, how many recipients, the hourly limit, quotas and
        screeners; the appliance cannot read the envelopes, so it checks whom they are for: each local one
        names a key its recipient holds now, remote ones travel in carriers through the outbound queue.
        """
        addresses = await self._with_alias(sender, message.from_address)
        if message.from_address is None:
            mail_from = sender.addresses[0]
        else:
            mail_from = own_address(checked_address(message.from_address), addresses, "From address")
        targets = [checked_address(address) for address, _ in message.envelopes]
        if not 1 <= len(targets) <= MAX_RECIPIENTS or len(set(targets)) != len(targets):
            raise SubmissionError("invalid_recipients", f"give 1 to {MAX_RECIPIENTS} distinct recipients")
        envelopes = dict(zip(targets, (objects for _, objects in message.envelopes), strict=True))
        await self.send_limit.reserve(sender.user, len(targets))
        try:
            if message.sent is not None:
                await self._require_room(mail_from)
            local, remote = await self._route(targets)
            if remote and self.outbound is None:
                raise SubmissionError(
                    "remote_delivery_disabled", "this appliance does not send mail to other domains", 422
                )
            if local:
                local_targets = [address for address in targets if self.is_local(address)]
                copies = [(r, envelopes[a]) for r, a in zip(local, local_targets, strict=True)]
                organisation = message.organisation_copies()
                await self._store_sealed(
                    copies, mail_from, message.key_base, organisation=organisation, stamps=message.stamps
                )
        except BaseException:
            await self.send_limit.release(sender.user, len(targets))
            raise
        queue_ids = []
        for address in remote:
            now_ms = time.time_ns() // 10**6
            carrier = carrier_for(message, mail_from, address, envelopes[address], self.hostname, now_ms)
            queue_ids.append(await self._queue(sender, mail_from, [address], carrier))
        sent_path = None
        if message.sent is not None:
            own = Recipient(address=mail_from, user=sender.user, account=sender.account)
            sent_base = message.sent_key_base or message.key_base
            sent_path = await self._store_sealed([(own, message.sent)], mail_from, sent_base, SENT_FOLDER)
        await self._note_sent(sender.user, targets)
        return Submitted(
            mail_from=mail_from,
            local=tuple(r.address for r in local),
            remote=tuple(remote),
            queue_id=queue_ids[0] if queue_ids else None,
            sent_path=sent_path,
        )

    async def _store_sealed(
        self,
        copies: list[tuple[Recipient, SealedObjects]],
        mail_from: str,
        key_base: str,
        folder: str = INBOX_FOLDER,
        *,
        organisation: dict[str, SealedObjects] | None = None,
        stamps: tuple[str, ...] = (),
    ) -> str:
        try:
            return await self._inbox.deliver_sealed(copies, mail_from, key_base, folder, organisation, stamps)
        except EnvelopeRefused as error:
            status = {"stale_key": 409, "conflict": 409}.get(error.code, 422)
            raise SubmissionError(error.code, error.message, status) from None
        except Exception as error:  # noqa: BLE001 - mapped to the submission's errors in one place
            raise _delivery_error(error) from None

    async def _note_sent(self, user: str, targets: list[str]) -> None:
        if self._on_sent is None:
            return
        try:
            await self._on_sent(user, targets)
        except Exception as error:  # noqa: BLE001 - the message is sent; only the screener's memory missed it
            log.warn("noting the recipients of a sent message failed: {why}", why=describe(error))

    async def _with_alias(self, sender: Submitter, claimed: str | None) -> tuple[str, ...]:
        """The sender's addresses, and ``claimed`` too when it is one of the sender's live aliases: a user
        writes and replies from any of them."""
        mine = {address.lower() for address in sender.addresses}
        if claimed is None or claimed.lower() in mine or not self.is_local(claimed):
            return sender.addresses
        found = await self._inbox.resolve(claimed)
        if found is None or found.user != sender.user or found.alias is None:
            return sender.addresses
        return (*sender.addresses, found.address)

    async def _route(self, targets: list[str]) -> tuple[list[Recipient], list[str]]:
        local: list[Recipient] = []
        remote: list[str] = []
        for address in targets:
            if not self.is_local(address):
                remote.append(address)
                continue
            found = await self._inbox.resolve(address)
            if found is None:
                raise SubmissionError("unknown_recipient", f"no local user has the address {address}")
            if found.over_quota:
                raise SubmissionError("recipient_over_quota", f"the mailbox of {address} is full; try again later", 507)
            local.append(found)
        return local, remote

    async def _require_room(self, mail_from: str) -> None:
        """Refuse a sender whose own mailbox is full: the Sent copy would be filed past the quota."""
        own = await self._inbox.resolve(mail_from)
        if own is not None and own.over_quota:
            raise SubmissionError("over_quota", "your mailbox is full: delete some mail before sending", 507)

    async def _deliver(
        self, message: bytes, mail_from: str, recipients: list[Recipient], folder: str | None = None
    ) -> str:
        # The message is already in memory (its size is capped); the spool object only carries it.
        spooled = SpooledMessage(size=len(message), memory=message)
        try:
            if folder is None:
                return await self._inbox.deliver(spooled, mail_from, recipients)
            return await self._inbox.deliver(spooled, mail_from, recipients, folder)
        except SubmissionError:
            raise
        except Exception as error:  # noqa: BLE001 - mapped to the submission's errors in one place
            raise _delivery_error(error) from None
        finally:
            spooled.close()

    async def _queue(self, sender: Submitter, mail_from: str, remote: list[str], message: bytes) -> str:
        assert self.outbound is not None
        try:
            return await self.outbound.submit(user=sender.user, mail_from=mail_from, recipients=remote, message=message)
        except Exception as error:  # noqa: BLE001 - any queue failure is one retryable error
            log.error("the outbound queue refused a submitted message: {why}", why=describe(error))
            raise SubmissionError(
                "outbound_failed", "the outbound queue refused the message; try again later", 503
            ) from None

    async def _file_sent_copy(self, sender: Submitter, mail_from: str, message: bytes) -> str:
        own = Recipient(address=mail_from, user=sender.user, account=sender.account)
        return await self._deliver(message, mail_from, [own], SENT_FOLDER)


def _delivery_error(error: Exception) -> SubmissionError:
    """What the sender is told when the inbox could not store a message for a local recipient."""
    if isinstance(error, MailboxFull):
        return SubmissionError(
            "recipient_over_quota", "a recipient's mailbox has no room for this message; nothing was sent", 507
        )
    if isinstance(error, MessageRejected):
        return SubmissionError(
            "recipient_refused", "a recipient does not accept mail from you (their screener blocks you)", 403
        )
    # Any other pipeline failure is one retryable error.
    log.error("local delivery of a submitted message failed: {why}", why=describe(error))
    return SubmissionError("delivery_failed", "local delivery failed; try again later", 503)


__all__ = ["MAX_RECIPIENTS", "Submission", "Submitted", "Submitter"]
