"""The RSA private-key operation of v1 accounts (PKCS#1 v1.5, which WebCrypto lacks) in Debian's Chromium.

Run from the repository root: ``.venv/bin/python -m bench.rsa_browser [--ops 200] [--rounds 5]``.

Milliseconds per 2048-bit private operation (CRT, blinded, checked by re-encrypting), single-threaded, on the page
and inside a module worker (``new Worker(url, {type: 'module'})``, the key sent by ``postMessage`` as the client
will send it), for:

- ``bigint-before``: ``webclient/js/crypto/rsa.js`` as of commit b7bafe6 (4-bit fixed window, a fresh blinding
  factor and its inverse per operation), kept below as ``BASELINE_JS``;
- ``bigint``: today's ``webclient/js/crypto/rsa.js`` (``rsaPrivate``);
- ``gmp-wasm powm`` / ``gmp-wasm powm_sec``: GMP 6.3 compiled to WebAssembly (npm ``gmp-wasm``, its ES module
  build), ``mpz_powm`` or the side-channel-silent ``mpz_powm_sec`` for the two CRT halves, with the same
  blinding and check as rsa.js (``GMP_JS`` below); the WASM instance and each key's values are made on the first
  call in each context. The package is fetched once with ``npm pack`` into ``bench/results/tmp/`` and checked
  against its pinned integrity; it is not vendored (LGPL-3.0-only). Without npm those rows are skipped.

A tiny HTTP server on 127.0.0.1 serves ``webclient/`` and the benchmark's own modules with the appliance's
security headers (the same CSP: ``script-src 'self' 'wasm-unsafe-eval'``). Every implementation gets a fresh
page and a fresh worker per round (so the first call, which includes any WASM start-up, is timed too); the
rounds interleave the implementations, and the median over rounds is reported. Each result is checked against
Python's ``pow(c, d, n)``. Prints a markdown table, writes ``bench/results/rsa-browser-<date>.json`` and, unless
``--no-document``, the generated part of the "RSA PKCS#1 v1.5 in the browser" section of docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import secrets
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from bench import machine, report
from mailiverse.web.headers import SECURITY_HEADERS

ROOT = Path(__file__).resolve().parents[1]
WEBCLIENT = ROOT / "webclient"
CACHE = ROOT / "bench" / "results" / "tmp" / "npm"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]

GMP_WASM = "gmp-wasm"
GMP_WASM_VERSION = "1.3.2"
GMP_WASM_INTEGRITY = "sha512-8Y7qVLLX8/0YzeHYueCHaw9D7sdnGViiGu7KeP9wATmuayoXW/FlGMsV80aBU5ryS2OwKfaCyjCSSPdxoe3E4A=="

TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".html": "text/html", ".wasm": "application/wasm"}

# webclient/js/crypto/rsa.js as of commit b7bafe6: what the issue calls "the hand-written BigInt RSA".
BASELINE_JS = """
import { bigIntToBytes, bytesToBigInt } from '/js/crypto/bytes.js';

function modPow(base, exponent, modulus) {
  if (modulus === 1n) return 0n;
  let result = 1n;
  let b = ((base % modulus) + modulus) % modulus;
  const table = [1n, b];
  for (let i = 2; i < 16; i++) table.push((table[i - 1] * b) % modulus);
  const hex = exponent.toString(16);
  for (const digit of hex) {
    result = (result * result) % modulus;
    result = (result * result) % modulus;
    result = (result * result) % modulus;
    result = (result * result) % modulus;
    const w = parseInt(digit, 16);
    if (w) result = (result * table[w]) % modulus;
  }
  return result;
}

function modInverse(a, m) {
  let [oldR, r] = [((a % m) + m) % m, m];
  let [oldS, s] = [1n, 0n];
  while (r !== 0n) {
    const q = oldR / r;
    [oldR, r] = [r, oldR - q * r];
    [oldS, s] = [s, oldS - q * s];
  }
  if (oldR !== 1n) throw new Error('not invertible');
  return ((oldS % m) + m) % m;
}

function byteLength(n) {
  return Math.ceil(n.toString(16).length / 2);
}

