"""The bridge's mailboxes over the appliance's store (``IMailState``, model.py): listings, UIDs, flags, trash,
moves, EXPUNGE and APPEND, every shared fact kept in encrypted ``Cache/`` documents that the web client and other
bridges read and write too.

The documents (each the cache-key rule over zlib JSON, written with optimistic versions, as the web client's
``CacheDoc``):

- ``Cache/W_state`` (the web client's): ``read`` (``\\Seen``), ``trash`` (what Trash shows) and ``ham``;
- ``Cache/W_flags``: ``{"v": 1, "flags": {key: [flag, ...]}}``, every flag but ``\\Seen``;
- ``Cache/W_uids``: ``{"v": 1, "mailboxes": {name: {"validity", "next", "uids": {key: uid}}}}``;
- ``Cache/W_sizes``: ``{"v": 1, "sizes": {key base: bytes}}``, each message's decrypted size, found once.

Every change is a function applied to the freshest copy of a document: on a version conflict the document is
read again and the function applied again, so another writer's changes are kept and ours are not lost. A UID is
only ever handed out from a mailbox's ``next``, so none is reused; a key leaves a mailbox's table only when a
listing taken after the table was read no longer shows it there.

IMAP clients compare RFC822.SIZE with the body they fetch, so a message is listed with its exact decrypted size:
the first listing that meets a message decrypts it once (the body stays in a bounded in-memory cache, which the
client's next FETCH usually hits) and ``Cache/W_sizes`` remembers the size for every later listing and device.
Nothing decrypted is ever written to disk: with a cache directory (``--cache``), bodies are also kept there, each
sealed with AES-256-GCM under a key derived from the account's private key (``DiskCache``), so a restart need not
download them again; the directory is safe to delete, and a file that does not authenticate is deleted and the
message fetched again.

Why one module of this size: the four documents are one state; every operation (flags, moves, expunge, append)
changes several of them together and in a set order, and keeping that order in one place is the point.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac
import json
import os
import secrets
import stat
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mailiverse.client.api import PRIVATE_KEY_NAME, RETIRED_KEYS_NAME, Client, MessageTampered
from mailiverse.client.bridge.model import (
    DRAFTS,
    INBOX,
    MAILBOXES,
    SCREENER,
    SENT,
    SPAM,
    SYSTEM_FLAGS,
    TRASH,
    BridgeError,
    MailboxView,
    MessageRef,
)
from mailiverse.client.e2e import new_key_base, twin_bytes
from mailiverse.client.errors import ApiError
from mailiverse.client.transport import Response
from mailiverse.compat.cache_keys import decrypt_cache_file, encrypt_cache_file
from mailiverse.crypto import lenient
from mailiverse.crypto.errors import CryptoError
from mailiverse.crypto.formats import seal_mail_object
from mailiverse.crypto.keys import private_key_der
from mailiverse.logs import Logger
from mailiverse.mime.limits import Limits
from mailiverse.mime.twin import convert_document
from mailiverse.privatefile import PRIVATE_DIR_MODE, write_private

#: Each stored mailbox's folder (its twins live in ``<folder>_Json``); Trash is a set, not a folder.
FOLDERS = {INBOX: "Mail/In", SENT: "Mail/Sent", DRAFTS: "Mail/Drafts", SPAM: "Mail/Spam", SCREENER: "Mail/Screener"}
TWIN_PREFIXES = {name: folder + "_Json/" for name, folder in FOLDERS.items()}
_MAILBOX_OF_PREFIX = {prefix: name for name, prefix in TWIN_PREFIXES.items()}
#: Mailboxes ``POST /api/move`` moves between, and those APPEND may store in.
MOVABLE = frozenset({INBOX, SPAM, SCREENER})
APPENDABLE = frozenset({INBOX, SENT, DRAFTS})
STATE_DOC, FLAGS_DOC, UIDS_DOC, SIZES_DOC = "W_state", "W_flags", "W_uids", "W_sizes"
#: At most this many flags per message, each at most this long.
MAX_FLAGS = 64
MAX_FLAG_CHARS = 64
#: Decrypted messages kept in memory (least recently used go first).
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
#: What the encrypted cache directory may hold at most by default (oldest files go first).
DEFAULT_DISK_CACHE_BYTES = 1024**3
#: The HKDF info of the disk cache's keys, and the first bytes of each of its files.
DISK_CACHE_INFO = b"mailiverse-bridge-cache-v1"
_DISK_MAGIC = b"MVBC1"
_NONCE_BYTES = 12
#: The largest Cache/ document read (as the web client caps it).
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024
#: How often one change is tried again after version conflicts before giving up.
CONFLICT_RETRIES = 8
#: Sizes found while listing are saved after at least this many (and as many as are saved already).
SIZES_SAVED_EVERY = 500
#: Messages per ``POST /api/move`` (two objects each; the server takes 200 moves at once).
MOVES_PER_REQUEST = 100
MAX_UID = 2**32 - 1
_SYSTEM = {flag.lower(): flag for flag in SYSTEM_FLAGS}
_SEEN, _DELETED = "\\Seen", "\\Deleted"
_NO_FLAGS, _SEEN_ONLY = frozenset[str](), frozenset([_SEEN])
#: Twins of the user's own mail, always ``\Seen``.
_OWN_MAIL = ("Mail/Sent_Json/", "Mail/Drafts_Json/")
_ATOM_SPECIALS = frozenset('(){ %*"\\]')
#: What a message that fails its integrity check reads as: a notice, never any of its bytes.
TAMPERED_MESSAGE = (
    b"From: Mailiverse <mailiverse@invalid>\r\n"
    b"Subject: (failed integrity check: not shown)\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"\r\n"
    b"This message failed its integrity check: it was modified or corrupted after it was\r\n"
    b"sealed, so none of it is shown.\r\n"
)

Document = dict[str, Any]
log = Logger()


# -- the Cache/ documents ------------------------------------------------------------------------------


def _request(
    client: Client, method: str, path: str, *, data: bytes | None = None, headers: dict[str, str] | None = None
) -> Response:
    """One authenticated store request with our own headers (conditional GET, If-Match PUT, import, DELETE)."""
    return client._send(method, path, data=data, headers=headers)  # noqa: SLF001 - the library's request helper


def _store_url(path: str) -> str:
    return "/api/store/" + quote(path, safe="/")


def _version(tag: str | None) -> int | None:
    text = (tag or "").strip()
    text = text[2:] if text.startswith("W/") else text
    text = text.strip('"')
    return int(text) if text.isascii() and text.isdigit() else None


def key_seeds(client: Client) -> list[bytes]:
    """The cache-key seeds: the private key's DER exactly as the key block stores it, then the retired keys'."""
    environment = client.key_environment
    seeds: list[bytes] = []
    try:
        seeds.append(base64.b64decode(environment[PRIVATE_KEY_NAME], validate=True))
    except (KeyError, binascii.Error, ValueError):
        seeds.append(private_key_der(client.private_key))
    try:
        retired = json.loads(environment.get(RETIRED_KEYS_NAME, "[]"))
        seeds += [base64.b64decode(item, validate=True) for item in retired if isinstance(item, str)]
    except (ValueError, TypeError, binascii.Error):
        pass
    return seeds


def seal_document(name: str, seed: bytes, value: Document) -> bytes:
    """A document's stored bytes, as the web client writes them: real zlib of the JSON, then the cache-key rule."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return encrypt_cache_file(name, seed, zlib.compress(text, 6))


