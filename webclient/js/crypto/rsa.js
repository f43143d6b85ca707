// Small BigInt RSA: private-key operation with CRT, PKCS#1 v1.5 and OAEP (SHA-256) unpadding.
// WebCrypto has no RSAES-PKCS1-v1_5, which the Mailiverse v1 format needs. BigInt arithmetic
// is not constant-time, hence the blinding of the base; callers turn every unpad failure into the
// same late, generic error. Measured in Chromium against GMP compiled to WebAssembly (gmp-wasm,
// mpz_powm and mpz_powm_sec), on the page and in a module worker: this code is the faster (1.7 ms
// against 3.0 ms for RSA-2048; bench/rsa_browser.py, docs/performance.md), so no library stands
// behind rsaPrivate.

import { bigIntToBytes, bytesToBigInt, concat, sha256 } from './bytes.js';

// Window width for an exponent of `bits` bits (the sizes OpenSSL uses): 6 bits for RSA-2048's
// 1024-bit CRT exponents; 1 (plain square-and-multiply) for e = 65537.
function windowBits(bits) {
  if (bits > 671) return 6;
  if (bits > 239) return 5;
  if (bits > 79) return 4;
  if (bits > 23) return 3;
  return 1;
}

// base^exponent mod modulus (exponent >= 0), left to right with a sliding window over odd powers.
export function modPow(base, exponent, modulus) {
  if (modulus === 1n) return 0n;
  if (exponent < 0n) throw new RangeError('negative exponent');
  if (exponent === 0n) return 1n;
  const b = ((base % modulus) + modulus) % modulus;
  const bits = exponent.toString(2);
  const w = windowBits(bits.length);
  // odd[i] = b^(2i+1)
  const odd = [b];
  if (w > 1) {
    const b2 = (b * b) % modulus;
    for (let i = 1; i < 1 << (w - 1); i++) odd.push((odd[i - 1] * b2) % modulus);
  }
  let result = 1n;
  let started = false;
  let i = 0;
  while (i < bits.length) {
    if (bits[i] === '0') {
      result = (result * result) % modulus;
      i++;
      continue;
    }
    // The longest window of at most w bits that starts here and ends on a 1.
    let j = Math.min(i + w, bits.length);
    while (bits[j - 1] === '0') j--;
    const value = parseInt(bits.slice(i, j), 2);
    if (started) {
      for (let k = i; k < j; k++) result = (result * result) % modulus;
      result = (result * odd[value >> 1]) % modulus;
    } else {
      result = odd[value >> 1];
      started = true;
    }
    i = j;
  }
  return result;
}

