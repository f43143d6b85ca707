"""The client's side of the key directory (docs/keys.md): verify every key it is handed, watch its own, rotate.

A key answer from the appliance is believed only when all of this holds: the record is signed by its own key
and serves the address asked for; the leaf is the record's canonical JSON; the inclusion proof puts that leaf
in the tree of the signed tree head; the head is signed by the log key this user pinned at first sight; and
the head is consistent with the last one this user verified (a consistency proof from the log). The last
head and the pinned log key are kept in ``Settings/keylog``, sealed to the user's own key like mail.

An address of another mailiverse appliance (docs/e2e.md §3) is checked the same way, by the same code, against
that domain's log: its key pinned the first time this user saw it, its last head kept per domain in the same
state (``remote``), its consistency proofs fetched through this appliance. Which log an answer is checked
against is a small object (:class:`ApplianceLog`, :class:`RemoteLog`), never a second copy of the checks.

At every login the client checks its own addresses: every record the log holds for them must be for a key
the user holds (current or retired). A record the user did not make is a :class:`KeyAlarm`, loud.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mailiverse.client.api import (
    MAX_RETIRED_KEYS,
    PRIVATE_KEY_NAME,
    PUBLIC_KEY_NAME,
    RETIRED_KEYS_NAME,
    Client,
    b64,
    unb64,
)
from mailiverse.client.errors import ApiError, ClientError, ProtocolError, UsageError
from mailiverse.compat.blocks import encrypt_key_block
from mailiverse.crypto.errors import CryptoError
from mailiverse.crypto.formats import seal_mail_object
from mailiverse.crypto.keys import generate_private_key, private_key_der, public_key_der
from mailiverse.keylog import merkle, sth
from mailiverse.keylog.records import (
    KeyRecord,
    MovedRecord,
    PolicyRecord,
    RecordError,
    address_hash,
    fingerprint,
    key_record_fields,
    parse_leaf,
    sign_key_record,
    verify_key_record,
    verify_leaf,
    verify_moved_record,
    verify_policy_record,
)

#: Where the client keeps the log key it pinned and the last head it verified.
STATE_PATH = "Settings/keylog"
_MAX_STATE_BYTES = 64 * 1024
_PAGE = 1000


class KeyAlarm(ClientError):
    """A key the directory serves failed verification, or is not the owner's: never seal to it."""

    code = "key_alarm"


@dataclass
class LogTrust:
    """What this user trusts of another appliance's log: its key, pinned at first sight, the last head verified
    (None before the first), and the newest policy entry seen per domain in it."""

    log_key: bytes
    head: sth.TreeHead | None = None
    signature: bytes = b""
    policies: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "log_key": b64(self.log_key),
            "sth": None if self.head is None else sth.to_json(self.head, self.signature),
        }
        if self.policies:
            value["policies"] = dict(self.policies)
        return value


@dataclass
class TrustState:
    """The pinned log key and the last verified head (None before the first)."""

    log_key: bytes | None = None
    head: sth.TreeHead | None = None
    signature: bytes = b""
    changed: bool = False
    #: The newest policy entry seen per domain (its ``seq``): a policy never goes back, nor disappears.
    policies: dict[str, int] = field(default_factory=dict)
    #: Other appliances' logs, by the domain whose keys they answer for (docs/e2e.md §3).
    remote: dict[str, LogTrust] = field(default_factory=dict)
    #: Members another client wrote that this one does not know: kept as they are.
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {**self.extra, "v": 1, "log_key": None if self.log_key is None else b64(self.log_key)}
        value["sth"] = None if self.head is None else sth.to_json(self.head, self.signature)
        if self.policies:
            value["policies"] = dict(self.policies)
        if self.remote:
            value["remote"] = {domain: trust.to_json() for domain, trust in sorted(self.remote.items())}
        return value


