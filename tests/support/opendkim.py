"""DKIM signatures made by an independent implementation: OpenDKIM (Debian's opendkim-tools and libopendkim).

``opendkim-genkey`` makes the key pair and its TXT record. ``opendkim-testmsg`` signs a message as
its man page says; it always signs with rsa-sha1 (its source passes ``DKIM_SIGN_RSASHA1``), which
RFC 8301 no longer lets a verifier accept. So that an rsa-sha256 signature comes from OpenDKIM too,
``sign_with_libopendkim`` calls the same library's ``dkim_sign`` through ctypes, the way
``opendkim-testmsg`` does, with ``DKIM_SIGN_RSASHA256``.
"""

from __future__ import annotations

import base64
import ctypes
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

GENKEY = "/usr/sbin/opendkim-genkey"
TESTMSG = "/usr/sbin/opendkim-testmsg"
LIBRARY = "libopendkim.so.11"

# dkim.h (OpenDKIM 2.11)
_CANON_SIMPLE, _CANON_RELAXED = 0, 1
_SIGN_RSASHA256, _SIGN_ED25519SHA256 = 1, 2
_STAT_OK = 0


@dataclass(frozen=True)
class OpenDkimKey:
    """A key made by ``opendkim-genkey``: its private key file and the TXT record to publish at ``name``."""

    domain: str
    selector: str
    private_key: Path
    record: str

    @property
    def name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"


def generate_key(directory: Path, domain: str, selector: str) -> OpenDkimKey:
    """A 2048-bit RSA key pair for ``selector._domainkey.domain``."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run([GENKEY, "-b", "2048", "-D", str(directory), "-d", domain, "-s", selector], check=True)  # noqa: S603
    zone_text = (directory / f"{selector}.txt").read_text()
    record = "".join(re.findall(r'"([^"]*)"', zone_text))
    return OpenDkimKey(domain, selector, directory / f"{selector}.private", record)


def sign_with_testmsg(message: bytes, key: OpenDkimKey) -> bytes:
    """``message`` (CRLF) with the signature ``opendkim-testmsg -C`` puts before it."""
    signed = subprocess.run(  # noqa: S603
        [TESTMSG, "-C", "-d", key.domain, "-k", str(key.private_key), "-s", key.selector],
        input=message,
        capture_output=True,
        check=True,
    )
    return signed.stdout


def generate_ed25519_key(directory: Path, domain: str, selector: str) -> OpenDkimKey:
    """An ed25519 key made by ``openssl genpkey`` (opendkim-genkey makes RSA keys only), and its record."""
    directory.mkdir(parents=True, exist_ok=True)
    pem = directory / f"{selector}.{domain}.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(pem)], check=True)
    der = subprocess.run(
        ["openssl", "pkey", "-in", str(pem), "-pubout", "-outform", "DER"], check=True, capture_output=True
    ).stdout
    record = "v=DKIM1; k=ed25519; p=" + base64.b64encode(der[-32:]).decode("ascii")
    return OpenDkimKey(domain, selector, pem, record)


def sign_with_libopendkim(message: bytes, key: OpenDkimKey, *, ed25519: bool = False) -> bytes:
    """``message`` (CRLF) signed by libopendkim's ``dkim_sign``: rsa-sha256 relaxed/simple, or with ``ed25519``
    ed25519-sha256 relaxed/relaxed (RFC 8463)."""
    lib = _library()
    handle = lib.dkim_init(None, None)
    status = ctypes.c_int()
    dkim = lib.dkim_sign(
        handle,
        b"mailiverse-test",
        None,
        key.private_key.read_bytes(),
        key.selector.encode(),
        key.domain.encode(),
        _CANON_RELAXED,
        _CANON_RELAXED if ed25519 else _CANON_SIMPLE,
        _SIGN_ED25519SHA256 if ed25519 else _SIGN_RSASHA256,
        -1,
        ctypes.byref(status),
    )
    assert dkim and status.value == _STAT_OK, f"dkim_sign failed with status {status.value}"
    try:
        head, _, body = message.partition(b"\r\n\r\n")
        for field in re.findall(rb"[^\r\n]+(?:\r\n[ \t][^\r\n]*)*", head):
            assert lib.dkim_header(dkim, field, len(field)) == _STAT_OK
        assert lib.dkim_eoh(dkim) == _STAT_OK
        assert lib.dkim_body(dkim, body, len(body)) == _STAT_OK
        assert lib.dkim_eom(dkim, None) == _STAT_OK
        value = ctypes.create_string_buffer(8192)
        assert lib.dkim_getsighdr(dkim, value, len(value), len("DKIM-Signature: ")) == _STAT_OK
    finally:
        lib.dkim_free(dkim)
        lib.dkim_close(handle)
    # The library folds some lines with LF alone (opendkim-testmsg fixes that with -C): CRLF throughout.
    signature = b"DKIM-Signature: " + value.value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + b"\r\n"
    assert not ed25519 or b"a=ed25519-sha256;" in signature, signature
    return signature + message


def _library() -> ctypes.CDLL:
    lib = ctypes.CDLL(LIBRARY)
    pointer, text, size = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t
    lib.dkim_init.restype = pointer
    lib.dkim_init.argtypes = [pointer, pointer]
    lib.dkim_sign.restype = pointer
    lib.dkim_sign.argtypes = [pointer, text, pointer, text, text, text, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.dkim_sign.argtypes += [ctypes.c_ssize_t, ctypes.POINTER(ctypes.c_int)]
    for name in ("dkim_header", "dkim_body"):
        getattr(lib, name).argtypes = [pointer, text, size]
    lib.dkim_eoh.argtypes = [pointer]
    lib.dkim_eom.argtypes = [pointer, pointer]
    lib.dkim_getsighdr.argtypes = [pointer, text, size, size]
    lib.dkim_free.argtypes = [pointer]
    lib.dkim_close.argtypes = [pointer]
    return lib
