"""The OpenAPI 3.1 description of the JSON API, served at ``/api/openapi.json``
(a test keeps it equal to the routes)."""

from __future__ import annotations

from typing import Any

_B64 = {"type": "string", "contentEncoding": "base64"}
_TEXT = {"type": "string"}
_INT = {"type": "integer"}
_ADDRESSES = {"type": "array", "items": {"type": "string"}, "maxItems": 100}
_PROOF: dict[str, Any] = {
    "type": "object",
    "required": ["handle", "A", "M"],
    "properties": {"handle": _TEXT, "A": _B64, "M": _B64},
    "additionalProperties": False,
}
#: A device token from an earlier login (native clients; browsers send the ``__Host-mv-device`` cookie).
_DEVICE = {"type": "string", "maxLength": 128}
#: The login proof with the device token beside it (``/api/login/finish``).
_PROOF_WITH_DEVICE = {**_PROOF, "properties": {**_PROOF["properties"], "device": _DEVICE}}
_SESSION: dict[str, Any] = {
    "type": "object",
    "properties": {
        "user": _TEXT,
        "HAMK": _B64,
        "token": _TEXT,
        "csrf": _TEXT,
        "expires_in": _INT,
        "device": _DEVICE,
    },
}
_OBJECT = {
    "type": "object",
    "properties": {
        "path": _TEXT,
        "version": _INT,
        "size": _INT,
        "created_ms": _INT,
        "modified_ms": _INT,
        "seq": _INT,
    },
}
_ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {"error": _TEXT, "message": _TEXT},
}
#: A password KDF description (docs/auth.md, "The password KDF"): Argon2id with a per-account salt, or the
#: original fixed-salt PBKDF2 rule of accounts made before it.
_KDF: dict[str, Any] = {
    "oneOf": [
        {
            "type": "object",
            "required": ["kdf", "salt", "m", "t", "p"],
            "properties": {
                "kdf": {"const": "argon2id"},
                "salt": {**_B64, "description": "16 to 64 random bytes"},
                "m": {"type": "integer", "minimum": 65536, "maximum": 1048576, "description": "memory in KiB"},
                "t": {"type": "integer", "minimum": 1, "maximum": 64, "description": "passes"},
                "p": {"type": "integer", "minimum": 1, "maximum": 16, "description": "lanes"},
            },
            "additionalProperties": False,
        },
        {
            "type": "object",
            "required": ["kdf"],
            "properties": {"kdf": {"const": "pbkdf2-sha256"}},
            "additionalProperties": False,
        },
    ]
}
_NEW_VERIFIER = {
    "salt": _B64,
    "verifier": _B64,
    "group": {"const": "rfc5054-2048-sha256"},
    "key_block": _B64,
    "kdf": _KDF,
}


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _obj(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


_SCREENER = _obj(
    ["enabled", "approved", "blocked"], {"enabled": {"type": "boolean"}, "approved": _INT, "blocked": _INT}
)
_ALIAS = _obj(
    ["id", "kind", "state", "senders", "sealed_address", "label", "received", "last_used_ms", "created_ms"],
    {
        "id": _TEXT,
        "kind": {"enum": ["shield", "chosen"]},
        "state": {"enum": ["active", "disabled"]},
        "senders": {"enum": ["any", "known", "known-domains"]},
        "sealed_address": _B64,
        "label": {"type": ["string", "null"]},
        "received": _INT,
        "last_used_ms": {"type": ["integer", "null"]},
        "created_ms": _INT,
    },
)


_OBJECT_ANY = {"type": "object"}
#: The second step of a login with a second factor (docs/passkeys.md).
_SECOND_STEP = _obj(
    ["handle", "methods"],
    {
        "handle": _TEXT,
        "methods": {"type": "array", "items": {"enum": ["passkey", "recovery_code"]}},
        "options": {**_OBJECT_ANY, "description": "PublicKeyCredentialRequestOptions (JSON)"},
    },
)
_PASSKEY = _obj(
    ["id", "name", "created_ms", "last_used_ms"],
    {"id": _TEXT, "name": _TEXT, "created_ms": _INT, "last_used_ms": {"type": ["integer", "null"]}},
)
_CODES = {"type": "array", "items": _TEXT, "description": "shown once; stored only as keyed hashes"}
_STH = _obj(
    ["tree_size", "root_hash", "timestamp", "signature"],
    {"tree_size": _INT, "root_hash": _B64, "timestamp": _INT, "signature": _B64},
)
_PROVEN = {
    "record": _OBJECT_ANY,
    "leaf": _B64,
    "leaf_index": _INT,
    "tree_size": _INT,
    "audit_path": {"type": "array", "items": _B64},
}
_KEY_ANSWER = _obj(
    ["record", "leaf", "leaf_index", "tree_size", "audit_path", "sth"],
    {
        **_PROVEN,
        "sth": _STH,
        "address": _TEXT,
        "key_id": _TEXT,
        "public_key": _B64,
        "fingerprint": _TEXT,
        "bits": _INT,
        "format": _TEXT,
        "history": {"type": "array", "items": _obj(list(_PROVEN), _PROVEN)},
        "moved": {"type": ["object", "null"]},
    },
)


def _op(
    summary: str,
    *,
    auth: bool,
    ok: int = 200,
    response: dict[str, Any] | None = None,
    body: dict[str, Any] | None = None,
    raw_response: str | None = None,
    raw_body: bool = False,
    raw_body_type: str = "application/octet-stream",
    errors: tuple[int, ...] = (),
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    if raw_response is not None:
        responses[str(ok)] = {
            "description": "success",
            "content": {raw_response: {"schema": {"type": "string", "format": "binary"}}},
        }
    else:
        responses[str(ok)] = {
            "description": "success",
            "content": {"application/json": {"schema": response or {"type": "object"}}},
        }
    codes = set(errors) | {400, 413, 415} if body is not None else set(errors)
    if auth:
        codes |= {401, 403}
    for code in sorted(codes):
        responses[str(code)] = {"$ref": "#/components/responses/Error"}
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    operation["security"] = [{"bearer": []}, {"cookie": [], "csrf": []}] if auth else []
    if body is not None:
        operation["requestBody"] = _json_body(body)
    if raw_body:
        operation["requestBody"] = {
            "required": True,
            "content": {raw_body_type: {"schema": {"type": "string", "format": "binary"}}},
        }
    if parameters:
        operation["parameters"] = parameters
    return operation


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _TEXT}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _header(name: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "schema": _TEXT}


def _e2e_paths() -> dict[str, dict[str, Any]]:
    """Mail sealed on the sender's device, and other appliances' directories (docs/e2e.md)."""
    objects = {"key_id": _TEXT, "original": _B64, "twin": _B64}
    envelope = {
        "oneOf": [
            _obj(["to", "key_id", "original", "twin"], {"to": _TEXT, **objects}),
            _obj(["organisation", "key_id", "original", "twin"], {"organisation": _TEXT, **objects}),
        ]
    }
    domain = _query("domain", _TEXT)
    return {
        "/api/send/sealed": {
            "post": _op(
                "Send a message sealed on this device: envelopes stored as they came (local recipients) or carried"
                " over SMTP (other appliances); the server checks the key each names, quotas and screeners",
                auth=True,
                body=_obj(
                    ["key_base", "envelopes"],
                    {
                        "from": _TEXT,
                        "key_base": _TEXT,
                        "envelopes": {"type": "array", "items": envelope},
                        "sent": _obj(["key_id", "original", "twin"], objects),
                        "stamps": {"type": "array", "items": _TEXT},
                    },
                ),
                response=_obj(
                    ["from", "local", "remote", "key_base"],
                    {
                        "from": _TEXT,
                        "local": _ADDRESSES,
                        "remote": _ADDRESSES,
                        "queue_id": {"type": ["string", "null"]},
                        "sent": {"type": ["string", "null"]},
                        "key_base": _TEXT,
                    },
                ),
                errors=(403, 409, 413, 422, 429, 503, 507),
            )
        },
        "/api/remote/keys/{address}": {
            "get": _op(
                "Another domain's appliance (how it announces itself) and its directory's key answer, verbatim",
                auth=True,
                response=_obj(
                    ["domain", "discovery", "answer"],
                    {"domain": _TEXT, "discovery": _OBJECT_ANY, "answer": _OBJECT_ANY},
                ),
                errors=(404, 429, 502),
                parameters=[{"name": "address", "in": "path", "required": True, "schema": _TEXT}],
            )
        },
        "/api/remote/log/consistency": {
            "get": _op(
                "Another appliance's consistency proof between two sizes of its log, verbatim",
                auth=True,
                response=_OBJECT_ANY,
                errors=(404, 429, 502),
                parameters=[domain, _query("first", _INT), _query("second", _INT)],
            )
        },
    }


def _moving_paths() -> dict[str, dict[str, Any]]:
    """Moving house (docs/moving.md): both ends of a move."""
    moved = {"moved_to": _TEXT, "moved_ms": _INT, "forward_until_ms": _INT, "leaf_index": _INT}
    return {
        "/api/account/move": {
            "get": _op(
                "Whether the account moved, where, until when its mail is forwarded, and its mail's copy marks",
                auth=True,
                response=_obj(["moved"], {"moved": {"type": "boolean"}, **moved, "mail": _OBJECT_ANY, "pending": _INT}),
            ),
            "post": _op(
                "Switch the account to moved on a moved record signed by its current key (into the key log)",
                auth=True,
                ok=201,
                body=_obj(["to", "record"], {"to": _TEXT, "grace_days": _INT, "record": _OBJECT_ANY}),
                response=_obj(["moved_to", "sth"], {**moved, "sth": _STH}),
                errors=(404, 409, 422),
            ),
        },
        "/api/account/move/copied": {
            "post": _op(
                "Mark received mail (key bases) the client copied to the new appliance: it is never forwarded",
                auth=True,
                body=_obj(["key_bases"], {"key_bases": {"type": "array", "items": _TEXT, "maxItems": 1000}}),
                response=_obj(["marked"], {"marked": _INT}),
                errors=(409,),
            )
        },
        "/api/account/move/finish": {
            "post": _op(
                "Delete every object of the moved account (the user asked; not while mail waits to be forwarded)",
                auth=True,
                body=_obj(["delete"], {"delete": {"const": True}}),
                response=_obj(["deleted"], {"deleted": _INT}),
                errors=(409,),
            )
        },
        "/api/account/digests": {
            "get": _op(
                "A page of the account's objects with their size and SHA-256 (hex), by path",
                auth=True,
                response=_obj(
                    ["objects", "next"],
                    {
                        "objects": {
                            "type": "array",
                            "items": _obj(
                                ["path", "size", "sha256"],
                                {"path": _TEXT, "size": _INT, "sha256": _TEXT, "modified_ms": _INT},
                            ),
                        },
                        "next": {"type": ["string", "null"]},
                    },
                ),
                parameters=[_query("prefix", _TEXT), _query("after", _TEXT), _query("limit", _INT)],
            )
        },
        "/api/account/brought-keys": {
            "get": _op(
                "The keys the account brought from an appliance it moved from",
                auth=True,
                response=_obj(["keys"], {"keys": {"type": "array", "items": _OBJECT_ANY}}),
            ),
            "post": _op(
                "Register keys brought from another appliance (each signed by itself) and the key block holding them"
                " (the request signed by the account's current key)",
                auth=True,
                ok=201,
                body=_obj(
                    ["address", "keys", "signature"],
                    {
                        "address": _TEXT,
                        "keys": {"type": "array", "items": _OBJECT_ANY, "maxItems": 64},
                        "key_block": _B64,
                        "key_block_version": _INT,
                        "signature": _B64,
                    },
                ),
                response=_obj(["added"], {"added": {"type": "array", "items": _TEXT}, "key_block_version": _INT}),
                errors=(404, 409, 412),
            ),
        },
    }


def openapi_document(version: str) -> dict[str, Any]:
    """The whole document; ``docs/api.md`` explains the client-side crypto it relies on."""
    object_path = [_path_param("path")]
    paths: dict[str, dict[str, Any]] = {
        "/api/health": {"get": _op("Liveness and served domains", auth=False)},
        "/api/openapi.json": {"get": _op("This document", auth=False)},
        "/api/signup": {
            "get": _op(
                "Whether sign-up is open without an invite",
                auth=False,
                response=_obj(
                    ["open"],
                    {
                        "open": {"type": "boolean"},
                        "domains": _ADDRESSES,
                        "kdfs": {"type": "array", "items": _TEXT, "description": "password KDF rules known"},
                    },
                ),
            ),
            "post": _op(
                "Create an account (client-generated keys; closed by default)",
                auth=False,
                ok=201,
                body=_obj(
                    ["user", "salt", "verifier", "group", "public_key", "key_block"],
                    {
                        "user": _TEXT,
                        **_NEW_VERIFIER,
                        "public_key": _B64,
                        "format": {"const": "v2"},
                        "invite": _TEXT,
                    },
                ),
                response=_obj(["user"], {"user": _TEXT, "addresses": _ADDRESSES, "format": _TEXT}),
                errors=(403, 409, 429),
            ),
        },
        "/api/login/start": {
            "post": _op(
                "SRP round trip 1: salt, B and the password KDF description (same shape for unknown names)",
                auth=False,
                body=_obj(["user"], {"user": _TEXT, "A": _B64, "device": _DEVICE}),
                response=_obj(
                    ["handle", "salt", "B", "kdf"],
                    {"handle": _TEXT, "salt": _B64, "B": _B64, "group": _TEXT, "kdf": _KDF},
                ),
                errors=(403, 429),
            )
        },
        "/api/login/finish": {
            "post": _op(
                "SRP round trip 2: client proof M first; HAMK, token and CSRF token back (for an account with a"
                " second factor, HAMK and second_factor {handle, methods, options} instead of the session)",
                auth=False,
                body=_PROOF_WITH_DEVICE,
                response={**_SESSION, "properties": {**_SESSION["properties"], "second_factor": _SECOND_STEP}},
                errors=(401, 403, 429),
            )
        },
        "/api/login/second-factor": {
            "post": _op(
                "The second factor after SRP (docs/passkeys.md): a passkey's assertion or a recovery code for the"
                " single-use handle of /api/login/finish; the session fields back",
                auth=False,
                body=_obj(
                    ["handle"],
                    {"handle": _TEXT, "credential": _OBJECT_ANY, "recovery_code": {"type": "string", "maxLength": 32}},
                ),
                response=_SESSION,
                errors=(401, 403, 429),
            )
        },
        "/api/logout": {"post": _op("Revoke this session", auth=True)},
        "/api/session": {
            "get": _op(
                "The current session and its CSRF token",
                auth=True,
                response=_obj(
                    ["user", "csrf"],
                    {"user": _TEXT, "csrf": _TEXT, "created_at": {"type": "number"}, "expires_at": {"type": "number"}},
                ),
            )
        },
        "/api/account": {
            "get": _op(
                "Account name, addresses, format, public key and encrypted key block",
                auth=True,
                response=_obj(
                    ["user", "addresses", "format", "public_key", "key_block"],
                    {
                        "user": _TEXT,
                        "addresses": _ADDRESSES,
                        "format": _TEXT,
                        "public_key": _B64,
                        "fingerprint": _TEXT,
                        "bits": _INT,
                        "key_block": _B64,
                        "key_block_version": _INT,
                        "created_ms": _INT,
                        "kdf": _KDF,
                    },
                ),
            ),
            "delete": _op(
                "Delete the account, its objects and sessions (fresh SRP proof required)",
                auth=True,
                body=_obj(["proof"], {"proof": _PROOF, "device": _DEVICE}),
                response=_obj(["status", "HAMK"], {"status": _TEXT, "HAMK": _B64}),
                errors=(429,),
            ),
        },
        "/api/account/password": {
            "post": _op(
                "New SRP salt, verifier and key block in one request, proven with the old password",
                auth=True,
                body=_obj(
                    ["proof", "salt", "verifier", "group", "key_block"],
                    {"proof": _PROOF, **_NEW_VERIFIER, "key_block_version": _INT, "device": _DEVICE},
                ),
                response=_SESSION,
                errors=(412, 429),
            )
        },
        "/api/account/second-factor": {
            "get": _op(
                "The account's passkeys and how many recovery codes are left; rp_id: the passkeys' name here",
                auth=True,
                response=_obj(
                    ["enabled", "passkeys", "recovery_codes"],
                    {
                        "enabled": {"type": "boolean"},
                        "passkeys": {"type": "array", "items": _PASSKEY},
                        "recovery_codes": _obj(
                            ["remaining", "total"],
                            {"remaining": _INT, "total": _INT, "created_ms": {"type": ["integer", "null"]}},
                        ),
                        "rp_id": {"type": ["string", "null"]},
                    },
                ),
            )
        },
        "/api/account/passkeys/register/start": {
            "post": _op(
                "Begin registering a passkey: a handle and PublicKeyCredentialCreationOptions (JSON)",
                auth=True,
                body=_obj([], {}),
                response=_obj(["handle", "options"], {"handle": _TEXT, "options": _OBJECT_ANY}),
                errors=(409,),
            )
        },
        "/api/account/passkeys/register/finish": {
            "post": _op(
                "Register the passkey navigator.credentials.create made; the first comes with recovery codes"
                " (shown once)",
                auth=True,
                ok=201,
                body=_obj(
                    ["handle", "credential"],
                    {"handle": _TEXT, "credential": _OBJECT_ANY, "name": {"type": "string", "maxLength": 64}},
                ),
                response=_obj(["passkey"], {"passkey": _PASSKEY, "recovery_codes": _CODES}),
                errors=(401, 409),
            )
        },
        "/api/account/passkeys/{passkey_id}": {
            "delete": _op(
                "Remove a passkey (with the last one, the recovery codes: the password alone logs in again)",
                auth=True,
                response=_obj(["status", "enabled"], {"status": _TEXT, "enabled": {"type": "boolean"}}),
                errors=(404,),
                parameters=[_path_param("passkey_id")],
            )
        },
        "/api/account/recovery-codes": {
            "post": _op(
                "New recovery codes (shown once; the old ones stop working)",
                auth=True,
                body=_obj([], {}),
                response=_obj(["recovery_codes"], {"recovery_codes": _CODES}),
                errors=(409,),
            )
        },
        "/api/store": {
            "get": _op(
                "List objects by prefix, by name or newest first, with a paging cursor; with since=N, what changed"
                " after change N instead (objects with their seq, deleted paths, the latest seq; reset: a full"
                " listing to replace what the client holds; next: the after of the following page)",
                auth=True,
                response=_obj(
                    ["objects", "next"],
                    {
                        "objects": {"type": "array", "items": _OBJECT},
                        "next": {"type": ["string", "integer", "null"]},
                        "deleted": {"type": "array", "items": _obj(["path", "seq"], {"path": _TEXT, "seq": _INT})},
                        "seq": _INT,
                        "reset": {"type": "boolean"},
                    },
                ),
                errors=(400,),
                parameters=[
                    _query("prefix", _TEXT),
                    _query("order", {"enum": ["name", "newest"]}),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 5000}),
                    _query("after", _TEXT),
                    _query("since", _INT),
                ],
            )
        },
        "/api/batch": {
            "post": _op(
                "Many objects in one streamed answer: per path asked, a JSON line (path, version, size, seq; or"
                " path and error: not_found, too_large, limit) then size bytes",
                auth=True,
                body=_obj(["paths"], {"paths": {"type": "array", "items": _TEXT, "minItems": 1, "maxItems": 500}}),
                raw_response="application/vnd.mailiverse.batch",
            )
        },
        "/api/store/{path}": {
            "get": _op(
                "An object's bytes; ETag is its version",
                auth=True,
                raw_response="application/octet-stream",
                errors=(400, 404),
                parameters=[*object_path, _header("If-None-Match")],
            ),
            "put": _op(
                "Create or replace an object outside Mail/ (If-Match / If-None-Match: *); with import=1 and"
                " If-None-Match: * also create an absent Mail/In, In_Json, Out or Out_Json object (store import)",
                auth=True,
                raw_body=True,
                response=_OBJECT,
                errors=(400, 403, 412, 413, 507),
                parameters=[
                    *object_path,
                    _query("import", {"type": "string", "enum": ["1"]}),
                    _header("If-Match"),
                    _header("If-None-Match"),
                ],
            ),
            "delete": _op(
                "Delete an object (If-Match optional)",
                auth=True,
                errors=(400, 404, 412),
                parameters=[*object_path, _header("If-Match")],
            ),
        },
        "/api/keys/{address}": {
            "get": _op(
                "The address's signed key record, its inclusion proof in the newest signed tree head, and the"
                " records of its earlier keys (docs/keys.md)",
                auth=True,
                response=_KEY_ANSWER,
                errors=(404,),
                parameters=[_path_param("address")],
            )
        },
        "/api/keys": {
            "post": _op(
                "Publish the account's first key record, or rotate (new record, old one superseded, new key block)",
                auth=True,
                ok=201,
                body=_obj(
                    ["records"],
                    {"records": {"type": "array", "items": _OBJECT_ANY}, "key_block": _B64, "key_block_version": _INT},
                ),
                response=_obj(["key_id", "sth"], {"key_id": _TEXT, "sth": _STH, "key_block_version": _INT}),
                errors=(404, 409),
            )
        },
        "/api/groups": {
            "get": _op("Your groups (their keys, members, and the group keys wrapped to you)", auth=True),
            "post": _op(
                "A new group: its key's signed record and the key wrapped to you",
                auth=True,
                ok=201,
                body=_obj(["name", "record", "wrapped"], {"name": _TEXT, "record": _OBJECT_ANY, "wrapped": _B64}),
                errors=(409,),
            ),
        },
        "/api/groups/{name}": {
            "get": _op("One of your groups", auth=True, errors=(404,), parameters=[_path_param("name")])
        },
        "/api/groups/{name}/members": {
            "post": _op(
                "Add a member: the group's current key wrapped to their key",
                auth=True,
                body=_obj(["user", "key_id", "wrapped"], {"user": _TEXT, "key_id": _TEXT, "wrapped": _B64}),
                errors=(404, 409),
                parameters=[_path_param("name")],
            )
        },
        "/api/groups/{name}/rekey": {
            "post": _op(
                "A new group key for the members who remain (how a member is removed)",
                auth=True,
                body=_obj(
                    ["records", "wrapped"],
                    {
                        "records": {"type": "array", "items": _OBJECT_ANY},
                        "wrapped": {"type": "object", "additionalProperties": _B64},
                        "removed": {"type": "array", "items": _TEXT},
                    },
                ),
                errors=(404, 409),
                parameters=[_path_param("name")],
            )
        },
        "/api/groups/{name}/store": {
            "get": _op(
                "The group's store, listed as /api/store", auth=True, errors=(404,), parameters=[_path_param("name")]
            )
        },
        "/api/groups/{name}/batch": {
            "post": _op(
                "Many objects of the group's store at once, as /api/batch",
                auth=True,
                body=_obj(["paths"], {"paths": {"type": "array", "items": _TEXT}}),
                raw_response="application/vnd.mailiverse.batch",
                errors=(404,),
                parameters=[_path_param("name")],
            )
        },
        "/api/groups/{name}/store/{path}": {
            "get": _op(
                "One object of the group's store",
                auth=True,
                raw_response="application/octet-stream",
                errors=(404,),
                parameters=[_path_param("name"), _path_param("path")],
            )
        },
        "/api/log/key": {"get": _op("The log's Ed25519 public key", auth=False)},
        "/api/log/sth": {"get": _op("The newest signed tree head", auth=False, response=_STH, errors=(404, 429))},
        "/api/log/consistency": {
            "get": _op(
                "RFC 9162 consistency proof between two tree sizes",
                auth=False,
                errors=(400, 429),
                parameters=[_query("first", _INT), _query("second", _INT)],
            )
        },
        "/api/log/entries": {
            "get": _op(
                "Leaves start..end inclusive (at most 1000)",
                auth=False,
                errors=(400, 429),
                parameters=[_query("start", _INT), _query("end", _INT)],
            )
        },
        "/api/log/heads": {
            "get": _op(
                "Every signed tree head above a size, oldest first (at most 1000)",
                auth=False,
                errors=(429,),
                parameters=[_query("after", _INT)],
            )
        },
        "/api/send": {
            "post": _op(
                "Send a message (RFC 5322 bytes in base64, or structured); keeps an encrypted Sent copy",
                auth=True,
                body={
                    "oneOf": [
                        _obj(["message"], {"message": _B64, "recipients": _ADDRESSES, "hashcash": {"type": "boolean"}}),
                        _obj(
                            ["to"],
                            {
                                "to": _ADDRESSES,
                                "cc": _ADDRESSES,
                                "bcc": _ADDRESSES,
                                "subject": _TEXT,
                                "text": _TEXT,
                                "from": _TEXT,
                                "hashcash": {"type": "boolean"},
                            },
                        ),
                    ]
                },
                response=_obj(
                    ["from", "local", "remote", "sent"],
                    {
                        "from": _TEXT,
                        "local": _ADDRESSES,
                        "remote": _ADDRESSES,
                        "queue_id": {"type": ["string", "null"]},
                        "sent": _TEXT,
                    },
                ),
                errors=(422, 429, 503, 507),
            )
        },
        "/api/aliases": {
            "get": _op(
                "The account's aliases: each address sealed to the account's key, never in clear",
                auth=True,
                response=_obj(["aliases"], {"aliases": {"type": "array", "items": _ALIAS}}),
                errors=(503,),
            ),
            "post": _op(
                "Create an alias: a shield address the server makes (kind shield, optional domain) or a chosen"
                " one (kind chosen, address); the address in clear only in this answer",
                auth=True,
                ok=201,
                body=_obj(
                    [],
                    {
                        "kind": {"enum": ["shield", "chosen"]},
                        "address": _TEXT,
                        "domain": _TEXT,
                        "label": _B64,
                        "senders": {"enum": ["any", "known", "known-domains"]},
                    },
                ),
                response=_ALIAS,
                errors=(409, 429, 503),
            ),
        },
        "/api/aliases/lookup": {
            "post": _op(
                "The caller's alias at an address it names",
                auth=True,
                body=_obj(["address"], {"address": _TEXT}),
                response=_ALIAS,
                errors=(404, 503),
            )
        },
        "/api/aliases/{alias_id}": {
            "patch": _op(
                "Disable or enable an alias, limit it to known senders (or their domains), change its label",
                auth=True,
                body=_obj(
                    [],
                    {
                        "state": {"enum": ["active", "disabled"]},
                        "senders": {"enum": ["any", "known", "known-domains"]},
                        "label": {"type": ["string", "null"]},
                    },
                ),
                response=_ALIAS,
                errors=(404, 503),
                parameters=[_path_param("alias_id")],
            ),
            "delete": _op(
                "Delete an alias for good: refused at RCPT and never issued again",
                auth=True,
                errors=(404, 503),
                parameters=[_path_param("alias_id")],
            ),
        },
        "/api/screener": {
            "get": _op(
                "The screener for first-time senders: on or off, and how many senders are approved and blocked",
                auth=True,
                response=_SCREENER,
            ),
            "put": _op(
                "Turn the screener on or off (not for accounts original Mailiverse clients read)",
                auth=True,
                body=_obj(["enabled"], {"enabled": {"type": "boolean"}}),
                response=_SCREENER,
                errors=(409, 503),
            ),
        },
        "/api/screener/senders": {
            "post": _op(
                "Approve or block a sender (kept as a keyed hash), or forget it (verdict null)",
                auth=True,
                body=_obj(
                    ["address", "verdict"],
                    {"address": _TEXT, "verdict": {"enum": ["approved", "blocked", None]}},
                ),
                response=_obj(["address", "verdict"], {"address": _TEXT, "verdict": {"type": ["string", "null"]}}),
                errors=(503,),
            )
        },
        "/api/move": {
            "post": _op(
                "Move a message's objects between Mail/In and Mail/Spam (same key; original to original, twin to"
                " twin), all in one transaction",
                auth=True,
                body=_obj(
                    ["moves"],
                    {
                        "moves": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": 200,
                            "items": _obj(["from", "to"], {"from": _TEXT, "to": _TEXT}),
                        }
                    },
                ),
                response=_obj(["moved"], {"moved": _INT}),
                errors=(404, 409),
            )
        },
        "/api/learn/{kind}": {
            "post": _op(
                "Hand a message the user marked (decrypted, message/rfc822) to the spam filter to learn as spam or"
                " ham; nothing is kept",
                auth=True,
                raw_body=True,
                raw_body_type="message/rfc822",
                response=_obj(["learned"], {"learned": {"type": "boolean"}, "reason": _TEXT}),
                errors=(404, 413, 415, 502, 503),
                parameters=[_path_param("kind")],
            )
        },
    }
    paths["/api/store/{path}"]["post"] = _op(
        "Store an object brought from another appliance (a move, docs/moving.md): any path, Mail/ too; only where"
        " none is (the same bytes answer 200 unchanged)",
        auth=True,
        ok=201,
        raw_body=True,
        response=_OBJECT,
        errors=(400, 409, 413, 507),
        parameters=[*object_path, _query("modified_ms", _INT)],
    )
    paths.update(_moving_paths())
    paths.update(_e2e_paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mailiverse appliance API",
            "version": version,
            "description": "See docs/api.md for the client-side crypto (PBKDF2, SRP-6a, key block).",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "__Host-mv-session"},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
            },
            "responses": {
                "Error": {
                    "description": "an error with a stable code",
                    "content": {"application/json": {"schema": _ERROR}},
                }
            },
            "schemas": {"Error": _ERROR, "Object": _OBJECT, "Proof": _PROOF},
        },
    }


__all__ = ["openapi_document"]