@dataclass(frozen=True)
class DomainPolicyView:
    """A domain's verified policy: who else can read mail to it."""

    domain: str
    policy: str
    seq: int
    key_id: str | None
    officers: list[str]

    def describe(self) -> str:
        if self.policy == "organisation":
            return (
                f"organisation: mail to {self.domain} can also be read by {', '.join(self.officers)} "
                f"(the organisation key {self.key_id}; entry {self.seq} of the log)"
            )
        return f"{self.policy} (entry {self.seq} of the log)"


@dataclass(frozen=True)
class VerifiedKey:
    """A key answer that passed every check."""

    address: str
    record: KeyRecord
    leaf_index: int
    head: sth.TreeHead
    history: list[KeyRecord] = field(default_factory=list)
    #: None: the domain never set a policy (``personal``).
    policy: DomainPolicyView | None = None
    #: The address's verified moved record (docs/moving.md): it moved to another appliance; None: it did not.
    moved: MovedRecord | None = None

    @property
    def moved_to(self) -> str | None:
        """The address this one moved to (signed by its key, proven in the log), or None."""
        return None if self.moved is None else self.moved.to

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        key = serialization.load_der_public_key(self.record.public_key)
        assert isinstance(key, rsa.RSAPublicKey)
        return key


def _unb64(value: object, what: str) -> bytes:
    """``api.unb64``, failing as a KeyAlarm: a directory answer that does not decode is not believed."""
    try:
        return unb64(value, what)
    except ProtocolError as error:
        raise KeyAlarm(error.message) from None


# -- the trust state ---------------------------------------------------------------------------------


def load_state(client: Client) -> TrustState:
    """The user's pinned log key and last head (empty the first time)."""
    try:
        blob = client.get_object(STATE_PATH)
    except ApiError as error:
        if error.code == "not_found":
            return TrustState()
        raise
    try:
        value = json.loads(client.open_sealed(blob, _MAX_STATE_BYTES))
        log_key = None if value.get("log_key") is None else _unb64(value["log_key"], "log key")
        policies = _policies(value.get("policies"))
        remote = _remote_trust(value.get("remote") or {})
        extra = {k: v for k, v in value.items() if k not in _STATE_MEMBERS}
        if value.get("sth") is None:
            return TrustState(log_key, policies=policies, remote=remote, extra=extra)
        head, signature = sth.from_json(value["sth"])
        return TrustState(log_key, head, signature, policies=policies, remote=remote, extra=extra)
    except (CryptoError, ValueError, AttributeError, TypeError) as error:
        raise KeyAlarm(f"the saved transparency state is unreadable ({error})") from None


_STATE_MEMBERS = frozenset({"v", "log_key", "sth", "policies", "remote"})


def _policies(value: object) -> dict[str, int]:
    """A saved ``policies`` member (``{domain: seq}``); entries that are not integers are dropped."""
    seen = value or {}
    return {str(k): int(v) for k, v in seen.items() if isinstance(v, int)} if isinstance(seen, dict) else {}


def _remote_trust(value: object) -> dict[str, LogTrust]:
    """The saved ``remote`` member: ``{domain: {log_key, sth, policies}}`` (ValueError when malformed); a domain
    with no key pinned yet is left out."""
    if not isinstance(value, dict):
        raise ValueError("the remote logs are not an object")
    found: dict[str, LogTrust] = {}
    for domain, entry in value.items():
        if not isinstance(entry, dict):
            raise ValueError("a remote log is not an object")
        if entry.get("log_key") is None:
            continue
        trust = LogTrust(_ed25519_key(_unb64(entry.get("log_key"), "remote log key")))
        if entry.get("sth") is not None:
            trust.head, trust.signature = sth.from_json(entry["sth"])
        trust.policies = _policies(entry.get("policies"))
        found[str(domain).lower()] = trust
    return found


def _ed25519_key(raw: bytes) -> bytes:
    """``raw`` when it is an Ed25519 public key (32 bytes); KeyAlarm otherwise."""
    if len(raw) != 32:
        raise KeyAlarm("the log key is not an Ed25519 key")
    return raw


