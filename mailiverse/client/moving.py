"""Moving house, the client's side (docs/moving.md): take an account's mail and keys to another appliance.

The client is logged in to both appliances. In order, each step safe to run again (a move resumes):

1. **Keys.** The old account's private keys (current and retired) go into the new account's key block as
   retired keys, so the new account's clients open the old ciphertext; the ids of those the old directory
   published are registered at the new appliance (``POST /api/account/brought-keys``, each signed by itself),
   so envelopes sealed to them (forwarded mail) are stored for the new account.
2. **Copy.** Every object, ciphertext as it is (``Settings/keylog``, this appliance's own trust state, excepted),
   to the same path at the new appliance; what is there already with the same SHA-256 is skipped.
3. **Verify** by count and hashes: both appliances list every object with its SHA-256
   (``GET /api/account/digests``); every copied object must be at the new appliance with the same hash.
4. **Mark** the received mail that was copied (``POST /api/account/move/copied``): the old appliance never
   forwards it.
5. **Switch** the old account to moved with a moved record its current key signs (``POST /api/account/move``):
   RCPT for its addresses is answered ``551 5.1.6``, and what still arrives is forwarded in the grace period.
6. **Catch up**: objects that changed meanwhile outside the received folders are copied, and everything is
   verified again; received mail that arrived after the copy is accounted for as forwarded (its bytes are at
   the new appliance) or waiting to be forwarded.

Nothing on the old appliance is deleted here: :func:`finish_delete` does that, when the user asks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from cryptography.hazmat.primitives.asymmetric import rsa

from mailiverse.client import keys
from mailiverse.client.api import MAX_RETIRED_KEYS, RETIRED_KEYS_NAME, Client, b64
from mailiverse.client.errors import ClientError, ProtocolError, UsageError
from mailiverse.compat.blocks import encrypt_key_block
from mailiverse.crypto.keys import private_key_der, public_key_der
from mailiverse.keylog.records import (
    DAY_MS,
    MAX_GRACE_DAYS,
    key_block_change_statement,
    moved_record_fields,
    sign_brought_key,
    sign_moved_record,
    sign_rsa,
)

#: Objects that are each appliance's own and never copied: the pinned log key and last head of *that* log.
NOT_COPIED = frozenset({keys.STATE_PATH})
#: Folders of received mail: after the switch the old appliance forwards what was not copied before it.
RECEIVED_FOLDERS = ("Mail/In", "Mail/In_Json", "Mail/Screener", "Mail/Screener_Json")
#: Folders whose originals' key bases are marked as copied (their twins go with them).
_MARKED_FOLDERS = ("Mail/In", "Mail/Screener")
DEFAULT_GRACE_DAYS = 30
_MARK_BATCH = 1000
_MAX_PAGES = 100_000

Progress = Callable[[str], None]


class MoveFailed(ClientError):
    """The move stopped: the copy does not verify, an object differs at the new appliance, or the account moved
    elsewhere. Nothing was switched unless the message says so."""

    code = "move_failed"


@dataclass(frozen=True)
class Remote:
    """One object as an appliance lists it with its digest."""

    path: str
    size: int
    sha256: str
    modified_ms: int


@dataclass
class MoveReport:
    """What a move did, for the summary."""

    new_address: str
    objects: int = 0
    copied: int = 0
    copied_bytes: int = 0
    already: int = 0
    verified: int = 0
    forwarded: int = 0
    awaiting: int = 0
    keys_brought: list[str] = field(default_factory=list)
    switched_now: bool = False
    moved_to: str | None = None
    forward_until_ms: int | None = None

    def summary(self) -> list[str]:
        lines = [
            f"moved to: {self.moved_to or self.new_address}",
            f"objects: {self.objects}",
            f"copied: {self.copied} ({self.copied_bytes} bytes); already there: {self.already}",
            f"verified: {self.verified} of {self.objects} with equal SHA-256",
            f"keys brought: {', '.join(self.keys_brought) or '-'}",
        ]
        if self.forwarded or self.awaiting:
            lines.append(f"arrived after the copy: {self.forwarded} forwarded, {self.awaiting} waiting to be forwarded")
        if self.forward_until_ms is not None:
            until = time.strftime("%Y-%m-%d", time.gmtime(self.forward_until_ms / 1000))
            lines.append(f"forwarding until: {until}")
        return lines


def _received(path: str) -> bool:
    return path.rpartition("/")[0] in RECEIVED_FOLDERS


def digests(client: Client) -> dict[str, Remote]:
    """Every object of the account with its size, SHA-256 (hex) and modification time, from the appliance."""
    found: dict[str, Remote] = {}
    after: str | None = None
    for _ in range(_MAX_PAGES):
        query = {"limit": "200"} if after is None else {"limit": "200", "after": after}
        answer = client.request_json("GET", "/api/account/digests?" + urlencode(query))
        entries, following = answer.get("objects"), answer.get("next")
        if not isinstance(entries, list) or not (following is None or isinstance(following, str)):
            raise ProtocolError("the appliance's digest listing is malformed")
        for entry in entries:
            try:
                remote = Remote(
                    str(entry["path"]), int(entry["size"]), str(entry["sha256"]), int(entry.get("modified_ms", 0))
                )
            except (KeyError, TypeError, ValueError, AttributeError):
                raise ProtocolError("the appliance's digest listing is malformed") from None
            found[remote.path] = remote
        if following is None:
            return found
        after = following
    raise ProtocolError("the digest listing did not end")


# -- keys ---------------------------------------------------------------------------------------------


def _old_key_ids(old: Client) -> tuple[keys.VerifiedKey, dict[bytes, str]]:
    """The old account's verified directory entry and the key id of each of its keys the log published."""
    if not old.addresses:
        raise UsageError("the old account has no addresses")
    own = keys.lookup(old, old.addresses[0])
    if own.record.public_key != public_key_der(old.private_key):
        raise keys.KeyAlarm("the old directory's current key is not the one this account holds: not moved")
    ids = {record.public_key: record.key_id for record in (own.record, *own.history)}
    return own, ids


