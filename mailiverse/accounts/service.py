"""Account services behind the HTTPS API: sign-up, the two SRP round trips (and the second factor's step after
them, ``accounts/secondfactor.py``), fresh proofs, password change, deletion.

The web layer parses JSON and calls these; they enforce the rules (sign-up closed by default,
rate limits, input sizes) and raise ``AccountError`` with a stable code. The SRP arithmetic
runs off the reactor thread through ``run_cpu``. See ``docs/api.md`` for the wire format.

Why one module past 500 lines: every path to a session (login, its second factor, a password change) shares the
login budgets, the device tokens and the pending challenges, and keeping them in one class keeps them charged
and checked the same way; the second factor's own rules live in ``accounts/secondfactor.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import srp._pysrp as _srp_reference
from twisted.internet.threads import deferToThreadPool

from mailiverse.accounts.errors import AccountError, auth_failed, rate_limited
from mailiverse.accounts.kdf import check_new_kdf, login_kdf
from mailiverse.accounts.pending import DatabasePendingLogins
from mailiverse.auth import (
    SRP_GROUP,
    AuthFailed,
    Budget,
    InvalidUsername,
    LoginThrottle,
    NewSession,
    PendingLogins,
    SessionManager,
    TokenBucketLimiter,
    address_key,
    begin_login,
    canonical_username,
    signup_username,
)
from mailiverse.auth.clock import TimeSource
from mailiverse.auth.devices import DeviceTokens
from mailiverse.auth.pending import IPendingLogins, MemoryPendingLogins
from mailiverse.auth.ratelimit import IRateLimiter, IRateLimits, LoginLimits
from mailiverse.auth.srp6a import GROUP_BYTES, LoginChallenge
from mailiverse.crypto.errors import CryptoError
from mailiverse.crypto.formats import FORMAT_V2
from mailiverse.crypto.kdf import KdfParams
from mailiverse.crypto.keys import load_public_key, public_key_der
from mailiverse.store import accounts as repo
from mailiverse.store.db import Database
from mailiverse.store.errors import InvalidInput, UserExists, VersionConflict
from mailiverse.store.homes import Homes
from mailiverse.store.users import User, change_auth_txn, delete_user_txn, get_user_by_id_txn, get_user_txn

T = TypeVar("T")

#: Smallest and largest RSA modulus accepted for an account key.
MIN_KEY_BITS = 2048
MAX_KEY_BITS = 4096
#: Largest public key (SPKI DER) accepted.
MAX_PUBLIC_KEY_BYTES = 1024
#: Largest encrypted key block accepted (it holds one private key and a few settings).
MAX_KEY_BLOCK_BYTES = 64 * 1024
#: SRP salt length bounds, in bytes.
MIN_SALT_BYTES = 16
MAX_SALT_BYTES = 64
#: Envelope formats a new account may choose (``v1`` is kept for accounts of original clients).
SIGNUP_FORMATS = (FORMAT_V2,)

#: Login starts allowed per client address (each costs an SRP exponentiation).
DEFAULT_LOGIN_STARTS = Budget(attempts=60, period=60.0)

_N, _G = _srp_reference.get_ng(_srp_reference.NG_2048, None, None)

RunCpu = Callable[..., Awaitable[Any]]


def thread_runner(reactor: Any) -> RunCpu:
    """Return ``run_cpu(fn, *args)`` that runs ``fn`` on the reactor's thread pool."""

    async def run_cpu(fn: Callable[..., T], *args: Any) -> T:
        result: T = await deferToThreadPool(reactor, reactor.getThreadPool(), fn, *args)
        return result

    return run_cpu


async def run_inline(fn: Callable[..., T], *args: Any) -> T:
    """``run_cpu`` that calls ``fn`` at once (for tools and tests that want no threads)."""
    return fn(*args)


@dataclass(frozen=True)
class SignupPolicy:
    """Who may sign up: closed by default (first account, or an invite), or open to all."""

    open_signup: bool = False
    per_address: Budget = Budget(attempts=5, period=3600.0)


@dataclass(frozen=True)
class SignupRequest:
    """What a client sends to create an account (all decoded from base64 by the web layer)."""

    username: str
    srp_salt: bytes
    srp_verifier: bytes
    srp_group: str
    public_key: bytes
    key_block: bytes
    envelope_format: str = FORMAT_V2
    invite: str | None = None
    #: The password KDF description (a JSON object), or None for the original PBKDF2 rule.
    kdf: object = None

    def __repr__(self) -> str:
        return f"SignupRequest(username={self.username!r})"