def save_state(client: Client, state: TrustState) -> None:
    """Seal the state to the user's own key and store it (only when it changed)."""
    if not state.changed:
        return
    fmt = client.envelope_format or "v2"
    data = json.dumps(state.to_json(), separators=(",", ":")).encode()
    client.put_object(STATE_PATH, seal_mail_object(fmt, client.private_key.public_key(), data))
    state.changed = False


# -- the logs answers are checked against -------------------------------------------------------------


class DirectoryLog(Protocol):
    """A log key answers are checked against: its pinned key, the last head this user verified of it, and
    where its consistency proofs come from."""

    #: How messages name it: "the log" (this appliance's), "the log of b.example".
    name: str
    state: TrustState
    #: The newest policy entry seen per domain in this log (its ``seq``).
    policies: dict[str, int]

    def pinned_key(self) -> Ed25519PublicKey:
        """The log's key as this user pinned it (pinned now, the first time)."""

    def last(self) -> tuple[sth.TreeHead | None, bytes]:
        """The last head of this log the user verified, and its signature."""

    def remember(self, head: sth.TreeHead, signature: bytes) -> None:
        """``head`` is now the last verified head of this log."""

    def consistency(self, first: int, second: int) -> Mapping[str, Any]:
        """The log's consistency proof between two sizes (``ApiError`` ``bad_range`` when it has not both)."""


class ApplianceLog:
    """This appliance's own log (``/api/log/*``); its key and last head are the state's top-level members."""

    name = "the log"

    def __init__(self, client: Client, state: TrustState) -> None:
        self.client = client
        self.state = state
        self.policies = state.policies

    def pinned_key(self) -> Ed25519PublicKey:
        state = self.state
        if state.log_key is None:
            answer = self.client.request_json("GET", "/api/log/key")
            raw = _unb64(answer.get("public_key"), "log key")
            if answer.get("algorithm") != "Ed25519":
                raise KeyAlarm("the log key is not an Ed25519 key")
            state.log_key, state.changed = _ed25519_key(raw), True
        return Ed25519PublicKey.from_public_bytes(state.log_key)

    def last(self) -> tuple[sth.TreeHead | None, bytes]:
        return self.state.head, self.state.signature

    def remember(self, head: sth.TreeHead, signature: bytes) -> None:
        self.state.head, self.state.signature, self.state.changed = head, signature, True

    def consistency(self, first: int, second: int) -> Mapping[str, Any]:
        return self.client.request_json("GET", "/api/log/consistency?" + urlencode({"first": first, "second": second}))


class RemoteLog:
    """Another appliance's log, for the keys of ``domain``, read through this appliance's proxy
    (``/api/remote/...``, docs/e2e.md §3). Its key is pinned the first time; a different key announced later
    is a KeyAlarm, never a new pin."""

    def __init__(self, client: Client, state: TrustState, domain: str, announced_key: bytes) -> None:
        self.client = client
        self.state = state
        self.domain = domain
        self.name = f"the log of {domain}"
        announced_key = _ed25519_key(announced_key)
        trust = state.remote.get(domain)
        if trust is None:
            state.remote[domain] = LogTrust(announced_key)
            state.changed = True
        elif trust.log_key != announced_key:
            raise KeyAlarm(
                f"{domain} now announces another log key ({fingerprint(announced_key)[:16]}) than the one this account "
                f"pinned ({fingerprint(trust.log_key)[:16]}): its keys cannot be trusted"
            )
        self.trust = state.remote[domain]
        self.policies = self.trust.policies

    def pinned_key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.trust.log_key)

    def last(self) -> tuple[sth.TreeHead | None, bytes]:
        return self.trust.head, self.trust.signature

    def remember(self, head: sth.TreeHead, signature: bytes) -> None:
        self.trust.head, self.trust.signature, self.state.changed = head, signature, True

    def consistency(self, first: int, second: int) -> Mapping[str, Any]:
        return self.client.remote_consistency(self.domain, first, second)


