"""The Mailiverse client library: sign-up, SRP login, listing, reading, sending, password change and export.

An iOS-style client that keeps nothing on the device: the password is turned into the
CryptoKey and VerificationKey (docs/api.md, "Client-side crypto"; with the account's Argon2id
description, docs/auth.md) and dropped; the private key
is decrypted from the key block into memory only; every message is fetched and decrypted on
demand.  The only thing ever written to disk is what :meth:`Client.export` is asked to write.

Why one module of this size: ``Client`` is the library's one public object; its methods are the
client's features (one per CLI command), each short, sharing the session and key state.
"""

from __future__ import annotations

import base64
import binascii
import copy
import email.parser
import email.policy
import email.utils
import hmac
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from cryptography.hazmat.primitives.asymmetric import rsa

from mailiverse.auth.srp6a import SRP_GROUP, AuthFailed, ClientLogin, create_verifier
from mailiverse.auth.usernames import InvalidUsername, canonical_username
from mailiverse.client.errors import (
    ApiError,
    AuthenticationFailed,
    ClientError,
    DecryptionFailed,
    ProtocolError,
    SecondFactorRequired,
    ServerIdentityError,
    UsageError,
)
from mailiverse.client.transport import Response, Transport
from mailiverse.client.verdicts import NONE, Verdicts, read_verdicts
from mailiverse.compat.blocks import decrypt_key_block, encrypt_key_block
from mailiverse.crypto.errors import CryptoError, DecryptionError
from mailiverse.crypto.formats import open_mail_object
from mailiverse.crypto.kdf import (
    KDF_ARGON2ID,
    PBKDF2_RULE,
    InvalidKdf,
    KdfParams,
    derive_keys,
    new_kdf,
    parse_kdf,
)
from mailiverse.crypto.keys import generate_private_key, load_private_key, private_key_der, public_key_der
from mailiverse.keylog.records import key_record_fields, sign_key_record
from mailiverse.mime.summary import summarize

#: Friendly folder names and the store folder each means (``Mail/<name>/<id>``).
FOLDERS: Mapping[str, str] = {
    "inbox": "In",
    "in": "In",
    "sent": "Sent",
    "trash": "Trash",
    "spam": "Spam",
    "screener": "Screener",
}
#: Where a bare message ID is looked for, in this order. ``Mail/Screener`` holds mail from first-time
#: senders while the account's screener is on (issue 19).
INBOX, SPAM_FOLDER, SCREENER_FOLDER = "Mail/In", "Mail/Spam", "Mail/Screener"
SEARCHED_FOLDERS = (INBOX, SPAM_FOLDER, SCREENER_FOLDER, "Mail/Sent")
#: What ``POST /api/learn/...`` did: the filter learned it, had learned it before, there is no trainable
#: filter (503), or the message is larger than the appliance takes (413).
LEARNED, ALREADY_LEARNED, NO_SPAM_FILTER, TOO_LARGE_TO_LEARN = "learned", "already learned", "no filter", "too large"
PUBLIC_KEY_NAME = "RSA-PublicKey"
PRIVATE_KEY_NAME = "RSA-PrivateKey"
#: The key block's earlier private keys after rotations: a JSON list of base64 DER keys, newest first.
RETIRED_KEYS_NAME = "RSA-RetiredPrivateKeys"
#: At most this many retired keys in a key block (each about 1.2 KB; the block is capped at 96 KiB).
MAX_RETIRED_KEYS = 40


def retired_keys(environment: Mapping[str, str]) -> list[rsa.RSAPrivateKey]:
    """The retired private keys a key block environment holds (none when it has no such entry)."""
    text = environment.get(RETIRED_KEYS_NAME)
    if text is None:
        return []
    try:
        listed = json.loads(text)
        if not isinstance(listed, list) or len(listed) > MAX_RETIRED_KEYS:
            raise ValueError("not a list of keys")
        return [load_private_key(base64.b64decode(item, validate=True)) for item in listed]
    except (CryptoError, ValueError, TypeError, binascii.Error):
        raise DecryptionFailed("the key block's retired keys are unreadable") from None


MAX_JSON_BYTES = 4 * 1024 * 1024
MAX_PASSWORD_CHARS = 4096
#: Page size for listings, and a bound on how many pages one listing may walk.
PAGE_SIZE = 1000
MAX_PAGES = 10_000
_FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MESSAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_JSON = {"Content-Type": "application/json", "Accept": "application/json"}


class MessageTampered(DecryptionFailed):
    """A stored message failed to decrypt or authenticate with the account's own key; it is never shown."""

    code = "tampered"

    def __init__(self, message_id: str) -> None:
        shown = message_id if MESSAGE_ID.fullmatch(message_id) else "(unprintable ID)"
        super().__init__(f"message {shown} failed integrity check: it was modified or corrupted; not shown")
        self.message_id = message_id


def b64(data: bytes) -> str:
    """Standard base64 with padding, as the API wants byte values."""
    return base64.b64encode(data).decode("ascii")


def unb64(value: Any, what: str) -> bytes:
    """Decode a base64 field of a server answer, or fail with a protocol error."""
    if not isinstance(value, str):
        raise ProtocolError(f"the server's {what} is missing")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(f"the server's {what} is not base64") from None


def folder_path(folder: str) -> str:
    """The store folder for a CLI folder name: ``Inbox`` → ``Mail/In``, ``Sent`` → ``Mail/Sent``, ``Screener`` →
    ``Mail/Screener``, ``Mail/X`` as is."""
    text = folder.strip()
    name = FOLDERS.get(text.lower())
    if name is None:
        name = text[len("Mail/") :] if text.startswith("Mail/") else text
    if not _FOLDER_NAME.fullmatch(name) or name.endswith("_Json"):
        raise UsageError(f"unknown folder {folder!r}; use Inbox, Spam, Screener, Sent or Mail/<name>")
    return f"Mail/{name}"


