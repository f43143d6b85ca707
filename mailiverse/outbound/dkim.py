"""DKIM for outgoing mail: one RSA-2048 key per sending domain, signing, and the DNS record to publish.

Keys live in ``<data-dir>/keys/dkim-<domain>.key.pem`` (PKCS#8 PEM, mode 0600) and are made on
first use.  Signatures are rsa-sha256 with relaxed/relaxed canonicalisation; the header fields
that identify a message are signed, and the most important are signed once more than they occur
so nobody can add another copy without breaking the signature (RFC 6376 §8.15).
"""

from __future__ import annotations

import base64
import threading
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailiverse.config import ConfigError, normalize_domain
from mailiverse.privatefile import create_private_once, private_dir

DKIM_KEY_BITS = 2048
DEFAULT_SELECTOR = "mailiverse"
#: Signed when present.
SIGNED_HEADERS = (
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-disposition",
    "list-unsubscribe",
)
#: Signed one extra time, so a second copy cannot be added.
OVERSIGNED_HEADERS = ("from", "to", "cc", "subject", "date", "message-id", "reply-to")

_key_lock = threading.Lock()


def _check_selector(selector: str) -> str:
    label = selector.strip().lower()
    if not label or len(label) > 63 or not all(c.isalnum() or c in "-_" for c in label) or not label.isascii():
        raise ConfigError(f"--dkim-selector {selector!r} is not a DNS label; use letters, digits and '-'")
    return label


def dkim_key_path(keys_dir: Path, domain: str) -> Path:
    """Where the DKIM key of ``domain`` is kept (the domain is validated, so no path tricks)."""
    return Path(keys_dir) / f"dkim-{normalize_domain(domain, '--domain')}.key.pem"


def load_or_create_dkim_key(keys_dir: Path, domain: str) -> bytes:
    """The PEM private key for ``domain``, generated (RSA-2048, 0600) when absent."""
    path = dkim_key_path(keys_dir, domain)
    with _key_lock:
        if not path.exists():
            private_dir(Path(keys_dir))
        # Another process may win the race to create it; then its key is the one kept.
        return create_private_once(path, _new_dkim_key_pem)


def _new_dkim_key_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=DKIM_KEY_BITS)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def dkim_record_name(domain: str, selector: str = DEFAULT_SELECTOR) -> str:
    """The DNS name of the TXT record: ``<selector>._domainkey.<domain>``."""
    return f"{_check_selector(selector)}._domainkey.{normalize_domain(domain)}"


def dkim_dns_record(domain: str, selector: str = DEFAULT_SELECTOR, *, keys_dir: Path) -> str:
    """The TXT record text to publish at ``dkim_record_name(domain, selector)`` (creates the key if needed).

    The value is longer than 255 bytes, so zone files must split it into several quoted strings.
    """
    _check_selector(selector)
    pem = load_or_create_dkim_key(keys_dir, domain)
    private = serialization.load_pem_private_key(pem, password=None)
    der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode("ascii")


def _header_names(message: bytes) -> list[str]:
    head = message.split(b"\r\n\r\n", 1)[0]
    names = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") or b":" not in line:
            continue
        names.append(line.split(b":", 1)[0].strip().lower().decode("ascii", "replace"))
    return names


def sign_message(message: bytes, *, domain: str, selector: str, private_key_pem: bytes) -> bytes:
    """Return ``message`` (CRLF line endings) with a DKIM-Signature header field prepended."""
    names = _header_names(message)
    if names.count("from") != 1:
        raise ValueError("only a message with exactly one From header field is DKIM-signed")
    present = set(names)
    include = [name for name in SIGNED_HEADERS if name in present] + list(OVERSIGNED_HEADERS)
    import dkim  # dkimpy and dnspython load only once something is signed (idle memory)

    signature = dkim.sign(
        message,
        _check_selector(selector).encode("ascii"),
        normalize_domain(domain).encode("ascii"),
        private_key_pem,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[name.encode("ascii") for name in include],
        linesep=b"\r\n",
    )
    return bytes(signature) + message


class DkimSigner:
    """Signs for any of a set of local domains with keys from one keys directory."""

    def __init__(self, keys_dir: Path, selector: str, local_domains: tuple[str, ...]) -> None:
        self._keys_dir = Path(keys_dir)
        self.selector = _check_selector(selector)
        self._domains = frozenset(normalize_domain(d) for d in local_domains)
        self._keys: dict[str, bytes] = {}

    def sign(self, message: bytes, domain: str) -> bytes:
        """Sign for ``domain`` if it is a local domain; otherwise return the message unchanged."""
        try:
            domain = normalize_domain(domain)
        except ConfigError:
            return message
        if domain not in self._domains:
            return message
        key = self._keys.get(domain)
        if key is None:
            key = self._keys[domain] = load_or_create_dkim_key(self._keys_dir, domain)
        return sign_message(message, domain=domain, selector=self.selector, private_key_pem=key)
