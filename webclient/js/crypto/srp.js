// SRP-6a client, RFC 5054 2048-bit group, g = 2, H = SHA-256, exactly as mailiverse/auth/srp6a.py.

import { bigIntToBytes, bytesToBigInt, equalBytes, randomBytes, sha256, utf8 } from './bytes.js';
import { modPow } from './rsa.js';

export const GROUP = 'rfc5054-2048-sha256';
export const N = BigInt('0x' +
  'AC6BDB41324A9A9BF166DE5E1389582FAF72B6651987EE07FC3192943DB56050A37329CBB4A099ED8193E0757767A13DD52312AB4B03310D' +
  'CD7F48A9DA04FD50E8083969EDB767B0CF6095179A163AB3661A05FBD5FAAAE82918A9962F0B93B855F97993EC975EEAA80D740ADBF4FF74' +
  '7359D041D5C33EA71D281E446B14773BCA97B43A23FB801676BD207A436C6481F1D2B9078717461A5B9D32E688F87748544523B524B0D57D' +
  '5EA77A2775D2ECFA032CFBDBF52FB3786160279004E57AE6AF874E7303CE53299CCC041C7BC308D82A5698F3A8D0C38271AE35F8E9DBFBB6' +
  '94B5C803D89F7AE435DE236D525F54759B65E372FCD68EF20FA7111F9E4AFF73');
export const G = 2n;
const LEN = 256;

const pad = (v) => bigIntToBytes(v, LEN);
const minimal = (v) => bigIntToBytes(v);

async function k() {
  return bytesToBigInt(await sha256(minimal(N), pad(G)));
}

async function privateX(name, salt, verificationKey) {
  const inner = await sha256(utf8(name), utf8(':'), verificationKey);
  return bytesToBigInt(await sha256(salt, inner));
}

// A new (salt, verifier) pair for sign-up or a password change.
export async function createVerifier(name, verificationKey) {
  const salt = randomBytes(16);
  const x = await privateX(name, salt, verificationKey);
  return { salt, verifier: pad(modPow(G, x, N)) };
}

// One login: `A` to send, then `respond(salt, B)` gives M, then `verify(HAMK)` must return true.
export class SrpClient {
  constructor(name, verificationKey) {
    this.name = name;
    this.verificationKey = verificationKey;
    const a = bytesToBigInt(randomBytes(32)) | (1n << 255n);
    this.a = a;
    this.aPub = modPow(G, a, N);
    this.A = pad(this.aPub);
    this.expected = null;
  }

  async respond(salt, B) {
    if (salt.length < 1 || salt.length > 64 || B.length < 1 || B.length > LEN) throw new Error('authentication failed');
    const bPub = bytesToBigInt(B);
    if (bPub % N === 0n || bPub >= N) throw new Error('authentication failed');
    const u = bytesToBigInt(await sha256(pad(this.aPub), pad(bPub)));
    if (u === 0n) throw new Error('authentication failed');
    const x = await privateX(this.name, salt, this.verificationKey);
    const base = (((bPub - (await k()) * modPow(G, x, N)) % N) + N) % N;
    const S = modPow(base, this.a + u * x, N);
    const K = await sha256(minimal(S));
    const hN = await sha256(minimal(N));
    const hG = await sha256(pad(G));
    const xor = hN.map((b, i) => b ^ hG[i]);
    const M = await sha256(xor, await sha256(utf8(this.name)), salt, minimal(this.aPub), minimal(bPub), K);
    this.expected = await sha256(minimal(this.aPub), M, K);
    return M;
  }

  verify(HAMK) {
    return this.expected !== null && equalBytes(this.expected, HAMK);
  }
}
