"""From a spooled message to stored envelopes, for every local recipient.

The slow work runs off the reactor thread: parse the MIME into the JSON twin,
compress and encrypt both objects to each recipient's public key (in the
format of that recipient's account; ``delivery/sealing.py``), then write every
object in one transaction.  The sealing runs in an isolated worker process of
the pool (``delivery/pool.py``) when the appliance has one (``--workers N``),
else on a thread of this process.  Lookups, the quota and the commit stay here.
``deliver`` returns only after that transaction is durably committed, which is
what lets the SMTP layer answer 250.

Mail from outside (an ``Envelope``) is judged in the same place, before it is
sealed (``delivery/judge.py``): the DNS questions of the judge are answered here
with ``resolve``; a refused message raises ``MessageRejected`` and nothing is
sealed or stored; a quarantined one goes to ``SPAM_FOLDER``.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import io
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.threads import blockingCallFromThread, deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from mailiverse import hashcash
from mailiverse.config import DEFAULT_QUOTA_BYTES
from mailiverse.contracts import (
    INBOX_FOLDER,
    SCREENER_FOLDER,
    SENT_FOLDER,
    SPAM_FOLDER,
    Envelope,
    EnvelopeRefused,
    IInbox,
    ISpooled,
    MailboxFull,
    MessageRejected,
    Recipient,
    SealedObjects,
    split_address,
)
from mailiverse.delivery.dnschannel import DnsReply, Enquirer
from mailiverse.delivery.encrypt import IN_MEMORY, read_chunks
from mailiverse.delivery.enquiries import Answerer, Resolve
from mailiverse.delivery.naming import mail_paths, new_key_base
from mailiverse.delivery.policy import with_spam
from mailiverse.delivery.pool import WorkerPool, content_digest
from mailiverse.delivery.rspamd import RspamdClient
from mailiverse.delivery.sealing import SealedMeta, SealJob, files_spam, header_stamps, seal_message
from mailiverse.delivery.verdicts import Judgement, JudgeRequest
from mailiverse.logs import Logger
from mailiverse.mime.carrier import looks_like_carrier
from mailiverse.mime.limits import Limits
from mailiverse.store import receipts
from mailiverse.store.aliases import AddressHasher, find_alias_txn, knows_sender_txn, record_use_txn
from mailiverse.store.db import Database
from mailiverse.store.errors import OverQuota, VersionConflict
from mailiverse.store.groupcommit import Bulk, Outcome
from mailiverse.store.groups import organisation_copies_txn
from mailiverse.store.homes import Homes
from mailiverse.store.keylog import sealable_key_ids_txn
from mailiverse.store.lookups import CoalescedLookup
from mailiverse.store.objects import CHUNK_SIZE, NewObject, insert_new_objects_txn, put_object_txn
from mailiverse.store.quota import Usage, add_usage_txn
from mailiverse.store.screener import approve_correspondents_txn, screening_txn, spend_stamp_txn
from mailiverse.store.seq import TOMBSTONE_DAYS, prune_tombstones_txn
from mailiverse.store.users import (
    DeliveryTarget,
    User,
    deliverable_keys_txn,
    delivery_targets_txn,
    get_user_by_id_txn,
    get_user_txn,
    get_users_txn,
)

log = Logger()
T = TypeVar("T")
#: The longest line of the appliance's own trace header read past when a message is digested (store/receipts.py).
MAX_TRACE_LINE = 4096


class DeliveryError(Exception):
    """A message could not be stored; the sender should try again later."""


#: The SMTP reply to a message the judgement refuses, by its reason: the appliance's own words,
#: never the worker's.
#: How long the list of domains under the organisation policy is believed before it is read again (seconds):
#: ``mailiverse-admin domain policy`` takes effect within it.
ORGANISATION_POLICY_TTL = 5.0

_REFUSALS = {
    "local-domain": (550, "5.7.1", "Mail from a local domain is accepted only from its logged-in users"),
    "dmarc-reject": (550, "5.7.1", "Message refused by the DMARC policy of the sender's domain"),
    "dns": (451, "4.7.0", "Temporary DNS failure checking the sender; try again later"),
    "spam": (554, "5.7.1", "Message refused as spam"),
    "spam-defer": (451, "4.7.1", "Message deferred by the spam filter; try again later"),
    "greylist": (451, "4.7.1", "Greylisted; try again later"),
    "envelope-key": (550, "5.7.1", "The end-to-end envelope is not sealed to the recipient's current key"),
}


@dataclass
class _Sealed:
    user_id: int
    path: str
    body: IO[bytes]

    @property
    def size(self) -> int:
        """The ciphertext's length (the body is left where it was)."""
        position = self.body.tell()
        size = self.body.seek(0, 2)
        self.body.seek(position)
        return size