#: The longest address a twin's ``delivered_to`` may hold (RFC 5321's path limit).
MAX_ADDRESS_CHARS = 254


def plain_address(value: object) -> str:
    """``value`` if it is one plain ``local@domain`` address (at most 254 characters, one ``@``, no space
    or control character), else "": what comes from the server or a twin is shown only in this form."""
    if not isinstance(value, str) or not 3 <= len(value) <= MAX_ADDRESS_CHARS or value.count("@") != 1:
        return ""
    if any(c.isspace() or ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or c in "\u2028\u2029" for c in value):
        return ""
    local, _, domain = value.partition("@")
    return value if local and domain else ""


def delivered_to_of(twin: Any) -> str:
    """The twin's ``delivered_to`` (docs/api.md: the address the mail came in on) when it is a plain address."""
    return plain_address(twin.get("delivered_to")) if isinstance(twin, dict) else ""


def check_addresses(recipients: Sequence[str], from_address: str | None = None) -> None:
    """UsageError unless there is a recipient and every address (and ``from_address``) looks like one."""
    if not recipients:
        raise UsageError("give at least one recipient")
    for address in (*recipients, *([from_address] if from_address is not None else [])):
        if "@" not in address or len(address) > 254 or any(c.isspace() or ord(c) < 32 for c in address):
            raise UsageError(f"not an e-mail address: {address[:80]!r}")


def _display_address(name: str | None, address: str | None) -> str:
    """``Name <address>`` (quoted as RFC 5322 wants), or the address alone; an address that is not
    ASCII, which ``formataddr`` refuses, is shown as it is."""
    if not name:
        return address or ""
    try:
        return email.utils.formataddr((name, address or ""))
    except UnicodeEncodeError:
        return f"{name} <{address or ''}>"


def _check_password(password: str) -> str:
    if not isinstance(password, str) or not password:
        raise UsageError("the password is empty")
    if len(password) > MAX_PASSWORD_CHARS:
        raise UsageError(f"the password is longer than {MAX_PASSWORD_CHARS} characters")
    return password


@dataclass(frozen=True)
class PasswordKeys:
    """The two keys a password stands for; the password itself is not kept."""

    crypto: bytes
    verification: bytes
    #: The KDF description they were derived with.
    kdf: KdfParams = PBKDF2_RULE

    @classmethod
    def derive(cls, password: str, kdf: KdfParams = PBKDF2_RULE) -> PasswordKeys:
        """Both keys of ``password`` under the account's KDF description (by default the original
        fixed-salt PBKDF2 rule, docs/formats.md §5)."""
        _check_password(password)
        try:
            crypto, verification = derive_keys(password, kdf)
        except ValueError:
            raise UsageError("the password is not valid text") from None
        return cls(crypto, verification, kdf)

    def __repr__(self) -> str:
        return "PasswordKeys(<secret>)"


class LoginRefused(ApiError):
    """The appliance ended the session and refused a new login with the keys kept for it
    (:meth:`Client.keep_logged_in`): the password changed or the account was disabled. Only a login with the
    password helps."""

    def __init__(self, reason: str) -> None:
        super().__init__(401, "login_refused", f"the appliance refused the login again: {reason}")
        self.reason = reason


class _KeptKeys:
    """A login's :class:`PasswordKeys` held for logging in again: in mutable buffers, so that :meth:`wipe` can overwrite
    them (copies Python made meanwhile are beyond reach, but they are short-lived)."""

    def __init__(self, keys: PasswordKeys) -> None:
        self._crypto = bytearray(keys.crypto)
        self._verification = bytearray(keys.verification)
        self.kdf = keys.kdf

    def keys(self) -> PasswordKeys:
        return PasswordKeys(bytes(self._crypto), bytes(self._verification), self.kdf)

    def wipe(self) -> None:
        for buffer in (self._crypto, self._verification):
            buffer[:] = bytes(len(buffer))

    def __repr__(self) -> str:
        return "_KeptKeys(<secret>)"


@dataclass(frozen=True)
class MessageInfo:
    """One line of a listing: the message ID, where it lives, and what its JSON twin (or headers) say."""

    id: str
    path: str
    date_ms: int | None
    sender: str
    subject: str
    size: int
    #: What the twin says about the sender and spam (nothing for internal mail, or without a readable twin).
    verdicts: Verdicts = NONE
    #: Whether to show it as spam: it is in Spam, or the twin says so and it is not in an Inbox the
    #: appliance files spam out of (there, judged spam is only found after the user said "not spam").
    spam: bool = False
    #: The address the appliance delivered it to (an alias, or the account's own name), as the twin
    #: records it; "" when the twin records none or an unusable one.
    delivered_to: str = ""


@dataclass(frozen=True)
class SendResult:
    """What ``POST /api/send`` (or ``/api/send/sealed``) reports."""

    sender: str
    local: list[str]
    remote: list[str]
    queue_id: str | None
    sent_path: str
    #: Whether the message was sealed on this device (docs/e2e.md), not by the appliance.
    end_to_end: bool = False


