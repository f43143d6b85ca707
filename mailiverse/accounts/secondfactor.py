"""The second factor on top of SRP: passkeys (WebAuthn, checked by py_webauthn) and recovery codes.

An account has a second factor while it has a passkey. Its login then takes three round trips: the two of SRP,
whose second answers HAMK and a single-use *handle* but no session, and ``POST /api/login/second-factor`` with
the handle and a passkey's assertion or a recovery code. The ceremonies under way (a login's second step, a
passkey being registered) wait in the database (``pending_second_factors``) for at most ``DEFAULT_TTL``, so any
front end can finish what another began; a handle is taken by one ``DELETE ... RETURNING`` and works once,
whatever the outcome. See docs/passkeys.md.

The WebAuthn checks (origin, RP ID hash, challenge, signature, counter) are py_webauthn's; it is imported on the
first ceremony (it costs about 200 ms and 10 MB, which an appliance without passkeys never pays) and runs on
``run_cpu``'s thread.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from mailiverse.accounts.errors import AccountError
from mailiverse.auth.clock import TimeSource, as_clock
from mailiverse.auth.keys import check_server_secret, subkey
from mailiverse.auth.pending import handle_digest, is_well_formed_handle, new_handle
from mailiverse.auth.recovery import CODE_COUNT, RecoveryCodeHasher, new_recovery_codes
from mailiverse.store import secondfactor as repo
from mailiverse.store.db import Database
from mailiverse.store.errors import InvalidInput
from mailiverse.store.users import User

#: Seconds a ceremony waits for its last round trip (a person finds their security key, or a code on paper).
DEFAULT_TTL = 300.0
#: Most ceremonies kept in the database (for all front ends together).
DEFAULT_MAX_ENTRIES = 10_000
#: The methods a second step may offer, as ``/api/login/finish`` names them.
PASSKEY, RECOVERY_CODE = "passkey", "recovery_code"
#: Bytes of a WebAuthn challenge.
CHALLENGE_BYTES = 32

RunCpu = Callable[..., Awaitable[Any]]


async def _run_here(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def second_factor_failed() -> AccountError:
    """The one answer to a second step that fails: unknown, used or expired handle, a wrong passkey or code."""
    return AccountError("second_factor_failed", "the second factor was not accepted; log in again", 401)


@dataclass(frozen=True)
class RelyingParty:
    """Who the browser is talking to, as WebAuthn names it: the RP ID (a host name, never an address), a name
    to show, and the origins an assertion may come from (``https://`` and the host the request named)."""

    id: str
    name: str
    origins: tuple[str, ...]


@dataclass(frozen=True)
class SecondFactorChallenge:
    """What the second answer of SRP carries for an account with a second factor: the handle of the second step,
    the methods it may use, and the options for ``navigator.credentials.get`` (JSON; None without a passkey
    method, e.g. a request by an address, which cannot be an RP ID)."""

    handle: str
    methods: tuple[str, ...]
    options: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"handle": self.handle, "methods": list(self.methods)}
        if self.options is not None:
            answer["options"] = self.options
        return answer

    def __repr__(self) -> str:
        return f"SecondFactorChallenge(methods={self.methods!r})"


@dataclass(frozen=True)
class LoginCeremony:
    """A login's second step, taken: whose, and what its first steps charged (docs/passkeys.md, "Lockout")."""

    user_id: int
    challenge: bytes
    device: str | None
    address: str

    def __repr__(self) -> str:
        return f"LoginCeremony(user_id={self.user_id})"


@dataclass(frozen=True)
class Registration:
    """A passkey registration begun: its handle and the options for ``navigator.credentials.create``."""

    handle: str
    options: dict[str, Any]


@dataclass(frozen=True)
class Registered:
    """A passkey registered, with the recovery codes made beside the first one (shown once; else empty)."""

    passkey: repo.Passkey
    recovery_codes: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"Registered({self.passkey!r})"


@dataclass(frozen=True)
class SecondFactorStatus:
    """An account's passkeys and how many recovery codes it has left."""

    passkeys: list[repo.Passkey]
    recovery: repo.RecoveryCodeState
    enabled: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "enabled", bool(self.passkeys))