def _advance(log: DirectoryLog, head: sth.TreeHead, signature: bytes) -> None:
    """Accept ``head`` after checking its signature and its consistency with the last verified head."""
    if not sth.verify(head, signature, log.pinned_key()):
        key = "the pinned log key" if isinstance(log, ApplianceLog) else f"the pinned key of {log.name}"
        raise KeyAlarm(f"the signed tree head does not verify with {key}")
    last, _last_signature = log.last()
    if last is not None:
        if head.tree_size < last.tree_size:
            # An older head: it must be consistent with ours the other way round.
            _check_consistency(log, head, last)
            return
        _check_consistency(log, last, head)
    if last is None or head.tree_size > last.tree_size or head.timestamp > last.timestamp:
        log.remember(head, signature)


def _check_consistency(log: DirectoryLog, first: sth.TreeHead, second: sth.TreeHead) -> None:
    if first.tree_size == second.tree_size:
        if first.root_hash != second.root_hash:
            raise KeyAlarm(f"two signed heads of the same size have different roots: {log.name} forked")
        return
    if first.tree_size == 0:
        if first.root_hash != merkle.EMPTY_ROOT:
            raise KeyAlarm("an empty head with a non-empty root")
        return
    try:
        answer = log.consistency(first.tree_size, second.tree_size)
    except ApiError as error:
        if error.code != "bad_range":
            raise
        raise KeyAlarm(
            f"{log.name} no longer has the {max(first.tree_size, second.tree_size)} entries this account saw: "
            f"it was rewritten ({log.name} forked)"
        ) from None
    proof_field = answer.get("consistency")
    if not isinstance(proof_field, list) or len(proof_field) > 128:
        raise KeyAlarm("the consistency proof is malformed")
    proof = [_unb64(node, "consistency proof") for node in proof_field]
    if not merkle.verify_consistency(first.tree_size, second.tree_size, first.root_hash, second.root_hash, proof):
        raise KeyAlarm(
            f"{log.name} of {second.tree_size} entries is not an extension of the one of {first.tree_size} "
            f"this account saw: {log.name} forked"
        )


# -- key answers -------------------------------------------------------------------------------------


def _proven_leaf(entry: Mapping[str, Any], head: sth.TreeHead) -> tuple[bytes, dict[str, Any]]:
    """The leaf and its record of one ``{record, leaf, leaf_index, tree_size, audit_path}`` entry, proven in
    ``head``."""
    leaf = _unb64(entry.get("leaf"), "leaf")
    try:
        document = parse_leaf(leaf)
    except RecordError as error:
        raise KeyAlarm(f"the log entry is refused: {error}") from None
    if entry.get("record") != document:
        raise KeyAlarm("the record differs from the leaf the log hashed")
    index, size = entry.get("leaf_index"), entry.get("tree_size")
    path = entry.get("audit_path")
    if not isinstance(index, int) or not isinstance(size, int) or not isinstance(path, list) or len(path) > 128:
        raise KeyAlarm("the inclusion proof is malformed")
    if size != head.tree_size:
        raise KeyAlarm("the inclusion proof is for another tree than the signed head")
    nodes = [_unb64(node, "audit path") for node in path]
    if not merkle.verify_inclusion(merkle.leaf_hash(leaf), index, size, nodes, head.root_hash):
        raise KeyAlarm("the inclusion proof does not lead to the signed root")
    return leaf, document


def _proven_record(entry: Mapping[str, Any], head: sth.TreeHead) -> KeyRecord:
    """The key record of one entry, its own signature checked (first: the most telling alarm), proven in
    ``head``."""
    try:
        record = verify_key_record(parse_leaf(_unb64(entry.get("leaf"), "leaf")))
    except RecordError as error:
        raise KeyAlarm(f"the key record is refused: {error}") from None
    _proven_leaf(entry, head)
    return record


