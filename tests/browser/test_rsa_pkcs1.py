"""The browser's RSA private-key operation (``rsaPrivate`` in webclient/js/crypto/rsa.js, which v1 accounts need
for RSAES-PKCS1-v1_5) agrees with Python's ``cryptography`` on the page and inside a module Web Worker that
received the key by ``postMessage``, refuses ciphertexts >= n, and still opens the v1/v0 vectors in the worker."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailiverse.conformance.files_crypto import generate_plaintext
from mailiverse.crypto.keys import private_key_der
from tests.support.browser import base_url, new_page
from tests.support.harness import Appliance

pytestmark = pytest.mark.integration

VECTORS = Path(__file__).resolve().parents[1] / "vectors"

# Test-only modules, served at the appliance's origin through Playwright's routing (the CSP allows workers and
# imports from 'self' only). The tasks run the same way on the page and in the worker.
TASKS_JS = """
import { fromB64, fromHex, toHex } from '/js/crypto/bytes.js';
import { rsaPrivate, modPow } from '/js/crypto/rsa.js';
import { decryptAny } from '/js/crypto/envelope.js';

async function settle(promise) {
  try {
    return { ok: true, hex: toHex(await promise) };
  } catch (e) {
    return { ok: false, error: String(e.message) };
  }
}

export async function privateOps(key, ciphertexts) {
  const out = [];
  for (const c of ciphertexts) out.push(await settle(rsaPrivate(key.rsa, fromHex(c))));
  return out;
}

export async function openBlobs(key, blobs) {
  const out = [];
  for (const b of blobs) out.push(await settle(decryptAny(key, fromB64(b))));
  return out;
}

export async function scope() {
  return globalThis.constructor.name;
}

export async function modPows(cases) {
  return cases.map(([b, e, m]) => {
    try {
      return modPow(BigInt(b), BigInt(e), BigInt(m)).toString();
    } catch (err) {
      return 'error: ' + err.message;
    }
  });
}
"""

WORKER_JS = """
import * as tasks from '/__tests__/rsa-tasks.js';