def bring_keys(old: Client, new: Client, new_address: str, ids: dict[bytes, str]) -> list[str]:
    """Put the old account's private keys into the new account's key block (as retired keys) and register the
    ones with a key id at the new appliance; the ids registered now."""
    old_keys: list[rsa.RSAPrivateKey] = [old.private_key, *old.retired_keys]
    held = {public_key_der(key) for key in (new.private_key, *new.retired_keys)}
    missing = [key for key in old_keys if public_key_der(key) not in held]
    key_block: bytes | None = None
    environment = dict(new.key_environment)
    if missing:
        retired = [b64(private_key_der(key)) for key in (*new.retired_keys, *missing)]
        if len(retired) > MAX_RETIRED_KEYS:
            raise MoveFailed(f"the new account's key block would hold more than {MAX_RETIRED_KEYS} retired keys")
        environment[RETIRED_KEYS_NAME] = json.dumps(retired)
        key_block = encrypt_key_block(new.block_key, environment)
    brought = []
    for key in old_keys:
        der = public_key_der(key)
        key_id = ids.get(der)
        if key_id is None:
            continue  # a key from before the directory: readable with the key block, never sealed to by id
        signature = sign_brought_key(key, new_address, key_id)
        brought.append({"key_id": key_id, "public_key": b64(der), "signature": b64(signature)})
    if not brought and key_block is None:
        return []
    if not brought:
        raise MoveFailed("the old account has no key in its directory to bring along")
    body: dict[str, Any] = {
        "address": new_address,
        "keys": brought,
        "signature": b64(
            sign_rsa(
                new.private_key,
                key_block_change_statement(new_address, [k["key_id"] for k in brought], key_block or b""),
            )
        ),
    }
    if key_block is not None:
        body["key_block"] = b64(key_block)
        if new.key_block_version is not None:
            body["key_block_version"] = new.key_block_version
    answer = new.request_json("POST", "/api/account/brought-keys", body)
    if key_block is not None:
        new.adopt_rotated_key(new.private_key, environment, answer.get("key_block_version"))
    added = answer.get("added")
    return [str(key_id) for key_id in added] if isinstance(added, list) else []


# -- objects ------------------------------------------------------------------------------------------


