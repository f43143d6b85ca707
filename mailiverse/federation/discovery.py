"""Which domains are served by a mailiverse appliance, and that appliance's key directory (docs/e2e.md §3).

A domain announces its appliance in DNS (``_mailiverse.<domain> TXT "v=mailiverse1; directory=https://<host>/
.well-known/mailiverse; log=ed25519:<base64>"``, printed by ``mailiverse-admin setup``), else at
``https://<domain>/.well-known/mailiverse``. The discovery document names the domains it serves, the key
directory and the log's key and endpoints. The appliance looks this up for its logged-in clients (a browser
cannot use ``--trust-ca`` or the appliance's resolver) and hands them the other appliance's answers verbatim:
the clients check every signature and proof themselves, pinning each domain's log key the first time.

Everything fetched is hostile: the documents are read strictly, every URL they name must be ``https`` on the
default port of a named host (no address literals, so an announcement cannot aim the appliance at its own
services), and sizes and times are bounded (``webfetch.WebFetch``).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from mailiverse.dns import DnsTemporaryError, IDnsResolver, InvalidDnsQuery
from mailiverse.logs import Logger
from mailiverse.webfetch import FetchError, WebFetch

log = Logger()

#: The largest discovery document and key answer read (a key's history makes answers grow).
MAX_DISCOVERY_BYTES = 64 * 1024
MAX_ANSWER_BYTES = 1024 * 1024
#: How long an announcement (or the lack of one) is believed.
POSITIVE_TTL_S = 300.0
NEGATIVE_TTL_S = 60.0
#: Domains remembered at once.
MAX_CACHED = 1024
WELL_KNOWN = "/.well-known/mailiverse"


class NoAppliance(Exception):
    """The domain announces no mailiverse appliance: mail to it is ordinary mail."""


class RemoteUnavailable(Exception):
    """The domain announces an appliance that cannot be reached or answers nonsense; the words are safe to show."""


class RemoteBadRange(Exception):
    """The other appliance's log has no consistency proof between the sizes asked."""


class RemoteNotFound(Exception):
    """The other appliance has no key for the address."""


@dataclass(frozen=True)
class Announcement:
    """A domain's appliance: how it was found, where its key directory and log are, and the log's key."""

    domain: str
    via: str
    directory: str
    consistency: str
    log_key: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "via": self.via,
            "directory": self.directory,
            "log_key": base64.b64encode(self.log_key).decode("ascii"),
        }


def parse_txt(value: bytes) -> tuple[str, bytes] | None:
    """(discovery URL, raw log key) of a ``v=mailiverse1`` TXT record; None for another record."""
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        return None
    tags: dict[str, str] = {}
    for part in text.split(";"):
        name, equals, tag_value = part.strip().partition("=")
        if equals:
            tags[name.strip().lower()] = tag_value.strip()
    if tags.get("v") != "mailiverse1":
        return None
    directory, key = tags.get("directory", ""), tags.get("log", "")
    if not key.startswith("ed25519:"):
        raise RemoteUnavailable("the domain's mailiverse record names no ed25519 log key")
    return _https(directory), _key(key[len("ed25519:") :])


def _key(value: object) -> bytes:
    try:
        raw = base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise RemoteUnavailable("the announced log key is not base64") from None
    if len(raw) != 32:
        raise RemoteUnavailable("the announced log key is not an Ed25519 key")
    return raw


def _https(url: object) -> str:
    """``url`` if it is https on the default port of a named host, else RemoteUnavailable."""
    if not isinstance(url, str) or len(url) > 512:
        raise RemoteUnavailable("the announcement names no usable https address")
    parts = urlsplit(url)
    host = parts.hostname or ""
    if (
        parts.scheme != "https"
        or parts.port not in (None, 443)
        or parts.username is not None
        or parts.query
        or parts.fragment
        or not host
        or host.replace(".", "").isdigit()
        or ":" in host
    ):
        raise RemoteUnavailable("the announcement names an address other than https://<host name>/...")
    return url


def _same_host(url: str, base: str) -> str:
    if urlsplit(_https(url)).hostname != urlsplit(base).hostname:
        raise RemoteUnavailable("the discovery document points at another host")
    return url


