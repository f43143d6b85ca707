"""The key directory and its transparency log over HTTP (docs/keys.md):

- ``GET /api/keys/{address}`` (logged in): the address's current signed key record, its inclusion proof in the
  newest signed tree head, and the history of its earlier keys; ``/.well-known/mailiverse/keys/{address}`` is
  the same answer for other appliances, without a session, rate-limited per client, and one identical
  ``404`` for every address that has no key here, so the directory cannot be told apart from a wall.
- ``POST /api/keys`` (logged in): publish the account's first record, or rotate (the new key's record, the old
  one superseded, the new key block).
- ``GET /api/log/sth | key | consistency | entries | heads``: the log itself, for clients and auditors.
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives import serialization

from mailiverse.accounts.directory import Lookup, parse_records, proven_json
from mailiverse.auth.ratelimit import Budget, Decision, IRateLimiter
from mailiverse.keylog.records import b64, fingerprint
from mailiverse.store.keylog import KeyLogError
from mailiverse.web.body import ACCOUNT_JSON_BYTES, read_json
from mailiverse.web.errors import ApiError, json_response
from mailiverse.web.routing import router
from mailiverse.web.session import RouteBase
from mailiverse.web.validation import base64_bytes, client_ip, optional_int

#: Lookups one client may make without a session: a burst of 30, then one every two seconds.
PUBLIC_LOOKUPS = Budget(attempts=30, period=60.0)
#: Log reads one client may make without a session (audits page through the entries).
PUBLIC_LOG_READS = Budget(attempts=600, period=60.0)
_MAX_ADDRESS = 320


def _lookup_json(address: str, found: Lookup) -> dict[str, Any]:
    current = found.current
    answer = proven_json(current)
    record = answer["record"]
    der = base64.b64decode(record["public_key"])
    answer.update(
        {
            "address": address.lower(),
            "sth": current.sth.to_json(),
            "key_id": record["key_id"],
            "public_key": record["public_key"],
            "fingerprint": fingerprint(der),
            "bits": record["bits"],
            "format": record["format"],
            "history": [proven_json(entry) for entry in found.history],
            "policy": None,
            "moved": None,
        }
    )
    if found.policy is not None:
        proven, policy = found.policy
        answer["policy"] = {**proven_json(proven), "officers": policy.officers}
    if found.moved is not None:
        # The address moved to another appliance (docs/moving.md): its signed moved record, proven in the log.
        moved = proven_json(found.moved)
        answer["moved"] = {**moved, "to": moved["record"].get("to")}
    return answer


class KeyRoutes(RouteBase):
    """The key directory of this appliance's users and its transparency log."""

    _public_lookups: IRateLimiter | None = None
    _public_reads: IRateLimiter | None = None

    async def _limit(self, request: Any, which: str) -> None:
        if which == "lookup":
            if self._public_lookups is None:
                self._public_lookups = self.rate_limits.limiter("public-key-lookups", PUBLIC_LOOKUPS)
            limiter = self._public_lookups
        else:
            if self._public_reads is None:
                self._public_reads = self.rate_limits.limiter("public-log-reads", PUBLIC_LOG_READS)
            limiter = self._public_reads
        decision: Decision = await limiter.spend(client_ip(request))
        if not decision.allowed:
            raise ApiError("rate_limited", "too many requests; try again later", 429, decision.retry_after_seconds)

    async def _lookup(self, request: Any, address: str) -> bytes:
        if len(address) > _MAX_ADDRESS or "@" not in address:
            raise ApiError("not_found", "no key for that address", 404)
        found = await self.key_directory.lookup(address)
        if found is None:
            raise ApiError("not_found", "no key for that address", 404)
        return json_response(request, _lookup_json(address, found))

    @router.route("/api/keys/<address>", methods=["GET"])
    async def public_key(self, request: Any, address: str) -> bytes:
        await self.user_of(request)
        return await self._lookup(request, address)

    @router.route("/.well-known/mailiverse/keys/<address>", methods=["GET"])
    async def well_known_key(self, request: Any, address: str) -> bytes:
        await self._limit(request, "lookup")
        return await self._lookup(request, address)

    @router.route("/.well-known/mailiverse", methods=["GET"])
    async def discovery(self, request: Any) -> bytes:
        """This appliance's mail domains, where its key directory is, and its log key (docs/keys.md, Discovery)."""
        await self._limit(request, "read")
        base = f"https://{self.hostname}"
        raw = self.key_directory.log.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return json_response(
            request,
            {
                "version": 1,
                "domains": list(self.domains),
                "directory": f"{base}/.well-known/mailiverse/keys/",
                "log": {
                    "algorithm": "Ed25519",
                    "public_key": b64(raw),
                    "sth": f"{base}/api/log/sth",
                    "consistency": f"{base}/api/log/consistency",
                    "entries": f"{base}/api/log/entries",
                },
            },
        )

    @router.route("/api/keys", methods=["POST"])
    async def publish(self, request: Any) -> bytes:
        _record, user = await self.user_of(request)
        body = read_json(request, ACCOUNT_JSON_BYTES)
        records = parse_records(body.get("records"))
        addresses = self.addresses(user)
        if body.get("key_block") is None:
            head = await self.key_directory.publish_first(user, addresses, records)
            key_block_version = user.key_block_version
        else:
            key_block = base64_bytes(body, "key_block", 96 * 1024)
            user, head = await self.key_directory.rotate(
                user, addresses, records, key_block, optional_int(body, "key_block_version")
            )
            key_block_version = user.key_block_version
        current = next(r for r in records if r.status == "current")
        return json_response(
            request,
            {"key_id": current.key_id, "sth": head.to_json(), "key_block_version": key_block_version},
            201,
        )

    # -- the log ------------------------------------------------------------------------------------

    @router.route("/api/log/key", methods=["GET"])
    async def log_key(self, request: Any) -> bytes:
        raw = self.key_directory.log.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return json_response(request, {"algorithm": "Ed25519", "public_key": b64(raw), "key_id": fingerprint(raw)})

    @router.route("/api/log/sth", methods=["GET"])
    async def log_sth(self, request: Any) -> bytes:
        await self._limit(request, "read")
        head = await self.database.run(self.key_directory.log.latest_head_txn)
        if head is None:
            raise ApiError("empty_log", "the log has no entries yet", 404)
        return json_response(request, head.to_json())

    @router.route("/api/log/consistency", methods=["GET"])
    async def log_consistency(self, request: Any) -> bytes:
        await self._limit(request, "read")
        first, second = _query_int(request, "first"), _query_int(request, "second")
        try:
            proof, head = await self.database.run(self.key_directory.log.consistency_txn, first, second)
        except KeyLogError as error:
            raise ApiError("bad_range", str(error), 400) from None
        return json_response(
            request,
            {"first": first, "second": second, "consistency": [b64(node) for node in proof], "sth": head.to_json()},
        )

    @router.route("/api/log/entries", methods=["GET"])
    async def log_entries(self, request: Any) -> bytes:
        await self._limit(request, "read")
        start, end = _query_int(request, "start"), _query_int(request, "end")
        try:
            entries = await self.database.run(self.key_directory.log.entries_txn, start, end)
        except KeyLogError as error:
            raise ApiError("bad_range", str(error), 400) from None
        return json_response(
            request, {"entries": [{"leaf_index": index, "leaf": b64(leaf)} for index, leaf in entries]}
        )

    @router.route("/api/log/heads", methods=["GET"])
    async def log_heads(self, request: Any) -> bytes:
        await self._limit(request, "read")
        after = _query_int(request, "after", 0)
        heads = await self.database.run(self.key_directory.log.heads_txn, after, 1000)
        return json_response(request, {"heads": [head.to_json() for head in heads]})


def _query_int(request: Any, name: str, default: int | None = None) -> int:
    values = request.args.get(name.encode("ascii"))
    if not values:
        if default is not None:
            return default
        raise ApiError("invalid_request", f"the query needs {name}", 400)
    raw = values[0]
    if not raw.isdigit() or len(raw) > 19:
        raise ApiError("invalid_request", f"{name} must be a non-negative integer", 400)
    return int(raw)


__all__ = ["KeyRoutes"]