def open_document(name: str, seeds: Sequence[bytes], blob: bytes) -> Document | None:
    """A stored document's value (read leniently, as the web client inflates), or None when no key opens it."""
    for seed in seeds:
        try:
            body = decrypt_cache_file(name, seed, blob)
        except CryptoError:
            continue
        try:
            value = json.loads(lenient.inflate(body, MAX_DOCUMENT_BYTES))
        except (ValueError, RecursionError):
            return None
        return value if isinstance(value, dict) else None
    return None


class CacheDocument:
    """One ``Cache/<name>`` document: read (conditionally, by version) and changed under optimistic versions.

    ``shape`` turns whatever was stored (or nothing) into a well-formed value; an unreadable document counts as
    empty, as in the web client: every one of them can be rebuilt.
    """

    def __init__(self, client: Client, name: str, seeds: Sequence[bytes], shape: Callable[[Any], Document]) -> None:
        self._client = client
        self.name = name
        self.path = "Cache/" + name
        self._seeds = list(seeds)
        self._shape = shape
        self.value: Document = shape(None)
        self.version: int | None = None
        self.loaded = False

    def load(self) -> Document:
        """The stored value now (unchanged, and not sent again, when the version is the one held)."""
        headers = {} if self.version is None else {"If-None-Match": f'"{self.version}"'}
        try:
            response = _request(self._client, "GET", _store_url(self.path), headers=headers)
        except ApiError as error:
            if error.status != 404:
                raise
            self.value, self.version, self.loaded = self._shape(None), None, True
            return self.value
        self.loaded = True
        if response.status == 304:
            return self.value
        self.version = _version(response.headers.get("etag"))
        self.value = self._shape(open_document(self.name, self._seeds, response.body))
        return self.value

    def update(self, change: Callable[[Document], bool]) -> Document:
        """Apply ``change`` (True when it changed its argument) to a copy of the value and store it; on a version
        conflict read the document again and apply it again."""
        if not self.loaded:
            self.load()
        for _attempt in range(CONFLICT_RETRIES):
            value = copy.deepcopy(self.value)
            if not change(value):
                return self.value
            headers = {"Content-Type": "application/octet-stream"}
            if self.version is None:
                headers["If-None-Match"] = "*"
            else:
                headers["If-Match"] = f'"{self.version}"'
            data = seal_document(self.name, self._seeds[0], value)
            try:
                response = _request(self._client, "PUT", _store_url(self.path), data=data, headers=headers)
            except ApiError as error:
                if error.status != 412:
                    raise
                self.load()
                continue
            try:
                answer = json.loads(response.body)
                self.version = int(answer["version"])
            except (ValueError, KeyError, TypeError):
                self.version = _version(response.headers.get("etag"))
            self.value = value
            return value
        raise BridgeError(f"{self.path} changed too often meanwhile; try again")


