"""Sending for an authenticated user: check the From, deliver locally, queue remote mail, keep an encrypted Sent copy.

Local recipients go through the same ``IInbox`` pipeline as SMTP (the message never leaves the
machine); remote recipients go to an ``IOutbound`` if one is configured. The Sent copy is sealed
to the sender's own public key exactly as delivery seals incoming mail, under ``Mail/Sent/<key>``
with its JSON twin under ``Mail/Sent_Json/<key>``.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import IO, Any

from mailiverse.accounts.errors import AccountError
from mailiverse.accounts.service import RunCpu, run_inline
from mailiverse.crypto.keys import load_public_key
from mailiverse.delivery.encrypt import read_chunks, seal_chunks
from mailiverse.delivery.naming import SENT_PREFIX, mail_paths, new_key_base
from mailiverse.smtp.interfaces import IInbox, Recipient
from mailiverse.spool import SpoolWriter
from mailiverse.store.db import Database
from mailiverse.store.objects import put_object
from mailiverse.store.users import User
from mailiverse.web.interfaces import IOutbound

#: Most recipients one message may have.
MAX_RECIPIENTS = 100
#: Longest address accepted (RFC 5321 path limit).
MAX_ADDRESS_LENGTH = 254
#: Longest subject and body text accepted for a structured message.
MAX_SUBJECT_LENGTH = 998
# compat32 is the parser's default policy; email.policy (with the header registry) is imported only when
# a message is composed, not at start-up: idle memory (issue 9).
_HEADER_PARSER = BytesHeaderParser()


@dataclass(frozen=True)
class Composed:
    """A structured message as the API accepts it."""

    to: tuple[str, ...]
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    subject: str = ""
    text: str = ""
    from_address: str | None = None


@dataclass(frozen=True)
class SendResult:
    """Where a message went: local and remote recipients, the queue id, the Sent copy's path."""

    mail_from: str
    local: tuple[str, ...]
    remote: tuple[str, ...]
    queue_id: str | None
    sent_path: str


def normalise_address(text: object) -> str:
    """``local@domain`` with a lower-case domain; AccountError ``invalid_address`` otherwise."""
    if not isinstance(text, str):
        raise AccountError("invalid_address", "an address must be a string")
    address = text.strip()
    local, at, domain = address.rpartition("@")
    if (
        not at
        or not local
        or not domain
        or len(address) > MAX_ADDRESS_LENGTH
        or not address.isascii()
        or any(c.isspace() or c in '<>,;()[]\\"' or ord(c) < 32 for c in address)
    ):
        raise AccountError("invalid_address", "not a plain address like name@example.org")
    return f"{local}@{domain.lower()}"


def _header_addresses(values: Sequence[str]) -> list[str]:
    return [address for _name, address in email.utils.getaddresses(list(values)) if address]


