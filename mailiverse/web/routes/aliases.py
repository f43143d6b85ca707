"""``/api/aliases``: an account's extra addresses, created, listed, limited, disabled and deleted.

The server makes shield addresses (``store/aliases.py``) and checks chosen ones; it shows an address in
clear only in the answer that creates it (and to ``lookup``, which is given it). Everything it keeps
is a keyed hash of the address, the address sealed to the owner's public key (``sealed_address``, as a
stored mail object is sealed: the clients open it with the account key) and the label as the client
sealed it. A deleted alias is gone for good: its address is refused at RCPT and never issued again.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from mailiverse.contracts import LOOK_ALIKES, canonical_local
from mailiverse.crypto.formats import seal_mail_object
from mailiverse.crypto.keys import load_public_key
from mailiverse.store import aliases as directory
from mailiverse.store.aliases import Alias, AliasError
from mailiverse.store.schema import users
from mailiverse.store.users import get_user_txn
from mailiverse.web.body import read_json
from mailiverse.web.errors import ApiError, json_response
from mailiverse.web.routing import router
from mailiverse.web.session import RouteBase
from mailiverse.web.validation import b64

#: A chosen alias's local part: what the user-name rules allow that is also a plain address local part.
_CHOSEN = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?")
#: Local parts no alias may take: the addresses RFC 2142 reserves, and what mail systems answer for.
RESERVED = frozenset(
    {"postmaster", "abuse", "hostmaster", "webmaster", "mailer-daemon", "root", "noc", "security", "admin"}
)
_RESERVED_CANONICAL = frozenset(canonical_local(name) for name in RESERVED)
_AVAILABILITY = 15 * 60


@dataclass(frozen=True)
class AliasSettings:
    """The address hasher (from the data directory's address key) and the per-account limits."""

    hasher: directory.AddressHasher
    max_aliases: int = directory.DEFAULT_MAX_ALIASES
    rate: int = directory.DEFAULT_ALIAS_RATE


def alias_json(alias: Alias) -> dict[str, Any]:
    return {
        "id": alias.public_id,
        "kind": alias.kind,
        "state": alias.state,
        "senders": alias.senders,
        "sealed_address": b64(alias.sealed_address or b""),
        "label": None if alias.label is None else b64(alias.label),
        "received": alias.received,
        "last_used_ms": alias.last_used_ms,
        "created_ms": alias.created_ms,
    }


class AliasRoutes(RouteBase):
    """The alias directory of the logged-in account."""

    def _settings(self) -> AliasSettings:
        if self.alias_settings is None:
            raise ApiError("aliases_unavailable", "this appliance keeps no alias directory", 503)
        return self.alias_settings

    @router.route("/api/aliases", methods=["GET"])
    async def list_aliases(self, request: Any) -> bytes:
        _record, user = await self.user_of(request)
        self._settings()
        found = await self.database.run(directory.list_aliases_txn, user.id)
        return json_response(request, {"aliases": [alias_json(a) for a in found]})

    @router.route("/api/aliases", methods=["POST"])
    async def create_alias(self, request: Any) -> bytes:
        _record, user = await self.user_of(request)
        settings = self._settings()
        body = read_json(request)
        _only(body, {"kind", "address", "domain", "label", "senders"})
        kind = body.get("kind", "shield")
        if kind == "shield":
            if "address" in body:
                raise ApiError("invalid_request", "a shield alias is made by the server: give no address")
            domain = self._domain(body.get("domain", self.domains[0]))
            local = directory.new_shield_local()
        elif kind == "chosen":
            local, domain = self._chosen(body.get("address"))
            if await self.database.run(_looks_like_an_account_txn, local):
                raise ApiError("alias_taken", "that address is taken (or looks like an account's name)", 409)
        else:
            raise ApiError("invalid_request", "kind is shield or chosen")
        senders = body.get("senders", "any")
        if senders not in directory.SENDER_POLICIES:
            raise ApiError("invalid_request", "senders is any, known or known-domains")
        address = f"{local}@{domain}"
        sealed = seal_mail_object(
            user.envelope_format, load_public_key(user.public_key), json.dumps({"address": address}).encode()
        )
        try:
            created = await self.database.transact(
                directory.create_alias_txn,
                user.id,
                settings.hasher.alias(local),
                kind=kind,
                sealed_address=sealed,
                label=_label(body),
                senders=senders,
                max_aliases=settings.max_aliases,
                rate=settings.rate,
            )
        except AliasError as error:
            raise _refusal(error) from None
        return json_response(request, {**alias_json(created), "address": address}, 201)

    @router.route("/api/aliases/lookup", methods=["POST"])
    async def lookup_alias(self, request: Any) -> bytes:
        """The caller's alias at an address it names (the clients' "stop mail to this address")."""
        _record, user = await self.user_of(request)
        settings = self._settings()
        body = read_json(request)
        _only(body, {"address"})
        local, _domain = self._address(body.get("address"))
        try:
            found = await self.database.run(directory.owner_of_alias_txn, user.id, settings.hasher.alias(local))
        except AliasError as error:
            raise _refusal(error) from None
        return json_response(request, alias_json(found))

    @router.route("/api/aliases/<alias_id>", methods=["PATCH"])
    async def change_alias(self, request: Any, alias_id: str) -> bytes:
        _record, user = await self.user_of(request)
        self._settings()
        body = read_json(request)
        _only(body, {"state", "senders", "label"})
        if not body:
            raise ApiError("invalid_request", "give state, senders or label")
        state, senders = body.get("state"), body.get("senders")
        if state is not None and state not in ("active", "disabled"):
            raise ApiError("invalid_request", "state is active or disabled (DELETE deletes)")
        if senders is not None and senders not in directory.SENDER_POLICIES:
            raise ApiError("invalid_request", "senders is any, known or known-domains")
        try:
            changed = await self.database.transact(
                directory.update_alias_txn,
                user.id,
                alias_id,
                state=state,
                senders=senders,
                label=_label(body),
                clear_label="label" in body and body["label"] is None,
            )
        except AliasError as error:
            raise _refusal(error) from None
        return json_response(request, alias_json(changed))

    @router.route("/api/aliases/<alias_id>", methods=["DELETE"])
    async def delete_alias(self, request: Any, alias_id: str) -> bytes:
        _record, user = await self.user_of(request)
        self._settings()
        try:
            await self.database.transact(directory.delete_alias_txn, user.id, alias_id)
        except AliasError as error:
            raise _refusal(error) from None
        return json_response(request, {"status": "deleted", "id": alias_id})

    def _domain(self, value: object) -> str:
        if not isinstance(value, str) or value.lower() not in self.domains:
            raise ApiError("invalid_request", "domain is one of the domains this appliance serves")
        return value.lower()

    def _address(self, value: object) -> tuple[str, str]:
        if not isinstance(value, str) or len(value) > 254 or value.count("@") != 1:
            raise ApiError("invalid_request", "address is local@domain at a served domain")
        local, _, domain = value.strip().partition("@")
        if not local:
            raise ApiError("invalid_request", "address is local@domain at a served domain")
        return local.lower(), self._domain(domain)

    def _chosen(self, value: object) -> tuple[str, str]:
        local, domain = self._address(value)
        if not _CHOSEN.fullmatch(local) or ".." in local:
            raise ApiError("invalid_request", "a chosen alias is 1 to 64 letters, digits, dots, hyphens or underscores")
        if canonical_local(local) in _RESERVED_CANONICAL:
            raise ApiError("alias_taken", "that address is reserved", 409)
        return local, domain


def _looks_like_an_account_txn(conn: Any, local: str) -> bool:
    """Whether an account's name is ``local``, or reads the same once look-alikes are one (an alias
    ``a1ice`` beside the account ``alice`` would impersonate her)."""
    if get_user_txn(conn, local) is not None:
        return True
    canonical = func.lower(users.c.name)
    for old, new in LOOK_ALIKES:
        canonical = func.replace(canonical, old, new)
    found = conn.execute(select(users.c.id).where(canonical == canonical_local(local)).limit(1)).first()
    return found is not None


def _only(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(body) - allowed
    if unknown:
        raise ApiError("invalid_request", f"unknown field(s): {', '.join(sorted(unknown))[:200]}")


def _label(body: dict[str, Any]) -> bytes | None:
    """The label the client sealed (base64), or None when not given (or null)."""
    value = body.get("label")
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > (directory.MAX_SEALED_BYTES + 2) // 3 * 4:
        raise ApiError("invalid_request", f"label is base64 of at most {directory.MAX_SEALED_BYTES} bytes")
    try:
        label = base64.b64decode(value, validate=True)
    except ValueError:
        raise ApiError("invalid_request", "label is base64") from None
    if not label:
        raise ApiError("invalid_request", "label is base64 of at least one byte (null clears it)")
    return label


def _refusal(error: AliasError) -> ApiError:
    status = {"alias_taken": 409, "alias_limit": 409, "alias_rate_limited": 429, "not_found": 404}[error.code]
    return ApiError(error.code, str(error), status, _AVAILABILITY if status == 429 else None)


__all__ = ["AliasRoutes", "AliasSettings", "alias_json"]
