"""Conformance checkers for the crypto vector files: every case, every checkable field.

Files: pbkdf2, aes_cbc_256_embediv, rsa_keys, rsa_aes_cbc_256_embediv, storage_blocks,
cache_keys, misc.  Positive cases are re-derived (encryption with the given key/IV must
reproduce the blob; decryption must give the plaintext); negative cases must fail the way
the vector says.  A case carrying a field no check here consumes fails, so new schema
fields cannot pass unnoticed.  Files that refer to keys by ``key_id`` read
``rsa_keys.json`` from the directory of the file being checked.

Why one module of this size: one checker per vector file of the crypto family, sharing the key
table and the "every field consumed" rule; each checker is short, and together they mirror the
vector schema file by file.
"""

from __future__ import annotations

import base64
import contextvars
import functools
import hashlib
import json
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mailiverse.compat import blocks, cache_keys, mvsign
from mailiverse.conformance.core import Case, NotUnderstood, checker, current_vector_file
from mailiverse.crypto import aes, formats, keys, lenient, pbkdf, rsaaes
from mailiverse.crypto.errors import DecryptionError

#: Keys that describe a vector and carry nothing to check.
DESCRIPTIVE = frozenset(
    {
        "source",
        "producer",
        "what",
        "note",
        "notes",
        "comment",
        "original_java_error",
        "plaintext_text_note",
    }
)
PLAINTEXT_KEYS = frozenset({"plaintext_hex", "plaintext_generator", "plaintext_sha256_hex", "plaintext_utf8"})

#: Lets a caller (tests) say where ``rsa_keys.json`` lives instead of the runner's frame.
VECTOR_DIRECTORY: contextvars.ContextVar[Path | None] = contextvars.ContextVar("VECTOR_DIRECTORY", default=None)


# ---------------------------------------------------------------- helpers


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _only(case: dict[str, Any], allowed: frozenset[str] | set[str]) -> None:
    unknown = sorted(set(case) - set(allowed) - DESCRIPTIVE)
    assert not unknown, f"fields not checked: {unknown}"


def _equal(what: str, got: object, want: object) -> None:
    assert got == want, f"{what} differs"


def generate_plaintext(spec: dict[str, Any]) -> bytes:
    """The ``sha256-counter`` generator: SHA256(seed || u32be(i)) for i = 0, 1, ..., truncated."""
    if spec.get("algorithm") != "sha256-counter" or set(spec) != {
        "algorithm",
        "seed_utf8",
        "length",
    }:
        raise NotUnderstood(f"plaintext generator {spec.get('algorithm')!r}")
    seed = spec["seed_utf8"].encode("utf-8")
    length = int(spec["length"])
    if not 0 <= length <= 64 * 1024 * 1024:
        raise AssertionError("generator length out of range")
    out = bytearray()
    i = 0
    while len(out) < length:
        out += hashlib.sha256(seed + i.to_bytes(4, "big")).digest()
        i += 1
    return bytes(out[:length])


def _plaintext(case: dict[str, Any]) -> bytes:
    """The case's plaintext, with its redundant descriptions (sha256, utf8) checked."""
    if "plaintext_generator" in case:
        data = generate_plaintext(case["plaintext_generator"])
    elif "plaintext_hex" in case:
        data = bytes.fromhex(case["plaintext_hex"])
    else:
        raise AssertionError("case has no plaintext")
    if "plaintext_sha256_hex" in case:
        _equal(
            "plaintext_sha256_hex",
            hashlib.sha256(data).hexdigest(),
            case["plaintext_sha256_hex"],
        )
    if "plaintext_utf8" in case:
        _equal("plaintext_utf8", data, case["plaintext_utf8"].encode("utf-8"))
    return data


def _vector_directory() -> Path | None:
    """Where the file being checked lives: set by a caller, or the runner's current file.

    The runner hands checkers only the parsed document, but several files refer by id
    to keys in ``rsa_keys.json`` next to them.
    """
    explicit = VECTOR_DIRECTORY.get()
    if explicit is not None:
        return explicit
    try:
        return current_vector_file().resolve().parent
    except NotUnderstood:
        return None