class SecondFactors:
    """Passkeys and recovery codes of accounts in ``database`` (the metabase), and their ceremonies."""

    def __init__(
        self,
        database: Database,
        server_secret: bytes,
        *,
        clock: TimeSource = None,
        run_cpu: RunCpu = _run_here,
        ttl: float = DEFAULT_TTL,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        now_ms: Callable[[], int] | None = None,
    ) -> None:
        if ttl <= 0 or max_entries < 1:
            raise ValueError("SecondFactors needs ttl > 0 and max_entries >= 1")
        check_server_secret(server_secret)
        self._db = database
        self._codes = RecoveryCodeHasher(server_secret)
        self._user_handle_key = subkey(server_secret, "webauthn-user-handle")
        self._now = as_clock(clock)
        self._ttl_ms = int(ttl * 1000)
        self._max = max_entries
        self._run_cpu = run_cpu
        self._stamp = now_ms or (lambda: time.time_ns() // 1_000_000)

    def _now_ms(self) -> int:
        return int(self._now() * 1000)

    def user_handle(self, user: User) -> bytes:
        """The account's WebAuthn user handle: stable, opaque, and another for an account made again later."""
        message = struct.pack(">QQ", user.id, user.created_ms) + user.name.encode("utf-8")
        return hmac.new(self._user_handle_key, message, hashlib.sha256).digest()

    async def _keep(self, user_id: int, purpose: str, state: dict[str, Any]) -> tuple[str, bytes]:
        handle = new_handle()
        challenge = secrets.token_bytes(CHALLENGE_BYTES)
        now = self._now_ms()
        await self._db.transact(
            repo.add_pending_txn,
            handle_digest(handle),
            user_id=user_id,
            purpose=purpose,
            challenge=challenge,
            expires_ms=now + self._ttl_ms,
            now_ms=now,
            state=json.dumps(state, separators=(",", ":")),
            max_entries=self._max,
        )
        return handle, challenge

    async def _take(self, handle: object, purpose: str, refusal: Callable[[], AccountError]) -> repo.PendingCeremony:
        if not isinstance(handle, str) or not is_well_formed_handle(handle):
            raise refusal()
        ceremony = await self._db.transact(repo.take_pending_txn, handle_digest(handle))
        if ceremony is None or ceremony.purpose != purpose or self._now_ms() >= ceremony.expires_ms:
            raise refusal()
        return ceremony

    # -- what an account has ----------------------------------------------------------------------------------

    async def enabled(self, user_id: int) -> bool:
        """Whether the account's logins need a second factor (it has a passkey)."""
        return bool(await self._db.run(repo.count_passkeys_txn, user_id))

    async def status(self, user_id: int) -> SecondFactorStatus:
        passkeys = await self._db.run(repo.list_passkeys_txn, user_id)
        recovery = await self._db.run(repo.recovery_code_state_txn, user_id)
        return SecondFactorStatus(passkeys, recovery)

    # -- a login's second step ----------------------------------------------------------------------------------

    async def begin_login(
        self, user: User, relying_party: RelyingParty | None, *, device: str | None, address: str
    ) -> SecondFactorChallenge:
        """Keep a login's second step: ``device`` and ``address`` are what the failure it stands for was charged
        to (the second step gives it back); the passkey method is offered when there is a relying party."""
        passkeys = await self._db.run(repo.list_passkeys_txn, user.id)
        recovery = await self._db.run(repo.recovery_code_state_txn, user.id)
        handle, challenge = await self._keep(user.id, repo.LOGIN, {"device": device, "address": address})
        methods: list[str] = []
        options = None
        if relying_party is not None and passkeys:
            options = await self._run_cpu(_request_options, relying_party, challenge, passkeys, self._ttl_ms)
            methods.append(PASSKEY)
        if recovery.remaining:
            methods.append(RECOVERY_CODE)
        return SecondFactorChallenge(handle, tuple(methods), options)

    async def take_login(self, handle: object) -> LoginCeremony:
        """Take a login's second step (it works once, whatever follows), or raise ``second_factor_failed``."""
        ceremony = await self._take(handle, repo.LOGIN, second_factor_failed)
        try:
            state = json.loads(ceremony.state)
            device, address = state.get("device"), state["address"]
        except (ValueError, KeyError, AttributeError):
            raise second_factor_failed() from None
        if not isinstance(address, str) or not (device is None or isinstance(device, str)):
            raise second_factor_failed()
        return LoginCeremony(ceremony.user_id, ceremony.challenge, device, address)

    async def check_passkey(
        self, user: User, ceremony: LoginCeremony, credential: object, relying_party: RelyingParty | None
    ) -> repo.Passkey:
        """Check a passkey's assertion for the login, and move its signature counter on; or raise."""
        if relying_party is None or not isinstance(credential, dict):
            raise second_factor_failed()
        raw_id = await self._run_cpu(_assertion_credential_id, credential)
        passkey = await self._db.run(repo.find_passkey_txn, user.id, raw_id) if raw_id is not None else None
        if passkey is None:
            raise second_factor_failed()
        new_count = await self._run_cpu(_verify_assertion, credential, ceremony.challenge, relying_party, passkey)
        if new_count is None:
            raise second_factor_failed()
        used = await self._db.transact(repo.use_passkey_txn, passkey.id, passkey.sign_count, new_count, self._stamp())
        if not used:
            raise second_factor_failed()
        return passkey

    async def check_recovery_code(self, user: User, typed: object) -> None:
        """Spend the recovery code ``typed`` (it works once), or raise."""
        unused = await self._db.run(repo.unused_recovery_codes_txn, user.id)
        matched = self._codes.match(user.id, typed, unused)
        if matched is None:
            raise second_factor_failed()
        if not await self._db.transact(repo.spend_recovery_code_txn, user.id, matched, self._stamp()):
            raise second_factor_failed()  # a login racing this one spent it first

    # -- registration and the account's changes ---------------------------------------------------------------

    async def begin_registration(self, user: User, relying_party: RelyingParty, display_name: str) -> Registration:
        """Keep a registration and return the options for ``navigator.credentials.create``."""
        passkeys = await self._db.run(repo.list_passkeys_txn, user.id)
        if len(passkeys) >= repo.MAX_PASSKEYS:
            raise AccountError(
                "too_many_passkeys", f"an account has at most {repo.MAX_PASSKEYS} passkeys; remove one first", 409
            )
        handle, challenge = await self._keep(user.id, repo.REGISTER, {})
        options = await self._run_cpu(
            _creation_options,
            relying_party,
            challenge,
            self.user_handle(user),
            user.name,
            display_name,
            passkeys,
            self._ttl_ms,
        )
        return Registration(handle, options)

    async def finish_registration(
        self, user: User, handle: object, credential: object, name: str, relying_party: RelyingParty
    ) -> Registered:
        """Check the new credential's attestation and register it; the first passkey comes with recovery codes."""
        ceremony = await self._take(handle, repo.REGISTER, _registration_failed)
        if ceremony.user_id != user.id or not isinstance(credential, dict):
            raise _registration_failed()
        verified = await self._run_cpu(_verify_registration, credential, ceremony.challenge, relying_party)
        if verified is None:
            raise _registration_failed()
        credential_id, public_key, sign_count, transports = verified
        try:
            passkey = await self._db.transact(
                repo.add_passkey_txn,
                user.id,
                credential_id=credential_id,
                public_key=public_key,
                sign_count=sign_count,
                name=name,
                transports=transports,
                now_ms=self._stamp(),
            )
        except repo.PasskeyExists:
            raise AccountError("passkey_exists", "this passkey is registered already", 409) from None
        except repo.TooManyPasskeys as error:
            raise AccountError("too_many_passkeys", str(error), 409) from None
        except InvalidInput as error:
            raise AccountError("invalid_request", str(error)) from None
        codes: tuple[str, ...] = ()
        if (await self._db.run(repo.recovery_code_state_txn, user.id)).total == 0:
            codes = tuple(await self.new_recovery_codes(user.id))
        return Registered(passkey, codes)

    async def remove_passkey(self, user_id: int, credential_id: bytes) -> bool:
        """Remove one of the account's passkeys (with the last, its recovery codes); False if it has no such one."""
        return bool(await self._db.transact(repo.delete_passkey_txn, user_id, credential_id))

    async def new_recovery_codes(self, user_id: int) -> list[str]:
        """Replace the account's recovery codes with ``CODE_COUNT`` new ones, returned once (never stored)."""
        codes = new_recovery_codes(CODE_COUNT)
        hashes = [self._codes.digest(user_id, code) for code in codes]
        await self._db.transact(repo.set_recovery_codes_txn, user_id, hashes, self._stamp())
        return codes

    async def regenerate_recovery_codes(self, user_id: int) -> list[str]:
        """New recovery codes for an account with a second factor (the old ones stop working)."""
        if not await self.enabled(user_id):
            raise AccountError("no_second_factor", "register a passkey first; recovery codes come with it", 409)
        return await self.new_recovery_codes(user_id)

    async def reset(self, user_id: int) -> tuple[int, int]:
        """The operator's reset: no passkeys, no recovery codes; the password alone logs in again."""
        return await self._db.transact(repo.reset_second_factor_txn, user_id)

    async def purge_expired(self) -> int:
        return await self._db.transact(repo.purge_expired_pending_txn, self._now_ms())

    async def count_pending(self) -> int:
        """How many ceremonies the database holds (for tests and monitoring)."""
        return await self._db.run(repo.count_pending_txn)


def _registration_failed() -> AccountError:
    return AccountError("passkey_not_registered", "the passkey could not be registered; try again", 400)


# -- py_webauthn, on run_cpu's thread ------------------------------------------------------------------------------
# Everything py_webauthn raises on hostile input (its own exceptions, and what its parsers let through: KeyError,
# TypeError, ValueError, cbor2's) is a failed ceremony, never a 500: hence the broad excepts below.


def _descriptors(passkeys: list[repo.Passkey]) -> list[Any]:
    from webauthn.helpers.structs import AuthenticatorTransport, PublicKeyCredentialDescriptor

    known = {t.value for t in AuthenticatorTransport}
    return [
        PublicKeyCredentialDescriptor(
            id=p.credential_id, transports=[AuthenticatorTransport(t) for t in p.transports if t in known] or None
        )
        for p in passkeys
    ]


def _request_options(
    relying_party: RelyingParty, challenge: bytes, passkeys: list[repo.Passkey], timeout_ms: int
) -> dict[str, Any]:
    from webauthn import generate_authentication_options
    from webauthn.helpers.options_to_json_dict import options_to_json_dict
    from webauthn.helpers.structs import UserVerificationRequirement

    options = generate_authentication_options(
        rp_id=relying_party.id,
        challenge=challenge,
        timeout=timeout_ms,
        allow_credentials=_descriptors(passkeys),
        # A second factor after the password: presence is enough, a PIN or fingerprint is welcome.
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    return dict(options_to_json_dict(options))


def _creation_options(
    relying_party: RelyingParty,
    challenge: bytes,
    user_handle: bytes,
    user_name: str,
    display_name: str,
    passkeys: list[repo.Passkey],
    timeout_ms: int,
) -> dict[str, Any]:
    from webauthn import generate_registration_options
    from webauthn.helpers.options_to_json_dict import options_to_json_dict
    from webauthn.helpers.structs import (
        AttestationConveyancePreference,
        AuthenticatorSelectionCriteria,
        ResidentKeyRequirement,
        UserVerificationRequirement,
    )

    options = generate_registration_options(
        rp_id=relying_party.id,
        rp_name=relying_party.name,
        user_name=user_name,
        user_id=user_handle,
        user_display_name=display_name,
        challenge=challenge,
        timeout=timeout_ms,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=_descriptors(passkeys),
    )
    return dict(options_to_json_dict(options))


def _assertion_credential_id(credential: dict[str, Any]) -> bytes | None:
    from webauthn.helpers.parse_authentication_credential_json import parse_authentication_credential_json

    try:
        raw_id = parse_authentication_credential_json(credential).raw_id
    except Exception:  # noqa: BLE001 - hostile input; see above
        return None
    return bytes(raw_id) if 0 < len(raw_id) <= repo.MAX_CREDENTIAL_ID_BYTES else None


def _verify_assertion(
    credential: dict[str, Any], challenge: bytes, relying_party: RelyingParty, passkey: repo.Passkey
) -> int | None:
    """The assertion's new signature counter, or None if it does not verify."""
    from webauthn import verify_authentication_response

    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=relying_party.id,
            expected_origin=list(relying_party.origins),
            credential_public_key=passkey.public_key,
            credential_current_sign_count=passkey.sign_count,
        )
    except Exception:  # noqa: BLE001 - hostile input; see above
        return None
    if bytes(verified.credential_id) != passkey.credential_id:
        return None
    return int(verified.new_sign_count)


def _verify_registration(
    credential: dict[str, Any], challenge: bytes, relying_party: RelyingParty
) -> tuple[bytes, bytes, int, list[str]] | None:
    """(credential id, COSE public key, signature counter, transports) of a new credential, or None."""
    from webauthn import verify_registration_response
    from webauthn.helpers.parse_registration_credential_json import parse_registration_credential_json

    try:
        parsed = parse_registration_credential_json(credential)
        verified = verify_registration_response(
            credential=parsed,
            expected_challenge=challenge,
            expected_rp_id=relying_party.id,
            expected_origin=list(relying_party.origins),
        )
    except Exception:  # noqa: BLE001 - hostile input; see above
        return None
    transports = [t.value for t in parsed.response.transports or []]
    credential_id, public_key = bytes(verified.credential_id), bytes(verified.credential_public_key)
    if not 0 < len(credential_id) <= repo.MAX_CREDENTIAL_ID_BYTES or not 0 < len(public_key) <= 2048:
        return None
    return credential_id, public_key, int(verified.sign_count), transports


__all__ = [
    "DEFAULT_TTL",
    "PASSKEY",
    "RECOVERY_CODE",
    "LoginCeremony",
    "Registered",
    "Registration",
    "RelyingParty",
    "SecondFactorChallenge",
    "SecondFactorStatus",
    "SecondFactors",
    "second_factor_failed",
]