def _strings(value: Any) -> list[str]:
    return list(dict.fromkeys(item for item in value if isinstance(item, str))) if isinstance(value, list) else []


def shape_state(value: Any) -> Document:
    """The web client's ``W_state``: ``read``, ``trash`` and ``ham`` lists of keys (other members kept)."""
    document = dict(value) if isinstance(value, dict) else {}
    for name in ("read", "trash", "ham"):
        document[name] = _strings(document.get(name))
    return document


def shape_flags(value: Any) -> Document:
    flags = value.get("flags") if isinstance(value, dict) else None
    table = {}
    if isinstance(flags, dict):
        table = {key: _strings(listed) for key, listed in flags.items() if isinstance(key, str) and _strings(listed)}
    return {"v": 1, "flags": table}


def _count(value: Any, low: int = 0) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and low <= value <= MAX_UID + 1 else None


def shape_uids(value: Any) -> Document:
    mailboxes = value.get("mailboxes") if isinstance(value, dict) else None
    tables: dict[str, Any] = {}
    for name, table in (mailboxes or {}).items() if isinstance(mailboxes, dict) else ():
        if not isinstance(name, str) or not isinstance(table, dict) or not isinstance(table.get("uids"), dict):
            continue
        validity, following = _count(table.get("validity"), 1), _count(table.get("next"), 1)
        if validity is None or following is None:
            continue
        uids = {key: uid for key, uid in table["uids"].items() if isinstance(key, str) and _count(uid, 1)}
        following = max([following, *(uid + 1 for uid in uids.values())])
        tables[name] = {"validity": validity, "next": following, "uids": uids}
    return {"v": 1, "mailboxes": tables}


def shape_sizes(value: Any) -> Document:
    sizes = value.get("sizes") if isinstance(value, dict) else None
    table = {}
    if isinstance(sizes, dict):
        table = {base: size for base, size in sizes.items() if isinstance(base, str) and _count(size) is not None}
    return {"v": 1, "sizes": table}


# -- names, flags and bodies ---------------------------------------------------------------------------


def mailbox_name(name: str) -> str:
    """The mailbox ``name`` means (INBOX in any case), or BridgeError."""
    if isinstance(name, str) and name.upper() == INBOX:
        return INBOX
    if name not in MAILBOXES:
        raise BridgeError("no such mailbox")
    return name


def twin_prefix(key: str) -> str:
    """The twin folder (``Mail/In_Json/``) of a message key, or BridgeError when it names no message."""
    prefix, _, base = key.rpartition("/") if isinstance(key, str) else ("", "", "")
    prefix += "/"
    if prefix not in _MAILBOX_OF_PREFIX or not base:
        raise BridgeError("no such message")
    return prefix


def home_mailbox(key: str) -> str:
    """The stored mailbox a key is in (whether or not it shows in Trash)."""
    return _MAILBOX_OF_PREFIX[twin_prefix(key)]


def original_path(key: str) -> str:
    """``Mail/In_Json/<base>`` -> ``Mail/In/<base>``."""
    prefix = twin_prefix(key)
    return prefix[: -len("_Json/")] + "/" + key[len(prefix) :]


def key_base(key: str) -> str:
    return key.rpartition("/")[2]


def key_order(key: str) -> tuple[int, int, str]:
    """Delivery order: ``<ms>_<rand>`` numerically by time, then the random part; other names last, by name."""
    base = key_base(key)
    ms, _, rand = base.partition("_")
    if ms.isascii() and ms.isdigit() and rand.isascii() and rand.isdigit():
        return int(ms), int(rand), base
    return 2**63, 0, base


def check_flags(flags: Iterable[str]) -> list[str]:
    """The flags in their canonical spelling, each once (compared without case), or BridgeError."""
    found: dict[str, str] = {}
    for flag in flags:
        if not isinstance(flag, str):
            raise BridgeError("a flag is text")
        if flag.startswith("\\"):
            canonical = _SYSTEM.get(flag.lower())
            if canonical is None:
                raise BridgeError(f"flags are {', '.join(SYSTEM_FLAGS)} or keywords")
        else:
            canonical = flag
            if not 0 < len(flag) <= MAX_FLAG_CHARS or any(
                not 0x21 <= ord(c) <= 0x7E or c in _ATOM_SPECIALS for c in flag
            ):
                raise BridgeError(f"a keyword is an IMAP atom of 1 to {MAX_FLAG_CHARS} characters")
        found.setdefault(canonical.lower(), canonical)
    if len(found) > MAX_FLAGS:
        raise BridgeError(f"at most {MAX_FLAGS} flags per message")
    return list(found.values())


def changed_flags(current: Sequence[str], given: Sequence[str], mode: str) -> list[str]:
    """``current`` after STORE ``mode`` (``set``, ``add``, ``remove``) of ``given`` (compared without case)."""
    if mode == "set":
        return list(given)
    if mode == "add":
        have = {flag.lower() for flag in current}
        return [*current, *(flag for flag in given if flag.lower() not in have)]
    dropped = {flag.lower() for flag in given}
    return [flag for flag in current if flag.lower() not in dropped]