class _KeyRing:
    """The entries of ``rsa_keys.json`` next to the file being checked, loaded on first use."""

    def __init__(self, directory: Path | None) -> None:
        self._directory = directory
        self._entries: dict[str, dict[str, Any]] | None = None

    def entry(self, key_id: str) -> dict[str, Any]:
        if self._entries is None:
            if self._directory is None:
                raise AssertionError("cannot locate rsa_keys.json: the vector file's directory is unknown")
            doc = json.loads((self._directory / "rsa_keys.json").read_text(encoding="utf-8"))
            self._entries = {e["id"]: e for e in doc.get("keys", []) if isinstance(e, dict) and "id" in e}
        try:
            return self._entries[key_id]
        except KeyError:
            raise AssertionError(f"key {key_id!r} not in rsa_keys.json") from None

    def private(self, key_id: str) -> rsa.RSAPrivateKey:
        return keys.load_private_key(_b64(self.entry(key_id)["private_pkcs8_der_b64"]))

    def private_der(self, key_id: str) -> bytes:
        return _b64(self.entry(key_id)["private_pkcs8_der_b64"])


def _cases(section: str, items: Any, run: Callable[[dict[str, Any]], None]) -> Iterator[Case]:
    if not isinstance(items, list):
        raise NotUnderstood(f"section {section} is not a list")
    for i, item in enumerate(items):
        label = f"{section}[{i}]"
        if isinstance(item, dict):
            for tag in ("id", "key_id", "name", "what", "producer"):
                if isinstance(item.get(tag), str):
                    label += f" {item[tag][:40]}"
                    break
        yield Case(label, functools.partial(run, item))


# ---------------------------------------------------------------- pbkdf2


def _check_pbkdf2_parameters(params: dict[str, Any]) -> None:
    _only(
        params,
        {
            "prf",
            "iterations",
            "dk_len_bytes",
            "salt0_crypto_hex",
            "salt1_verifier_hex",
            "salt2_unused_hex",
        },
    )
    _equal("prf", params["prf"], "HMAC-SHA256")
    _equal("iterations", params["iterations"], pbkdf.ITERATIONS)
    _equal("dk_len_bytes", params["dk_len_bytes"], pbkdf.KEY_SIZE)
    _equal("salt0", bytes.fromhex(params["salt0_crypto_hex"]), pbkdf.SALT_CRYPTO)
    _equal("salt1", bytes.fromhex(params["salt1_verifier_hex"]), pbkdf.SALT_VERIFICATION)
    _equal("salt2", bytes.fromhex(params["salt2_unused_hex"]), pbkdf.SALT_UNUSED)


def _check_pbkdf2_case(case: dict[str, Any]) -> None:
    _only(
        case,
        {
            "password",
            "password_utf8_hex",
            "crypto_key_hex",
            "verification_key_hex",
            "salt2_key_hex",
            "java_desktop_variant",
            "java_desktop_identical",
        },
    )
    pw = case["password"]
    utf8 = pbkdf.password_bytes(pw)
    _equal("password_utf8_hex", utf8.hex(), case["password_utf8_hex"])
    _equal("crypto_key_hex", pbkdf.crypto_key(pw).hex(), case["crypto_key_hex"])
    _equal(
        "verification_key_hex",
        pbkdf.verification_key(pw).hex(),
        case["verification_key_hex"],
    )
    if "salt2_key_hex" in case:
        _equal(
            "salt2_key_hex",
            pbkdf.derive(pw, pbkdf.SALT_UNUSED).hex(),
            case["salt2_key_hex"],
        )
    desktop = pbkdf.password_bytes(pw, variant="java-desktop")
    if "java_desktop_identical" in case:
        _equal("java_desktop_identical", desktop == utf8, case["java_desktop_identical"])
    variant = case.get("java_desktop_variant")
    if variant is not None:
        _only(variant, {"password_bytes_hex", "crypto_key_hex", "verification_key_hex"})
        assert desktop != utf8, "java_desktop_variant given but the conversions agree"
        _equal("java password_bytes_hex", desktop.hex(), variant["password_bytes_hex"])
        _equal(
            "java crypto_key_hex",
            pbkdf.crypto_key(pw, variant="java-desktop").hex(),
            variant["crypto_key_hex"],
        )
        _equal(
            "java verification_key_hex",
            pbkdf.verification_key(pw, variant="java-desktop").hex(),
            variant["verification_key_hex"],
        )
    elif "java_desktop_identical" not in case:
        assert desktop == utf8, "desktop-Java conversion differs but no variant is given"