function rawDecrypt(key, ciphertext) {
  const { n, e, p, q, dp, dq, qi } = key;
  const c = bytesToBigInt(ciphertext);
  if (c >= n) throw new Error('ciphertext out of range');
  const r = bytesToBigInt(crypto.getRandomValues(new Uint8Array(byteLength(n)))) % n || 1n;
  const blinded = (c * modPow(r, e, n)) % n;
  const m1 = modPow(blinded % p, dp, p);
  const m2 = modPow(blinded % q, dq, q);
  const h = (qi * (((m1 - m2) % p) + p)) % p;
  let m = (m2 + h * q) % n;
  if (modPow(m, e, n) !== blinded) throw new Error('CRT fault');
  m = (m * modInverse(r, n)) % n;
  return bigIntToBytes(m, byteLength(n));
}

export async function rsaPrivate(key, ciphertext) {
  return rawDecrypt(key, ciphertext);
}
"""

# rsaPrivate over gmp-wasm, with rsa.js's blinding (a pair squared after each use, drawn afresh every 32 uses)
# and fault check. The WASM instance is started on the first call in each context; each key's mpz values are
# made once per context and kept in a WeakMap keyed by the key object.
GMP_JS = """
import { init } from './gmp-wasm/mini.esm.min.js';
import { bigIntToBytes } from '/js/crypto/bytes.js';
import { byteLength } from '/js/crypto/rsa.js';

let started = null;
const prepared = new WeakMap();
const BLINDING_USES = 32;

function gmp() {
  if (!started) started = init().then((g) => g.binding);
  return started;
}

function put(g, state, z, bytes) {
  g.mem.set(bytes, state.buf);
  g.mpz_import(z, bytes.length, 1, 1, 1, 0, state.buf);
}

function get(g, state, z) {
  g.mpz_export(state.buf, state.count, 1, 1, 1, 0, z);
  const count = g.memView.getUint32(state.count, true);
  const out = new Uint8Array(state.k);
  out.set(g.mem.subarray(state.buf, state.buf + count), state.k - count);
  return out;
}

function keyState(g, key) {
  let state = prepared.get(key);
  if (state) return state;
  const k = byteLength(key.n);
  state = { k, buf: g.malloc(k + 16), count: g.malloc(4), uses: BLINDING_USES, z: {} };
  const names = ['n', 'e', 'p', 'q', 'dp', 'dq', 'qi', 'c', 'blind', 'unblind', 'blinded', 'm1', 'm2', 'm', 't', 'u'];
  for (const name of names) {
    const z = g.mpz_t();
    g.mpz_init(z);
    state.z[name] = z;
  }
  for (const name of ['n', 'e', 'p', 'q', 'dp', 'dq', 'qi']) put(g, state, state.z[name], bigIntToBytes(key[name]));
  prepared.set(key, state);
  return state;
}

function freshBlinding(g, state) {
  const z = state.z;
  for (;;) {
    put(g, state, z.t, crypto.getRandomValues(new Uint8Array(state.k + 8)));
    g.mpz_mod(z.t, z.t, z.n);
    if (g.mpz_cmp_ui(z.t, 1) <= 0) continue;
    if (!g.mpz_invert(z.unblind, z.t, z.n)) continue;
    g.mpz_powm(z.blind, z.t, z.e, z.n);
    state.uses = 0;
    return;
  }
}

function square(g, z, x) {
  g.mpz_mul(z.t, x, x);
  g.mpz_mod(x, z.t, z.n);
}

async function privateOp(key, ciphertext, powm) {
  const g = await gmp();
  const state = keyState(g, key);
  const z = state.z;
  if (ciphertext.length > state.k) throw new Error('ciphertext out of range');
  put(g, state, z.c, ciphertext);
  if (g.mpz_cmp(z.c, z.n) >= 0) throw new Error('ciphertext out of range');
  if (state.uses >= BLINDING_USES) freshBlinding(g, state);
  state.uses++;
  g.mpz_mul(z.t, z.c, z.blind);
  g.mpz_mod(z.blinded, z.t, z.n);
  square(g, z, z.blind);
  g.mpz_mod(z.t, z.blinded, z.p);
  powm(z.m1, z.t, z.dp, z.p);
  g.mpz_mod(z.t, z.blinded, z.q);
  powm(z.m2, z.t, z.dq, z.q);
  g.mpz_sub(z.t, z.m1, z.m2);
  g.mpz_mul(z.u, z.t, z.qi);
  g.mpz_mod(z.t, z.u, z.p);
  g.mpz_mul(z.u, z.t, z.q);
  g.mpz_add(z.m, z.u, z.m2);
  g.mpz_powm(z.t, z.m, z.e, z.n);
  if (g.mpz_cmp(z.t, z.blinded) !== 0) {
    state.uses = BLINDING_USES;
    throw new Error('CRT fault');
  }
  g.mpz_mul(z.t, z.m, z.unblind);
  g.mpz_mod(z.u, z.t, z.n);
  square(g, z, z.unblind);
  return get(g, state, z.u);
}