@implementer(IInbox)
class Delivery:
    """The appliance's :class:`IInbox`: resolves local users and stores their mail."""

    def __init__(
        self,
        database: Database,
        is_local_domain: Callable[[str], bool],
        *,
        tmp_dir: Path | None = None,
        reactor: Any = None,
        workers: int = 2,
        mime_limits: Limits | None = None,
        now_ms: Callable[[], int] | None = None,
        default_quota: int = DEFAULT_QUOTA_BYTES,
        worker_pool: WorkerPool | None = None,
        resolve: Resolve | None = None,
        trusted_arc_sealers: tuple[str, ...] = (),
        spam_filter: RspamdClient | None = None,
        dnsbl_zones: tuple[str, ...] = (),
        aliases: AddressHasher | None = None,
        after_store: Callable[[], None] | None = None,
        homes: Homes | None = None,
    ) -> None:
        """``resolve`` answers the judge's DNS questions (without it only the local-domain rule is
        applied to mail from outside); ``trusted_arc_sealers`` are the ARC sealers whose chain may
        vouch for a message that fails DMARC; ``spam_filter`` (``--rspamd``) checks mail from
        outside before it is sealed, and ``dnsbl_zones`` are the blocklists the built-in check asks.
        ``aliases`` hashes addresses for the alias directory (store/aliases.py); without it only accounts'
        own names receive mail. ``homes`` routes each account's writes to its home (store/homes.py); without it
        ``database`` is the only one."""
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self._db = database
        self._homes = homes or Homes.single(database)
        self._is_local_domain = is_local_domain
        self._tmp_dir = str(tmp_dir) if tmp_dir else None
        self._reactor = reactor
        self._mime_limits = mime_limits or Limits()
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))
        self._default_quota = default_quota
        self._workers = worker_pool
        self._resolve = resolve
        self._trusted_arc_sealers = tuple(sealer.lower() for sealer in trusted_arc_sealers)
        self._spam_filter = spam_filter
        self._dnsbl_zones = tuple(zone.lower() for zone in dnsbl_zones)
        self._aliases = aliases
        #: Told after every delivery's commit (the appliance trims its heap once deliveries pause: memory.py).
        self._after_store = after_store
        #: (when read, domain -> organisation account) of the domains under the organisation policy.
        self._organisation_copies: tuple[float, dict[str, str]] | None = None
        # RCPT TO under load: lookups asked meanwhile share one thread hop and one query.
        self._accounts: CoalescedLookup[str, User] = CoalescedLookup(
            lambda fetch_txn, names: Deferred.fromCoroutine(database.run(fetch_txn, names)), get_users_txn
        )
        self._pool = ThreadPool(minthreads=0, maxthreads=workers, name="mailiverse-delivery")
        self._pool.start()
        reactor.addSystemEventTrigger("during", "shutdown", self.stop)

    def stop(self) -> None:
        """Stop the worker threads once; safe to call again (and at reactor shutdown)."""
        if self._pool.joined:
            return
        self._pool.stop()

    async def resolve(self, address: str, mail_from: str | None = None) -> Recipient | None:
        parts = split_address(address)
        if parts is None or not self._is_local_domain(parts[1]):
            return None
        local = parts[0].lower()
        user = await self._accounts.lookup(local)
        alias = None
        if user is None and self._aliases is not None:
            senders = None
            if mail_from is not None:
                senders = (self._aliases.sender(mail_from), self._aliases.sender_domain(mail_from)) if mail_from else ()
            found = await self._db.run(_alias_owner_txn, self._aliases.alias(local), senders)
            if found is None:
                return None
            alias, user = found
        if user is None or user.disabled:
            return None
        if self._homes.multi:
            # The home counts the usage (and a home that is down answers 451 for its accounts here, at RCPT).
            full = (await self._homes.usage(user.id)).is_full(self._default_quota)
        else:
            full = Usage(user.used_bytes, user.quota_bytes).is_full(self._default_quota)
        return Recipient(
            address=f"{local}@{parts[1].lower()}",
            user=user.name,
            account=user,
            over_quota=full,
            alias=alias,
            # An alias stays a shield: mail to it is accepted (and forwarded), never answered with the new address.
            moved_to=user.moved_to if alias is None else None,
        )

    async def deliver(
        self,
        message: ISpooled,
        mail_from: str,
        recipients: list[Recipient],
        folder: str = INBOX_FOLDER,
        envelope: Envelope | None = None,
    ) -> str:
        """Seal ``message`` to every recipient's key and file it in ``folder``; after the durable commit, its path.

        Mail received over SMTP goes to the inbox; the submission service files the sender's own
        copy in ``Mail/Sent`` through the same sealing. A delivery that would take any recipient
        past the quota raises MailboxFull and stores nothing for anyone. The Sent copy is counted
        but never refused: the message has left by then (the submission service refuses a sender
        whose mailbox is full beforehand). Mail from outside (``envelope``) is judged first:
        MessageRejected when it is refused; filed in ``SPAM_FOLDER`` when it is quarantined (for
        accounts whose clients read it there).
        """
        if folder == INBOX_FOLDER:
            recipients = await self._with_organisation_copies(recipients)
        users = await self._users_of(recipients)
        now_ms = self._now_ms()
        key_base = new_key_base(now_ms)
        original_path, twin_path = mail_paths(key_base, folder)
        judge = None if envelope is None else self._judge_request(envelope)
        if judge is not None and envelope is not None and self._spam_filter is not None:
            judge = await self._filtered(message, judge, envelope, recipients, key_base)
        key_ids: tuple[tuple[str, ...], ...] = ()
        if envelope is not None and await self._may_carry(message):
            # An end-to-end carrier (mime/carrier.py): its envelopes are stored for the accounts holding their keys.
            holds = await self._db.run(sealable_key_ids_txn, [user.id for user in users])
            key_ids = tuple(holds.get(user.id, ()) for user in users)
        job = SealJob(
            original_path=original_path,
            twin_path=twin_path,
            now_ms=now_ms,
            key_ids=key_ids,
            keys=tuple((user.envelope_format, user.public_key) for user in users),
            addresses=tuple(next((r.address for r in recipients if r.user == u.name), "") for u in users),
            limits=self._mime_limits,
            judge=judge,
            spam_original_path="" if judge is None else mail_paths(key_base, SPAM_FOLDER)[0],
        )
        objects, meta = await self._seal(message, job)
        judgement = meta.judgement
        if judgement is not None and judgement.refused:
            raise self._refusal(judgement, meta)
        quarantined = judgement is not None and judgement.quarantined
        if quarantined:
            log.info(
                "message {key_base} ({size} bytes) filed as spam ({reason})",
                key_base=key_base,
                size=meta.size,
                reason=judgement.reason if judgement is not None else "",
            )
        carried = bool(meta.key_base)
        if carried:  # the envelopes of a carrier: their twins name the sender's key base
            key_base = meta.key_base
        screened: dict[int, str] = {}
        if folder == INBOX_FOLDER and not quarantined and self._aliases is not None and any(u.screener for u in users):
            if envelope is not None:  # from outside: the From the reader sees, as the worker read it
                sender_address, stamps = meta.from_address, meta.stamps
            else:  # from a logged-in user of this appliance: who they are is known
                sender_address, stamps = mail_from, _internal_stamps(message)
            try:
                screened = await self._screen(users, recipients, sender_address, stamps, meta.size)
            except BaseException:
                for body in objects:
                    body.close()
                raise
        sealed = []
        for i, body in enumerate(objects):
            user = users[i // 2]
            if screened.get(user.id) == "blocked":
                body.close()  # this recipient refuses the sender: nothing stored for them
                continue
            filed = SPAM_FOLDER if quarantined and files_spam(user.envelope_format) else folder
            if screened.get(user.id) == "unknown":
                filed = SCREENER_FOLDER
            sealed.append(_Sealed(user.id, mail_paths(key_base, filed)[i % 2], body))
        users = [user for user in users if screened.get(user.id) != "blocked"]
        receipt = None
        if envelope is not None and self._aliases is not None:
            receipt = self._aliases.received(await self._in_pool(_sent_digest, message))
        try:
            await self._commit(users, sealed, now_ms, folder, shared=not carried, receipt=receipt)
        except EnvelopeRefused:
            # The same carrier again (a sender's retry after a lost reply): it is stored already.
            log.info("a carrier already stored ({key_base}) arrived again; kept once", key_base=key_base)
        # Debug, not info: one line per message was 4 % of the reactor thread's time (docs/performance.md).
        log.debug(
            "stored message {key_base} ({size} bytes, from a sender at {sender_domain}) in {folder} "
            "for {count} recipient(s)",
            key_base=key_base,
            folder=folder,
            size=meta.size,
            sender_domain=meta.sender_domain or "an unnamed domain",
            count=len(users),
        )
        await self._record_alias_use(recipients, mail_from)
        return sealed[0].path if sealed else mail_paths(key_base, folder)[0]

    async def _may_carry(self, message: ISpooled) -> bool:
        """``_may_carry`` of the message (a spilled one's head is read and decrypted on a delivery thread)."""
        return await self._in_pool(_may_carry, message)

    async def purge_receipts(self) -> int:
        """Forget the receipts of mail older than a week (store/receipts.py) and the store's tombstones older than a
        month (store/seq.py) in every home that answers; how many."""
        forgotten = 0
        now_ms = self._now_ms()
        for name in self._homes.names:
            try:
                forgotten += await self._homes.write_in(name, functools.partial(_purge_in, now_ms=now_ms))
            except Exception as error:  # noqa: BLE001 - a home that is down is purged next time
                log.warn("purging old receipts in home {home} failed: {why}", home=name, why=type(error).__name__)
        return forgotten

    async def _in_pool(self, fn: Callable[[ISpooled], T], message: ISpooled) -> T:
        """``fn(message)`` here for a message in memory; on a delivery thread for one spilled to the encrypted spool."""
        if getattr(message, "in_memory", False):
            return fn(message)
        result: T = await deferToThreadPool(self._reactor, self._pool, fn, message)
        return result

    async def _commit(
        self,
        users: Sequence[User],
        sealed: list[_Sealed],
        now_ms: int,
        folder: str,
        *,
        shared: bool = True,
        receipt: bytes | None = None,
    ) -> None:
        """Write ``sealed`` in one durable transaction (MailboxFull past a quota), closing every body.

        With ``shared`` (the appliance named the objects), deliveries arriving while the writer is busy share its
        next commit (one fsync for many), and small ones its statements too (_store_many); objects named by a
        client are written alone, so a taken name fails only that delivery. ``receipt`` (mail from outside: the keyed
        digest of the message as sent) skips the accounts that stored the same message before (store/receipts.py)."""
        default_quota = None if folder == SENT_FOLDER else self._default_quota
        try:
            by_home = await self._homes.grouped_for([user.id for user in users])
            # One durable commit per home the recipients live in, all before the reply; with one home, one.
            writes = []
            for name, ids in by_home.items():
                chosen = set(ids)
                part = [item for item in sealed if item.user_id in chosen]
                request = _StoreRequest(
                    [user for user in users if user.id in chosen],
                    part,
                    now_ms,
                    default_quota,
                    [i.size for i in part],
                    receipt,
                )
                bulk = Bulk(_store_many, request) if shared and max(request.sizes, default=0) <= CHUNK_SIZE else None

                def write(database: Database, request: _StoreRequest = request, bulk: Bulk | None = bulk) -> Any:
                    return database.transact_grouped(
                        functools.partial(_store_all, request=request),
                        weight=sum(request.sizes),
                        user_ids=[user.id for user in request.users],
                        bulk=bulk,
                    )

                writes.append(Deferred.fromCoroutine(self._homes.write_in(name, write)))
            if len(writes) == 1:
                await writes[0]
            elif writes:
                await gatherResults(writes, consumeErrors=True).addErrback(lambda f: f.value.subFailure)
        except OverQuota:
            raise MailboxFull("the message would take a recipient's mailbox past its quota") from None
        except VersionConflict:
            raise EnvelopeRefused("conflict", "a message with this key base is already stored; pick another") from None
        finally:
            for item in sealed:
                item.body.close()
            if self._after_store is not None:
                self._after_store()

    async def deliver_sealed(
        self,
        copies: list[tuple[Recipient, SealedObjects]],
        mail_from: str,
        key_base: str,
        folder: str = INBOX_FOLDER,
        organisation: dict[str, SealedObjects] | None = None,
        stamps: tuple[str, ...] = (),
    ) -> str:
        """Store envelopes sealed on the sender's device as they came (``IInbox.deliver_sealed``).

        Nothing here can read them: what is checked is who they are for. Each names a key its recipient holds
        now (``sealable_key_ids_txn``; the write transaction then checks the account's key is still the one
        the lookup saw), a recipient domain under the organisation policy has its copy for the organisation's
        key, the screeners and the quotas decide as for any delivery.
        """
        recipients = [recipient for recipient, _ in copies]
        objects = {recipient.user: sealed for recipient, sealed in copies}
        if folder == INBOX_FOLDER:
            everyone = await self._with_organisation_copies(recipients)
            for extra in everyone[len(recipients) :]:
                domain = extra.address.rpartition("@")[2]
                copy = (organisation or {}).get(domain)
                if copy is None:
                    raise EnvelopeRefused(
                        "organisation_copy_required",
                        f"mail to {domain} is also sealed to its organisation's key (its domain policy)",
                    )
                objects[extra.user] = copy
            recipients = everyone
        users = await self._users_of(recipients)
        holds = await self._db.run(sealable_key_ids_txn, [user.id for user in users])
        for user in users:
            if objects[user.name].key_id not in holds.get(user.id, ()):
                raise EnvelopeRefused(
                    "stale_key", "an envelope is not sealed to a key its recipient holds now: look the key up again"
                )
        now_ms = self._now_ms()
        size = sum(len(o.original) for o in objects.values())
        screened: dict[int, str] = {}
        if folder == INBOX_FOLDER and self._aliases is not None and any(u.screener for u in users):
            screened = await self._screen(users, recipients, mail_from, stamps, size)
        sealed = []
        for user in users:
            if screened.get(user.id) == "blocked":
                continue
            filed = SCREENER_FOLDER if screened.get(user.id) == "unknown" else folder
            original_path, twin_path = mail_paths(key_base, filed)
            copy = objects[user.name]
            sealed.append(_Sealed(user.id, original_path, io.BytesIO(copy.original)))
            sealed.append(_Sealed(user.id, twin_path, io.BytesIO(copy.twin)))
        users = [user for user in users if screened.get(user.id) != "blocked"]
        await self._commit(users, sealed, now_ms, folder, shared=False)
        log.debug(
            "stored a message sealed by its sender ({key_base}, {size} bytes) in {folder} for {count} recipient(s)",
            key_base=key_base,
            size=size,
            folder=folder,
            count=len(users),
        )
        await self._record_alias_use(recipients, mail_from)
        return sealed[0].path if sealed else mail_paths(key_base, folder)[0]

    async def _screen(
        self, users: Sequence[User], recipients: list[Recipient], sender_address: str, stamps: Sequence[str], size: int
    ) -> dict[int, str]:
        """The screener's word for each recipient whose screener is on: ``approved`` (the inbox), ``unknown``
        (``SCREENER_FOLDER``) or ``blocked`` (nothing stored for them); MessageRejected when every recipient
        blocks the sender. A valid, unspent Hashcash stamp for a recipient's address lets the message by."""
        assert self._aliases is not None
        screening = [user.id for user in users if user.screener]
        if not screening:
            return {}  # the common case: no recipient screens, and nothing is asked of the database
        sender = self._aliases.sender(sender_address)
        words: dict[int, str] = {}
        for name, ids in (await self._homes.grouped_for(screening)).items():
            words.update(await self._homes.write_in(name, functools.partial(_screening_in, ids=ids, sender=sender)))
        for user in users:
            if words.get(user.id) != "unknown" or not stamps:
                continue
            addresses = [r.address for r in recipients if r.user == user.name]
            if await self._stamped(stamps, addresses):
                words[user.id] = "approved"
        if words and all(words.get(user.id) == "blocked" for user in users):
            log.info("message ({size} bytes) refused: every recipient blocks its sender", size=size)
            raise MessageRejected(550, "5.7.1", "The recipient does not accept mail from this sender")
        return words

    async def _stamped(self, stamps: Sequence[str], addresses: Sequence[str]) -> bool:
        """Whether one of ``stamps`` is a valid Hashcash stamp for one of ``addresses`` not spent before."""
        assert self._aliases is not None
        now = datetime.datetime.now(datetime.UTC)
        for stamp in stamps:
            for address in addresses:
                try:
                    checked = hashcash.check(stamp, resource=address, now=now)
                except ValueError:
                    continue
                if await self._db.transact(spend_stamp_txn, self._aliases.stamp(hashcash.stamp_key(checked))):
                    return True
        return False

    async def approve_correspondents(self, user_name: str, addresses: Sequence[str]) -> None:
        """Whom ``user_name`` wrote to is approved by their screener (as keyed hashes); kept even when the
        screener is off, so turning it on later does not screen them."""
        if self._aliases is None or not addresses:
            return
        user = await self._accounts.lookup(user_name)
        if user is None:
            return
        hashes = [self._aliases.sender(address) for address in addresses]
        await self._homes.transact_for(user.id, approve_correspondents_txn, user.id, hashes)

    async def _record_alias_use(self, recipients: list[Recipient], mail_from: str) -> None:
        """Count a delivery on each alias it came by, and note its sender (as hashes) there; a failure here
        is logged, never the delivery's: the message is stored already."""
        used = list(dict.fromkeys(r.alias for r in recipients if isinstance(r.alias, int)))
        if not used or self._aliases is None:
            return
        senders = (self._aliases.sender(mail_from), self._aliases.sender_domain(mail_from)) if mail_from else ()
        try:
            await self._db.transact(_record_alias_uses_txn, used, senders)
        except Exception as error:  # noqa: BLE001 - counters and known senders only
            log.warn("recording the use of {count} alias(es) failed: {why}", count=len(used), why=type(error).__name__)

    def _judge_request(self, envelope: Envelope) -> JudgeRequest:
        return JudgeRequest(
            client_ip=envelope.client_ip,
            helo=envelope.helo,
            mail_from=envelope.mail_from,
            authserv_id=envelope.authserv_id,
            local_domains=envelope.local_domains,
            trusted_arc_sealers=self._trusted_arc_sealers,
            dns=self._resolve is not None,
            dnsbl_zones=self._dnsbl_zones,
        )

    async def _filtered(
        self, message: ISpooled, judge: JudgeRequest, envelope: Envelope, recipients: list[Recipient], queue_id: str
    ) -> JudgeRequest:
        """``judge`` with the spam filter's report, asked here while the message is in hand; MessageRejected
        when the filter refuses or defers it (nothing is sealed then)."""
        assert self._spam_filter is not None
        if getattr(message, "in_memory", False):
            raw = message.read_all()
        else:
            raw = await deferToThreadPool(self._reactor, self._pool, message.read_all)
        report = await self._spam_filter.check(raw, envelope, [r.address for r in recipients], queue_id)
        del raw
        if report is None:
            return judge
        refusal = with_spam(Judgement("unverified"), report)
        if refusal.refused:
            raise self._refusal(refusal, SealedMeta(size=message.size))
        return dataclasses.replace(judge, filter_report=report)

    @staticmethod
    def _refusal(judgement: Judgement, meta: SealedMeta) -> MessageRejected:
        code, enhanced, text = _REFUSALS.get(judgement.reason, _REFUSALS["dns"])
        log.info(
            "message ({size} bytes) refused with {code}: {reason}",
            size=meta.size,
            code=code,
            reason=judgement.reason or "no reason given",
        )
        return MessageRejected(code, enhanced, text)

    async def _with_organisation_copies(self, recipients: list[Recipient]) -> list[Recipient]:
        """``recipients`` and, for those of a domain under the ``organisation`` policy, the organisation's account
        (its copy is sealed to the organisation's key, which the officers hold: docs/keys.md)."""
        now = time.monotonic()
        if self._organisation_copies is None or now - self._organisation_copies[0] > ORGANISATION_POLICY_TTL:
            self._organisation_copies = (now, await self._db.run(organisation_copies_txn))
        copies = self._organisation_copies[1]
        if not copies:
            return recipients
        names = {r.user for r in recipients}
        extra = []
        for recipient in recipients:
            domain = recipient.address.rpartition("@")[2]
            account = copies.get(domain)
            if account is not None and account not in names:
                names.add(account)
                extra.append(Recipient(address=f"{account}@{domain}", user=account))
        return recipients + extra

    async def _users_of(self, recipients: list[Recipient]) -> list[User]:
        """Each distinct recipient's account: as ``resolve`` found it, or looked up for other recipients."""
        names = list(dict.fromkeys(r.user for r in recipients))
        carried = {r.user: r.account for r in recipients if isinstance(r.account, User)}
        if all(name in carried for name in names):
            return [carried[name] for name in names]
        users = await self._db.run(_load_users, names)
        found = [user for user in users if user is not None]
        if len(found) != len(names):
            raise DeliveryError("a recipient's account disappeared during delivery")
        return found

    async def _seal(self, message: ISpooled, job: SealJob) -> tuple[list[IO[bytes]], SealedMeta]:
        """Per recipient, the sealed original and twin, rewound: in a worker process, or on a thread."""
        if self._workers is None:
            answerer = None
            if job.judge is not None and self._resolve is not None:
                answerer = Answerer(self._resolve, self._reactor)
            result: tuple[list[IO[bytes]], SealedMeta] = await deferToThreadPool(
                self._reactor, self._pool, self._seal_here, message, job, answerer
            )
            return result
        # A message that never spilled is in memory already; one that did is read (and decrypted)
        # off the reactor thread.
        if getattr(message, "in_memory", False):
            raw, digest = _read_and_digest(message)
        else:
            raw, digest = await deferToThreadPool(self._reactor, self._pool, _read_and_digest, message)
        return await self._workers.seal(raw, job, digest, self._resolve)

    def _seal_here(
        self, message: ISpooled, job: SealJob, answerer: Answerer | None = None
    ) -> tuple[list[IO[bytes]], SealedMeta]:
        """On a delivery thread: the judge's DNS questions wait here for the reactor's answers."""
        enquirer = None
        if answerer is not None:

            def ask(name: str, rtype: str) -> DnsReply:
                answer: dict[str, Any] = blockingCallFromThread(
                    self._reactor, _answer_on_reactor, answerer, name, rtype
                )
                return DnsReply.from_wire(answer, rtype)

            enquirer = Enquirer(ask)
        sink = _SpooledSink(self._tmp_dir)
        try:
            meta = seal_message(message.read_all(), job, sink, enquirer)
        except BaseException:
            for item in sink.objects:
                item.close()
            raise
        return sink.objects, meta


def _answer_on_reactor(answerer: Answerer, name: str, rtype: str) -> Deferred[dict[str, Any]]:
    return Deferred.fromCoroutine(answerer.answer(name, rtype))


def _alias_owner_txn(conn: Any, address_hash: bytes, senders: tuple[bytes, ...] | None) -> tuple[int, User] | None:
    """The (alias id, owner) that receives mail at ``address_hash`` from a sender with hashes ``senders``
    ((address, domain); None: no sender limit applies), or None."""
    found = find_alias_txn(conn, address_hash)
    if found is None or found.state != "active" or found.user_id is None:
        return None
    if senders is not None and found.senders != "any":
        wanted = senders[:1] if found.senders == "known" else senders[1:]
        if not knows_sender_txn(conn, found.id, wanted):
            return None
    owner = get_user_by_id_txn(conn, found.user_id)
    return None if owner is None else (found.id, owner)


def _record_alias_uses_txn(conn: Any, alias_ids: list[int], senders: tuple[bytes, ...]) -> None:
    for alias_id in alias_ids:
        record_use_txn(conn, alias_id, senders)


def _internal_stamps(message: ISpooled) -> tuple[str, ...]:
    """The X-Hashcash stamps of a logged-in user's message (its first 64 KiB hold the header)."""
    with message.open() as reader:
        return header_stamps(reader.read(64 * 1024))


def _may_carry(message: ISpooled) -> bool:
    """Whether the message's first 64 KiB name the carrier's media type (a carrier names it in its first part's
    header, before the envelopes): only then are the recipients' key ids read for the worker."""
    with message.open() as reader:
        return looks_like_carrier(reader.read(64 * 1024))


def _sent_digest(message: ISpooled) -> bytes:
    """SHA-256 of the message as its sender sent it: the appliance's own first header (its Received line, which
    names this attempt) is left out, so a retry of the same message has the same digest."""
    digest = hashlib.sha256()
    with message.open() as reader:
        line = reader.readline(MAX_TRACE_LINE)
        if line.startswith(b"Received:"):
            line = reader.readline(MAX_TRACE_LINE)
            while line[:1] in (b" ", b"\t"):
                line = reader.readline(MAX_TRACE_LINE)
        digest.update(line)
        while chunk := reader.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.digest()


def _read_and_digest(message: ISpooled) -> tuple[bytes, bytes]:
    raw = message.read_all()
    return raw, content_digest(raw)


class _SpooledSink:
    """Sealed objects into spooled temporary files (ciphertext only: they may spill to disk)."""

    def __init__(self, tmp_dir: str | None) -> None:
        self._tmp_dir = tmp_dir
        self.objects: list[IO[bytes]] = []

    def begin(self) -> IO[bytes]:
        out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY, dir=self._tmp_dir)  # noqa: SIM115
        self.objects.append(out)
        return out

    def end(self, out: IO[bytes]) -> None:
        out.seek(0)