@checker("pbkdf2", sections={"cases", "parameters"})
def check_pbkdf2(doc: dict[str, Any]) -> Iterator[Case]:
    if "parameters" in doc:
        yield Case("parameters", lambda: _check_pbkdf2_parameters(doc["parameters"]))
    yield from _cases("cases", doc.get("cases", []), _check_pbkdf2_case)


# ---------------------------------------------------------------- AES


def _check_aes_case(case: dict[str, Any]) -> None:
    _only(case, {"key_hex", "iv_hex", "blob_b64"} | PLAINTEXT_KEYS)
    key = bytes.fromhex(case["key_hex"])
    iv = bytes.fromhex(case["iv_hex"])
    blob = _b64(case["blob_b64"])
    data = _plaintext(case)
    _equal("iv is the blob prefix", blob[: aes.IV_SIZE], iv)
    _equal("encryption", aes.encrypt_embediv(key, data, iv), blob)
    _equal("decryption", aes.decrypt_embediv(key, blob), data)
    dec = aes.CbcDecryptor(key)
    streamed = b"".join(dec.update(blob[i : i + 7]) for i in range(0, len(blob), 7)) + dec.finalize()
    _equal("streaming decryption", streamed, data)


def _check_aes_negative(case: dict[str, Any]) -> None:
    _only(case, {"key_hex", "blob_b64", "original_java_decrypt_fails"})
    key = bytes.fromhex(case["key_hex"])
    blob = _b64(case["blob_b64"])
    try:
        aes.decrypt_embediv(key, blob)
    except DecryptionError as e:
        assert case["original_java_decrypt_fails"], "we reject a blob the original accepts"
        _equal("generic error message", str(e), "message could not be decrypted")
    else:
        assert not case["original_java_decrypt_fails"], "we accept a blob the original rejects"


@checker("aes_cbc_256_embediv", sections={"cases", "negative_cases"})
def check_aes(doc: dict[str, Any]) -> Iterator[Case]:
    yield from _cases("cases", doc.get("cases", []), _check_aes_case)
    yield from _cases("negative_cases", doc.get("negative_cases", []), _check_aes_negative)


# ---------------------------------------------------------------- RSA keys


def _check_rsa_key(entry: dict[str, Any]) -> None:
    _only(
        entry,
        {
            "id",
            "bits",
            "public_exponent",
            "public_x509_spki_der_b64",
            "private_pkcs8_der_b64",
            "strict_der_parser_accepts_private",
            "java_reencoded_private_equals_stored",
        },
    )
    public_der = _b64(entry["public_x509_spki_der_b64"])
    private_der = _b64(entry["private_pkcs8_der_b64"])
    private = keys.load_private_key(private_der)
    public = keys.load_public_key(public_der)
    _equal(
        "public key of the pair",
        public.public_numbers(),
        private.public_key().public_numbers(),
    )
    _equal(
        "public key from base64 text",
        keys.load_public_key(entry["public_x509_spki_der_b64"].encode()).public_numbers(),
        public.public_numbers(),
    )
    if "bits" in entry:
        _equal("bits", public.key_size, entry["bits"])
    if "public_exponent" in entry:
        _equal("public_exponent", public.public_numbers().e, entry["public_exponent"])
    _equal("SPKI re-encoding", keys.public_key_der(private), public_der)
    strict = keys.strict_der_accepts_private(private_der)
    if "strict_der_parser_accepts_private" in entry:
        _equal(
            "strict_der_parser_accepts_private",
            strict,
            entry["strict_der_parser_accepts_private"],
        )
    # Minimal-DER re-encoding gives the stored bytes exactly when they were strict DER.
    _equal(
        "PKCS#8 re-encoding is the stored bytes",
        keys.private_key_der(private) == private_der,
        strict,
    )
    if entry.get("java_reencoded_private_equals_stored"):
        # What Java re-encodes equals the stored bytes, so the cache-key seed is those bytes:
        # they must load to the same key as our canonical re-encoding.
        again = keys.load_private_key(keys.private_key_der(private))
        _equal("re-encoded private key", again.private_numbers(), private.private_numbers())
    message = b"conformance round trip"
    _equal(
        "PKCS#1 v1.5 round trip",
        private.decrypt(public.encrypt(message, padding.PKCS1v15()), padding.PKCS1v15()),
        message,
    )