def _proven_policy(log: DirectoryLog, domain: str, entry: object, head: sth.TreeHead) -> DomainPolicyView | None:
    """The domain's policy from a key answer, signed by the pinned log key and proven in ``head``; never older
    than one this user saw before, and never missing once seen."""
    state = log.state
    seen = log.policies.get(domain)
    if entry is None:
        if seen is not None:
            raise KeyAlarm(f"the directory no longer shows the policy of {domain} this account saw (entry {seen})")
        return None
    if not isinstance(entry, dict):
        raise KeyAlarm("the domain policy is malformed")
    _leaf, document = _proven_leaf(entry, head)
    try:
        policy = verify_policy_record(document, log.pinned_key())
    except RecordError as error:
        raise KeyAlarm(f"the domain policy is refused: {error}") from None
    officers = entry.get("officers")
    if not isinstance(officers, list) or not all(isinstance(o, str) for o in officers):
        raise KeyAlarm("the domain policy's officers are malformed")
    if policy.domain != domain or sorted({address_hash(o) for o in officers}) != list(policy.officers):
        raise KeyAlarm("the domain policy is not this domain's, or names other officers than it signs")
    if seen is not None and policy.seq < seen:
        raise KeyAlarm(f"the policy of {domain} went back from entry {seen} to entry {policy.seq}")
    if seen != policy.seq:
        log.policies[domain] = policy.seq
        state.changed = True
    return DomainPolicyView(domain, policy.policy, policy.seq, policy.key_id, [o.lower() for o in officers])


def verify_answer(log: DirectoryLog, address: str, answer: object) -> VerifiedKey:
    """Check a ``/api/keys/{address}`` answer (or another appliance's, against its ``log``) completely (the
    module docstring lists the checks)."""
    if not isinstance(answer, dict):
        raise KeyAlarm("the key answer is malformed")
    try:
        head, signature = sth.from_json(answer.get("sth"))
    except ValueError as error:
        raise KeyAlarm(f"the signed tree head is malformed ({error})") from None
    _advance(log, head, signature)
    record = _proven_record(answer, head)
    if not record.serves(address):
        raise KeyAlarm(f"the record is not bound to {address}")
    if record.status != "current":
        raise KeyAlarm("the directory answered a key that is no longer current")
    history_field = answer.get("history", [])
    if not isinstance(history_field, list) or len(history_field) > 1000:
        raise KeyAlarm("the history is malformed")
    history = []
    for entry in history_field:
        if not isinstance(entry, dict):
            raise KeyAlarm("the history is malformed")
        older = _proven_record(entry, head)
        if not older.serves(address):
            raise KeyAlarm(f"a history record is not bound to {address}")
        history.append(older)
    index = answer.get("leaf_index")
    policy = _proven_policy(log, address.rpartition("@")[2].lower(), answer.get("policy"), head)
    moved = _proven_moved(answer.get("moved"), address, [record, *history], head)
    return VerifiedKey(
        address.lower(), record, int(index) if isinstance(index, int) else -1, head, history, policy, moved
    )


def _proven_moved(entry: object, address: str, records: list[KeyRecord], head: sth.TreeHead) -> MovedRecord | None:
    """The address's moved record from a key answer (docs/moving.md), proven in ``head`` and signed by one of the
    address's keys, or None when the answer has none."""
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise KeyAlarm("the moved record is malformed")
    _leaf, document = _proven_leaf(entry, head)
    key_id = document.get("key_id")
    signer = next((r for r in records if r.key_id == key_id), None)
    if signer is None:
        raise KeyAlarm("the moved record is signed by a key the address never had")
    try:
        moved = verify_moved_record(document, signer.public_key)
    except RecordError as error:
        raise KeyAlarm(f"the moved record is refused: {error}") from None
    if not moved.serves(address):
        raise KeyAlarm(f"the moved record is not for {address}")
    return moved


def lookup(client: Client, address: str, state: TrustState | None = None) -> VerifiedKey:
    """The verified current key of ``address`` (KeyAlarm when any check fails; ApiError not_found if none)."""
    own_state = state is None
    state = load_state(client) if state is None else state
    answer = client.request_json("GET", "/api/keys/" + quote(address, safe="@"))
    verified = verify_answer(ApplianceLog(client, state), address, answer)
    if own_state:
        save_state(client, state)
    return verified