def _load_users(conn: Any, names: list[str]) -> list[User | None]:
    return [get_user_txn(conn, name) for name in names]


@dataclass(frozen=True)
class _StoreRequest:
    """One delivery's writes, as the writer thread gets them."""

    users: Sequence[User]
    sealed: list[_Sealed]
    now_ms: int
    #: None for the sender's own copy (counted, never refused).
    default_quota: int | None
    sizes: list[int]
    #: Mail from outside: the keyed digest of the message as sent (store/receipts.py); None: not deduplicated.
    receipt: bytes | None = None

    def pairs(self) -> list[tuple[int, bytes]]:
        """(account, receipt) of each account this delivery writes for, when it has a receipt."""
        if self.receipt is None:
            return []
        return [(user_id, self.receipt) for user_id in dict.fromkeys(item.user_id for item in self.sealed)]

    def receipts(self, skipped: set[int]) -> list[tuple[int, bytes, str]]:
        """The receipts to record for the accounts written for (not ``skipped``)."""
        assert self.receipt is not None
        bases = {item.user_id: item.path.rpartition("/")[2] for item in self.sealed}
        return [(user_id, self.receipt, bases[user_id]) for user_id, _ in self.pairs() if user_id not in skipped]


def _store_all(conn: Any, *, request: _StoreRequest) -> None:
    # Checked in the write transaction rather than by a read before it: an account deleted, disabled
    # or replaced since RCPT fails this delivery (the sender retries) and nothing is stored.
    keys = deliverable_keys_txn(conn, [user.id for user in request.users])
    if any(not _same_key(keys.get(user.id), user.public_key) for user in request.users):
        raise DeliveryError("a recipient's account disappeared during delivery")
    seen = {user_id for user_id, _ in receipts.seen_txn(conn, request.pairs())}
    if request.receipt is not None:
        receipts.record_txn(conn, request.receipts(seen), request.now_ms)
    for item in request.sealed:
        if item.user_id in seen:
            continue  # stored from the same message before (a sender's retry): kept once
        item.body.seek(0)
        put_object_txn(
            conn,
            item.user_id,
            item.path,
            read_chunks(item.body),
            if_absent=True,
            now_ms=request.now_ms,
            default_quota=request.default_quota,
        )