@checker("rsa_keys", sections={"keys"})
def check_rsa_keys(doc: dict[str, Any]) -> Iterator[Case]:
    yield from _cases("keys", doc.get("keys", []), _check_rsa_key)


# ---------------------------------------------------------------- RSA-AES


def _unwrap_for_check(private: rsa.RSAPrivateKey, wrapped: bytes) -> bytes:
    size = (private.key_size + 7) // 8
    assert len(wrapped) <= size, "W longer than the modulus"
    return private.decrypt(bytes(size - len(wrapped)) + wrapped, padding.PKCS1v15())


def _check_rsa_aes_case(ring: _KeyRing, case: dict[str, Any], legacy: bool) -> None:
    _only(
        case,
        {"key_id", "blob_b64", "version", "wrapped_key_len", "aes_key_hex", "iv_hex"} | PLAINTEXT_KEYS,
    )
    private = ring.private(case["key_id"])
    public = private.public_key()
    blob = _b64(case["blob_b64"])
    data = _plaintext(case)
    version = blob[0]
    if "version" in case:
        _equal("version", version, case["version"])
    _equal(
        "version for the section",
        version,
        rsaaes.VERSION_0 if legacy else rsaaes.VERSION_1,
    )
    len_at = 4 if version == rsaaes.VERSION_0 else 1
    w_len = int.from_bytes(blob[len_at : len_at + 4], "big")
    if "wrapped_key_len" in case:
        _equal("wrapped_key_len", w_len, case["wrapped_key_len"])
    w_end = len_at + 4 + w_len
    wrapped = blob[len_at + 4 : w_end]
    aes_key = _unwrap_for_check(private, wrapped)
    if "aes_key_hex" in case:
        _equal("aes_key_hex", aes_key.hex(), case["aes_key_hex"])
    _equal("decryption", rsaaes.decrypt(private, blob), data)
    _equal("decrypt_any", formats.decrypt_any(private, blob), data)
    dec = rsaaes.V1StreamDecryptor(private)
    streamed = b"".join(dec.update(blob[i : i + 61]) for i in range(0, len(blob), 61)) + dec.finalize()
    _equal("streaming decryption", streamed, data)
    if version == rsaaes.VERSION_0:
        _equal(
            "v0 body",
            blob[w_end:],
            aes.encrypt_embediv(aes_key, data, bytes(aes.IV_SIZE))[aes.IV_SIZE :],
        )
        assert "iv_hex" not in case, "v0 has no IV"
        return
    iv = blob[w_end : w_end + aes.IV_SIZE]
    if "iv_hex" in case:
        _equal("iv_hex", iv.hex(), case["iv_hex"])
    _equal("body after W", blob[w_end:], aes.encrypt_embediv(aes_key, data, iv))
    again = rsaaes.encrypt_v1(public, data, aes_key=aes_key, iv=iv)
    size = (private.key_size + 7) // 8
    _equal("re-encryption header", again[:5], bytes([1]) + size.to_bytes(4, "big"))
    _equal("re-encryption after W", again[5 + size :], blob[w_end:])
    _equal("re-encryption decrypts", rsaaes.decrypt(private, again), data)


@checker("rsa_aes_cbc_256_embediv", sections={"cases", "legacy_v0"})
def check_rsa_aes(doc: dict[str, Any]) -> Iterator[Case]:
    ring = _KeyRing(_vector_directory())
    yield from _cases("cases", doc.get("cases", []), lambda c: _check_rsa_aes_case(ring, c, False))
    yield from _cases(
        "legacy_v0",
        doc.get("legacy_v0", []),
        lambda c: _check_rsa_aes_case(ring, c, True),
    )


# ---------------------------------------------------------------- storage blocks