def remote_lookup(client: Client, address: str, state: TrustState | None = None) -> VerifiedKey:
    """The verified current key of ``address`` at another mailiverse appliance, through this appliance's proxy
    (``GET /api/remote/keys/<address>``), checked against that domain's pinned log.

    ``ApiError`` ``no_appliance`` (the domain announces none) or ``not_found`` (no key there) when there is no
    key to check; KeyAlarm when a check fails, the domain's log key changed, or its appliance cannot be reached
    (``remote_unavailable``: never a reason to send without the check).
    """
    own_state = state is None
    state = load_state(client) if state is None else state
    domain = address.rpartition("@")[2].lower()
    try:
        reply = client.remote_key(address)
    except ApiError as error:
        if error.code == "remote_unavailable" or error.status in (502, 504):
            raise KeyAlarm(
                f"the mailiverse appliance of {domain} cannot be reached ({error.code}): its key cannot be checked"
            ) from None
        raise
    answered = reply.get("domain", domain)
    discovery = reply.get("discovery")
    if not isinstance(answered, str) or answered.lower() != domain or not isinstance(discovery, dict):
        raise KeyAlarm(f"the answer for {address} is not about {domain}'s directory")
    log = RemoteLog(client, state, domain, _announced_key(discovery.get("log_key")))
    verified = verify_answer(log, address, reply.get("answer"))
    if own_state:
        save_state(client, state)
    return verified


def _announced_key(value: object) -> bytes:
    """The raw Ed25519 key of a discovery's ``log_key``: base64, or ``ed25519:<base64>`` as DNS writes it."""
    if isinstance(value, str) and value.lower().startswith("ed25519:"):
        value = value[len("ed25519:") :]
    return _ed25519_key(_unb64(value, "announced log key"))


def local_domains(client: Client) -> set[str]:
    """The domains this appliance serves the user at (lower case)."""
    return {address.rpartition("@")[2].lower() for address in client.addresses}


def find_key(client: Client, address: str, state: TrustState) -> VerifiedKey:
    """``address``'s verified key: from this appliance's directory for its own domains, else from the
    domain's appliance (:func:`remote_lookup`)."""
    if address.rpartition("@")[2].lower() in local_domains(client):
        return lookup(client, address, state)
    return remote_lookup(client, address, state)


# -- the owner's watch -------------------------------------------------------------------------------


def _own_public_keys(client: Client) -> set[bytes]:
    return {public_key_der(key) for key in (client.private_key, *client.retired_keys)}


@dataclass
class OwnCheck:
    """What the login-time check of the user's own addresses found."""

    verified: list[VerifiedKey] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    alarms: list[str] = field(default_factory=list)

    @property
    def notices(self) -> list[str]:
        """What the user should know without alarm: who else can read their domain's mail."""
        shown = {v.policy.describe() for v in self.verified if v.policy is not None and v.policy.policy != "personal"}
        return sorted(shown)


def check_own_keys(client: Client, now: Callable[[], float] = time.time) -> OwnCheck:
    """Check every record the log holds for the user's addresses; publish the first record if there is none.

    Never raises for what it finds: each problem is one line of ``alarms`` (shown loudly by the caller).
    """
    result = OwnCheck()
    try:
        state = load_state(client)
    except KeyAlarm as error:
        result.alarms.append(error.message)
        return result
    mine = _own_public_keys(client)
    try:
        _check_newest_head(client, state)
    except KeyAlarm as error:
        # A log that does not extend the one this user saw: nothing it says can be believed, nothing is published.
        result.alarms.append(error.message)
        return result
    for address in client.addresses:
        try:
            verified = lookup(client, address, state)
        except ApiError as error:
            if error.code != "not_found":
                raise
            if _publish_first(client, now):
                result.published.append(address)
                try:
                    verified = lookup(client, address, state)
                except (ApiError, KeyAlarm) as again:
                    result.alarms.append(f"{address}: {again}")
                    continue
            else:
                continue
        except KeyAlarm as error:
            result.alarms.append(f"{address}: {error.message}")
            continue
        strangers = [r for r in (verified.record, *verified.history) if r.public_key not in mine]
        for record in strangers:
            result.alarms.append(
                f"{address}: the directory publishes key {record.key_id} (SHA-256 {record.fingerprint[:16]}) "
                "that you did not make"
            )
        result.verified.append(verified)
    save_state(client, state)
    return result