export async function rsaPrivate(key, ciphertext) {
  const g = await gmp();
  return privateOp(key, ciphertext, (r, b, e, m) => g.mpz_powm(r, b, e, m));
}

export async function rsaPrivateSec(key, ciphertext) {
  const g = await gmp();
  return privateOp(key, ciphertext, (r, b, e, m) => g.mpz_powm_sec(r, b, e, m));
}
"""

# Times one implementation where it is imported (page or worker): the first call alone, then batches.
RUN_JS = """
import { fromHex, toHex } from '/js/crypto/bytes.js';

const IMPLEMENTATIONS = {
  'bigint-before': ['/bench/baseline-rsa.js', 'rsaPrivate'],
  bigint: ['/js/crypto/rsa.js', 'rsaPrivate'],
  'gmp-wasm powm': ['/bench/gmp-rsa.js', 'rsaPrivate'],
  'gmp-wasm powm_sec': ['/bench/gmp-rsa.js', 'rsaPrivateSec'],
};

export function bigKey(hex) {
  const key = {};
  for (const [name, value] of Object.entries(hex)) key[name] = BigInt('0x' + value);
  return key;
}

// In this context: {first_ms, batches_ms: [ms per operation of each batch], outputs: [hex of the first results]}.
export async function measure(name, key, ciphertexts, ops, batch) {
  const [url, fn] = IMPLEMENTATIONS[name];
  const started = performance.now();
  const module = await import(url);
  const op = module[fn];
  const inputs = ciphertexts.map(fromHex);
  const first = await op(key, inputs[0]);
  const firstMs = performance.now() - started;
  const outputs = [toHex(first)];
  for (let i = 1; i < inputs.length; i++) outputs.push(toHex(await op(key, inputs[i])));
  const batchesMs = [];
  for (let done = 0; done < ops; done += batch) {
    const t0 = performance.now();
    for (let i = 0; i < batch; i++) await op(key, inputs[(done + i) % inputs.length]);
    batchesMs.push((performance.now() - t0) / batch);
  }
  return { first_ms: firstMs, batches_ms: batchesMs, outputs };
}

// The same in a fresh module worker; the key crosses by postMessage (structured clone of BigInts).
export function measureInWorker(name, key, ciphertexts, ops, batch) {
  const worker = new Worker('/bench/worker.js', { type: 'module' });
  return new Promise((resolve, reject) => {
    worker.onmessage = (event) => {
      worker.terminate();
      if (event.data.ok) resolve(event.data.result);
      else reject(new Error(event.data.error));
    };
    worker.onerror = (event) => {
      worker.terminate();
      reject(new Error('worker failed: ' + (event.message || 'no message')));
    };
    worker.postMessage([name, key, ciphertexts, ops, batch]);
  });
}
"""

WORKER_JS = """
import { measure } from '/bench/run.js';