def _check_zlib(case: dict[str, Any]) -> None:
    _only(case, {"deflated_b64"} | PLAINTEXT_KEYS)
    deflated = _b64(case["deflated_b64"])
    data = _plaintext(case)
    _equal("lenient inflate", lenient.inflate(deflated), data)
    inf = lenient.Inflater()
    streamed = b"".join(inf.update(deflated[i : i + 5]) for i in range(0, len(deflated), 5)) + inf.finalize()
    _equal("streaming inflate", streamed, data)
    producer = case.get("producer", "")
    ours = lenient.deflate(data)
    _equal("our deflate is real zlib", zlib.decompress(ours), data)
    if producer.startswith("java"):
        _equal("deflate reproduces the Java stream", ours, deflated)
    elif producer.startswith("web"):
        _equal("web header", deflated[:2], b"\x78\x9c")
        _equal("web zero Adler-32", deflated[-4:], bytes(4))
    else:
        raise AssertionError(f"unknown producer {producer!r}")


def _check_key_block(case: dict[str, Any]) -> None:
    _only(case, {"password", "block_b64", "plaintext_text", "plaintext_bytes_hex"})
    ck = pbkdf.crypto_key(case["password"])
    block = _b64(case["block_b64"])
    raw = lenient.inflate(aes.decrypt_embediv(ck, block))
    if "plaintext_text" in case:
        _equal("plaintext_text", lenient.decode_text(raw), case["plaintext_text"])
    if "plaintext_bytes_hex" in case:
        _equal("plaintext_bytes_hex", raw.hex(), case["plaintext_bytes_hex"])
    env = blocks.decrypt_key_block(ck, block)
    _equal("environment", env, blocks.parse_environment(raw))
    again = blocks.encrypt_key_block(ck, env, iv=block[: aes.IV_SIZE])
    _equal("re-encryption decrypts", blocks.decrypt_key_block(ck, again), env)
    if case.get("producer", "").startswith("java"):
        _equal("re-encryption reproduces the block", again, block)
    wrong = pbkdf.crypto_key(case["password"] + "x")
    try:
        blocks.decrypt_key_block(wrong, block)
    except DecryptionError:
        pass
    else:
        raise AssertionError("a wrong password opened the key block")


def _check_stored_mail(ring: _KeyRing, case: dict[str, Any]) -> None:
    _only(case, {"key_id", "blob_b64"} | PLAINTEXT_KEYS)
    private = ring.private(case["key_id"])
    blob = _b64(case["blob_b64"])
    data = _plaintext(case)
    _equal("stored mail", formats.open_mail_object(private, blob), data)
    if case.get("producer", "").startswith("java"):
        _equal(
            "compressed with Java zlib",
            formats.decrypt_any(private, blob),
            lenient.deflate(data),
        )
    for fmt in formats.FORMATS:
        _equal(
            f"{fmt} round trip",
            formats.open_mail_object(private, formats.seal_mail_object(fmt, private.public_key(), data)),
            data,
        )


def _check_mail_block(case: dict[str, Any]) -> None:
    _only(case, {"server_password", "pbe_key_hex", "block_b64", "plaintext_text"})
    key = blocks.mail_block_key(case["server_password"])
    if "pbe_key_hex" in case:
        _equal("pbe_key_hex", key.hex(), case["pbe_key_hex"])
    block = _b64(case["block_b64"])
    raw = lenient.inflate(aes.decrypt_embediv(key, block))
    _equal("plaintext_text", lenient.decode_text(raw), case["plaintext_text"])
    env = blocks.decrypt_mail_block_with_key(key, case["block_b64"])
    _equal("environment", env, blocks.parse_environment(raw))
    _equal(
        "re-encryption reproduces the block",
        blocks.encrypt_mail_block(case["server_password"], env, iv=block[: aes.IV_SIZE]),
        case["block_b64"],
    )


@checker("storage_blocks", sections={"zlib", "key_blocks", "stored_mail", "mail_blocks"})
def check_storage_blocks(doc: dict[str, Any]) -> Iterator[Case]:
    ring = _KeyRing(_vector_directory())
    yield from _cases("zlib", doc.get("zlib", []), _check_zlib)
    yield from _cases("key_blocks", doc.get("key_blocks", []), _check_key_block)
    yield from _cases("stored_mail", doc.get("stored_mail", []), lambda c: _check_stored_mail(ring, c))
    yield from _cases("mail_blocks", doc.get("mail_blocks", []), _check_mail_block)


# ---------------------------------------------------------------- cache keys