def _check_newest_head(client: Client, state: TrustState) -> None:
    """Verify the log's newest head against the last one this user saw (an empty log only if none was seen)."""
    try:
        answer = client.request_json("GET", "/api/log/sth")
    except ApiError as error:
        if error.code != "empty_log":
            raise
        if state.head is not None and state.head.tree_size > 0:
            raise KeyAlarm("the log is empty, but this account saw it with entries: it was rewritten") from None
        return
    try:
        head, signature = sth.from_json(answer)
    except ValueError as error:
        raise KeyAlarm(f"the signed tree head is malformed ({error})") from None
    _advance(ApplianceLog(client, state), head, signature)


def _publish_first(client: Client, now: Callable[[], float]) -> bool:
    """Publish the account's current key's first record (True), unless another record already holds it."""
    fields = key_record_fields(
        client.private_key.public_key(),
        client.addresses,
        envelope_format=client.envelope_format or "v2",
        created_ms=int(now() * 1000),
    )
    record = sign_key_record(fields, client.private_key)
    try:
        client.request_json("POST", "/api/keys", {"records": [record]})
    except ApiError as error:
        if error.code in ("already_published", "key_mismatch"):
            return False
        raise
    return True


# -- rotation ----------------------------------------------------------------------------------------


def rotate(client: Client, bits: int = 2048, now: Callable[[], float] = time.time) -> tuple[VerifiedKey, str]:
    """Make a new key pair, publish it superseding the current key, keep the old private key in the key block.

    Returns the new verified key and the old key's id. Mail sealed to the old key stays readable.
    """
    if not client.addresses:
        raise UsageError("the account has no addresses to bind a key to")
    state = load_state(client)
    current = lookup(client, client.addresses[0], state)
    if current.record.public_key != public_key_der(client.private_key):
        raise KeyAlarm("the directory's current key is not the one this account holds: rotation refused")
    block_key = client.block_key
    if len(client.retired_keys) >= MAX_RETIRED_KEYS:
        raise UsageError(f"the key block holds {MAX_RETIRED_KEYS} retired keys already")
    now_ms = int(now() * 1000)
    old_fields = {k: v for k, v in current.record.document.items() if k != "signature"}
    old_fields.update({"status": "superseded", "retired_ms": now_ms})
    old_record = sign_key_record(old_fields, client.private_key)
    new_private = generate_private_key(bits)
    new_fields = key_record_fields(
        new_private.public_key(),
        client.addresses,
        envelope_format=client.envelope_format or "v2",
        created_ms=now_ms,
        supersedes=current.record.key_id,
    )
    new_record = sign_key_record(new_fields, new_private)
    environment = dict(client.key_environment)
    retired = [b64(private_key_der(client.private_key))] + [b64(private_key_der(k)) for k in client.retired_keys]
    environment[RETIRED_KEYS_NAME] = json.dumps(retired)
    environment[PRIVATE_KEY_NAME] = b64(private_key_der(new_private))
    environment[PUBLIC_KEY_NAME] = b64(public_key_der(new_private))
    body: dict[str, Any] = {
        "records": [new_record, old_record],
        "key_block": b64(encrypt_key_block(block_key, environment)),
    }
    if client.key_block_version is not None:
        body["key_block_version"] = client.key_block_version
    answer = client.request_json("POST", "/api/keys", body)
    client.adopt_rotated_key(new_private, environment, answer.get("key_block_version"))
    verified = lookup(client, client.addresses[0], state)
    if verified.record.key_id != new_record["key_id"]:
        raise KeyAlarm("after rotation the directory does not serve the new key")
    save_state(client, state)
    return verified, current.record.key_id