@dataclass(frozen=True)
class SealedEnvelope:
    """One copy sealed on the device for ``POST /api/send/sealed``: to a recipient (``to``), to a domain's
    organisation key (``organisation``: the domain), or, with neither, the sender's own Sent copy."""

    key_id: str
    original: bytes
    twin: bytes
    to: str | None = None
    organisation: str | None = None

    def to_json(self) -> dict[str, str]:
        value = {"key_id": self.key_id, "original": b64(self.original), "twin": b64(self.twin)}
        if self.to is not None:
            value = {"to": self.to, **value}
        elif self.organisation is not None:
            value = {"organisation": self.organisation, **value}
        return value


@dataclass(frozen=True)
class StoredObject:
    """An entry of ``GET /api/store``."""

    path: str
    version: int
    size: int
    created_ms: int
    modified_ms: int


class Client:
    """One user's conversation with one appliance; construct, then ``signup`` or ``login``."""

    def __init__(self, transport: Transport, user: str, device_token: str | None = None) -> None:
        try:
            self.user = canonical_username(user)
        except InvalidUsername as error:
            raise UsageError(f"bad user name: {error.message}") from None
        self._transport = transport
        self._token: str | None = None
        #: The server's device token for this device (held in memory; an app that keeps one passes it in):
        #: with it, strangers' failed guesses at this account cannot throttle this device's logins.
        self.device_token = device_token
        self._private_key: rsa.RSAPrivateKey | None = None
        #: Earlier private keys of the account (after rotations, newest first), from the key block.
        self.retired_keys: list[rsa.RSAPrivateKey] = []
        #: Other keys this client may open mail with (a group's, an organisation's), set by their owners.
        self.extra_keys: list[rsa.RSAPrivateKey] = []
        #: The key block's CryptoKey, its decrypted environment and its version, as of the last login
        #: (a key rotation re-wraps the environment with them).
        self._block_key: bytes | None = None
        self.key_environment: dict[str, str] = {}
        self.key_block_version: int | None = None
        self.addresses: list[str] = []
        #: Where the objects this client reads live: the account's store, or a group's (``viewing``).
        self.store_base = "/api/store"
        #: The account's password KDF description, as of the last sign-up, login or re-key.
        self.kdf: KdfParams | None = None
        #: Why the last login could not move the account to Argon2id (None when it did, or had no need).
        self.kdf_upgrade_error: ClientError | None = None
        #: The account's envelope format (``v1`` or ``v2``), as of the last login.
        self.envelope_format: str | None = None
        #: Whether the server's login start described the KDF (a server from before Argon2id does not, and
        #: must not be sent keys it cannot describe).
        self._server_describes_kdf = False
        #: Set by :meth:`keep_logged_in`: the keys of the last login (memory only), who to tell when a new login
        #: is refused, and why it was (after which nothing is tried again).
        self._keeping = False
        self._kept: _KeptKeys | None = None
        self._on_refused: Callable[[LoginRefused], object] | None = None
        self._refused: str | None = None
        self._renewing = threading.Lock()
        #: Where a recovery code comes from when the account has a second factor (docs/passkeys.md): this client
        #: has no authenticator. Asked only when the appliance asks for one; None (or None from it): such a login
        #: fails with :class:`SecondFactorRequired`.
        self.recovery_code: Callable[[], str | None] | None = None

    # -- plumbing -----------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        session: bool = True,
        renew: bool = True,
    ) -> Response:
        sent = dict(headers or {})
        body = data
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":")).encode("utf-8")
            sent.update(_JSON)
        token = self._token
        if session:
            if token is None:
                if self._refused is not None:
                    raise LoginRefused(self._refused)
                raise UsageError("not logged in")
            sent["Authorization"] = f"Bearer {token}"
        response = self._transport.request(method, path, body, sent)
        if response.status >= 400:
            error = self._error(response)
            if not (session and renew and response.status == 401 and error.code == "unauthenticated"):
                raise error
            if not self._renew(token):
                raise error
            # The server checks the session before anything else: the refused request did nothing; send it once more.
            sent["Authorization"] = f"Bearer {self._token}"
            response = self._transport.request(method, path, body, sent)
            if response.status >= 400:
                raise self._error(response)
        return response

    def _error(self, response: Response) -> ClientError:
        code, message = "http_error", f"the server answered HTTP {response.status}"
        try:
            answer = json.loads(response.body[:MAX_JSON_BYTES])
            if isinstance(answer, dict) and isinstance(answer.get("error"), str):
                code = answer["error"][:64]
                if isinstance(answer.get("message"), str):
                    message = answer["message"][:300]
        except ValueError:
            pass
        if code == "auth_failed":
            return AuthenticationFailed("wrong user name or password")
        if code == "unauthenticated":
            return ApiError(response.status, code, "the session has expired or was logged out")
        return ApiError(response.status, code, message)

    def _json(self, response: Response) -> dict[str, Any]:
        if len(response.body) > MAX_JSON_BYTES:
            raise ProtocolError("the server's answer is too large")
        try:
            answer = json.loads(response.body)
        except ValueError:
            raise ProtocolError("the server's answer is not JSON") from None
        if not isinstance(answer, dict):
            raise ProtocolError("the server's answer is not a JSON object")
        return answer

    def request_json(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """One authenticated API call with a JSON body (or none) whose answer is a JSON object; a refusal
        is raised as :class:`ApiError` with the server's stable code."""
        return self._json(self._send(method, path, json_body=body))

    def close(self) -> None:
        """Forget the session and keys and close the connection (does not log out; see :meth:`logout`)."""
        self._token = None
        self._forget_keys()
        self._transport.close()

    def _forget_keys(self) -> None:
        self._private_key = None
        self.retired_keys = []
        self.extra_keys = []
        self._block_key = None
        self.key_environment = {}
        if self._kept is not None:
            self._kept.wipe()
            self._kept = None

    @property
    def logged_in(self) -> bool:
        return self._token is not None

    @property
    def private_key(self) -> rsa.RSAPrivateKey:
        """The user's private key, decrypted in memory at login."""
        if self._private_key is None:
            raise UsageError("not logged in")
        return self._private_key

    # -- sign-up, login, logout --------------------------------------------------------------

    @staticmethod
    def _server_knows_argon2id(answer: Mapping[str, Any]) -> bool:
        """Whether ``GET /api/signup`` lists Argon2id: a server from before it would ignore the description
        and keep keys it cannot describe, so such a server gets the PBKDF2 rule it knows."""
        kdfs = answer.get("kdfs")
        return isinstance(kdfs, list) and KDF_ARGON2ID in kdfs

    def signup(self, password: str, invite: str | None = None, bits: int = 2048) -> list[str]:
        """Create the account: new RSA key pair, KDF description (Argon2id, a fresh salt), SRP verifier and
        key block, all made here; returns the addresses."""
        _check_password(password)
        status = self._json(self._send("GET", "/api/signup", session=False))
        keys = PasswordKeys.derive(password, new_kdf() if self._server_knows_argon2id(status) else PBKDF2_RULE)
        private = generate_private_key(bits)
        salt, verifier = create_verifier(self.user, keys.verification)
        environment = {
            PUBLIC_KEY_NAME: b64(public_key_der(private)),
            PRIVATE_KEY_NAME: b64(private_key_der(private)),
        }
        body: dict[str, Any] = {
            "user": self.user,
            "salt": b64(salt),
            "verifier": b64(verifier),
            "group": SRP_GROUP,
            "public_key": b64(public_key_der(private)),
            "key_block": b64(encrypt_key_block(keys.crypto, environment)),
            "format": "v2",
        }
        if keys.kdf.is_argon2id:
            body["kdf"] = keys.kdf.to_json()
        domains = status.get("domains")
        if isinstance(domains, list) and domains and all(isinstance(d, str) for d in domains):
            # The key's signed record for the directory, published with the account (docs/keys.md).
            served = [f"{self.user}@{domain}" for domain in domains]
            fields = key_record_fields(private.public_key(), served, created_ms=int(time.time() * 1000))
            body["key_record"] = sign_key_record(fields, private)
        if invite is not None:
            if not invite.strip() or len(invite) > 256:
                raise UsageError("the invite code is empty or too long")
            body["invite"] = invite.strip()
        answer = self._json(self._send("POST", "/api/signup", json_body=body, session=False))
        addresses = answer.get("addresses")
        self.addresses = [a for a in addresses if isinstance(a, str)] if isinstance(addresses, list) else []
        self.kdf = keys.kdf
        return self.addresses

    def _with_device(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.device_token is not None:
            body["device"] = self.device_token
        return body

    def _keep_device(self, answer: Mapping[str, Any]) -> None:
        device = answer.get("device")
        if isinstance(device, str) and device:
            self.device_token = device

    def _proof(
        self, password: str | None, known: PasswordKeys | None = None
    ) -> tuple[dict[str, str], ClientLogin, PasswordKeys]:
        """Round trip 1, the keys of ``password`` under the KDF description it names (``known`` if they
        match), and the proof ``{handle, A, M}``. Without a password only ``known`` can do, and a KDF description
        other than theirs means the password changed (or the account is gone: it then gets a decoy description)."""
        start_body = self._with_device({"user": self.user})
        start = self._json(self._send("POST", "/api/login/start", json_body=start_body, session=False))
        handle = start.get("handle")
        if not isinstance(handle, str) or start.get("group", SRP_GROUP) != SRP_GROUP:
            raise ProtocolError("the server's login challenge is malformed")
        described = start.get("kdf")
        self._server_describes_kdf = described is not None
        try:
            # A server from before Argon2id describes nothing: its accounts all have the PBKDF2 rule.
            kdf = PBKDF2_RULE if described is None else parse_kdf(described)
        except InvalidKdf as error:
            raise ProtocolError(f"the server's password KDF description is unusable: {error.message}") from None
        if known is not None and known.kdf == kdf:
            keys = known
        elif password is None:
            raise AuthenticationFailed("the account's password changed, or the account was disabled")
        else:
            keys = PasswordKeys.derive(password, kdf)
        login = ClientLogin(self.user, keys.verification)
        try:
            proof = login.process_challenge(unb64(start.get("salt"), "salt"), unb64(start.get("B"), "B"))
        except AuthFailed:
            raise ServerIdentityError("the server sent an invalid SRP challenge") from None
        return {"handle": handle, "A": b64(login.A), "M": b64(proof)}, login, keys

    @staticmethod
    def _check_hamk(login: ClientLogin, answer: Mapping[str, Any]) -> None:
        try:
            login.verify_session(unb64(answer.get("HAMK"), "HAMK"))
        except (AuthFailed, ProtocolError):
            raise ServerIdentityError("the server could not prove it knows this account's verifier") from None

    def _second_step(self, answer: dict[str, Any]) -> dict[str, Any]:
        """After a correct proof (HAMK checked): the answer as it is, or for an account with a second factor the
        answer of its second step, with a recovery code from :attr:`recovery_code` (a code works once)."""
        step = answer.get("second_factor")
        if step is None:
            return answer
        if not isinstance(step, dict) or not isinstance(step.get("handle"), str):
            raise ProtocolError("the server's second-factor step is malformed")
        code = self.recovery_code() if self.recovery_code is not None else None
        if not code:
            raise SecondFactorRequired(
                "the password is right, but this account also needs its second factor: "
                "give one of its recovery codes (this client has no passkey)"
            )
        body = self._with_device({"handle": step["handle"], "recovery_code": code.strip()})
        try:
            return self._json(self._send("POST", "/api/login/second-factor", json_body=body, session=False))
        except ApiError as error:
            if error.code in ("second_factor_failed", "invalid_request"):
                raise SecondFactorRequired("the recovery code was not accepted (a code works once)") from None
            raise

    def _adopt_session(self, answer: Mapping[str, Any]) -> None:
        token = answer.get("token")
        if not isinstance(token, str) or not token:
            raise ProtocolError("the server sent no session token")
        self._token = token
        self._keep_device(answer)

    def login(self, password: str, *, upgrade: bool = True) -> None:
        """SRP login (the server's proof is checked), then decrypt the private key into memory.

        With ``upgrade`` (the default), an account whose KDF is the old fixed-salt PBKDF2 rule, or
        Argon2id weaker than today's, is then moved to a fresh Argon2id description: new SRP verifier,
        key block re-wrapped (docs/auth.md). If the server refuses that, the login still stands and
        :attr:`kdf_upgrade_error` says why; the next login tries again.
        """
        _check_password(password)
        self.kdf_upgrade_error = None
        proof, login, keys = self._proof(password)
        answer = self._json(
            self._send("POST", "/api/login/finish", json_body=self._with_device(dict(proof)), session=False)
        )
        self._check_hamk(login, answer)
        self._adopt_session(self._second_step(answer))
        account = self._unlock(keys.crypto)
        self.kdf = keys.kdf
        self._keep(keys)
        if upgrade and self._server_describes_kdf and keys.kdf.needs_upgrade():
            try:
                self._rekey(password, PasswordKeys.derive(password, new_kdf()), account, keys)
            except ApiError as error:
                self.kdf_upgrade_error = error

    def keep_logged_in(self, on_refused: Callable[[LoginRefused], object] | None = None) -> None:
        """From the next login on, keep what the password was turned into (its :class:`PasswordKeys`, in memory
        only; never the password) and log in again with it when the appliance ends the session (its absolute
        limit, idle time): each request refused as ``unauthenticated`` is followed by one new login and sent once
        more. For programs that outlive a session (the bridge); call it before :meth:`login`.

        If that login is refused (the password changed, the account was disabled), the keys are wiped,
        ``on_refused`` is told once, and every later request raises :class:`LoginRefused` without asking the
        appliance again: nothing retries in a loop, nor counts as a failed login there more than once.
        """
        self._keeping = True
        self._on_refused = on_refused

    def _keep(self, keys: PasswordKeys) -> None:
        if not self._keeping:
            return
        if self._kept is not None:
            self._kept.wipe()
        self._kept = _KeptKeys(keys)
        self._refused = None

    def _renew(self, used: str | None) -> bool:
        """After ``used`` was refused as ``unauthenticated``: log in again with the kept keys (once, whichever thread
        asks first) and say whether a request is worth sending once more. A refused login raises
        :class:`LoginRefused`; a failure that may pass (the network, the appliance's 5xx, its throttle) is raised as
        it is, the keys kept for the next request."""
        with self._renewing:
            if self._token is not None and self._token != used:
                return True  # another thread logged in again meanwhile
            if self._refused is not None:
                raise LoginRefused(self._refused)
            kept = self._kept
            if kept is None:
                return False
            try:
                self._relogin(kept.keys())
            except ApiError as error:
                if not 400 <= error.status < 500 or error.status in (408, 429):
                    raise
                self._refuse(error.message)
            except (AuthenticationFailed, DecryptionFailed, ServerIdentityError) as error:
                self._refuse(error.message)
            return True

    def _relogin(self, keys: PasswordKeys) -> None:
        proof, login, _ = self._proof(None, keys)
        answer = self._json(
            self._send("POST", "/api/login/finish", json_body=self._with_device(dict(proof)), session=False)
        )
        self._check_hamk(login, answer)
        if answer.get("second_factor") is not None:
            # A recovery code works once: a login renewed without a person there cannot spend one.
            raise SecondFactorRequired("the account needs its second factor; log in again")
        self._adopt_session(answer)
        self._unlock(keys.crypto, renew=False)

    def _refuse(self, reason: str) -> None:
        self._refused = reason
        self._token = None
        self._forget_keys()
        refused = LoginRefused(reason)
        if self._on_refused is not None:
            self._on_refused(refused)
        raise refused

    def _account(self, *, renew: bool = True) -> dict[str, Any]:
        return self._json(self._send("GET", "/api/account", renew=renew))

    def _unlock(self, key: bytes, *, renew: bool = True) -> dict[str, Any]:
        account = self._account(renew=renew)
        block = unb64(account.get("key_block"), "key block")
        public = unb64(account.get("public_key"), "public key")
        try:
            environment = decrypt_key_block(key, block)
            private = load_private_key(base64.b64decode(environment[PRIVATE_KEY_NAME], validate=True))
        except (CryptoError, KeyError, ValueError, binascii.Error):
            raise DecryptionFailed("could not decrypt the key block") from None
        if not hmac.compare_digest(public_key_der(private), public):
            raise DecryptionFailed("the key block does not hold this account's private key")
        self._private_key = private
        self.retired_keys = retired_keys(environment)
        self._block_key = key
        self.key_environment = environment
        version = account.get("key_block_version")
        self.key_block_version = version if isinstance(version, int) else None
        addresses = account.get("addresses")
        self.addresses = [a for a in addresses if isinstance(a, str)] if isinstance(addresses, list) else []
        shape = account.get("format")
        self.envelope_format = shape if isinstance(shape, str) else None
        return account

    def logout(self) -> None:
        """End the session on the server and forget the keys."""
        if self._token is not None:
            try:
                self._send("POST", "/api/logout", json_body={})
            finally:
                self._token = None
                self._forget_keys()

    def _rekey(
        self, old_password: str, new: PasswordKeys, account: Mapping[str, Any], known: PasswordKeys | None = None
    ) -> None:
        """Prove ``old_password`` afresh and replace the verifier, key block and KDF description with
        those of ``new`` (the same environment, re-wrapped); the server ends every other session."""
        proof, login, old = self._proof(old_password, known)
        try:
            environment = decrypt_key_block(old.crypto, unb64(account.get("key_block"), "key block"))
        except CryptoError:
            raise DecryptionFailed("could not decrypt the key block with the old password") from None
        salt, verifier = create_verifier(self.user, new.verification)
        body: dict[str, Any] = {
            "proof": proof,
            "salt": b64(salt),
            "verifier": b64(verifier),
            "group": SRP_GROUP,
            "key_block": b64(encrypt_key_block(new.crypto, environment)),
        }
        if new.kdf.is_argon2id:
            body["kdf"] = new.kdf.to_json()
        if isinstance(account.get("key_block_version"), int):
            body["key_block_version"] = account["key_block_version"]
        answer = self._json(self._send("POST", "/api/account/password", json_body=self._with_device(body)))
        self._check_hamk(login, answer)
        self._adopt_session(answer)
        self.kdf = new.kdf
        self._keep(new)

    def change_password(self, old_password: str, new_password: str) -> None:
        """Re-key: a fresh Argon2id description, new SRP verifier and the key block re-encrypted under
        the new CryptoKey, proven with the old password."""
        _check_password(old_password)
        _check_password(new_password)
        if self._token is None:
            self.login(old_password, upgrade=False)
        new = PasswordKeys.derive(new_password, new_kdf() if self._server_describes_kdf else PBKDF2_RULE)
        self._rekey(old_password, new, self._account())

    # -- the store ----------------------------------------------------------------------------

    def list_objects(
        self, prefix: str = "", *, order: str = "name", limit: int = 100, after: str | None = None
    ) -> tuple[list[StoredObject], str | None]:
        """One page of ``GET /api/store``: the objects and the cursor of the next page (None at the end)."""
        query = {"prefix": prefix, "order": order, "limit": str(limit)}
        if after is not None:
            query["after"] = after
        answer = self._json(self._send("GET", self.store_base + "?" + urlencode(query)))
        entries = answer.get("objects")
        following = answer.get("next")
        if not isinstance(entries, list) or not (following is None or isinstance(following, str)):
            raise ProtocolError("the server's listing is malformed")
        page = []
        for entry in entries:
            try:
                page.append(
                    StoredObject(
                        str(entry["path"]),
                        int(entry["version"]),
                        int(entry["size"]),
                        int(entry["created_ms"]),
                        int(entry["modified_ms"]),
                    )
                )
            except (KeyError, TypeError, ValueError):
                raise ProtocolError("the server's listing is malformed") from None
        return page, following

    def iter_objects(self, prefix: str = "", *, order: str = "name") -> Iterator[StoredObject]:
        """Every object under ``prefix``, following the server's pages."""
        after: str | None = None
        for _ in range(MAX_PAGES):
            page, after = self.list_objects(prefix, order=order, limit=PAGE_SIZE, after=after)
            yield from page
            if after is None:
                return
        raise ProtocolError("the listing did not end")

    def get_object(self, path: str) -> bytes:
        """The bytes of one of the user's objects (``ApiError`` with code ``not_found`` if absent)."""
        return self._send("GET", self.store_base + "/" + quote(path, safe="/")).body

    def put_object(self, path: str, data: bytes) -> int:
        """Store client bytes at ``path`` (not under ``Mail/``); returns the new version."""
        answer = self._json(
            self._send(
                "PUT",
                "/api/store/" + quote(path, safe="/"),
                data=data,
                headers={"Content-Type": "application/octet-stream"},
            )
        )
        return int(answer.get("version", 0))

    def open_mail(self, path: str) -> bytes:
        """Fetch a ``Mail/`` object and decrypt it here with the in-memory private key.

        Any decryption failure is :class:`MessageTampered`: the key was checked against the account at
        login, so the stored bytes are not what was sealed (modified or corrupted); nothing is returned.
        """
        blob = self.get_object(path)
        try:
            return self.open_sealed(blob)
        except CryptoError:
            raise MessageTampered(path.rsplit("/", 1)[-1]) from None

    def viewing(self, store_base: str, keys: Sequence[rsa.RSAPrivateKey]) -> Client:
        """The same session reading another store (a group's) with other keys, newest first; read-only use."""
        view = copy.copy(self)
        view.store_base = store_base
        view._private_key = keys[0]
        view.retired_keys = list(keys[1:])
        view.extra_keys = []
        # A view never logs in again: a new session would be the view's alone, and the keys are its owner's to wipe.
        view._keeping, view._kept = False, None
        return view

    @property
    def block_key(self) -> bytes:
        """The key block's CryptoKey (derived from the password at login), for re-wrapping the environment."""
        if self._block_key is None:
            raise UsageError("not logged in")
        return self._block_key

    def adopt_rotated_key(self, private: rsa.RSAPrivateKey, environment: dict[str, str], version: object) -> None:
        """Use ``private`` from now on, the environment the server now keeps holding it and the old ones."""
        self._private_key = private
        self.key_environment = environment
        self.retired_keys = retired_keys(environment)
        self.key_block_version = version if isinstance(version, int) else None

    @property
    def private_keys(self) -> list[rsa.RSAPrivateKey]:
        """Every key this client may open mail with: the current one, then retired ones, then others'."""
        return [self.private_key, *self.retired_keys, *self.extra_keys]

    def open_sealed(self, blob: bytes, max_size: int | None = None) -> bytes:
        """A sealed object opened with the first of :attr:`private_keys` that opens it (CryptoError if none)."""
        for key in self.private_keys:
            try:
                if max_size is None:
                    return open_mail_object(key, blob)
                return open_mail_object(key, blob, max_size)
            except CryptoError:
                continue
        raise DecryptionError()

    # -- mail ---------------------------------------------------------------------------------

    def list_messages(self, folder: str = "Inbox", limit: int | None = None) -> list[MessageInfo]:
        """The folder's messages, newest first, each summarised from its decrypted JSON twin."""
        base = folder_path(folder)
        found: list[MessageInfo] = []
        for entry in self.iter_objects(base + "/", order="newest"):
            if limit is not None and len(found) >= limit:
                break
            message_id = entry.path[len(base) + 1 :]
            if not MESSAGE_ID.fullmatch(message_id):
                continue
            found.append(self._describe(base, message_id, entry.size))
        return found

    def _describe(self, base: str, message_id: str, size: int) -> MessageInfo:
        path = f"{base}/{message_id}"
        verdicts, spam, via = NONE, False, ""
        try:
            twin = json.loads(self.open_mail(f"{base}_Json/{message_id}"))
            if not isinstance(twin, dict):
                raise ValueError("twin is not an object")
            # Read first: a twin whose summary is unusable still says what the appliance found.
            verdicts = read_verdicts(twin)
            spam = self._shown_as_spam(base, verdicts)
            via = delivered_to_of(twin)
            summary = summarize(twin)
            sender = _display_address(summary.author.name, summary.author.email) if summary.author else ""
            return MessageInfo(
                message_id, path, summary.date_ms, sender, summary.subject or "", size, verdicts, spam, via
            )
        except (ApiError, DecryptionFailed, ValueError, RecursionError):
            pass
        try:
            headers = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(self.open_mail(path))
            date = headers.get("Date")
            when = email.utils.parsedate_to_datetime(str(date)) if date else None
            date_ms = int(when.timestamp() * 1000) if when is not None else None
            return MessageInfo(
                message_id,
                path,
                date_ms,
                str(headers.get("From", "")),
                str(headers.get("Subject", "")),
                size,
                verdicts,
                spam,
                via,
            )
        except MessageTampered:
            return MessageInfo(message_id, path, None, "", "(failed integrity check: not shown)", size)
        except (ApiError, DecryptionFailed, ValueError, TypeError, IndexError):
            return MessageInfo(message_id, path, None, "", "(could not decrypt)", size)

    def _shown_as_spam(self, base: str, verdicts: Verdicts) -> bool:
        """Mail in Spam is spam (the appliance or the user put it there); elsewhere, what the twin says, except
        in an Inbox the appliance files spam out of, where judged spam is only found after a "not spam"."""
        if base == SPAM_FOLDER:
            return True
        return verdicts.is_spam and not (base == INBOX and self.files_spam)

    @property
    def files_spam(self) -> bool:
        """Whether the appliance files this account's spam in Mail/Spam: every account but a v1 one, whose
        original clients list only Mail/In (docs/api.md); there spam stays in the Inbox, marked."""
        return self.envelope_format != "v1"

    def resolve_message(self, message_id: str) -> str:
        """The store path of a message ID (found in Inbox, then Spam, then Screener, then Sent), or a ``Mail/...`` path
        given whole."""
        if "/" in message_id:
            base, _, name = message_id.rpartition("/")
            folder_path(base)
            if not base.startswith("Mail/") or not MESSAGE_ID.fullmatch(name):
                raise UsageError("a message path looks like Mail/In/<ID>")
            return message_id
        if not MESSAGE_ID.fullmatch(message_id):
            raise UsageError("a message ID is the first column of `ls`")
        for folder in SEARCHED_FOLDERS:
            if self.object_exists(f"{folder}/{message_id}"):
                return f"{folder}/{message_id}"
        raise UsageError(f"no message with ID {message_id}")

    def object_exists(self, path: str) -> bool:
        """Whether the user has an object at exactly ``path``."""
        page, _ = self.list_objects(path, limit=10)
        return any(entry.path == path for entry in page)

    def read_twin(self, path: str) -> Any:
        """The decrypted JSON twin of the message at ``path`` (any JSON value), or None.

        No twin, or one that cannot be decrypted or parsed, is None; any other failure (the session
        ended, the server failed) is raised, so a warning is never dropped silently by a passing error.
        """
        base, _, name = path.rpartition("/")
        try:
            return json.loads(self.open_mail(f"{base}_Json/{name}"))
        except ApiError as error:
            if error.code == "not_found":
                return None
            raise
        except (DecryptionFailed, ValueError, RecursionError):
            return None

    def message_verdicts(self, path: str) -> Verdicts:
        """What the JSON twin of the message at ``path`` says about its sender and spam (see :meth:`read_twin`)."""
        return read_verdicts(self.read_twin(path))

    def learn(self, kind: str, original: bytes) -> str:
        """Hand the decrypted ``original`` to the appliance's spam filter as ``spam`` or ``ham``
        (``POST /api/learn/<kind>``, docs/api.md); the appliance keeps nothing.

        Returns :data:`LEARNED`, :data:`ALREADY_LEARNED`, :data:`NO_SPAM_FILTER` (503: nothing to train)
        or :data:`TOO_LARGE_TO_LEARN` (413); any other refusal is raised.
        """
        if kind not in ("spam", "ham"):
            raise UsageError("learn spam or ham")
        try:
            response = self._send(
                "POST",
                f"/api/learn/{kind}",
                data=original,
                headers={"Content-Type": "message/rfc822", "Accept": "application/json"},
            )
        except ApiError as error:
            if error.status == 503 and error.code == "no_spam_filter":
                return NO_SPAM_FILTER
            if error.status == 413:
                return TOO_LARGE_TO_LEARN
            raise
        answer = self._json(response)
        learned = answer.get("learned")
        if learned is True:
            return LEARNED
        if learned is False:
            return ALREADY_LEARNED
        raise ProtocolError("the server's learn answer is malformed")

    def move(self, moves: Sequence[tuple[str, str]]) -> int:
        """Move objects in one transaction (``POST /api/move``: among Mail/In, Mail/Spam and Mail/Screener, same key);
        returns how many moved. A missing source (``not_found``) or an existing target (``conflict``)
        is raised and nothing moves."""
        body = {"moves": [{"from": source, "to": target} for source, target in moves]}
        answer = self._json(self._send("POST", "/api/move", json_body=body))
        moved = answer.get("moved")
        if isinstance(moved, bool) or not isinstance(moved, int):
            raise ProtocolError("the server's move answer is malformed")
        return moved

    def read_message(self, message_id: str) -> bytes:
        """The decrypted RFC 5322 bytes of one message."""
        return self.open_mail(self.resolve_message(message_id))

    def send(
        self,
        to: Sequence[str],
        subject: str,
        text: str,
        *,
        cc: Sequence[str] = (),
        bcc: Sequence[str] = (),
        from_address: str | None = None,
        hashcash: bool = False,
    ) -> SendResult:
        """Send a plain-text message composed by the server from these fields. From is the user's address,
        or ``from_address``: one of the user's addresses or active aliases (else 403 ``sender_not_allowed``).
        With ``hashcash`` the appliance stamps it for each recipient (``X-Hashcash``, 20 bits, at most 10
        recipients), which lets first-contact mail past a recipient's screener."""
        check_addresses([*to, *cc, *bcc], from_address)
        body: dict[str, Any] = {"to": list(to), "cc": list(cc), "bcc": list(bcc), "subject": subject, "text": text}
        if from_address is not None:
            body["from"] = from_address
        if hashcash:
            body["hashcash"] = True
        return self._send_result(self._json(self._send("POST", "/api/send", json_body=body)), end_to_end=False)

    @staticmethod
    def _send_result(answer: Mapping[str, Any], *, end_to_end: bool) -> SendResult:
        try:
            sent = answer["sent"]
            return SendResult(
                str(answer["from"]),
                [str(a) for a in answer.get("local", [])],
                [str(a) for a in answer.get("remote", [])],
                answer.get("queue_id") if isinstance(answer.get("queue_id"), str) else None,
                "" if sent is None else str(sent),
                end_to_end,
            )
        except (KeyError, TypeError):
            raise ProtocolError("the server's send answer is malformed") from None

    def send_sealed(
        self,
        key_base: str,
        envelopes: Sequence[SealedEnvelope],
        *,
        sent: SealedEnvelope | None = None,
        sent_key_base: str | None = None,
        from_address: str | None = None,
        stamps: Sequence[str] = (),
    ) -> SendResult:
        """Hand copies sealed on this device to the appliance (``POST /api/send/sealed``, docs/e2e.md §2), which
        stores or forwards them as they are: one per recipient, per organisation, and ``sent`` for Mail/Sent."""
        body: dict[str, Any] = {"key_base": key_base, "envelopes": [e.to_json() for e in envelopes]}
        if from_address is not None:
            body["from"] = from_address
        if sent is not None:
            body["sent"] = {k: v for k, v in sent.to_json().items() if k in ("key_id", "original", "twin")}
            if sent_key_base is not None:
                body["sent"]["key_base"] = sent_key_base
        if stamps:
            body["stamps"] = list(stamps)
        answer = self._json(self._send("POST", "/api/send/sealed", json_body=body))
        return self._send_result(answer, end_to_end=True)

    def remote_key(self, address: str) -> dict[str, Any]:
        """``GET /api/remote/keys/<address>``: another appliance's key answer for ``address``, as this appliance
        fetched it, with how its directory was found (check it with ``keys.remote_lookup``)."""
        return self._json(self._send("GET", "/api/remote/keys/" + quote(address, safe="@")))

    def remote_consistency(self, domain: str, first: int, second: int) -> dict[str, Any]:
        """``GET /api/remote/log/consistency``: the consistency proof of ``domain``'s log between two sizes."""
        query = urlencode({"domain": domain, "first": first, "second": second})
        return self._json(self._send("GET", "/api/remote/log/consistency?" + query))

    def mail_folders(self) -> list[str]:
        """Every ``Mail/<folder>`` that holds messages (twins excluded)."""
        folders: list[str] = []
        after: str | None = None
        for _ in range(MAX_PAGES):
            page, after = self.list_objects("Mail/", limit=PAGE_SIZE, after=after)
            for entry in page:
                parts = entry.path.split("/")
                if len(parts) == 3 and _FOLDER_NAME.fullmatch(parts[1]) and not parts[1].endswith("_Json"):
                    if f"Mail/{parts[1]}" not in folders:
                        folders.append(f"Mail/{parts[1]}")
            if after is None:
                return folders
        raise ProtocolError("the listing did not end")
