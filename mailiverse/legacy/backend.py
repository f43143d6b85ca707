"""The legacy protocol's server-side decisions: accounts, blocks, sign-up, store credentials, rate limits.

The line sessions, the Store routes and Send call this object; it owns the server keys,
the legacy secret (mail-block PBE password, credential encryption, version tags) and the
throttles, and reaches the database only through ``Database.run``/``transact``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric import rsa

from mailiverse.auth.keys import subkey
from mailiverse.auth.ratelimit import (
    Budget,
    IRateLimiter,
    IRateLimits,
    LoginLimits,
    LoginThrottle,
    TokenBucketLimiter,
    address_key,
)
from mailiverse.auth.usernames import InvalidUsername, canonical_username, signup_username
from mailiverse.compat import blocks
from mailiverse.compat.signup import SignupError, open_init_packet, server_response
from mailiverse.compat.srp import N, tc
from mailiverse.config import LegacyOptions
from mailiverse.crypto import aes, lenient
from mailiverse.crypto.keys import load_public_key, public_key_der
from mailiverse.legacy.replay import PutReplayGuard
from mailiverse.logs import Logger
from mailiverse.privatefile import create_private_once, private_dir
from mailiverse.store import accounts as accounts_repo
from mailiverse.store import legacy as repo
from mailiverse.store.accounts import SignupClosed
from mailiverse.store.db import Database
from mailiverse.store.errors import InvalidInput, StoreError, UserExists
from mailiverse.store.legacy import LegacyLogin, StoreCredentials
from mailiverse.store.objects import ObjectInfo

log = Logger()

SECRET_FILE = "legacy.secret"  # noqa: S105 - a file name, not a secret
SECRET_BYTES = 32
#: The only store handler this server serves (S3 and Dropbox v1 are not offered).
MV_HANDLER = "MV"
MIN_USER_KEY_BITS = 2048
CAPTCHA_TOKEN_LIFETIME_MS = 2 * 3600 * 1000
#: The refusal of a sign-up that the appliance's policy does not admit.
INVITATION_NEEDED = "Sign-up on this server needs an invitation code (give it as the captcha)."


class LegacyRefused(Exception):
    """A legacy request is refused; the text is safe to show and says nothing secret."""


def ensure_legacy_secret(keys_dir: Path) -> bytes:
    """Read, or create once (mode 0600), the legacy server secret in ``keys_dir``."""
    path = keys_dir / SECRET_FILE
    if not path.exists():
        private_dir(keys_dir)
    # Front ends starting together on one data dir must agree on one secret: create once, never replace.
    stored = create_private_once(path, lambda: base64.b64encode(os.urandom(SECRET_BYTES)) + b"\n")
    secret = base64.b64decode(stored.strip(), validate=True)
    if len(secret) < SECRET_BYTES:
        raise ValueError(f"{path}: the legacy secret is too short; delete the file to make a new one")
    return secret


def token_hash(token: str) -> bytes:
    """How a captcha token is kept: only its SHA-256."""
    return hashlib.sha256(token.encode("utf-8")).digest()


class LegacyBackend:
    """Everything the legacy front ends decide, with the database behind ``database``."""

    def __init__(
        self,
        database: Database,
        *,
        options: LegacyOptions,
        secret: bytes,
        mail_auth_key: rsa.RSAPrivateKey,
        send_key: rsa.RSAPrivateKey,
        open_signup: bool = False,
        clock: Callable[[], float] = time.time,
        rate_limits: IRateLimits | None = None,
    ) -> None:
        """``rate_limits`` (front ends sharing a metabase) holds the throttles; by default they live in memory."""
        self.database = database
        self.options = options
        #: The appliance's ``--open-signup``: the one sign-up policy covers legacy sign-ups too.
        self.open_signup = open_signup
        self.mail_auth_key = mail_auth_key
        self.send_key = send_key
        self.clock = clock
        self._secret = secret
        # The mail-block PBE password of the original is text; ours is the secret in base64.
        self._mail_block_key = blocks.mail_block_key(base64.b64encode(secret).decode("ascii"))
        self._credential_key = subkey(secret, "legacy-store-credentials")
        self._version_key = subkey(secret, "legacy-object-version")
        self._decoy_key = subkey(secret, "legacy-srp-decoy")
        self.login_throttle: LoginLimits
        self.send_throttle: LoginLimits
        self.signup_limiter: IRateLimiter
        self.enable_limiter: IRateLimiter
        hourly = Budget(attempts=20, period=3600.0)
        if rate_limits is None:
            self.login_throttle, self.send_throttle = LoginThrottle(clock), LoginThrottle(clock)
            self.signup_limiter = TokenBucketLimiter(hourly, clock)
            self.enable_limiter = TokenBucketLimiter(hourly, clock)
        else:
            self.login_throttle = LoginLimits.shared(rate_limits, prefix="legacy-login")
            self.send_throttle = LoginLimits.shared(rate_limits, prefix="legacy-send")
            self.signup_limiter = rate_limits.limiter("legacy-signup", hourly)
            self.enable_limiter = rate_limits.limiter("legacy-enable", hourly)
        self.put_replays = PutReplayGuard(self.now_ms, options.date_skew_seconds * 1000)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- names -------------------------------------------------------------------------------

    def local_name(self, address: str) -> str | None:
        """The local account name of a legacy user name (``name@served.domain`` or a bare name)."""
        if not isinstance(address, str) or len(address) > 320:
            return None
        local, sep, domain = address.rpartition("@")
        if sep:
            if domain.lower() not in self.options.domains:
                return None
        else:
            local = address
        try:
            return canonical_username(local)
        except InvalidUsername:
            return None

    def address_of(self, name: str) -> str:
        """The full address legacy clients use for the account ``name``."""
        domain = self.options.domains[0] if self.options.domains else self.options.hostname
        return f"{name}@{domain}"

    # -- SRP logins ------------------------------------------------------------------------

    async def login_data(self, name: str) -> LegacyLogin | None:
        return await self.database.run(repo.find_login_txn, name)

    def decoy(self, name: str) -> tuple[int, int]:
        """A stable fake (salt, verifier) for names with no legacy login, so they look alike."""
        digest = hmac.new(self._decoy_key, name.encode("utf-8"), hashlib.sha512).digest()
        salt = int.from_bytes(digest[:33], "big") % (N - 2) + 2
        verifier = pow(2, int.from_bytes(digest[33:], "big"), N)
        return salt, verifier

    def throttle_key(self, name: str | None, user: str) -> str:
        return name if name is not None else "?" + user[:64]

    # -- sign-up -----------------------------------------------------------------------------

    async def handle_init(self, text: str, peer: str) -> str:
        """Answer an encrypted availability test or sign-up packet with a ServerResponse text."""
        if not (await self.signup_limiter.spend(address_key(peer))).allowed:
            return server_response(False, "Too many attempts, try again later.")
        try:
            request = open_init_packet(self.mail_auth_key, text)
        except SignupError:
            return server_response(False, "The request could not be read.")
        name = self.local_name(request.user)
        if name is None:
            return server_response(False, "This address is not served here.")
        try:
            signup_username(name)
        except InvalidUsername as e:
            return server_response(False, str(e))
        if self.options.captcha == "closed":
            return server_response(False, "Sign-up is closed on this server.")
        if request.kind == "test":
            return await self._availability(name)
        token = request.captcha_token
        if self.options.captcha == "token":
            # Operator-issued legacy tokens are this policy's invitations.
            if token is None or not await self.use_token(token, "signup"):
                return server_response(False, "A valid captcha token is required.")
        assert request.s is not None and request.v is not None
        now = self.now_ms()
        try:
            await self.database.transact(
                _create_pending,
                name,
                tc(request.s),
                tc(request.v),
                now,
                now - self.options.pending_lifetime_seconds * 1000,
                self.options.max_accounts,
                None if self.options.captcha == "token" else token,
                self.open_signup or self.options.captcha == "token",
            )
        except SignupClosed:
            return server_response(False, INVITATION_NEEDED)
        except UserExists:
            return server_response(False, "The name is taken.")
        except InvalidInput:
            return server_response(False, "This server has no room for more accounts.")
        log.info("legacy sign-up recorded for {name}", name=name)
        return server_response(True)

    async def _availability(self, name: str) -> str:
        """The availability test: whether ``name`` is free, told only where anyone may sign up.

        Elsewhere (an invitation or a captcha token is needed) the answer is the same for every
        well-formed name, so a stranger cannot list which accounts exist; the real check comes
        at sign-up, which only an invited person reaches.
        """
        anyone = self.options.captcha == "off" and await self.database.run(
            accounts_repo.signup_open_for_txn, None, self.open_signup
        )
        if not anyone:
            return server_response(True)
        taken = await self.database.run(repo.name_taken_txn, name)
        return server_response(not taken, "The name is taken." if taken else None)

    async def use_token(self, token: str, purpose: Literal["signup", "store"]) -> bool:
        if not token or len(token) > 512:
            return False
        return await self.database.transact(
            repo.use_captcha_token_txn, token_hash(token), purpose, now_ms=self.now_ms()
        )

    async def issue_captcha_token(self) -> str:
        """A new operator-issued captcha token (for the ``token`` policy)."""
        token = base64.b32encode(os.urandom(20)).decode("ascii").rstrip("=")
        now = self.now_ms()
        await self.database.transact(
            repo.add_captcha_token_txn,
            token_hash(token),
            now_ms=now,
            expires_ms=now + CAPTCHA_TOKEN_LIFETIME_MS,
        )
        return token

    # -- blocks ------------------------------------------------------------------------------

    async def get_key_block(self, login: LegacyLogin) -> bytes | None:
        return await self.database.run(repo.get_key_block_txn, login)

    async def put_key_block(self, login: LegacyLogin, block: bytes) -> None:
        await self.database.transact(repo.set_key_block_txn, login, block)

    async def get_server_environment(self, login: LegacyLogin) -> dict[str, str] | None:
        if login.user_id is None:
            return None
        stored = await self.database.run(repo.get_mail_block_txn, login.user_id)
        if stored is None:
            return None
        return blocks.decrypt_mail_block_with_key(self._mail_block_key, stored)

    async def put_server_environment(self, login: LegacyLogin, block: bytes) -> None:
        """Check and store a server environment; completes a pending sign-up."""
        try:
            environment = blocks.parse_environment(block)
        except Exception:  # noqa: BLE001 - one refusal whatever was wrong
            raise LegacyRefused("the server environment is malformed") from None
        if environment.get("handler") != MV_HANDLER:
            raise LegacyRefused("only the MV store is served")
        if not environment.get("smtpPassword"):
            raise LegacyRefused("the server environment lacks smtpPassword")
        try:
            key = load_public_key(base64.b64decode(environment.get("RSA-PublicKey", ""), validate=True))
        except Exception:  # noqa: BLE001
            raise LegacyRefused("the server environment lacks a usable RSA-PublicKey") from None
        if key.key_size < MIN_USER_KEY_BITS:
            raise LegacyRefused("the RSA key is too small")
        sealed = base64.b64encode(
            aes.encrypt_embediv(self._mail_block_key, lenient.deflate(blocks.environment_bytes(environment)))
        ).decode("ascii")
        try:
            await self.database.transact(
                repo.put_mail_block_txn,
                login,
                public_key_der=public_key_der(key),
                block=sealed,
                key_id=environment.get("MV/AccessKeyId"),
                now_ms=self.now_ms(),
            )
        except StoreError:
            raise LegacyRefused("the server environment was refused") from None
        log.info("legacy server environment stored for {name}", name=login.name)

    async def delete_account(self, login: LegacyLogin) -> None:
        await self.database.transact(repo.delete_account_txn, login)
        log.info("legacy account {name} deleted by its owner", name=login.name)

    async def upgrade(
        self, login: LegacyLogin, *, salt: bytes, verifier: bytes, group: str, key_block: bytes | None
    ) -> None:
        """Swap a proven legacy account to a modern SRP verifier; legacy logins end here."""
        from mailiverse.auth.srp6a import MAX_SALT_BYTES, SRP_GROUP

        if login.kind != "user" or login.user_id is None:
            raise LegacyRefused("only a complete account can be upgraded")
        if group != SRP_GROUP or not 8 <= len(salt) <= MAX_SALT_BYTES or not 0 < len(verifier) <= 512:
            raise LegacyRefused("the new verifier is not usable")
        await self.database.transact(
            repo.upgrade_account_txn,
            login.user_id,
            srp_salt=salt,
            srp_verifier=verifier,
            srp_group=group,
            key_block=key_block,
        )
        log.info("legacy account {name} upgraded to {group}", name=login.name, group=group)

    # -- the MV store --------------------------------------------------------------------------

    async def store_enable(self, email: str, captcha: str | None, peer: str) -> tuple[str, str]:
        """New unbound MV credentials for the name in ``email``; LegacyRefused when not allowed."""
        if not (await self.enable_limiter.spend(address_key(peer))).allowed:
            raise LegacyRefused("too many attempts, try again later")
        name = self.local_name(email)
        if name is None:
            raise LegacyRefused("this address is not served here")
        if self.options.captcha == "closed":
            raise LegacyRefused("sign-up is closed on this server")
        if self.options.captcha == "token":
            if captcha is None or not await self.use_token(captcha, "store"):
                raise LegacyRefused("a valid captcha token is required")
        elif not await self.database.run(
            accounts_repo.invitation_admits_txn, name, captcha, self.open_signup, self.now_ms()
        ):
            raise LegacyRefused("sign-up on this server needs an invitation code")
        # Made alike for every name, taken or free: unbound keys open nothing until the account
        # that proves its password with SRP puts a server environment naming them.
        key_id = base64.b64encode(os.urandom(32)).decode("ascii")
        secret = base64.b64encode(os.urandom(32)).decode("ascii")
        sealed = aes.encrypt_embediv(self._credential_key, secret.encode("ascii"))
        await self.database.transact(repo.add_credentials_txn, key_id, sealed, name, now_ms=self.now_ms())
        return key_id, secret

    async def credentials(self, key_id: str) -> tuple[StoreCredentials, str] | None:
        """The credentials of ``key_id`` and their secret, or None."""
        if not key_id or len(key_id) > 128:
            return None
        found = await self.database.run(repo.get_credentials_txn, key_id)
        if found is None:
            return None
        try:
            secret = aes.decrypt_embediv(self._credential_key, found.secret).decode("ascii")
        except Exception:  # noqa: BLE001
            return None
        return found, secret

    def version_tag(self, info: ObjectInfo) -> str:
        """The ``Version`` of an object: base64 of 16 bytes, new on every put, equal in list/get/put."""
        message = f"{info.user_id}\0{info.path}\0{info.version}\0{info.modified_ms}".encode()
        digest = hmac.new(self._version_key, message, hashlib.sha256).digest()
        return base64.b64encode(digest[:16]).decode("ascii")

    def mail_block_password_matches(self, environment: dict[str, str], password: Any) -> bool:
        expected = environment.get("smtpPassword", "")
        return (
            isinstance(password, str)
            and bool(expected)
            and hmac.compare_digest(password.encode("utf-8"), expected.encode("utf-8"))
        )


def _create_pending(
    conn: Any,
    name: str,
    salt: bytes,
    verifier: bytes,
    now_ms: int,
    expire_before_ms: int,
    max_accounts: int,
    invite: str | None,
    open_signup: bool,
) -> None:
    """Thread side: the sign-up policy first (it spends the invitation), then the name and the room."""
    repo.expire_pending_txn(conn, expire_before_ms)
    accounts_repo.admit_signup_txn(conn, name, invite=invite, open_signup=open_signup, now_ms=now_ms)
    repo.add_pending_txn(conn, name, salt, verifier, now_ms=now_ms, max_accounts=max_accounts)


def strict_b64(text: Any, limit: int) -> bytes:
    """Decode canonical base64 of at most ``limit`` characters; LegacyRefused otherwise."""
    if not isinstance(text, str) or len(text) > limit:
        raise LegacyRefused("bad base64 field")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise LegacyRefused("bad base64 field") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise LegacyRefused("bad base64 field")
    return raw