class DiskCache:
    """Decrypted messages kept in a directory, each sealed, at most ``limit`` bytes of files (oldest go first).

    The keys come from the account's private key (its DER as the key block holds it): HKDF-SHA256 with
    :data:`DISK_CACHE_INFO` gives an AES-256-GCM key and a name key. A file's name is HMAC-SHA256(name key, message
    key), so the directory shows neither the store path nor a date; its content is ``MVBC1``, a random nonce and
    the ciphertext, with the name as associated data, so a file renamed, damaged or made under another key fails
    to open and is deleted (then the message is fetched again). Files are 0600 in a 0700 directory, written whole
    to a temporary file there and renamed: a reader never sees half a file, and the temporary holds ciphertext only.
    Everything here is a cache: the directory may be deleted at any time, and a key rotation simply misses it.
    """

    def __init__(self, directory: Path, seed: bytes, limit: int = DEFAULT_DISK_CACHE_BYTES) -> None:
        derived = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=DISK_CACHE_INFO).derive(seed)
        self._aead = AESGCM(derived[:32])
        self._name_key = derived[32:]
        self.directory = Path(directory)
        self.limit = limit
        #: What the files hold, as last counted and added to since (another process's files are counted when
        #: the directory is trimmed, which counts afresh).
        self._total = 0
        self._prepare()

    def _prepare(self) -> None:
        """Make the directory (0700, or narrowed to it), drop temporary files a stopped bridge left, and trim."""
        self.directory.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        if stat.S_IMODE(self.directory.stat().st_mode) != PRIVATE_DIR_MODE:
            os.chmod(self.directory, PRIVATE_DIR_MODE)
        for entry in self._entries(temporary=True):
            entry.unlink(missing_ok=True)
        self.trim()

    def _entries(self, *, temporary: bool = False) -> list[Path]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        if temporary:
            return [self.directory / name for name in names if name.startswith(".") and name.endswith(".tmp")]
        return [
            self.directory / name for name in names if len(name) == 64 and all(c in "0123456789abcdef" for c in name)
        ]

    def name(self, key: str) -> str:
        return hmac.new(self._name_key, key.encode("utf-8"), hashlib.sha256).hexdigest()

    def get(self, key: str) -> bytes | None:
        """The message stored under ``key``, or None (nothing there, or a file that failed to open: now deleted)."""
        name = self.name(key)
        path = self.directory / name
        try:
            with open(path, "rb") as handle:
                sealed = handle.read(self.limit + 1)
        except OSError:  # not there (or the directory was deleted): a miss
            return None
        head = len(_DISK_MAGIC) + _NONCE_BYTES
        try:
            if len(sealed) > self.limit or not sealed.startswith(_DISK_MAGIC):
                raise InvalidTag()
            body = self._aead.decrypt(sealed[len(_DISK_MAGIC) : head], sealed[head:], self._associated(name))
        except InvalidTag:
            path.unlink(missing_ok=True)
            return None
        try:
            os.utime(path)  # recently used: the last to go when the directory is trimmed
        except OSError:
            pass
        return body

    def put(self, key: str, body: bytes) -> None:
        """Store ``body`` under ``key`` (a body larger than the whole cache is not stored), then trim."""
        name = self.name(key)
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = _DISK_MAGIC + nonce + self._aead.encrypt(nonce, body, self._associated(name))
        if len(sealed) > self.limit:
            return
        try:
            self.directory.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
            write_private(self.directory / name, sealed)
        except OSError as error:  # a full or read-only disk: the message is served from memory all the same
            log.warn("bridge: the cache directory is not writable ({error_type})", error_type=type(error).__name__)
            return
        self._total += len(sealed)
        if self._total > self.limit:
            self.trim()

    def pop(self, key: str) -> None:
        try:
            (self.directory / self.name(key)).unlink(missing_ok=True)
        except OSError:
            pass

    def trim(self) -> None:
        """Delete the least recently used files until the rest fit in ``limit``."""
        found = []
        for path in self._entries():
            try:
                info = path.stat()
            except FileNotFoundError:
                continue
            found.append((info.st_mtime_ns, info.st_size, path))
        total = sum(size for _when, size, _path in found)
        for _when, size, path in sorted(found):
            if total <= self.limit:
                break
            try:
                path.unlink(missing_ok=True)
            except OSError:
                continue
            total -= size
        self._total = total

    @staticmethod
    def _associated(name: str) -> bytes:
        return DISK_CACHE_INFO + b"\0" + name.encode("ascii")


class Bodies:
    """Decrypted messages by key, least recently used dropped first, at most ``limit`` bytes in all; with a
    ``disk`` cache, each is also kept there (sealed) and found there after a restart."""

    def __init__(self, limit: int, disk: DiskCache | None = None) -> None:
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._limit = limit
        self._disk = disk
        self.size = 0

    def get(self, key: str) -> bytes | None:
        body = self._items.get(key)
        if body is not None:
            self._items.move_to_end(key)
        elif self._disk is not None:
            body = self._disk.get(key)
            if body is not None:
                self._keep(key, body)
        return body

    def put(self, key: str, body: bytes) -> None:
        self._keep(key, body)
        if self._disk is not None:
            self._disk.put(key, body)

    def _keep(self, key: str, body: bytes) -> None:
        self._drop(key)
        if len(body) > self._limit:
            return
        self._items[key] = body
        self.size += len(body)
        while self.size > self._limit:
            _, dropped = self._items.popitem(last=False)
            self.size -= len(dropped)

    def _drop(self, key: str) -> bytes | None:
        body = self._items.pop(key, None)
        if body is not None:
            self.size -= len(body)
        return body

    def pop(self, key: str) -> bytes | None:
        """Forget ``key`` here and on disk (the message was deleted); its body if it was in memory."""
        body = self._drop(key)
        if self._disk is not None:
            self._disk.pop(key)
        return body

    def rename(self, old: str, new: str) -> None:
        body = self.get(old)
        self.pop(old)
        if body is not None:
            self.put(new, body)