self.onmessage = async (event) => {
  const [name, ...args] = event.data;
  try {
    self.postMessage({ ok: true, value: await tasks[name](...args) });
  } catch (e) {
    self.postMessage({ ok: false, error: String(e && e.stack || e) });
  }
};
"""

# Loads the key on the page (as the client does), then runs the task there or posts the key to a fresh module worker.
RUN_JS = """async ([where, name, keyB64, ...args]) => {
  const { fromB64 } = await import('/js/crypto/bytes.js');
  const { loadPrivateKey } = await import('/js/crypto/keys.js');
  const key = await loadPrivateKey(fromB64(keyB64));
  if (where === 'page') return (await import('/__tests__/rsa-tasks.js'))[name](key, ...args);
  const worker = new Worker('/__tests__/rsa-worker.js', { type: 'module' });
  try {
    return await new Promise((resolve, reject) => {
      worker.onmessage = (event) => (event.data.ok ? resolve(event.data.value) : reject(new Error(event.data.error)));
      worker.onerror = (event) => reject(new Error('worker failed: ' + event.message));
      worker.postMessage([name, key, ...args]);
    });
  } finally {
    worker.terminate();
  }
}"""

PLACES = ("page", "worker")


@pytest.fixture(scope="module")
def page(browser: Any, appliance: Appliance) -> Iterator[Any]:
    p = new_page(browser, appliance)
    origin = base_url(appliance)
    for path, body in (("/__tests__/rsa-tasks.js", TASKS_JS), ("/__tests__/rsa-worker.js", WORKER_JS)):
        p.context.route(origin + path, _module(body))
    yield p
    p.context.close()


def _module(body: str) -> Any:
    """A route handler answering with this JavaScript module."""
    return lambda route: route.fulfill(body=body, content_type="text/javascript")


def _vector_keys() -> dict[str, dict[str, str]]:
    return {k["id"]: k for k in json.loads((VECTORS / "rsa_keys.json").read_text())["keys"]}


Key = tuple[str, str, int, int, int | None]


@pytest.fixture(scope="module")
def keys() -> list[Key]:
    """(name, PKCS#8 DER base64, n, e, d or None) for generated keys of several sizes and every vector key."""
    out: list[Key] = []
    for bits, e in ((2048, 65537), (1024, 65537), (1536, 3)):
        key = rsa.generate_private_key(public_exponent=e, key_size=bits)
        numbers = key.private_numbers()
        der = base64.b64encode(private_key_der(key)).decode()
        out.append((f"generated-{bits}-e{e}", der, numbers.public_numbers.n, e, numbers.d))
    for key_id, vector in _vector_keys().items():
        public = serialization.load_der_public_key(base64.b64decode(vector["public_x509_spki_der_b64"]))
        assert isinstance(public, rsa.RSAPublicKey)
        n, e = public.public_numbers().n, public.public_numbers().e
        try:
            private = serialization.load_der_private_key(base64.b64decode(vector["private_pkcs8_der_b64"]), None)
            assert isinstance(private, rsa.RSAPrivateKey)
            d: int | None = private.private_numbers().d
        except ValueError:
            d = None  # the non-minimal DER key: cryptography refuses it; checked by re-encrypting instead
        out.append((key_id, vector["private_pkcs8_der_b64"], n, e, d))
    return out


def _plaintext(case: dict[str, Any]) -> bytes:
    if "plaintext_hex" in case:
        return bytes.fromhex(case["plaintext_hex"])
    return generate_plaintext(case["plaintext_generator"])


def _run(page: Any, where: str, name: str, key_b64: str, *args: Any) -> Any:
    return page.evaluate(RUN_JS, [where, name, key_b64, *args])


@pytest.mark.parametrize("where", PLACES)
def test_private_operation_agrees_with_python(page: Any, keys: list[Key], where: str) -> None:
    """For 40 random ciphertexts per key (past a blinding pair's 32 uses), c^d mod n is Python's, in k bytes."""
    scope = _run(page, where, "scope", keys[0][1])
    assert scope == {"page": "Window", "worker": "DedicatedWorkerGlobalScope"}[where]
    checked = 0
    for name, der, n, e, d in keys:
        k = (n.bit_length() + 7) // 8
        ciphertexts = [secrets.randbelow(n) for _ in range(38)] + [0, n - 1]
        results = _run(page, where, "privateOps", der, [format(c, "x").rjust(2 * k, "0") for c in ciphertexts])
        for c, result in zip(ciphertexts, results, strict=True):
            assert result["ok"], (name, result)
            m = bytes.fromhex(result["hex"])
            assert len(m) == k, name
            if d is not None:
                assert int.from_bytes(m, "big") == pow(c, d, n), name
            assert pow(int.from_bytes(m, "big"), e, n) == c, name
            checked += 1
    assert checked == 40 * len(keys) and len(keys) == 7


@pytest.mark.parametrize("where", PLACES)
def test_ciphertexts_not_below_n_are_refused(page: Any, keys: list[Key], where: str) -> None:
    """c = n, c = n + 1 and all-ones k bytes throw; n - 1 (the largest valid input) does not."""
    for name, der, n, _e, _d in keys[:2] + keys[-1:]:
        k = (n.bit_length() + 7) // 8
        inputs = [n, n + 1, 256**k - 1, n - 1]
        results = _run(page, where, "privateOps", der, [format(c, "x").rjust(2 * k, "0") for c in inputs])
        assert [r["ok"] for r in results] == [False, False, False, True], name
        assert {r["error"] for r in results[:3]} == {"ciphertext out of range"}, name


def test_v1_and_v0_vectors_open_in_a_module_worker(page: Any) -> None:
    """Every RSA-AES v1/v0 vector opens in a module worker that got the loaded key by postMessage."""
    keys = _vector_keys()
    data = json.loads((VECTORS / "rsa_aes_cbc_256_embediv.json").read_text())
    cases = data["cases"] + data["legacy_v0"]
    by_key: dict[str, list[dict[str, Any]]] = {}
    for case in cases:
        by_key.setdefault(case["key_id"], []).append(case)
    opened = 0
    for key_id, group in by_key.items():
        der = keys[key_id]["private_pkcs8_der_b64"]
        results = _run(page, "worker", "openBlobs", der, [c["blob_b64"] for c in group])
        for case, result in zip(group, results, strict=True):
            assert result == {"ok": True, "hex": _plaintext(case).hex()}, key_id
            opened += 1
    assert opened == len(cases) >= 9


def test_mod_pow_matches_python(page: Any, keys: list[Key]) -> None:
    """modPow (also SRP's) equals Python's pow for small and large exponents and bases, and refuses e < 0."""
    n = keys[0][2]
    cases = [(5, 0, 7), (-3, 5, 11), (2, 1, 13), (n - 1, 65537, n), (123456789, 3, n)]
    cases += [(secrets.randbelow(n), secrets.randbits(bits), n) for bits in (20, 64, 200, 256, 700, 1024, 2048)]
    results = page.evaluate(
        "async (c) => (await import('/__tests__/rsa-tasks.js')).modPows(c)",
        [[str(b), str(e), str(m)] for b, e, m in cases] + [["2", "-1", "7"]],
    )
    assert results[:-1] == [str(pow(b, e, m)) for b, e, m in cases]
    assert results[-1] == "error: negative exponent"