@dataclass(frozen=True)
class NewVerifier:
    """A replacement SRP salt and verifier with the re-encrypted key block (password change)."""

    srp_salt: bytes
    srp_verifier: bytes
    srp_group: str
    key_block: bytes
    #: The KDF description the new keys were derived with (a JSON object), or None for the PBKDF2 rule.
    kdf: object = None

    def __repr__(self) -> str:
        return "NewVerifier(...)"


@dataclass(frozen=True)
class Proof:
    """A login handle with the client's A and M: a fresh proof of the password."""

    handle: str
    A: bytes
    M: bytes

    def __repr__(self) -> str:
        return "Proof(...)"


@dataclass(frozen=True)
class LoginStart:
    """The answer to round trip 1."""

    handle: str
    salt: bytes
    B: bytes
    #: How the client turns the password into its keys (the account's, or a decoy like a new account's).
    kdf: KdfParams


@dataclass(frozen=True)
class LoginResult:
    """A successful login: the account, the server's proof and the new session (token shown once)."""

    user: User
    hamk: bytes
    session: NewSession
    #: The device token to hand back (renewed if the login showed a valid one, else a new device's).
    device_token: str | None = None


if TYPE_CHECKING:
    from mailiverse.accounts.secondfactor import RelyingParty, SecondFactorChallenge, SecondFactors


def _second_factor_failed() -> AccountError:
    from mailiverse.accounts.secondfactor import second_factor_failed

    return second_factor_failed()


@dataclass(frozen=True)
class SecondFactorNeeded:
    """A correct proof for an account with a second factor: HAMK, and the second step's handle; no session yet."""

    user: User
    hamk: bytes
    second_factor: SecondFactorChallenge


def check_username(text: object) -> str:
    """Canonical name for login, or AccountError ``invalid_username``."""
    try:
        return canonical_username(text)  # type: ignore[arg-type]
    except (InvalidUsername, TypeError, AttributeError):
        raise AccountError("invalid_username", "not a valid user name") from None


def check_public_key(der: bytes) -> bytes:
    """Accept an RSA SubjectPublicKeyInfo DER of 2048 to 4096 bits; return it unchanged."""
    if not 0 < len(der) <= MAX_PUBLIC_KEY_BYTES:
        raise AccountError("invalid_public_key", "the public key has an impossible size")
    try:
        key = load_public_key(der)
    except (CryptoError, ValueError, TypeError):
        raise AccountError("invalid_public_key", "the public key is not an RSA SubjectPublicKeyInfo") from None
    if public_key_der(key) != der:
        raise AccountError("invalid_public_key", "the public key must be SubjectPublicKeyInfo DER")
    if not MIN_KEY_BITS <= key.key_size <= MAX_KEY_BITS:
        raise AccountError(
            "invalid_public_key",
            f"the public key must have {MIN_KEY_BITS} to {MAX_KEY_BITS} bits",
        )
    exponent = key.public_numbers().e
    if exponent < 3 or exponent % 2 == 0:
        raise AccountError("invalid_public_key", "the public exponent is unusable")
    return der


def check_key_block(block: bytes) -> bytes:
    """Accept an AES-CBC-256-EmbedIV key block (IV then whole blocks) of bounded size."""
    if not 32 <= len(block) <= MAX_KEY_BLOCK_BYTES or len(block) % 16:
        raise AccountError(
            "invalid_key_block",
            f"the key block must be IV plus AES blocks, at most {MAX_KEY_BLOCK_BYTES} bytes",
        )
    return block


def check_srp(salt: bytes, verifier: bytes, group: str) -> tuple[bytes, bytes]:
    """Accept an SRP salt and verifier of our group; return them (verifier padded to 256 bytes)."""
    if group != SRP_GROUP:
        raise AccountError("invalid_srp", f"the SRP group must be {SRP_GROUP!r}")
    if not MIN_SALT_BYTES <= len(salt) <= MAX_SALT_BYTES:
        raise AccountError(
            "invalid_srp",
            f"the SRP salt must be {MIN_SALT_BYTES} to {MAX_SALT_BYTES} bytes",
        )
    if not 0 < len(verifier) <= GROUP_BYTES:
        raise AccountError("invalid_srp", "the SRP verifier has an impossible size")
    value = int.from_bytes(verifier, "big")
    if not 1 < value < _N:
        raise AccountError("invalid_srp", "the SRP verifier is not in the group")
    return salt, value.to_bytes(GROUP_BYTES, "big")


