"""Sign-up, the two SRP login round trips (and the second factor's step after them), logout and the session:
``/api/signup``, ``/api/login/*``, ``/api/session``."""

from __future__ import annotations

from typing import Any

from mailiverse.accounts.directory import KeyDirectory, parse_records
from mailiverse.accounts.service import SecondFactorNeeded, SignupRequest
from mailiverse.auth.sessions import SESSION_COOKIE, clear_session_cookie
from mailiverse.crypto.kdf import KDF_NAMES
from mailiverse.store.aliases import find_alias_txn
from mailiverse.web.body import ACCOUNT_JSON_BYTES, read_json
from mailiverse.web.errors import ApiError, json_response
from mailiverse.web.relyingparty import relying_party
from mailiverse.web.routing import router
from mailiverse.web.session import RouteBase, request_cookie
from mailiverse.web.validation import b64, base64_bytes, client_ip, device_token, field, optional_text, proof, text


class AuthRoutes(RouteBase):
    """Sign-up and login; the SRP rules themselves live in ``AccountService``."""

    @router.route("/api/signup", methods=["GET"])
    async def signup_status(self, request: Any) -> bytes:
        return json_response(
            request,
            {"open": await self.accounts.signup_open(), "domains": list(self.domains), "kdfs": list(KDF_NAMES)},
        )

    @router.route("/api/signup", methods=["POST"])
    async def signup(self, request: Any) -> bytes:
        self.check_origin(request)
        body = read_json(request, ACCOUNT_JSON_BYTES)
        signup_request = SignupRequest(
            username=text(body, "user", 64),
            srp_salt=base64_bytes(body, "salt", 64),
            srp_verifier=base64_bytes(body, "verifier", 512),
            srp_group=text(body, "group", 64),
            public_key=base64_bytes(body, "public_key", 1024),
            key_block=base64_bytes(body, "key_block", 96 * 1024),
            envelope_format=optional_text(body, "format", 8) or "v2",
            invite=optional_text(body, "invite", 64),
            kdf=field(body, "kdf", optional=True),
        )
        settings = self.alias_settings
        if settings is not None and isinstance(signup_request.username, str):
            # An account's name must not shadow an alias (mail to it would go to the new account).
            taken = await self.database.run(find_alias_txn, settings.hasher.alias(signup_request.username.lower()))
            if taken is not None:
                raise ApiError("username_taken", "that user name is taken", 409)
        # A client that knows the key directory sends its key's signed record: checked before the account
        # exists, published once it does (docs/keys.md).
        records = None if body.get("key_record") is None else parse_records([body.get("key_record")])
        if records is not None and isinstance(signup_request.username, str):
            addresses = self.submission.addresses_of(signup_request.username.lower())
            KeyDirectory.check_first(records, signup_request.public_key, addresses)
        user = await self.accounts.signup(signup_request, client_ip(request))
        if records is not None:
            await self.key_directory.publish_first(user, self.addresses(user), records)
        return json_response(
            request,
            {"user": user.name, "addresses": self.addresses(user), "format": user.envelope_format},
            201,
        )

    @router.route("/api/login/start", methods=["POST"])
    async def login_start(self, request: Any) -> bytes:
        self.check_origin(request)
        body = read_json(request)
        start = await self.accounts.login_start(
            text(body, "user", 256), client_ip(request), device_token(request, body)
        )
        return json_response(
            request,
            {
                "handle": start.handle,
                "salt": b64(start.salt),
                "B": b64(start.B),
                "group": "rfc5054-2048-sha256",
                "kdf": start.kdf.to_json(),
            },
        )

    @router.route("/api/login/finish", methods=["POST"])
    async def login_finish(self, request: Any) -> bytes:
        self.check_origin(request)
        body = read_json(request)
        result = await self.accounts.login_finish(
            proof(body),
            client_ip(request),
            device_token(request, body),
            relying_party(request, self.hostname, self.domains),
        )
        if isinstance(result, SecondFactorNeeded):
            # The password was right; the session waits for the second factor (routes/passkeys.py).
            return json_response(
                request,
                {"user": result.user.name, "HAMK": b64(result.hamk), "second_factor": result.second_factor.to_json()},
            )
        fields = self.session_fields(request, result.session.token, result.session.csrf_token)
        fields.update(self.device_fields(request, result.device_token))
        return json_response(request, {"user": result.user.name, "HAMK": b64(result.hamk), **fields})

    @router.route("/api/login/second-factor", methods=["POST"])
    async def login_second_factor(self, request: Any) -> bytes:
        """Round trip 3 for an account with a second factor (docs/passkeys.md): the session opens here."""
        self.check_origin(request)
        body = read_json(request)
        credential = field(body, "credential", optional=True)
        if credential is not None and not isinstance(credential, dict):
            raise ApiError("invalid_request", "the field 'credential' must be the passkey's credential object")
        result = await self.accounts.login_second_factor(
            text(body, "handle", 64),
            client_ip(request),
            credential=credential,
            recovery_code=optional_text(body, "recovery_code", 32),
            relying_party=relying_party(request, self.hostname, self.domains),
        )
        fields = self.session_fields(request, result.session.token, result.session.csrf_token)
        fields.update(self.device_fields(request, result.device_token))
        return json_response(request, {"user": result.user.name, **fields})

    @router.route("/api/logout", methods=["POST"])
    async def logout(self, request: Any) -> bytes:
        await self.session_of(request)
        authorization = request.getHeader(b"authorization")
        if authorization is not None:
            token = authorization.decode("latin-1").partition(" ")[2].strip()
        else:
            token = request_cookie(request, SESSION_COOKIE) or ""
        await self.accounts.sessions.revoke(token)
        request.responseHeaders.addRawHeader(b"Set-Cookie", clear_session_cookie().encode("ascii"))
        return json_response(request, {"status": "logged_out"})

    @router.route("/api/session", methods=["GET"])
    async def session(self, request: Any) -> bytes:
        record = await self.session_of(request)
        sessions = self.accounts.sessions
        return json_response(
            request,
            {
                "user": record.username,
                "csrf": sessions.csrf_token(record),
                "created_at": record.created_at,
                "expires_at": min(
                    record.last_seen + sessions.idle_timeout,
                    record.created_at + sessions.absolute_timeout,
                ),
            },
        )


__all__ = ["AuthRoutes"]