# -- the audit ---------------------------------------------------------------------------------------


@dataclass
class AuditReport:
    entries: int = 0
    heads: int = 0
    keys: int = 0
    policies: int = 0
    problems: list[str] = field(default_factory=list)
    #: Moved records (docs/moving.md), each checked against the key it names.
    moved: int = 0


def audit(client: Client) -> AuditReport:
    """Replay the whole log: every record verified, every signed head's root rebuilt, policies only forward."""
    state = load_state(client)
    log = ApplianceLog(client, state)
    log_key = log.pinned_key()
    report = AuditReport()
    tree = merkle.MerkleTree()
    heads: list[tuple[sth.TreeHead, bytes]] = []
    after = 0
    while True:
        answer = client.request_json("GET", "/api/log/heads?" + urlencode({"after": after}))
        page = answer.get("heads")
        if not isinstance(page, list):
            raise ProtocolError("the log's heads answer is malformed")
        for item in page:
            try:
                heads.append(sth.from_json(item))
            except ValueError as error:
                report.problems.append(f"a malformed signed head ({error})")
        if len(page) < _PAGE or not heads:
            break
        after = heads[-1][0].tree_size
    if not heads:
        return report
    newest = heads[-1][0]
    policies: dict[str, PolicyRecord] = {}
    #: The keys published so far (id to DER): a moved record must be signed by one of them.
    known: dict[str, bytes] = {}
    start = 0
    while start < newest.tree_size:
        answer = client.request_json(
            "GET", "/api/log/entries?" + urlencode({"start": start, "end": min(start + _PAGE, newest.tree_size) - 1})
        )
        entries = answer.get("entries")
        if not isinstance(entries, list) or not entries:
            raise ProtocolError("the log's entries answer is malformed")
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("leaf_index") != tree.size:
                raise ProtocolError("the log's entries are out of order")
            leaf = _unb64(entry.get("leaf"), "leaf")
            tree.append(leaf)
            try:
                record = verify_leaf(leaf, log_key, known)
            except RecordError as error:
                report.problems.append(f"entry {tree.size - 1}: {error}")
                continue
            if isinstance(record, PolicyRecord):
                report.policies += 1
                earlier = policies.get(record.domain)
                expected_seq = 1 if earlier is None else earlier.seq + 1
                expected_previous = None if earlier is None else merkle.leaf_hash(earlier.leaf)
                if record.seq != expected_seq or record.previous != expected_previous:
                    report.problems.append(f"entry {tree.size - 1}: the policy of {record.domain} does not follow on")
                policies[record.domain] = record
            elif isinstance(record, MovedRecord):
                report.moved += 1
            else:
                report.keys += 1
                known[record.key_id] = record.public_key
        start = tree.size
    report.entries = tree.size
    for head, signature in heads:
        report.heads += 1
        if not sth.verify(head, signature, log_key):
            report.problems.append(f"the head of size {head.tree_size} is not signed by the log key")
        elif head.tree_size > tree.size or tree.root_at(head.tree_size) != head.root_hash:
            report.problems.append(f"the head of size {head.tree_size} does not match the replayed log")
    try:
        _advance(log, newest, heads[-1][1])
    except KeyAlarm as error:
        report.problems.append(error.message)
    if not report.problems:
        save_state(client, state)
    return report


__all__ = [
    "STATE_PATH",
    "ApplianceLog",
    "AuditReport",
    "DirectoryLog",
    "KeyAlarm",
    "LogTrust",
    "OwnCheck",
    "RemoteLog",
    "TrustState",
    "VerifiedKey",
    "audit",
    "check_own_keys",
    "find_key",
    "load_state",
    "local_domains",
    "lookup",
    "remote_lookup",
    "rotate",
    "save_state",
    "verify_answer",
]
