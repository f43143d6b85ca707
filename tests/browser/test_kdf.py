"""The password KDF in Chromium (docs/auth.md, "The password KDF"): sign-up and login with Argon2id (vendored
hash-wasm in a worker), the keys equal argon2-cffi's, the cost of a derivation measured in the page, and an
account made the old way (fixed-salt PBKDF2) moved to Argon2id at its first browser login."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mailiverse.client import Client, HttpsTransport
from mailiverse.crypto.kdf import derive_keys, parse_kdf
from tests.support.browser import PASSWORD, base_url, login, new_page, row, signup, smtp_send, text_mail
from tests.support.harness import DOMAIN, Appliance, self_signed_cert
from tests.support.oldkdf import login_kdf, pbkdf2_signup

pytestmark = pytest.mark.integration

DERIVE_JS = """
async ([password, description]) => {
  const { toB64 } = await import('/js/crypto/bytes.js');
  const { deriveKeys, parseKdf } = await import('/js/crypto/kdf.js');
  const keys = await deriveKeys(password, parseKdf(description));
  return [toB64(keys.cryptoKey), toB64(keys.verificationKey)];
}
"""

MEASURE_JS = """
async (password) => {
  const { utf8 } = await import('/js/crypto/bytes.js');
  const { argon2id, deriveKeys, newKdf } = await import('/js/crypto/kdf.js');
  const description = newKdf();
  let ticks = 0;
  const timer = setInterval(() => { ticks += 1; }, 20);
  const started = performance.now();
  await deriveKeys(password, description);
  const total = performance.now() - started;
  clearInterval(timer);
  const { ms } = await argon2id(utf8(password), description);
  return { description, total, worker: ms, ticks };
}
"""


def _client(app: Appliance, name: str) -> Client:
    """The Python client on the appliance, pinned to its self-signed certificate."""
    der = x509.load_pem_x509_certificate(self_signed_cert(app).read_bytes()).public_bytes(serialization.Encoding.DER)
    return Client(HttpsTransport(base_url(app), fingerprint=hashlib.sha256(der).hexdigest()), name)


def _log_out(page: Any) -> None:
    page.click("#account-button")
    page.click("#logout-button")
    page.wait_for_selector("#auth:not([hidden])", timeout=60_000)


def test_signup_and_login_use_argon2id(browser: Any, appliance: Appliance) -> None:
    """The browser signs up with a per-account Argon2id description; it logs in again, and so does the
    Python client with the same password (the two implementations give the same keys)."""
    page = new_page(browser, appliance)
    signup(page, "kara")
    client = _client(appliance, "kara")
    described = login_kdf(client._transport, "kara")
    assert described["kdf"] == "argon2id" and len(base64.b64decode(described["salt"])) == 16
    assert described["m"] >= 64 * 1024
    _log_out(page)
    login(page, "kara")
    assert page.locator("#account-button").inner_text() == f"kara@{DOMAIN}"
    client.login(PASSWORD)
    assert client.kdf == parse_kdf(described) and client.kdf_upgrade_error is None
    client.close()


def test_browser_keys_equal_argon2_cffi(browser: Any, appliance: Appliance) -> None:
    """For a fixed description and a non-ASCII password, the page's CryptoKey and VerificationKey are the
    Python client's, byte for byte; the PBKDF2 rule gives the original keys in both."""
    page = new_page(browser, appliance)
    password = "pässwörd \U0001f510 long enough"
    description = {"kdf": "argon2id", "salt": base64.b64encode(bytes(range(16))).decode(), "m": 65536, "t": 2, "p": 1}
    for rule in (description, {"kdf": "pbkdf2-sha256"}):
        crypto, verification = page.evaluate(DERIVE_JS, [password, rule])
        want = derive_keys(password, parse_kdf(rule))
        assert (base64.b64decode(crypto), base64.b64decode(verification)) == want


def test_derivation_cost_measured_in_the_page(browser: Any, appliance: Appliance) -> None:
    """A new account's derivation in Chromium uses at least 64 MiB and runs in a worker (the page keeps
    ticking); the measured time is printed (the parameters were chosen so that it is >= 0.5 s here)."""
    page = new_page(browser, appliance)
    result = page.evaluate(MEASURE_JS, PASSWORD)
    description = result["description"]
    print(
        f"\nArgon2id m={description['m']} KiB t={description['t']} p={description['p']}: "
        f"{result['total']:.0f} ms in the page (keys), {result['worker']:.0f} ms of Argon2id in the worker, "
        f"{result['ticks']} ticks of a 20 ms timer during it"
    )
    assert description["kdf"] == "argon2id"
    assert description["m"] * 1024 >= 64 * 1024 * 1024
    assert description["m"] * description["t"] >= 4 * 64 * 1024
    assert description["p"] == 1
    assert result["ticks"] >= 3


def test_pbkdf2_account_is_moved_to_argon2id_at_its_browser_login(browser: Any, appliance: Appliance) -> None:
    """An account signed up the old way logs in in the browser, is re-keyed to Argon2id at once, reads the mail
    it had, and logs in again (browser and Python client) with the new description."""
    transport = _client(appliance, "olaf")._transport
    pbkdf2_signup(transport, "olaf", PASSWORD)
    assert login_kdf(transport, "olaf") == {"kdf": "pbkdf2-sha256"}
    smtp_send(appliance, f"olaf@{DOMAIN}", text_mail("olaf", "Before the upgrade", "Still readable: walrus.\n"))

    page = new_page(browser, appliance)
    login(page, "olaf")
    described = login_kdf(transport, "olaf")
    assert described["kdf"] == "argon2id" and not parse_kdf(described).needs_upgrade()
    arrived = row(page, "Before the upgrade")
    assert arrived.count() == 1
    arrived.click()
    page.wait_for_selector("#reader-subject")
    assert "Still readable: walrus." in page.locator("#reader pre.text").inner_text()

    _log_out(page)
    login(page, "olaf")
    assert login_kdf(transport, "olaf") == described
    client = _client(appliance, "olaf")
    client.login(PASSWORD)
    assert client.kdf == parse_kdf(described)
    assert json.loads(json.dumps(client._account()["kdf"])) == described
    client.close()