def _bring(new: Client, path: str, data: bytes, modified_ms: int) -> bool:
    """Store ``data`` at ``path`` on the new appliance (True), or find the same bytes there (False)."""
    response = new._send(  # noqa: SLF001 - the library's authenticated request helper; no public call exists
        "POST",
        "/api/store/" + quote(path, safe="/") + "?" + urlencode({"modified_ms": max(0, modified_ms)}),
        data=data,
        headers={"Content-Type": "application/octet-stream", "Accept": "application/json"},
    )
    return response.status == 201


def copy_objects(
    old: Client,
    new: Client,
    report: MoveReport,
    progress: Progress,
    *,
    skip: Callable[[str], bool] = lambda _path: False,
) -> tuple[dict[str, Remote], dict[str, Remote]]:
    """Copy every object the new appliance lacks (except ``NOT_COPIED`` and what ``skip`` says); both listings
    as they were before the copy. An object that differs at the new appliance stops the move."""
    source, target = digests(old), digests(new)
    todo = [path for path in sorted(source) if path not in NOT_COPIED and not skip(path)]
    differ = [path for path in todo if path in target and target[path].sha256 != source[path].sha256]
    if differ:
        shown = ", ".join(differ[:5]) + (" ..." if len(differ) > 5 else "")
        raise MoveFailed(
            f"{len(differ)} object(s) differ at the new appliance ({shown}): delete them there, then move again"
        )
    wanted = [path for path in todo if path not in target]
    progress(f"copying {len(wanted)} of {len(todo)} object(s) ({len(todo) - len(wanted)} already there)")
    for done, path in enumerate(wanted, 1):
        data = old.get_object(path)
        if _bring(new, path, data, source[path].modified_ms):
            report.copied += 1
            report.copied_bytes += len(data)
        if done % 100 == 0 or done == len(wanted):
            progress(f"copied {done} of {len(wanted)} ({report.copied_bytes} bytes)")
    return source, target


@dataclass(frozen=True)
class Verification:
    """Both appliances compared object by object."""

    verified: list[str]
    mismatched: list[str]
    #: Received mail that arrived after the copy and reached the new appliance by forwarding (found there by its
    #: SHA-256, under the path the new appliance gave it), and such mail still on its way.
    forwarded: int
    awaiting: int
    considered: int


def verify(source: dict[str, Remote], target: dict[str, Remote], *, after_switch: bool) -> Verification:
    """Compare the two listings: before the switch every object must be at the new appliance with the same size
    and SHA-256; after it, received mail that arrived after the copy may be forwarded instead."""
    by_hash = {remote.sha256 for remote in target.values()}
    verified, mismatched = [], []
    forwarded = awaiting = 0
    considered = [path for path in sorted(source) if path not in NOT_COPIED]
    for path in considered:
        there = target.get(path)
        if there is not None and there.sha256 == source[path].sha256 and there.size == source[path].size:
            verified.append(path)
        elif after_switch and _received(path):
            if source[path].sha256 in by_hash:
                forwarded += 1
            elif path.rpartition("/")[0] in _MARKED_FOLDERS:
                awaiting += 1
        else:
            mismatched.append(path)
    return Verification(verified, mismatched, forwarded, awaiting, len(considered))


def _mark_copied(old: Client, verified: Sequence[str]) -> None:
    key_bases = sorted({path.rpartition("/")[2] for path in verified if path.rpartition("/")[0] in _MARKED_FOLDERS})
    for start in range(0, len(key_bases), _MARK_BATCH):
        old.request_json("POST", "/api/account/move/copied", {"key_bases": key_bases[start : start + _MARK_BATCH]})


def _switch(old: Client, own: keys.VerifiedKey, new_address: str, grace_days: int, now: Callable[[], float]) -> Any:
    created = int(now() * 1000)
    fields = moved_record_fields(
        own.record.key_id,
        old.addresses,
        new_address,
        created_ms=created,
        forward_until_ms=created + grace_days * DAY_MS,
    )
    record = sign_moved_record(fields, old.private_key)
    return old.request_json(
        "POST", "/api/account/move", {"to": new_address, "grace_days": grace_days, "record": record}
    )


def move_status(client: Client) -> dict[str, Any]:
    """``GET /api/account/move``: whether the account moved, where, until when it forwards."""
    return client.request_json("GET", "/api/account/move")