def _check_cache_group(ring: _KeyRing, group: dict[str, Any]) -> None:
    _only(group, {"key_id", "seed_b64", "seed_is_stored_pkcs8", "derivations"})
    seed = _b64(group["seed_b64"])
    if "seed_is_stored_pkcs8" in group:
        _equal(
            "seed_is_stored_pkcs8",
            seed == ring.private_der(group["key_id"]),
            group["seed_is_stored_pkcs8"],
        )
    if group.get("seed_is_stored_pkcs8"):
        keys.load_private_key(seed)  # the seed must be a loadable private key
    derivations = group["derivations"]
    assert isinstance(derivations, list) and derivations, "no derivations"
    for d in derivations:
        _only(d, {"name", "aes_key_hex", "example_plaintext_text", "example_blob_b64"})
        key = cache_keys.cache_key(d["name"], seed)
        _equal(f"aes_key_hex of {d['name']}", key.hex(), d["aes_key_hex"])
        if "example_blob_b64" in d:
            blob = _b64(d["example_blob_b64"])
            text = cache_keys.decrypt_cache_file(d["name"], seed, blob)
            _equal(
                f"example of {d['name']}",
                text,
                d["example_plaintext_text"].encode("utf-8"),
            )
            again = cache_keys.encrypt_cache_file(d["name"], seed, text, iv=blob[: aes.IV_SIZE])
            _equal(f"example re-encryption of {d['name']}", again, blob)
        else:
            assert "example_plaintext_text" not in d, "example plaintext without a blob"


@checker("cache_keys", sections={"groups"})
def check_cache_keys(doc: dict[str, Any]) -> Iterator[Case]:
    ring = _KeyRing(_vector_directory())
    yield from _cases("groups", doc.get("groups", []), lambda g: _check_cache_group(ring, g))


# ---------------------------------------------------------------- misc


def _check_utf_web(case: dict[str, Any]) -> None:
    _only(case, {"text", "web_Utf_toBytes_hex", "standard_utf8_hex", "equal"})
    text = case["text"]
    web = lenient.encode_web_text(text)
    _equal("web_Utf_toBytes_hex", web.hex(), case["web_Utf_toBytes_hex"])
    _equal("standard_utf8_hex", text.encode("utf-8").hex(), case["standard_utf8_hex"])
    _equal("equal", web == text.encode("utf-8"), case["equal"])
    _equal("decode web bytes", lenient.decode_text(web), text)
    _equal("decode standard bytes", lenient.decode_text(text.encode("utf-8")), text)


def _check_mv_signature(case: dict[str, Any]) -> None:
    _only(
        case,
        {
            "key_id",
            "secret_b64",
            "method",
            "content_type",
            "content_length",
            "date_ms",
            "resource",
            "string_to_sign",
            "headers",
        },
    )
    mv_date = mvsign.format_mv_date(case["date_ms"])
    _equal("parse_mv_date", mvsign.parse_mv_date(mv_date), case["date_ms"] // 1000 * 1000)
    args = (case["method"], case["content_type"], mv_date, case["resource"])
    _equal("string_to_sign", mvsign.string_to_sign(*args), case["string_to_sign"])
    headers = mvsign.request_headers(
        case["key_id"],
        case["secret_b64"],
        case["method"],
        case["content_type"],
        case["content_length"],
        case["date_ms"],
        case["resource"],
    )
    _equal("headers", [list(h) for h in headers], [list(h) for h in case["headers"]])
    authorization = dict(case["headers"])["Authorization"]
    assert mvsign.verify(authorization, case["key_id"], case["secret_b64"], *args), "verify rejects the vector"
    key_id, _signature = mvsign.parse_authorization(authorization)
    _equal("key id", key_id, case["key_id"])
    assert not mvsign.verify(
        authorization,
        case["key_id"],
        case["secret_b64"],
        case["method"],
        case["content_type"],
        mv_date,
        case["resource"] + "x",
    ), "verify accepts another resource"


@checker("misc", sections={"utf_web", "mv_signature"})
def check_misc(doc: dict[str, Any]) -> Iterator[Case]:
    yield from _cases("utf_web", doc.get("utf_web", []), _check_utf_web)
    yield from _cases("mv_signature", doc.get("mv_signature", []), _check_mv_signature)