export function modInverse(a, m) {
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

export function byteLength(n) {
  return Math.ceil(n.toString(16).length / 2);
}

// What a key needs between operations, per JavaScript context (the page, each worker: a key arrives in a
// worker as a structured clone, a new object, so each context prepares its own), held only as long as the
// key object lives.
const prepared = new WeakMap();
// A blinding pair is squared after each use and drawn afresh after this many uses (as OpenSSL does).
const BLINDING_USES = 32;

function keyState(key) {
  let state = prepared.get(key);
  if (!state) {
    state = { k: byteLength(key.n), pair: null, uses: 0 };
    prepared.set(key, state);
  }
  return state;
}

// A random r (coprime to n) as the pair (r^e, r^-1) mod n.
function freshBlinding(key, k) {
  const { n, e } = key;
  for (;;) {
    const r = bytesToBigInt(crypto.getRandomValues(new Uint8Array(k + 8))) % n;
    if (r < 2n) continue;
    try {
      return { blind: modPow(r, e, n), unblind: modInverse(r, n) };
    } catch {
      // r shares a factor with n: draw again
    }
  }
}

// This operation's blinding pair. Squaring gives the next one, (r^2)^e and (r^2)^-1, for two
// multiplications instead of an inverse and an exponentiation per operation.
function nextBlinding(key, state) {
  if (!state.pair || state.uses >= BLINDING_USES) {
    state.pair = freshBlinding(key, state.k);
    state.uses = 0;
  }
  const pair = state.pair;
  const n = key.n;
  state.pair = { blind: (pair.blind * pair.blind) % n, unblind: (pair.unblind * pair.unblind) % n };
  state.uses++;
  return pair;
}

// c^d mod n by the Chinese remainder theorem, blinded, and checked by re-encrypting (a fault in
// one half would otherwise give away a factor of n).
export function rawDecrypt(key, ciphertext) {
  const { n, e, p, q, dp, dq, qi } = key;
  const c = bytesToBigInt(ciphertext);
  if (c >= n) throw new Error('ciphertext out of range');
  const state = keyState(key);
  const { blind, unblind } = nextBlinding(key, state);
  const blinded = (c * blind) % n;
  // Exponent blinding: dp + k(p - 1) gives the same result (Fermat) with other bits each time, so the window's
  // timing says nothing stable about dp (about 6% slower).
  const [k1, k2] = crypto.getRandomValues(new Uint32Array(2));
  const m1 = modPow(blinded % p, dp + BigInt(k1) * (p - 1n), p);
  const m2 = modPow(blinded % q, dq + BigInt(k2) * (q - 1n), q);
  const h = (qi * (((m1 - m2) % p) + p)) % p;
  const m = m2 + h * q; // < q + (p - 1) q = n
  if (modPow(m, e, n) !== blinded) {
    state.pair = null;
    throw new Error('CRT fault');
  }
  return bigIntToBytes((m * unblind) % n, state.k);
}

// The raw private-key operation the envelopes use (c^d mod n, k bytes out; throws for c >= n). Async so
// a different implementation (WebAssembly, loaded on first use in whichever page or worker calls it)
// could stand behind it; works the same on the page and in module workers.
export async function rsaPrivate(key, ciphertext) {
  return rawDecrypt(key, ciphertext);
}

// RSAES-PKCS1-v1_5 unpadding: 00 02 PS(>= 8 non-zero) 00 M. Returns null on failure (no throw).
export function unpadPkcs1(em) {
  let bad = em[0] !== 0 || em[1] !== 2 ? 1 : 0;
  let sep = -1;
  for (let i = 2; i < em.length; i++) {
    if (sep < 0 && em[i] === 0) sep = i;
  }
  if (sep < 10) bad = 1;
  return bad ? null : em.slice(sep + 1);
}

async function mgf1(seed, length) {
  const parts = [];
  let total = 0;
  for (let counter = 0; total < length; counter++) {
    const c = new Uint8Array([counter >>> 24, (counter >>> 16) & 255, (counter >>> 8) & 255, counter & 255]);
    const block = await sha256(seed, c);
    parts.push(block);
    total += block.length;
  }
  return concat(...parts).subarray(0, length);
}

// RSAES-OAEP (SHA-256, MGF1-SHA-256, empty label) decoding. Returns null on failure.
export async function unpadOaep(em) {
  const hLen = 32;
  if (em.length < 2 * hLen + 2) return null;
  const maskedSeed = em.subarray(1, 1 + hLen);
  const maskedDb = em.subarray(1 + hLen);
  const seedMask = await mgf1(maskedDb, hLen);
  const seed = maskedSeed.map((b, i) => b ^ seedMask[i]);
  const dbMask = await mgf1(seed, maskedDb.length);
  const db = maskedDb.map((b, i) => b ^ dbMask[i]);
  const lHash = await sha256(new Uint8Array(0));
  let bad = em[0];
  for (let i = 0; i < hLen; i++) bad |= db[i] ^ lHash[i];
  let sep = -1;
  for (let i = hLen; i < db.length; i++) {
    if (sep < 0 && db[i] === 1) sep = i;
    else if (sep < 0 && db[i] !== 0) bad |= 1;
  }
  if (sep < 0) bad |= 1;
  return bad ? null : db.slice(sep + 1);
}