class Sender:
    """Sends messages on behalf of logged-in users."""

    def __init__(
        self,
        database: Database,
        inbox: IInbox,
        domains: Sequence[str],
        *,
        hostname: str,
        outbound: IOutbound | None = None,
        tmp_dir: Path | None = None,
        max_message_size: int = 50 * 1024 * 1024,
        run_cpu: RunCpu = run_inline,
        now_ms: Callable[[], int] | None = None,
    ) -> None:
        self._db = database
        self._inbox = inbox
        self.domains = tuple(d.lower() for d in domains)
        self.hostname = hostname
        self.outbound = outbound
        self._tmp_dir = tmp_dir
        self.max_message_size = max_message_size
        self._run_cpu = run_cpu
        self._now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)

    def addresses_of(self, user: User) -> list[str]:
        """The user's addresses: the account name at every served domain."""
        return [f"{user.name}@{domain}" for domain in self.domains]

    def _is_local(self, address: str) -> bool:
        return address.rpartition("@")[2] in self.domains

    def compose(self, user: User, message: Composed) -> bytes:
        """Build RFC 5322 bytes from a structured message (Bcc is never written into it)."""
        sender = normalise_address(message.from_address or self.addresses_of(user)[0])
        if len(message.subject) > MAX_SUBJECT_LENGTH:
            raise AccountError("invalid_message", "the subject is too long")
        from email.message import EmailMessage
        from email.policy import SMTP

        built = EmailMessage(policy=SMTP)
        try:
            built["From"] = sender
            if message.to:
                built["To"] = ", ".join(normalise_address(a) for a in message.to)
            if message.cc:
                built["Cc"] = ", ".join(normalise_address(a) for a in message.cc)
            built["Subject"] = message.subject
            built["Date"] = email.utils.formatdate(self._now_ms() / 1000, usegmt=True)
            built["Message-ID"] = email.utils.make_msgid(domain=self.hostname)
            built.set_content(message.text)
            return built.as_bytes()
        except (ValueError, TypeError):
            raise AccountError(
                "invalid_message", "the message headers or body are not acceptable"
            ) from None

    def _sender_of(self, user: User, message: bytes) -> tuple[str, list[str]]:
        headers = _HEADER_PARSER.parsebytes(message)
        froms = headers.get_all("From") or []
        found = _header_addresses([str(v) for v in froms])
        if len(froms) != 1 or len(found) != 1:
            raise AccountError(
                "invalid_message", "the message needs exactly one From address"
            )
        sender = normalise_address(found[0])
        own = {a.lower() for a in self.addresses_of(user)}
        if sender.lower() not in own:
            raise AccountError(
                "sender_not_allowed", "the From address is not one of your addresses", 403
            )
        listed = _header_addresses(
            [str(v) for key in ("To", "Cc", "Bcc") for v in headers.get_all(key) or []]
        )
        return sender, listed

    async def send(
        self, user: User, message: bytes, recipients: Sequence[str] | None = None
    ) -> SendResult:
        """Send ``message`` (RFC 5322 bytes) from ``user``; recipients default to To, Cc and Bcc."""
        if not message or len(message) > self.max_message_size:
            raise AccountError(
                "message_too_large",
                f"a message must be 1 to {self.max_message_size} bytes",
                413,
            )
        mail_from, listed = self._sender_of(user, message)
        wanted = list(recipients) if recipients is not None else listed
        targets = list(dict.fromkeys(normalise_address(a) for a in wanted))
        if not 1 <= len(targets) <= MAX_RECIPIENTS:
            raise AccountError(
                "invalid_recipients", f"give 1 to {MAX_RECIPIENTS} recipients"
            )
        local: list[Recipient] = []
        remote: list[str] = []
        for address in targets:
            if self._is_local(address):
                found = await self._inbox.resolve(address)
                if found is None:
                    raise AccountError(
                        "unknown_recipient", f"no local user has the address {address}"
                    )
                local.append(found)
            else:
                remote.append(address)
        if remote and self.outbound is None:
            raise AccountError(
                "remote_delivery_disabled",
                "this appliance does not send mail to other domains",
                422,
            )
        if local:
            await self._deliver_locally(message, mail_from, local)
        queue_id = None
        if remote:
            assert self.outbound is not None
            try:
                queue_id = await self.outbound.submit(
                    user=user.name, mail_from=mail_from, recipients=remote, message=message
                )
            except Exception:  # noqa: BLE001 - any queue failure is one retryable error
                raise AccountError(
                    "outbound_failed", "the outbound queue refused the message; try again later", 503
                ) from None
        sent_path = await self._store_sent_copy(user, message)
        return SendResult(
            mail_from=mail_from,
            local=tuple(r.address for r in local),
            remote=tuple(remote),
            queue_id=queue_id,
            sent_path=sent_path,
        )

    async def _deliver_locally(
        self, message: bytes, mail_from: str, recipients: list[Recipient]
    ) -> None:
        writer = SpoolWriter(
            self._tmp_dir or Path("."), max_size=self.max_message_size
        )
        try:
            writer.write(message)
            spooled = writer.finish()
        except BaseException:
            writer.abort()
            raise
        try:
            await self._inbox.deliver(spooled, mail_from, recipients)
        except AccountError:
            raise
        except Exception:  # noqa: BLE001 - any pipeline failure is one retryable error
            raise AccountError(
                "delivery_failed", "local delivery failed; try again later", 503
            ) from None
        finally:
            spooled.close()

    async def _store_sent_copy(self, user: User, message: bytes) -> str:
        now = self._now_ms()
        key_base = new_key_base(now)
        original_path, twin_path = mail_paths(key_base, SENT_PREFIX)
        sealed: list[tuple[str, IO[bytes]]] = await self._run_cpu(
            self._seal, user, message, original_path, twin_path, now
        )
        try:
            await self._db.transact(_store_sealed, user.id, sealed, now)
        finally:
            for _path, body in sealed:
                body.close()
        return original_path

    def _seal(
        self, user: User, message: bytes, original_path: str, twin_path: str, now: int
    ) -> list[tuple[str, IO[bytes]]]:
        from mailiverse.mime.twin import convert

        tmp = str(self._tmp_dir) if self._tmp_dir else None
        public_key = load_public_key(user.public_key)
        twin = convert(message, original_path=original_path, written_ms=now)
        return [
            (original_path, seal_chunks(user.envelope_format, public_key, [message], tmp)),
            (twin_path, seal_chunks(user.envelope_format, public_key, [twin], tmp)),
        ]


def _store_sealed(
    conn: Any, user_id: int, sealed: list[tuple[str, IO[bytes]]], now_ms: int
) -> None:
    for path, body in sealed:
        body.seek(0)
        put_object(conn, user_id, path, read_chunks(body), if_absent=True, now_ms=now_ms)


__all__ = [
    "MAX_RECIPIENTS",
    "Composed",
    "SendResult",
    "Sender",
    "normalise_address",
]