class Discovery:
    """Finds other domains' appliances for this appliance's clients, and fetches their directory's answers."""

    def __init__(
        self,
        resolver: IDnsResolver,
        fetch: WebFetch,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolver = resolver
        self._fetch = fetch
        self._clock = clock
        self._cache: dict[str, tuple[float, Announcement | None]] = {}

    async def announcement(self, domain: str) -> Announcement:
        """The domain's appliance (NoAppliance, RemoteUnavailable); remembered for a few minutes."""
        domain = domain.lower().rstrip(".")
        now = self._clock()
        cached = self._cache.get(domain)
        if cached is not None and cached[0] > now:
            if cached[1] is None:
                raise NoAppliance(domain)
            return cached[1]
        try:
            found = await self._discover(domain)
        except NoAppliance:
            self._remember(domain, now + NEGATIVE_TTL_S, None)
            raise
        self._remember(domain, now + POSITIVE_TTL_S, found)
        return found

    def _remember(self, domain: str, until: float, value: Announcement | None) -> None:
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        self._cache[domain] = (until, value)

    async def _discover(self, domain: str) -> Announcement:
        announced = await self._txt(domain)
        if announced is None:
            # No record: the domain's own web server may still answer the well-known address.
            try:
                document = await self._json(f"https://{domain}{WELL_KNOWN}", MAX_DISCOVERY_BYTES)
            except (RemoteUnavailable, RemoteNotFound):
                raise NoAppliance(domain) from None
            return self._read(domain, "https", f"https://{domain}{WELL_KNOWN}", document, None)
        url, log_key = announced
        document = await self._json(url, MAX_DISCOVERY_BYTES)
        return self._read(domain, "dns", url, document, log_key)

    async def _txt(self, domain: str) -> tuple[str, bytes] | None:
        try:
            answer = await self._resolver.lookup(f"_mailiverse.{domain}", "TXT")
        except InvalidDnsQuery:
            raise NoAppliance(domain) from None
        except DnsTemporaryError as error:
            raise RemoteUnavailable(f"DNS lookup of {domain}'s announcement failed: {error}") from None
        found = [parsed for record in answer.records if isinstance(record, bytes) and (parsed := parse_txt(record))]
        if len(found) > 1:
            raise RemoteUnavailable(f"{domain} has more than one mailiverse record")
        return found[0] if found else None

    def _read(self, domain: str, via: str, url: str, document: object, log_key: bytes | None) -> Announcement:
        if not isinstance(document, dict) or document.get("version") != 1:
            raise RemoteUnavailable("the discovery document is not version 1")
        domains = document.get("domains")
        if not isinstance(domains, list) or domain not in [str(d).lower() for d in domains[:1000]]:
            raise RemoteUnavailable(f"the appliance announced for {domain} does not serve it")
        log_member = document.get("log")
        if not isinstance(log_member, dict) or log_member.get("algorithm") != "Ed25519":
            raise RemoteUnavailable("the discovery document names no Ed25519 log")
        key = _key(log_member.get("public_key"))
        if log_key is not None and key != log_key:
            raise RemoteUnavailable(f"{domain}'s DNS record and its appliance name different log keys")
        directory = _same_host(str(document.get("directory", "")), url)
        if not directory.endswith("/"):
            directory += "/"
        consistency = _same_host(str(log_member.get("consistency", "")), url)
        return Announcement(domain, via, directory, consistency, key)

    async def _json(self, url: str, max_bytes: int) -> Any:
        try:
            fetched = await self._fetch.get(url, max_bytes=max_bytes)
        except FetchError as error:
            raise RemoteUnavailable(str(error)) from None
        if fetched.status == 404:
            raise RemoteNotFound(url)
        if fetched.status != 200:
            raise RemoteUnavailable(f"{urlsplit(url).hostname} answered HTTP {fetched.status}")
        try:
            return json.loads(fetched.body)
        except (UnicodeDecodeError, ValueError):
            raise RemoteUnavailable(f"{urlsplit(url).hostname} answered something other than JSON") from None

    async def key_answer(self, address: str) -> tuple[Announcement, dict[str, Any]]:
        """The other appliance's key answer for ``address`` (a JSON object, unchecked: the client checks it)."""
        announcement = await self.announcement(address.rpartition("@")[2])
        answer = await self._json(announcement.directory + quote(address.lower(), safe="@"), MAX_ANSWER_BYTES)
        if not isinstance(answer, dict):
            raise RemoteUnavailable("the key answer is not a JSON object")
        return announcement, answer

    async def consistency(self, domain: str, first: int, second: int) -> dict[str, Any]:
        """The other appliance's consistency proof between two of its log's sizes (unchecked)."""
        announcement = await self.announcement(domain)
        url = announcement.consistency + "?" + urlencode({"first": first, "second": second})
        try:
            fetched = await self._fetch.get(url, max_bytes=MAX_DISCOVERY_BYTES)
        except FetchError as error:
            raise RemoteUnavailable(str(error)) from None
        if fetched.status == 400:
            # The log has no such pair of sizes: it was rewritten (the client's alarm), or the client asked nonsense.
            raise RemoteBadRange(f"{domain}'s log has no consistency proof from {first} to {second} entries")
        if fetched.status != 200:
            raise RemoteUnavailable(f"{urlsplit(url).hostname} answered HTTP {fetched.status}")
        try:
            answer = json.loads(fetched.body)
        except (UnicodeDecodeError, ValueError):
            raise RemoteUnavailable("the consistency answer is not JSON") from None
        if not isinstance(answer, dict):
            raise RemoteUnavailable("the consistency answer is not a JSON object")
        return answer


__all__ = [
    "Announcement",
    "Discovery",
    "NoAppliance",
    "RemoteBadRange",
    "RemoteNotFound",
    "RemoteUnavailable",
    "parse_txt",
]