def _store_many(conn: Any, requests: list[_StoreRequest]) -> list[Outcome]:
    """``_store_all`` for a batch of small deliveries: one read of the accounts, then three statements.

    The same checks, in the order the deliveries queued: each account still deliverable with the key
    it was sealed to, and its quota (the usage grows delivery by delivery). A delivery that fails one
    gets its error and writes nothing; the rest are written together.
    """
    targets = delivery_targets_txn(conn, [user.id for request in requests for user in request.users])
    usage = {user_id: target.used_bytes for user_id, target in targets.items()}
    added: dict[int, int] = {}
    outcomes: list[Outcome] = []
    writes: list[NewObject] = []
    stored = receipts.seen_txn(conn, [pair for request in requests for pair in request.pairs()])
    received: list[tuple[int, bytes, str]] = []
    for request in requests:
        seen = {user_id for user_id, _ in request.pairs() if (user_id, request.receipt) in stored}
        if any(
            user.id not in targets or not _same_key(targets[user.id].public_key, user.public_key)
            for user in request.users
        ):
            error: Exception = DeliveryError("a recipient's account disappeared during delivery")
            outcomes.append(Outcome(failure=Failure(error)))
            continue
        growth: dict[int, int] = {}
        for item, size in zip(request.sealed, request.sizes, strict=True):
            if item.user_id not in seen:
                growth[item.user_id] = growth.get(item.user_id, 0) + size
        if request.default_quota is not None and any(
            usage[user_id] + delta > _limit(targets[user_id], request.default_quota)
            for user_id, delta in growth.items()
            if delta > 0
        ):
            error = OverQuota("the account's storage quota would be exceeded")
            outcomes.append(Outcome(failure=Failure(error)))
            continue
        for user_id, delta in growth.items():
            usage[user_id] += delta
            added[user_id] = added.get(user_id, 0) + delta
        for item in request.sealed:
            if item.user_id in seen:
                continue  # stored from the same message before (a sender's retry): kept once
            item.body.seek(0)
            writes.append(NewObject(item.user_id, item.path, item.body.read(), request.now_ms))
        if request.receipt is not None:
            fresh = request.receipts(seen)
            received.extend(fresh)
            stored.update((user_id, digest) for user_id, digest, _ in fresh)
        outcomes.append(Outcome(value=None))
    receipts.record_txn(conn, received, requests[0].now_ms if requests else 0)
    insert_new_objects_txn(conn, writes)
    add_usage_txn(conn, added)
    return outcomes


def _purge_txn(conn: Any, now_ms: int) -> int:
    """A week's receipts and a month's tombstones of the store's change sequence (store/seq.py) go."""
    return receipts.purge_txn(conn, now_ms) + prune_tombstones_txn(conn, now_ms - TOMBSTONE_DAYS * 86_400_000)


def _purge_in(database: Database, *, now_ms: int) -> Any:
    return Deferred.fromCoroutine(database.transact(_purge_txn, now_ms))


def _screening_in(database: Database, *, ids: list[int], sender: bytes) -> Any:
    return Deferred.fromCoroutine(database.run(screening_txn, ids, sender))


def _same_key(stored: bytes | None, sealed_to: bytes) -> bool:
    """Whether the account in this database still has the key the message was sealed to. A home's copy of an
    account carries no key (store/homes.py): there, that it exists, enabled and active, is what is checked."""
    return stored is not None and (stored == sealed_to or stored == b"")


def _limit(target: DeliveryTarget, default_quota: int) -> int:
    return default_quota if target.quota_bytes is None else target.quota_bytes
