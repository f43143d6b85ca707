// Small BigInt RSA: private-key operation with CRT, PKCS#1 v1.5 and OAEP (SHA-256) unpadding.
// WebCrypto has no RSAES-PKCS1-v1_5, which the Mailiverse v1 format needs. BigInt arithmetic
// is not constant-time; callers turn every unpad failure into the same late, generic error.

import { bigIntToBytes, bytesToBigInt, concat, sha256 } from './bytes.js';

export function modPow(base, exponent, modulus) {
  if (modulus === 1n) return 0n;
  let result = 1n;
  let b = ((base % modulus) + modulus) % modulus;
  // 4-bit fixed window.
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

// c^d mod n by the Chinese remainder theorem, with a blinding factor and a final check.
export function rawDecrypt(key, ciphertext) {
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

// The raw private-key operation the envelopes use (c^d mod n, k bytes out). Async so a faster implementation
// (WebAssembly, loaded on first use in whichever page or worker calls it) can stand behind it.
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
