"""Fuzz targets shared by hypothesis and atheris: each takes bytes and asserts the parser's contract.

The contract of every target: it returns or raises only the one documented error of that parser,
and finishes within its limits.  Any other exception, or a result that breaks the contract, is a bug.
Used by tests/fuzz/test_hypothesis.py, by ``python -m tests.fuzz.atheris_main`` (run from the
checkout, as tests/fuzz/test_atheris.py does) and by ``python -m tests.fuzz.make_corpus``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailiverse.compat import blocks
from mailiverse.compat.packets import PacketError, decode_line
from mailiverse.crypto import aes, envelope, lenient, rsaaes
from mailiverse.crypto.errors import GENERIC_DECRYPTION_MESSAGE, DecryptionError
from mailiverse.crypto.formats import open_mail_object
from mailiverse.mime.limits import Limits
from mailiverse.mime.twin import convert

#: the fuzzing folder: the committed seed corpus and key live there, next to the fuzz tests
FUZZ = Path(__file__).resolve().parents[1] / "fuzz"
CORPUS = FUZZ / "corpus"
#: a key used only by the fuzzers, committed so the corpus of sealed objects stays valid
KEY_FILE = FUZZ / "fuzz_key.pem"
AES_KEY = bytes(range(32))
#: limits small enough that one input finishes fast, large enough to reach every code path
FUZZ_LIMITS = Limits(max_size=1 << 20, max_depth=20, max_parts=200, max_headers=200, max_seconds=5.0)
#: wall-clock ceiling for one input (the MIME limit plus slack)
MAX_SECONDS = 10.0


@cache
def fuzz_key() -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(KEY_FILE.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _timed(fn: Callable[[bytes], None]) -> Callable[[bytes], None]:
    def run(data: bytes) -> None:
        started = time.monotonic()
        fn(data)
        elapsed = time.monotonic() - started
        assert elapsed < MAX_SECONDS, f"{fn.__name__} took {elapsed:.1f} s"

    run.__name__ = fn.__name__
    return run


def _generic(error: DecryptionError) -> None:
    assert str(error) == GENERIC_DECRYPTION_MESSAGE, "a decryption error must say nothing specific"


@_timed
def mime_twin(data: bytes) -> None:
    """MIME to JSON twin never raises; the result is strict UTF-8 JSON naming the original."""
    out = convert(data, original_path="Mail/In/1_fuzz", written_ms=1, limits=FUZZ_LIMITS)
    doc = json.loads(out.decode("utf-8"))
    assert isinstance(doc, dict) and doc["original"] == "Mail/In/1_fuzz"


@_timed
def mail_object(data: bytes) -> None:
    """A stored mail object (v0, v1 or v2) either opens or raises the one generic DecryptionError."""
    try:
        open_mail_object(fuzz_key(), data, max_size=1 << 20)
    except DecryptionError as e:
        _generic(e)


@_timed
def v2_envelope(data: bytes) -> None:
    """The authenticated v2 reader accepts only what was sealed: anything else is DecryptionError."""
    try:
        envelope.open_sealed(fuzz_key(), data)
    except DecryptionError as e:
        _generic(e)


@_timed
def v1_rsaaes(data: bytes) -> None:
    """The v0/v1 RSA-AES reader returns bytes or raises DecryptionError."""
    try:
        assert isinstance(rsaaes.decrypt(fuzz_key(), data), bytes)
    except DecryptionError as e:
        _generic(e)


@_timed
def aes_embediv(data: bytes) -> None:
    """AES-CBC-256-EmbedIV returns bytes or raises DecryptionError."""
    try:
        assert isinstance(aes.decrypt_embediv(AES_KEY, data), bytes)
    except DecryptionError as e:
        _generic(e)


@_timed
def inflate(data: bytes) -> None:
    """The lenient inflater returns at most its limit or raises ValueError."""
    try:
        assert len(lenient.inflate(data, 1 << 20)) <= 1 << 20
    except ValueError:
        pass


@_timed
def key_block(data: bytes) -> None:
    """A key block decrypts to a string map or raises DecryptionError."""
    try:
        env = blocks.decrypt_key_block(AES_KEY, data)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
    except DecryptionError as e:
        _generic(e)


@_timed
def environment(data: bytes) -> None:
    """The typed environment text parses to a string map or raises ValueError."""
    try:
        env = blocks.parse_environment(data)
        assert all(isinstance(v, str) for v in env.values())
    except ValueError:
        pass


@_timed
def legacy_line(data: bytes) -> None:
    """A legacy protocol line decodes to a packet or raises PacketError (a ValueError)."""
    try:
        decode_line(data, 100_000)
    except (PacketError, ValueError):
        pass


TARGETS: dict[str, Callable[[bytes], None]] = {
    "mime_twin": mime_twin,
    "mail_object": mail_object,
    "v2_envelope": v2_envelope,
    "v1_rsaaes": v1_rsaaes,
    "aes_embediv": aes_embediv,
    "inflate": inflate,
    "key_block": key_block,
    "environment": environment,
    "legacy_line": legacy_line,
}


def corpus_files(target: str) -> list[Path]:
    return sorted(p for p in (CORPUS / target).glob("*") if p.is_file())