def move(
    old: Client,
    new: Client,
    *,
    grace_days: int = DEFAULT_GRACE_DAYS,
    progress: Progress = lambda _line: None,
    now: Callable[[], float] = time.time,
) -> MoveReport:
    """Move the logged-in ``old`` account's mail and keys to the logged-in ``new`` one, verify, switch, catch up."""
    if not 0 <= grace_days <= MAX_GRACE_DAYS:
        raise UsageError(f"--grace-days is 0 to {MAX_GRACE_DAYS}")
    if not new.addresses:
        raise UsageError("the new account has no addresses")
    new_address = new.addresses[0].lower()
    if {a.lower() for a in old.addresses} & {a.lower() for a in new.addresses}:
        raise UsageError("the new account is the old one: move to an account on another appliance")
    report = MoveReport(new_address)
    status = move_status(old)
    moved_to = status.get("moved_to") if status.get("moved") else None
    if moved_to is not None and moved_to != new_address:
        raise MoveFailed(f"this account moved to {moved_to} already")
    own, ids = _old_key_ids(old)
    added = bring_keys(old, new, new_address, ids)
    report.keys_brought = sorted(ids.values())
    progress(f"keys: {len(ids)} with their ids at {new_address} ({len(added)} registered now)")
    if moved_to is None:
        source, _ = copy_objects(old, new, report, progress)
        checked = verify(source, digests(new), after_switch=False)
        if checked.mismatched:
            progress(f"{len(checked.mismatched)} object(s) changed during the copy: copying again")
            source, _ = copy_objects(old, new, report, progress)
            checked = verify(source, digests(new), after_switch=False)
        if checked.mismatched:
            raise MoveFailed(
                f"{len(checked.mismatched)} object(s) do not verify at the new appliance; nothing was switched"
            )
        progress(f"verified {len(checked.verified)} of {checked.considered} object(s) by SHA-256; switching")
        _mark_copied(old, checked.verified)
        answer = _switch(old, own, new_address, grace_days, now)
        report.switched_now = True
        until = answer.get("forward_until_ms")
    else:
        progress(f"{old.addresses[0]} moved to {new_address} already: catching up")
        until = status.get("forward_until_ms")
    report.forward_until_ms = until if isinstance(until, int) else None
    source, _ = copy_objects(old, new, report, progress, skip=_received)
    final = verify(source, digests(new), after_switch=True)
    if final.mismatched:
        raise MoveFailed(f"{len(final.mismatched)} object(s) do not verify at the new appliance after the switch")
    report.objects, report.verified = final.considered, len(final.verified)
    report.forwarded, report.awaiting = final.forwarded, final.awaiting
    report.already = max(0, report.verified - report.copied)
    report.moved_to = new_address
    check = keys.lookup(old, old.addresses[0])
    if getattr(check, "moved_to", None) not in (None, new_address):
        raise keys.KeyAlarm("the old directory publishes another new address than this move's")
    return report


def finish_delete(old: Client) -> int:
    """Delete every object of the old (moved) account; how many. The appliance refuses before the move and while
    mail waits to be forwarded."""
    answer = old.request_json("POST", "/api/account/move/finish", {"delete": True})
    deleted = answer.get("deleted")
    if isinstance(deleted, bool) or not isinstance(deleted, int):
        raise ProtocolError("the appliance's answer is malformed")
    return deleted


def moved_recipients(client: Client, recipients: Sequence[str]) -> list[tuple[str, str, int | None]]:
    """(address, new address, forwarded until) for each recipient on this appliance whose verified directory entry
    says it moved to another appliance."""
    local_domains = {address.rpartition("@")[2].lower() for address in client.addresses}
    moved = []
    for address in recipients:
        if address.rpartition("@")[2].lower() not in local_domains:
            continue
        try:
            found = keys.lookup(client, address)
        except ClientError:
            continue  # no key, or a key alarm: the send itself says so
        record = getattr(found, "moved", None)
        if record is not None:
            moved.append((address, record.to, record.forward_until_ms))
    return moved


__all__ = [
    "DEFAULT_GRACE_DAYS",
    "NOT_COPIED",
    "RECEIVED_FOLDERS",
    "MoveFailed",
    "MoveReport",
    "Remote",
    "Verification",
    "bring_keys",
    "copy_objects",
    "digests",
    "finish_delete",
    "move",
    "move_status",
    "moved_recipients",
    "verify",
]