class _Gone(Exception):
    """The message's original is no longer stored."""


# -- the state -----------------------------------------------------------------------------------------


class MailState:
    """``IMailState`` over a logged-in ``Client``: blocking, one call at a time (a lock makes sure of it)."""

    def __init__(
        self,
        client: Client,
        *,
        clock: Callable[[], float] = time.time,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        cache_dir: Path | None = None,
        cache_dir_bytes: int = DEFAULT_DISK_CACHE_BYTES,
    ) -> None:
        self._client = client
        self._clock = clock
        self._lock = threading.RLock()
        seeds = key_seeds(client)
        self._state = CacheDocument(client, STATE_DOC, seeds, shape_state)
        self._flags = CacheDocument(client, FLAGS_DOC, seeds, shape_flags)
        self._uids = CacheDocument(client, UIDS_DOC, seeds, shape_uids)
        self._sizes = CacheDocument(client, SIZES_DOC, seeds, shape_sizes)
        #: Twin prefix -> {key: internal time in ms} as last listed.
        self._listed: dict[str, dict[str, int]] = {}
        #: Sizes found here and not saved yet (by key base), and keys read as the tampered notice.
        self._unsaved_sizes: dict[str, int] = {}
        self._tampered: set[str] = set()
        #: Keys listed whose original is missing (a half-deleted message): not shown.
        self._gone: set[str] = set()
        self._refreshed: set[str] = set()
        self._views: dict[str, MailboxView] = {}
        disk = None if cache_dir is None else DiskCache(cache_dir, seeds[0], cache_dir_bytes)
        self._bodies = Bodies(cache_bytes, disk)

    # -- IMailState ------------------------------------------------------------------------------------

    def mailboxes(self) -> Sequence[str]:
        return list(MAILBOXES)

    def view(self, mailbox: str, *, refresh: bool = False) -> MailboxView:
        name = mailbox_name(mailbox)
        with self._lock:
            if refresh or name not in self._refreshed:
                self._refresh(name)
            return self._view(name)

    def message(self, key: str) -> bytes:
        twin_prefix(key)
        with self._lock:
            try:
                return self._body(key)
            except _Gone:
                raise BridgeError("the message no longer exists") from None

    def set_flags(self, mailbox: str, uids: Sequence[int], flags: Sequence[str], mode: str) -> MailboxView:
        name = mailbox_name(mailbox)
        if mode not in ("set", "add", "remove"):
            raise BridgeError("flags are set, added or removed")
        given = check_flags(flags)
        with self._lock:
            keys = [ref.key for ref in self._selected(name, uids)]
            self._store_flags(keys, given, mode)
            return self._view(name)

    def expunge(self, mailbox: str, uids: Sequence[int] | None = None) -> list[int]:
        name = mailbox_name(mailbox)
        with self._lock:
            # Listed afresh: a message moved away (or trashed elsewhere) meanwhile is not in this mailbox now.
            self._refresh(name)
            wanted = None if uids is None else set(uids)
            chosen = [
                ref
                for ref in self._view(name).messages
                if _DELETED in ref.flags and (wanted is None or ref.uid in wanted)
            ]
            removed: list[MessageRef] = []
            try:
                for ref in chosen:
                    self._delete_objects(ref.key)
                    removed.append(ref)
            finally:
                if removed:
                    self._forget([ref.key for ref in removed])
            return [ref.uid for ref in removed]

    def move(self, mailbox: str, uids: Sequence[int], target: str) -> list[tuple[int, int]]:
        source, goal = mailbox_name(mailbox), mailbox_name(target)
        with self._lock:
            refs = self._selected(source, uids)
            # Every message is checked before anything moves.
            renames = {ref.key: self._store_moves(source, goal, ref.key) for ref in refs}
            if not refs:
                return []
            done: list[tuple[MessageRef, str]] = [(ref, ref.key) for ref in refs if not renames[ref.key]]
            try:
                renamed = [ref for ref in refs if renames[ref.key]]
                for start in range(0, len(renamed), MOVES_PER_REQUEST):
                    batch = [
                        (ref, TWIN_PREFIXES[goal] + key_base(ref.key))
                        for ref in renamed[start : start + MOVES_PER_REQUEST]
                    ]
                    self._server_move([(ref.key, new) for ref, new in batch])
                    done += batch
            finally:
                if done:
                    self._record_moves(source, goal, done)
            table = self._uids.value["mailboxes"][goal]["uids"]
            return sorted((ref.uid, table[new]) for ref, new in done)

    def append(self, mailbox: str, message: bytes, flags: Sequence[str], internal_ms: int | None) -> int:
        name = mailbox_name(mailbox)
        if name not in APPENDABLE:
            raise BridgeError("mail can be stored only in INBOX, Sent and Drafts")
        given = check_flags(flags)
        if not message:
            raise BridgeError("the message is empty")
        if internal_ms is not None and not 0 <= internal_ms < 10**15:
            raise BridgeError("the message's date is out of range")
        raw = bytes(message)
        with self._lock:
            key = self._import(name, raw, internal_ms)
            self._bodies.put(key, raw)
            self._unsaved_sizes[key_base(key)] = len(raw)
            self._save_sizes()
            listed = self._listed.get(TWIN_PREFIXES[name])
            if listed is not None:
                listed[key] = self._internal_ms(key, int(self._clock() * 1000))
            self._assign({name: [key]})
            if given:
                self._store_flags([key], given, "set")
            self._views.clear()
            return int(self._uids.value["mailboxes"][name]["uids"][key])

    # -- listing -------------------------------------------------------------------------------------

    def _refresh(self, name: str) -> None:
        """List ``name`` again: documents read afresh first, then the store; new keys get UIDs, keys gone from
        it (as this listing, newer than the table read, shows) leave its table, and unknown sizes are found."""
        self._uids.load()
        table = self._uids.value["mailboxes"].get(name)
        before = set(table["uids"]) if table else set()
        self._state.load()
        self._flags.load()
        self._sizes.load()
        for prefix in TWIN_PREFIXES.values() if name == TRASH else (TWIN_PREFIXES[name],):
            self._listed[prefix] = self._list(prefix)
        members = list(self._members(name))
        self._find_sizes(members)
        shown = [key for key in members if key not in self._gone]
        self._assign({name: shown}, {name: before - set(shown)}, listed=True)
        self._save_sizes()
        self._refreshed.add(name)
        self._views.clear()

    def _list(self, prefix: str) -> dict[str, int]:
        found: dict[str, int] = {}
        for entry in self._client.iter_objects(prefix):
            rest = entry.path[len(prefix) :]
            if rest and "/" not in rest and not rest.endswith(".lock"):
                found[entry.path] = self._internal_ms(entry.path, entry.created_ms)
        return found

    @staticmethod
    def _internal_ms(key: str, created_ms: int) -> int:
        ms, _, rand = key_base(key).partition("_")
        return int(ms) if ms.isascii() and ms.isdigit() and rand and len(ms) < 16 else created_ms

    def _members(self, name: str) -> dict[str, int]:
        """The keys ``name`` shows as last listed, with their internal times."""
        trash = set(self._state.value["trash"])
        if name == TRASH:
            listed = [self._listed.get(prefix, {}) for prefix in TWIN_PREFIXES.values()]
            return {key: when for table in listed for key, when in table.items() if key in trash}
        return {key: when for key, when in self._listed.get(TWIN_PREFIXES[name], {}).items() if key not in trash}

    def _size_of(self, key: str) -> int | None:
        base = key_base(key)
        size = self._unsaved_sizes.get(base)
        if size is None:
            size = self._sizes.value["sizes"].get(base)
        if size is None and key in self._tampered:
            size = len(TAMPERED_MESSAGE)
        return size

    def _find_sizes(self, keys: Iterable[str]) -> None:
        for key in keys:
            if self._size_of(key) is not None:
                self._gone.discard(key)
                continue
            try:
                self._body(key)
            except _Gone:
                self._gone.add(key)
                continue
            self._gone.discard(key)
            # Saved as they grow geometrically: the document is rewritten whole each time, so a first listing
            # of n messages uploads O(n) in all, and an interrupted one keeps most of its work.
            if len(self._unsaved_sizes) >= max(SIZES_SAVED_EVERY, len(self._sizes.value["sizes"])):
                self._save_sizes()

    def _save_sizes(self) -> None:
        if not self._unsaved_sizes:
            return
        found = dict(self._unsaved_sizes)

        def change(document: Document) -> bool:
            sizes = document["sizes"]
            fresh = {base: size for base, size in found.items() if sizes.get(base) != size}
            sizes.update(fresh)
            return bool(fresh)

        self._sizes.update(change)
        for base in found:
            self._unsaved_sizes.pop(base, None)

    def _view(self, name: str) -> MailboxView:
        cached = self._views.get(name)
        if cached is not None:
            return cached
        table = self._uids.value["mailboxes"].get(name) or {"validity": 1, "next": 1, "uids": {}}
        uids, stored = table["uids"], self._flags.value["flags"]
        read = set(self._state.value["read"])
        unsaved, saved, gone = self._unsaved_sizes, self._sizes.value["sizes"], self._gone
        refs = []
        for key, when in self._members(name).items():
            uid = uids.get(key)
            if uid is None or key in gone:
                continue
            base = key.rpartition("/")[2]
            size = unsaved.get(base, saved.get(base))
            if size is None:
                if key not in self._tampered:
                    continue
                size = len(TAMPERED_MESSAGE)
            kept = stored.get(key)
            # The user's own mail (Sent, Drafts) is read, as the web client counts it: never unread.
            seen = key in read or key.startswith(_OWN_MAIL)
            if kept:
                flags = frozenset([*kept, _SEEN] if seen else kept)
            else:  # most messages: one shared set, not one per message
                flags = _SEEN_ONLY if seen else _NO_FLAGS
            refs.append(MessageRef(uid, key, flags, size, when))
        refs.sort(key=lambda ref: ref.uid)
        view = MailboxView(name, table["validity"], table["next"], tuple(refs))
        self._views[name] = view
        return view

    def _selected(self, name: str, uids: Sequence[int]) -> list[MessageRef]:
        """The messages of ``name`` (as last listed) with these UIDs, in UID order; unknown UIDs are skipped."""
        if name not in self._refreshed:
            self._refresh(name)
        wanted = set(uids)
        return [ref for ref in self._view(name).messages if ref.uid in wanted]

    # -- bodies --------------------------------------------------------------------------------------

    def _body(self, key: str) -> bytes:
        body = self._bodies.get(key)
        if body is not None:
            if key_base(key) not in self._unsaved_sizes:
                # From the disk cache, a listing may not know its size yet.
                self._note_size(key, body)
            return body
        try:
            body = self._client.open_mail(original_path(key))
        except MessageTampered:
            self._tampered.add(key)
            return TAMPERED_MESSAGE
        except ApiError as error:
            if error.status == 404:
                raise _Gone() from None
            raise
        self._tampered.discard(key)
        self._note_size(key, body)
        self._bodies.put(key, body)
        return body

    def _note_size(self, key: str, body: bytes) -> None:
        base = key_base(key)
        if self._sizes.value["sizes"].get(base) != len(body):
            self._unsaved_sizes[base] = len(body)

    # -- documents: UIDs and flags -------------------------------------------------------------------

    def _new_table(self) -> dict[str, Any]:
        return {"validity": max(1, int(self._clock()) & MAX_UID), "next": 1, "uids": {}}

    def _assign(
        self, added: dict[str, list[str]], removed: dict[str, set[str]] | None = None, *, listed: bool = False
    ) -> None:
        """Take ``removed[mailbox]``'s keys out of that table, then give each key of ``added[mailbox]`` a UID there
        unless it has one: in delivery order for a ``listed`` mailbox, else in the order given."""
        removed = removed or {}

        def change(document: Document) -> bool:
            tables = document["mailboxes"]
            changed = False
            for name in {*added, *removed}:
                if name not in tables:
                    tables[name] = self._new_table()
                    changed = True
                table = tables[name]
                for key in removed.get(name, ()):
                    changed = table["uids"].pop(key, None) is not None or changed
                fresh = [key for key in added.get(name, ()) if key not in table["uids"]]
                for key in sorted(fresh, key=key_order) if listed else fresh:
                    if key not in table["uids"]:
                        if table["next"] > MAX_UID:
                            raise BridgeError("this mailbox has used up its UIDs")
                        table["uids"][key] = table["next"]
                        table["next"] += 1
                        changed = True
            return changed

        self._uids.update(change)
        self._views.clear()

    def _store_flags(self, keys: Sequence[str], given: Sequence[str], mode: str) -> None:
        """STORE: ``\\Seen`` into W_state's ``read``, the rest into W_flags."""
        seen = _SEEN in given
        others = [flag for flag in given if flag != _SEEN]
        if seen or mode == "set":
            marked = seen and mode != "remove"

            def change_state(document: Document) -> bool:
                read = dict.fromkeys(document["read"])
                size = len(read)
                for key in keys:
                    if marked:
                        read.setdefault(key)
                    else:
                        read.pop(key, None)
                document["read"] = list(read)
                return len(read) != size

            self._state.update(change_state)
        if others or mode == "set":

            def change_flags(document: Document) -> bool:
                table, changed = document["flags"], False
                for key in keys:
                    current = table.get(key, [])
                    new = changed_flags(current, others, mode)
                    if len(new) > MAX_FLAGS:
                        raise BridgeError(f"at most {MAX_FLAGS} flags per message")
                    if new != current:
                        changed = True
                        if new:
                            table[key] = new
                        else:
                            table.pop(key, None)
                return changed

            self._flags.update(change_flags)
        self._views.clear()

    # -- expunge, move, append -----------------------------------------------------------------------

    def _delete_objects(self, key: str) -> None:
        """DELETE the original, then the twin (as the web client deletes); one already gone is fine."""
        self._delete_path(original_path(key))
        self._delete_path(key)

    def _delete_path(self, path: str) -> None:
        try:
            _request(self._client, "DELETE", _store_url(path))
        except ApiError as error:
            if error.status != 404:
                raise

    def _forget(self, keys: Sequence[str]) -> None:
        """Take deleted messages out of every document and listing."""
        gone = set(keys)

        def change_state(document: Document) -> bool:
            changed = False
            for name in ("read", "trash", "ham"):
                kept = [key for key in document[name] if key not in gone]
                changed = changed or len(kept) != len(document[name])
                document[name] = kept
            return changed

        def change_flags(document: Document) -> bool:
            return any([document["flags"].pop(key, None) is not None for key in gone])

        def change_uids(document: Document) -> bool:
            tables = document["mailboxes"].values()
            return any([table["uids"].pop(key, None) is not None for table in tables for key in gone])

        bases = {key_base(key) for key in gone}

        def change_sizes(document: Document) -> bool:
            return any([document["sizes"].pop(base, None) is not None for base in bases])

        self._state.update(change_state)
        self._flags.update(change_flags)
        self._uids.update(change_uids)
        self._sizes.update(change_sizes)
        for key in gone:
            self._listed.get(twin_prefix(key), {}).pop(key, None)
            self._bodies.pop(key)
        self._views.clear()

    @staticmethod
    def _store_moves(source: str, goal: str, key: str) -> bool:
        """Whether moving ``key`` from ``source`` to ``goal`` renames it in the store (``POST /api/move``) rather
        than only changing the trash set; BridgeError for a move that cannot be made."""
        home = home_mailbox(key)
        if source == goal:
            raise BridgeError("the message is in that mailbox already")
        if goal == TRASH or (source == TRASH and home == goal):
            return False
        if goal in MOVABLE and (source in MOVABLE or (source == TRASH and home in MOVABLE)):
            return True
        raise BridgeError("cannot move mail there")

    def _server_move(self, moves: Sequence[tuple[str, str]]) -> None:
        pairs = [(original_path(old), original_path(new)) for old, new in moves] + list(moves)
        try:
            self._client.move(pairs)
        except ApiError as error:
            if error.code in ("not_found", "conflict"):
                raise BridgeError("a message moved or changed meanwhile; nothing of this batch was moved") from None
            raise

    def _record_moves(self, source: str, goal: str, done: Sequence[tuple[MessageRef, str]]) -> None:
        """Carry moved messages' state across: sets and flags follow a renamed key; UIDs are new in ``goal``."""
        done = sorted(done, key=lambda pair: pair[0].uid)
        renamed = {ref.key: new for ref, new in done if new != ref.key}
        keys = [new for _ref, new in done]
        arrived = set(keys)

        def change_state(document: Document) -> bool:
            before = copy.deepcopy(document)
            for name in ("read", "trash", "ham"):
                document[name] = [renamed.get(key, key) for key in document[name]]
            trash = dict.fromkeys(document["trash"])
            for key in keys:
                if goal == TRASH:
                    trash.setdefault(key)
                elif source == TRASH:
                    trash.pop(key, None)
            document["trash"] = list(trash)
            if goal == SPAM:
                document["ham"] = [key for key in document["ham"] if key not in arrived]
            return document != before

        def change_flags(document: Document) -> bool:
            table = document["flags"]
            moved = {new: table.pop(old) for old, new in renamed.items() if old in table}
            table.update(moved)
            return bool(moved)

        self._state.update(change_state)
        if renamed:
            self._flags.update(change_flags)
        for old, new in renamed.items():
            listed = self._listed.get(twin_prefix(old), {})
            when = listed.pop(old, None)
            target = self._listed.get(twin_prefix(new))
            if when is not None and target is not None:
                target[new] = when
            self._bodies.rename(old, new)
            if old in self._tampered:
                self._tampered.add(new)
        self._assign({goal: keys}, {source: {ref.key for ref, _new in done}})

    def _import(self, name: str, raw: bytes, internal_ms: int | None) -> str:
        """Seal ``raw`` and its twin to the account's own key and import both; the new message's key."""
        folder = FOLDERS[name]
        client = self._client
        fmt = client.envelope_format if client.envelope_format in ("v1", "v2") else "v2"
        public_key = client.private_key.public_key()
        sealed_original = seal_mail_object(fmt, public_key, raw)
        for _attempt in range(3):
            now_ms = int(self._clock() * 1000)
            base = new_key_base(internal_ms if internal_ms is not None else now_ms)
            path, key = f"{folder}/{base}", f"{folder}_Json/{base}"
            document = convert_document(raw, original_path=path, written_ms=now_ms, limits=Limits(), safe_html=True)
            sealed_twin = seal_mail_object(fmt, public_key, twin_bytes(document))
            if not self._put_new(path, sealed_original):
                continue  # that key base is taken: draw another
            try:
                if self._put_new(key, sealed_twin):
                    return key
            except BaseException:
                self._delete_path(path)
                raise
            self._delete_path(path)
        raise BridgeError("could not find a free name for the message; try again")

    def _put_new(self, path: str, data: bytes) -> bool:
        """Import ``data`` at a new ``path`` (False when something is there already)."""
        headers = {"Content-Type": "application/octet-stream", "If-None-Match": "*"}
        try:
            _request(self._client, "PUT", _store_url(path) + "?import=1", data=data, headers=headers)
        except ApiError as error:
            if error.status == 412:
                return False
            raise BridgeError(f"the appliance refused the message ({error.code})") from None
        return True


__all__ = [
    "APPENDABLE",
    "FOLDERS",
    "MOVABLE",
    "TAMPERED_MESSAGE",
    "TWIN_PREFIXES",
    "Bodies",
    "CacheDocument",
    "DiskCache",
    "MailState",
    "check_flags",
    "key_order",
    "key_seeds",
    "mailbox_name",
    "open_document",
    "original_path",
    "seal_document",
]
