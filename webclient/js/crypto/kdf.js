// The password KDF of a modern account (docs/auth.md, "The password KDF"): its public description and the
// two keys it gives. New accounts: {kdf: 'argon2id', salt: b64(16 random bytes), m: KiB, t: passes, p: lanes};
// master = Argon2id v1.3(UTF-8 password, salt) → 32 bytes, CryptoKey = HKDF-SHA256(master, 'mailiverse key
// block key'), VerificationKey = HKDF-SHA256(master, 'mailiverse srp password'). Accounts made before that have
// {kdf: 'pbkdf2-sha256'}, the fixed-salt rule of pbkdf.js, until their next login moves them to Argon2id.
// The same rules as mailiverse/crypto/kdf.py, bounds included.

import { fromB64, toB64, utf8 } from './bytes.js';
import { passwordKeys } from './pbkdf.js';

export const ARGON2ID = 'argon2id';
export const PBKDF2 = 'pbkdf2-sha256';
// 128 MiB and 4 passes: 0.5 s or more in Chromium on the 2-CPU development machine (docs/auth.md).
export const DEFAULTS = Object.freeze({ m: 128 * 1024, t: 4, p: 1 });
const BOUNDS = { m: [64 * 1024, 1024 * 1024], t: [1, 64], p: [1, 16] };
const SALT_BYTES = 16;
const SALT_RANGE = [16, 64];

// A description for a new account or a new password: a fresh random salt, today's parameters.
export function newKdf() {
  return { kdf: ARGON2ID, salt: toB64(crypto.getRandomValues(new Uint8Array(SALT_BYTES))), ...DEFAULTS };
}

// A description from the server, checked; none at all is a server from before Argon2id (the PBKDF2 rule).
export function parseKdf(value) {
  if (value === undefined || value === null) return { kdf: PBKDF2 };
  if (typeof value !== 'object' || Array.isArray(value)) throw new Error('The server sent an unusable password KDF.');
  const keys = Object.keys(value).sort().join(',');
  if (value.kdf === PBKDF2 && keys === 'kdf') return { kdf: PBKDF2 };
  if (value.kdf !== ARGON2ID || keys !== 'kdf,m,p,salt,t') throw new Error('The server sent an unknown password KDF.');
  let salt;
  try {
    salt = fromB64(value.salt);
  } catch {
    throw new Error('The server sent an unusable password KDF salt.');
  }
  if (salt.length < SALT_RANGE[0] || salt.length > SALT_RANGE[1]) throw new Error('The server sent an unusable password KDF salt.');
  for (const [name, [low, high]] of Object.entries(BOUNDS)) {
    const n = value[name];
    if (!Number.isInteger(n) || n < low || n > high) throw new Error(`The server's password KDF has an unusable ${name}.`);
  }
  return { kdf: ARGON2ID, salt: value.salt, m: value.m, t: value.t, p: value.p };
}

// True for the fixed-salt rule and for Argon2id weaker than today's defaults.
export function needsUpgrade(description) {
  return description.kdf !== ARGON2ID || description.m < DEFAULTS.m || description.t < DEFAULTS.t;
}

// The raw 32-byte Argon2id output, computed in a worker: {hash, ms}.
export function argon2id(passwordBytes, description) {
  return new Promise((resolve, reject) => {
    const worker = new Worker('/js/crypto/argon2-worker.js');
    const done = (fn, value) => {
      worker.terminate();
      fn(value);
    };
    worker.onmessage = (event) => {
      if (event.data.error) done(reject, new Error('The password could not be processed: ' + event.data.error));
      else done(resolve, { hash: new Uint8Array(event.data.hash), ms: event.data.ms });
    };
    worker.onerror = (event) => {
      event.preventDefault();
      done(reject, new Error('The password could not be processed (the Argon2 worker failed to start).'));
    };
    const salt = fromB64(description.salt);
    worker.postMessage({ password: passwordBytes, salt, m: description.m, t: description.t, p: description.p });
  });
}

async function hkdf(master, info) {
  const key = await crypto.subtle.importKey('raw', master, 'HKDF', false, ['deriveBits']);
  const bits = await crypto.subtle.deriveBits(
    { name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: utf8(info) }, key, 256);
  return new Uint8Array(bits);
}

// {cryptoKey, verificationKey, kdf} of the password under a checked description.
export async function deriveKeys(password, description) {
  if (description.kdf !== ARGON2ID) return { ...(await passwordKeys(password)), kdf: description };
  const { hash } = await argon2id(utf8(password), description);
  try {
    const [cryptoKey, verificationKey] = await Promise.all([
      hkdf(hash, 'mailiverse key block key'), hkdf(hash, 'mailiverse srp password')]);
    return { cryptoKey, verificationKey, kdf: description };
  } finally {
    hash.fill(0);
  }
}
