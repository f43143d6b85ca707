"""The shared vectors decrypt inside Chromium: RSA-AES v1/v0 with the BigInt RSA, v2 with WebCrypto,
and the key block, cache-key and zlib rules agree with the Python implementation."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from mailiverse.compat.blocks import decrypt_key_block
from mailiverse.compat.cache_keys import decrypt_cache_file, encrypt_cache_file
from mailiverse.crypto import envelope, formats
from mailiverse.crypto.keys import generate_private_key, private_key_der, public_key_der
from tests.support.browser import new_page
from tests.support.harness import Appliance

pytestmark = pytest.mark.integration

VECTORS = Path(__file__).resolve().parents[1] / "vectors"

# Runs inside the page: imports the client's own modules and decrypts each case.
DECRYPT_JS = """async (cases) => {
  const { fromB64, toHex } = await import('/js/crypto/bytes.js');
  const { loadPrivateKey } = await import('/js/crypto/keys.js');
  const { decryptAny, openMailObject } = await import('/js/crypto/envelope.js');
  const out = [];
  for (const c of cases) {
    const key = await loadPrivateKey(fromB64(c.key));
    try {
      const fn = c.mail ? openMailObject : decryptAny;
      out.push({ ok: true, hex: toHex(await fn(key, fromB64(c.blob))) });
    } catch (e) {
      out.push({ ok: false, error: String(e.message) });
    }
  }
  return out;
}"""


def _plaintext(case: dict[str, Any]) -> bytes:
    if "plaintext_hex" in case:
        return bytes.fromhex(case["plaintext_hex"])
    gen = case["plaintext_generator"]
    assert gen["algorithm"] == "sha256-counter"
    seed = gen["seed_utf8"].encode()
    out = b"".join(hashlib.sha256(seed + struct.pack(">I", i)).digest() for i in range(gen["length"] // 32 + 1))
    return out[: gen["length"]]


def _keys() -> dict[str, dict[str, str]]:
    return {k["id"]: k for k in json.loads((VECTORS / "rsa_keys.json").read_text())["keys"]}


def _run(page: Any, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return page.evaluate(DECRYPT_JS, cases)


@pytest.fixture(scope="module")
def page(browser: Any, appliance: Appliance) -> Any:
    p = new_page(browser, appliance)
    yield p
    p.context.close()


def test_v1_and_v0_vectors_decrypt_in_chromium(page: Any) -> None:
    """Every RSA-AES v1 case (incl. the 255-byte W and the non-minimal-DER key) and every v0 case decrypts."""
    keys = _keys()
    data = json.loads((VECTORS / "rsa_aes_cbc_256_embediv.json").read_text())
    cases = data["cases"] + data["legacy_v0"]
    assert any(c.get("wrapped_key_len") == 255 for c in cases)
    results = _run(page, [{"key": keys[c["key_id"]]["private_pkcs8_der_b64"], "blob": c["blob_b64"]} for c in cases])
    for case, result in zip(cases, results, strict=True):
        assert result == {"ok": True, "hex": _plaintext(case).hex()}, case["key_id"]


def test_v2_envelopes_decrypt_and_tampering_fails_generically(page: Any) -> None:
    """v2 blobs from envelope.seal decrypt (empty, one and many chunks); any changed byte is the generic error."""
    key = generate_private_key(2048)
    der = base64.b64encode(private_key_der(key)).decode()
    plaintexts = [b"", b"hello v2", bytes(range(256)) * 700]
    blobs = [
        envelope.seal(key.public_key(), plaintexts[0]),
        envelope.seal(key.public_key(), plaintexts[1]),
        envelope.seal(key.public_key(), plaintexts[2], chunk_size=4096),
    ]
    cases = [{"key": der, "blob": base64.b64encode(b).decode()} for b in blobs]
    bad = bytearray(blobs[2])
    bad[-100] ^= 1
    header_flip = bytearray(blobs[1])
    header_flip[-30] ^= 0x80
    truncated = blobs[2][: len(blobs[2]) - (4096 + 16)]
    negatives = [bytes(bad), bytes(header_flip), truncated, blobs[1] + b"\x00"]
    cases += [{"key": der, "blob": base64.b64encode(b).decode()} for b in negatives]
    results = _run(page, cases)
    for plain, result in zip(plaintexts, results[:3], strict=True):
        assert result == {"ok": True, "hex": plain.hex()}
    assert results[3:] == [{"ok": False, "error": "message could not be decrypted"}] * len(negatives)


def test_v2_with_a_key_webcrypto_refuses_uses_bigint_oaep(page: Any) -> None:
    """The non-minimal-DER vector key cannot be imported by WebCrypto; v2 still opens through the BigInt path."""
    k = _keys()["web-encoded-nonminimal-der-key"]
    public = serialization.load_der_public_key(base64.b64decode(k["public_x509_spki_der_b64"]))
    blob = envelope.seal(public, b"through the fallback")  # type: ignore[arg-type]
    [result] = _run(page, [{"key": k["private_pkcs8_der_b64"], "blob": base64.b64encode(blob).decode()}])
    assert result == {"ok": True, "hex": b"through the fallback".hex()}


def test_mail_objects_of_both_formats_open(page: Any) -> None:
    """Stored mail objects envelope(zlib(bytes)) open in both formats, and wrong keys fail generically."""
    key, other = generate_private_key(2048), generate_private_key(2048)
    der = base64.b64encode(private_key_der(key)).decode()
    data = b"From: a@b\r\n\r\n" + b"body line\r\n" * 500
    cases = [
        {
            "key": der,
            "mail": True,
            "blob": base64.b64encode(formats.seal_mail_object(f, key.public_key(), data)).decode(),
        }
        for f in ("v1", "v2")
    ]
    cases += [
        {"key": base64.b64encode(private_key_der(other)).decode(), "mail": True, "blob": c["blob"]} for c in cases
    ]
    results = _run(page, cases)
    assert results[:2] == [{"ok": True, "hex": data.hex()}] * 2
    assert results[2:] == [{"ok": False, "error": "message could not be decrypted"}] * 2


def test_key_block_and_cache_files_match_python(page: Any) -> None:
    """A key block made in the browser opens in Python; cache files agree both ways under the cache-key rule."""
    key = generate_private_key(2048)
    der = private_key_der(key)
    env = {
        "RSA-PublicKey": base64.b64encode(public_key_der(key.public_key())).decode(),
        "RSA-PrivateKey": base64.b64encode(der).decode(),
    }
    python_cache = encrypt_cache_file("W_index", der, b"from python")
    out = page.evaluate(
        """async ([env, der, pyCache]) => {
      const { fromB64, toB64, toHex, utf8 } = await import('/js/crypto/bytes.js');
      const { passwordKeys } = await import('/js/crypto/pbkdf.js');
      const { encryptKeyBlock } = await import('/js/crypto/keyblock.js');
      const { encryptCacheFile, decryptCacheFile } = await import('/js/crypto/cachefile.js');
      const { cryptoKey } = await passwordKeys('pässword');
      return {
        cryptoKey: toHex(cryptoKey),
        block: toB64(await encryptKeyBlock(cryptoKey, env)),
        cache: toB64(await encryptCacheFile('W_index', fromB64(der), utf8('from the browser'))),
        fromPython: toHex(await decryptCacheFile('W_index', fromB64(der), fromB64(pyCache))),
      };
    }""",
        [env, base64.b64encode(der).decode(), base64.b64encode(python_cache).decode()],
    )
    pbkdf2 = hashlib.pbkdf2_hmac("sha256", "pässword".encode(), bytes.fromhex("c873418c7ed8ee89"), 131072, 32)
    assert out["cryptoKey"] == pbkdf2.hex()
    assert decrypt_key_block(pbkdf2, base64.b64decode(out["block"])) == env
    assert decrypt_cache_file("W_index", der, base64.b64decode(out["cache"])) == b"from the browser"
    assert bytes.fromhex(out["fromPython"]) == b"from python"