self.onmessage = async (event) => {
  try {
    self.postMessage({ ok: true, result: await measure(...event.data) });
  } catch (e) {
    self.postMessage({ ok: false, error: String(e && e.stack || e) });
  }
};
"""

PAGE_HTML = "<!doctype html><meta charset=utf-8><title>rsa bench</title><p>rsa bench</p>\n"

# Runs inside the page, through Playwright (page.evaluate is not subject to the page's CSP; the imports are).
EVALUATE_JS = """async ([name, where, keyHex, ciphertexts, ops, batch]) => {
  const { bigKey, measure, measureInWorker } = await import('/bench/run.js');
  const key = bigKey(keyHex);
  return where === 'worker'
    ? measureInWorker(name, key, ciphertexts, ops, batch)
    : measure(name, key, ciphertexts, ops, batch);
}"""


def fetch_gmp_wasm(log: Any) -> Path | None:
    """The unpacked npm package (fetched once with ``npm pack``, integrity checked), or None without it."""
    package = CACHE / f"{GMP_WASM}-{GMP_WASM_VERSION}" / "package"
    if (package / "dist" / "mini.esm.min.js").is_file():
        return package
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as scratch:
        try:
            done = subprocess.run(
                ["npm", "pack", "--json", "--pack-destination", scratch, f"{GMP_WASM}@{GMP_WASM_VERSION}"],
                capture_output=True,
                text=True,
                check=True,
                timeout=300,
            )
        except (OSError, subprocess.SubprocessError) as e:
            log(f"gmp-wasm skipped: npm pack failed ({e})")
            return None
        info = json.loads(done.stdout)[0]
        if info.get("integrity") != GMP_WASM_INTEGRITY:
            log(f"gmp-wasm skipped: integrity {info.get('integrity')} is not the pinned one")
            return None
        with tarfile.open(Path(scratch) / info["filename"]) as tar:
            tar.extractall(package.parent, filter="data")
    return package


class _Handler(BaseHTTPRequestHandler):
    """webclient/ and the benchmark's modules, with the appliance's security headers (its CSP)."""

    virtual: dict[str, str] = {}
    gmp_dir: Path | None = None

    def do_GET(self) -> None:  # noqa: N802 (BaseHTTPRequestHandler's name)
        path = self.path.split("?", 1)[0]
        body: bytes | None = None
        if path in self.virtual:
            body = self.virtual[path].encode()
        elif path.startswith("/bench/gmp-wasm/") and self.gmp_dir is not None:
            body = _read_under(self.gmp_dir / "dist", path.removeprefix("/bench/gmp-wasm/"))
        elif not path.startswith("/bench/"):
            body = _read_under(WEBCLIENT, path.lstrip("/"))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        suffix = Path(path).suffix
        content_type = TYPES.get(suffix) or mimetypes.guess_type(path)[0] or "application/octet-stream"
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in SECURITY_HEADERS.items():
            if name != b"Strict-Transport-Security":
                self.send_header(name.decode(), value.decode())
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass


def _read_under(base: Path, relative: str) -> bytes | None:
    target = (base / relative).resolve()
    if not target.is_relative_to(base.resolve()) or not target.is_file():
        return None
    return target.read_bytes()


@contextmanager
def serve(gmp_dir: Path | None) -> Iterator[str]:
    """The server's base URL, while it runs on 127.0.0.1."""
    handler = type(
        "Handler",
        (_Handler,),
        {
            "virtual": {
                "/": PAGE_HTML,
                "/bench/index.html": PAGE_HTML,
                "/bench/baseline-rsa.js": BASELINE_JS,
                "/bench/gmp-rsa.js": GMP_JS,
                "/bench/run.js": RUN_JS,
                "/bench/worker.js": WORKER_JS,
            },
            "gmp_dir": gmp_dir,
        },
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def key_hex(key: rsa.RSAPrivateKey) -> dict[str, str]:
    """The key object der.js parsePrivateKey makes, as hex strings (the page turns them into BigInts)."""
    numbers = key.private_numbers()
    values = {
        "n": numbers.public_numbers.n,
        "e": numbers.public_numbers.e,
        "d": numbers.d,
        "p": numbers.p,
        "q": numbers.q,
        "dp": numbers.dmp1,
        "dq": numbers.dmq1,
        "qi": numbers.iqmp,
    }
    return {name: format(value, "x") for name, value in values.items()}


def run(args: argparse.Namespace, log: Any) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    gmp_dir = fetch_gmp_wasm(log)
    names = ["bigint-before", "bigint"]
    if gmp_dir is not None:
        names += ["gmp-wasm powm", "gmp-wasm powm_sec"]
    key = rsa.generate_private_key(public_exponent=65537, key_size=args.bits)
    numbers = key.private_numbers()
    n, d = numbers.public_numbers.n, numbers.d
    k = (n.bit_length() + 7) // 8
    ciphertexts = [secrets.randbelow(n) for _ in range(8)]
    expected = [format(pow(c, d, n), "x").rjust(2 * k, "0") for c in ciphertexts]
    hexes = [format(c, "x").rjust(2 * k, "0") for c in ciphertexts]
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {name: {"page": [], "worker": []} for name in names}
    with serve(gmp_dir) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        version = browser.version
        try:
            for round_index in range(args.rounds):
                for name in names:
                    for where in ("page", "worker"):
                        context = browser.new_context()
                        page = context.new_page()
                        page.goto(base + "/bench/index.html")
                        result = page.evaluate(EVALUATE_JS, [name, where, key_hex(key), hexes, args.ops, args.batch])
                        context.close()
                        if result["outputs"] != expected:
                            raise AssertionError(f"{name} on the {where} disagrees with Python's pow(c, d, n)")
                        batches = result["batches_ms"]
                        log(
                            f"round {round_index + 1}: {name} ({where}) median {statistics.median(batches):.2f}, "
                            f"best {min(batches):.2f} ms/op, first call {result['first_ms']:.1f} ms"
                        )
                        samples[name][where].append({"batches_ms": batches, "first_ms": result["first_ms"]})
        finally:
            browser.close()
    rows = []
    for name in names:
        row: dict[str, Any] = {"implementation": name}
        for where in ("page", "worker"):
            points = samples[name][where]
            batches = [ms for x in points for ms in x["batches_ms"]]
            row[f"{where}_ms_per_op"] = round(statistics.median(batches), 3)
            row[f"{where}_best_ms_per_op"] = round(min(batches), 3)
            row[f"{where}_first_call_ms"] = round(statistics.median(x["first_ms"] for x in points), 1)
            row[f"{where}_batches_ms_per_op"] = [[round(ms, 3) for ms in x["batches_ms"]] for x in points]
        rows.append(row)
    return {"chromium": version, "rows": rows, "gmp_wasm": gmp_dir is not None}


def markdown(results: dict[str, Any]) -> str:
    env, s, r = results["environment"], results["settings"], results["results"]
    before = next(row for row in r["rows"] if row["implementation"] == "bigint-before")
    lines = [
        f"Measured {results['date']} (commit {env['commit']}, {env['cores']} cores {env['cpu_model']}, "
        f"Chromium {r['chromium']}, load average {env['load_average']}); results: `{results['results_file']}`.",
        "",
        f"RSA-{s['bits']} private operation (CRT, blinded, result checked), one thread, ms per operation: the "
        f"median and the best of the batches of {s['batch']} operations ({s['ops']} a round, {s['rounds']} rounds, "
        "each a fresh page and a fresh module worker). First call: the import, any WebAssembly start-up, the "
        "key's preparation and one operation. The best batch is the figure to compare on a shared machine (the "
        "medians move with the load average).",
        "",
        "| implementation | page median | page best | worker median | worker best | speed vs before (best) "
        "| first call page / worker ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in r["rows"]:
        speedup = (before["page_best_ms_per_op"] + before["worker_best_ms_per_op"]) / (
            row["page_best_ms_per_op"] + row["worker_best_ms_per_op"]
        )
        lines.append(
            f"| {row['implementation']} | {row['page_ms_per_op']:.2f} | {row['page_best_ms_per_op']:.2f} | "
            f"{row['worker_ms_per_op']:.2f} | {row['worker_best_ms_per_op']:.2f} | {speedup:.2f}x | "
            f"{row['page_first_call_ms']:.0f} / {row['worker_first_call_ms']:.0f} |"
        )
    if not r["gmp_wasm"]:
        lines += ["", "gmp-wasm was not measured (npm could not fetch it)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rsa_browser", description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, default=2048, help="RSA key size")
    parser.add_argument("--ops", type=int, default=200, help="timed operations per implementation, context and round")
    parser.add_argument("--batch", type=int, default=10, help="operations per timed batch")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (fresh page and worker each)")
    parser.add_argument("--no-document", action="store_true", help="do not touch docs/performance.md")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    if args.bits < 1024 or min(args.ops, args.batch, args.rounds) < 1:
        parser.error("--bits must be at least 1024 and the counts at least 1")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.monotonic()
    path, results = machine.results_header("rsa-browser", args, args.results, machine.basics())
    results["results"] = run(args, log)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    args.results.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    section = markdown(results)
    if not args.no_document:
        report.update_document(ROOT / "docs" / "performance.md", "rsa-browser", section)
    print(section)
    print(f"results: {results['results_file']} ({results['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