def _srp_credentials(user: User | None) -> tuple[bytes, bytes] | None:
    if (
        user is None
        or user.disabled
        or user.srp_group != SRP_GROUP
        or user.srp_salt is None
        or user.srp_verifier is None
    ):
        return None
    return user.srp_salt, user.srp_verifier


class AccountService:
    """Sign-up, login and the proven account changes, over the database and the auth library.

    ``pending`` keeps challenges between the round trips; by default a ``DatabasePendingLogins``
    on ``database``, so any front end sharing it can finish a login. A plain ``PendingLogins``
    (one process only) is accepted too.
    """

    def __init__(
        self,
        database: Database,
        server_secret: bytes,
        sessions: SessionManager,
        *,
        clock: TimeSource = None,
        policy: SignupPolicy = SignupPolicy(),
        throttle: LoginLimits | None = None,
        login_starts: Budget = DEFAULT_LOGIN_STARTS,
        pending: IPendingLogins | PendingLogins | None = None,
        run_cpu: RunCpu = run_inline,
        now_ms: Callable[[], int] | None = None,
        homes: Homes | None = None,
        rate_limits: IRateLimits | None = None,
        second_factors: SecondFactors | None = None,
    ) -> None:
        self._db = database
        self._second_factors = second_factors
        self._second_factor_setup = (server_secret, clock, run_cpu)
        #: The homes new accounts are placed in and deleted accounts' mail is deleted from (store/homes.py).
        self._homes = homes or Homes.single(database)
        self._secret = server_secret
        self.sessions = sessions
        self.policy = policy
        self.throttle: LoginLimits = throttle or LoginThrottle(clock)
        self.pending: IPendingLogins
        if pending is None:
            self.pending = DatabasePendingLogins(database, server_secret, clock=clock)
        elif isinstance(pending, PendingLogins):
            self.pending = MemoryPendingLogins(pending)
        else:
            self.pending = pending
        # Shared by every front end of a metabase (``rate_limits``), else in this process's memory.
        self._starts: IRateLimiter = (
            rate_limits.limiter("login-starts", login_starts)
            if rate_limits
            else TokenBucketLimiter(login_starts, clock)
        )
        self.devices = DeviceTokens(server_secret, clock)
        self._signups: IRateLimiter = (
            rate_limits.limiter("signups", policy.per_address)
            if rate_limits
            else TokenBucketLimiter(policy.per_address, clock)
        )
        self._run_cpu = run_cpu
        self._now_ms = now_ms

    # -- sign-up ------------------------------------------------------------------------------

    @property
    def second_factors(self) -> SecondFactors:
        """Passkeys and recovery codes (docs/passkeys.md), beside the sessions in this (meta)database; built, and
        their modules loaded, at the first login or account call that needs them (not at start-up)."""
        if self._second_factors is None:
            from mailiverse.accounts.secondfactor import SecondFactors

            secret, clock, run_cpu = self._second_factor_setup
            self._second_factors = SecondFactors(self._db, secret, clock=clock, run_cpu=run_cpu)
        return self._second_factors

    async def signup_open(self, invite: str | None = None) -> bool:
        """Whether a sign-up (with ``invite``, if given) could be admitted now."""
        return await self._db.run(repo.signup_open_for_txn, invite, self.policy.open_signup)

    async def signup(self, request: SignupRequest, client_ip: str) -> User:
        """Create an account; raises AccountError (``signup_closed``, ``username_taken``, ...)."""
        decision = await self._signups.spend(address_key(client_ip))
        if not decision.allowed:
            raise rate_limited(decision.retry_after_seconds)
        try:
            name = signup_username(request.username)
        except InvalidUsername as error:
            raise AccountError("invalid_username", error.message) from None
        if request.envelope_format not in SIGNUP_FORMATS:
            raise AccountError("invalid_format", "new accounts use the envelope format 'v2'")
        salt, verifier = check_srp(request.srp_salt, request.srp_verifier, request.srp_group)
        public_key = check_public_key(request.public_key)
        key_block = check_key_block(request.key_block)
        kdf = check_new_kdf(request.kdf)
        try:
            user = await self._db.transact(
                repo.create_account_txn,
                name,
                public_key_der=public_key,
                envelope_format=request.envelope_format,
                srp_salt=salt,
                srp_verifier=verifier,
                srp_group=request.srp_group,
                key_block=key_block,
                invite=request.invite,
                open_signup=self.policy.open_signup,
                now_ms=self._now_ms() if self._now_ms else None,
                kdf=kdf,
            )
        except repo.SignupClosed:
            raise AccountError(
                "signup_closed",
                "sign-up on this appliance needs a valid invite code",
                403,
            ) from None
        except UserExists:
            raise AccountError("username_taken", "that user name is taken", 409) from None
        except InvalidInput as error:
            raise AccountError("invalid_request", str(error)) from None
        try:
            await self._homes.place(user.id)
        except BaseException:
            # No account without a home: the sign-up fails whole (503 while the chosen home is down).
            await self._db.transact(delete_user_txn, user.id)
            raise
        return user

    # -- login --------------------------------------------------------------------------------

    async def login_start(self, username: object, client_ip: str, device_token: str | None = None) -> LoginStart:
        """Round trip 1: a salt and B for any well-formed name, real or not (no enumeration).

        ``device_token`` is what the device got at an earlier login, if any: a valid one puts
        the attempt on the device's own failure budget (see ``mailiverse.auth.devices``).
        """
        name = check_username(username)
        address = address_key(client_ip)
        started = await self._starts.spend(address)
        if not started.allowed:
            raise rate_limited(started.retry_after_seconds)
        decision = await self.throttle.admit(name, client_ip, self.devices.verify(name, device_token))
        if not decision.allowed:
            raise rate_limited(decision.retry_after_seconds)
        user = await self._db.run(get_user_txn, name)
        credentials = _srp_credentials(user)
        challenge: LoginChallenge = await self._run_cpu(begin_login, self._secret, name, credentials)
        handle = await self.pending.put(challenge)
        kdf = login_kdf(self._secret, name, user if credentials is not None else None)
        return LoginStart(handle=handle, salt=challenge.salt, B=challenge.B, kdf=kdf)

    async def prove(
        self, proof: Proof, client_ip: str, device_token: str | None = None
    ) -> tuple[str, bytes, str | None]:
        """Check a fresh proof; return ``(username, HAMK, device id or None)`` or raise
        ``auth_failed``/``rate_limited``."""
        try:
            challenge = await self.pending.take(proof.handle)
        except AuthFailed:
            await self.throttle.failed_address(client_ip)
            raise auth_failed() from None
        name = challenge.username
        device = self.devices.verify(name, device_token)
        decision = await self.throttle.admit(name, client_ip, device)
        if not decision.allowed:
            raise rate_limited(decision.retry_after_seconds)
        try:
            hamk: bytes = await self._run_cpu(challenge.verify, proof.A, proof.M)
        except AuthFailed:
            await self.throttle.failed(name, client_ip, device)
            raise auth_failed() from None
        return name, hamk, device

    async def _live_user(self, name: str) -> User:
        user = await self._db.run(get_user_txn, name)
        if _srp_credentials(user) is None:
            raise auth_failed()
        assert user is not None
        return user

    async def login_finish(
        self,
        proof: Proof,
        client_ip: str,
        device_token: str | None = None,
        relying_party: RelyingParty | None = None,
    ) -> LoginResult | SecondFactorNeeded:
        """Round trip 2: check the proof, open a session; HAMK only after a correct proof.

        For an account with a second factor no session is opened: the login counts as a failed one against the
        same budgets until its second step succeeds (``login_second_factor`` gives the failure back), so a login
        that omits or fails the second factor is one failure, as a wrong password is; no device token either.
        """
        name, hamk, device = await self.prove(proof, client_ip, device_token)
        user = await self._live_user(name)
        if await self.second_factors.enabled(user.id):
            await self.throttle.failed(name, client_ip, device)
            challenge = await self.second_factors.begin_login(user, relying_party, device=device, address=client_ip)
            return SecondFactorNeeded(user=user, hamk=hamk, second_factor=challenge)
        session = await self.sessions.create(user.name)
        return LoginResult(user=user, hamk=hamk, session=session, device_token=self.devices.reissue(name, device))

    async def login_second_factor(
        self,
        handle: object,
        client_ip: str,
        *,
        credential: object = None,
        recovery_code: object = None,
        relying_party: RelyingParty | None = None,
    ) -> LoginResult:
        """Round trip 3 of an account with a second factor: a passkey's assertion or a recovery code for the handle
        ``login_finish`` gave. The handle works once; on success the session opens, the failure ``login_finish``
        charged is given back and the device gets its token. ``hamk`` is empty: the client checked it already."""
        if (credential is None) == (recovery_code is None):
            raise AccountError("invalid_request", "give either a passkey's credential or a recovery code")
        try:
            ceremony = await self.second_factors.take_login(handle)
        except AccountError:
            await self.throttle.failed_address(client_ip)
            raise
        user = await self._db.run(get_user_by_id_txn, ceremony.user_id)
        if user is None or _srp_credentials(user) is None:
            raise _second_factor_failed()
        if credential is not None:
            await self.second_factors.check_passkey(user, ceremony, credential, relying_party)
        else:
            await self.second_factors.check_recovery_code(user, recovery_code)
        await self._forgive(user.name, ceremony.address, ceremony.device)
        session = await self.sessions.create(user.name)
        return LoginResult(
            user=user, hamk=b"", session=session, device_token=self.devices.reissue(user.name, ceremony.device)
        )

    async def _forgive(self, name: str, address: str, device: str | None) -> None:
        """Give back the failure ``LoginLimits.failed`` charged for a login whose second step then succeeded."""
        await self.throttle.forgive(name, address, device)

    # -- proven changes -----------------------------------------------------------------------

    async def _prove_for(
        self, username: str, proof: Proof, client_ip: str, device_token: str | None = None
    ) -> tuple[bytes, str | None]:
        name, hamk, device = await self.prove(proof, client_ip, device_token)
        if name != username:
            # A proof for another account proves nothing about this session's owner.
            raise auth_failed()
        return hamk, device

    async def change_password(
        self,
        username: str,
        proof: Proof,
        new: NewVerifier,
        client_ip: str,
        *,
        if_key_block_version: int | None = None,
        device_token: str | None = None,
    ) -> LoginResult:
        """Replace verifier and key block after a fresh proof; end every session, open a new one."""
        salt, verifier = check_srp(new.srp_salt, new.srp_verifier, new.srp_group)
        key_block = check_key_block(new.key_block)
        kdf = check_new_kdf(new.kdf)
        hamk, device = await self._prove_for(username, proof, client_ip, device_token)
        user = await self._live_user(username)
        try:
            updated = await self._db.transact(
                change_auth_txn,
                user.id,
                srp_salt=salt,
                srp_verifier=verifier,
                srp_group=new.srp_group,
                key_block=key_block,
                if_key_block_version=if_key_block_version,
                kdf=kdf,
            )
        except VersionConflict:
            raise AccountError("version_conflict", "the key block changed since it was read", 412) from None
        except InvalidInput as error:
            raise AccountError("invalid_request", str(error)) from None
        await self.sessions.revoke_user(username)
        session = await self.sessions.create(username)
        return LoginResult(
            user=updated, hamk=hamk, session=session, device_token=self.devices.reissue(username, device)
        )

    async def delete_account(
        self, username: str, proof: Proof, client_ip: str, device_token: str | None = None
    ) -> bytes:
        """Delete the account, its objects and every session, after a fresh proof; return HAMK."""
        hamk, _device = await self._prove_for(username, proof, client_ip, device_token)
        user = await self._live_user(username)
        await self._homes.remove(user.id)
        await self._db.transact(delete_user_txn, user.id)
        await self.sessions.revoke_user(username)
        return hamk


__all__ = [
    "MAX_KEY_BLOCK_BYTES",
    "AccountService",
    "LoginResult",
    "LoginStart",
    "NewVerifier",
    "Proof",
    "SecondFactorNeeded",
    "SignupPolicy",
    "SignupRequest",
    "check_key_block",
    "check_public_key",
    "check_srp",
    "check_username",
    "run_inline",
    "thread_runner",
]
