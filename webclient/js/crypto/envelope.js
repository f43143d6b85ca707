// Opening stored mail objects: RSA-AES v1/v0 (docs/formats.md §4) and the authenticated v2 envelope
// (docs/formats.md), then the lenient zlib layer. Every failure is the one DecryptionError.

import { randomBytes } from './bytes.js';
import { decryptCBC, decryptEmbedIV } from './aes.js';
import { DecryptionError } from './errors.js';
import { byteLength, rsaPrivate, unpadOaep, unpadPkcs1 } from './rsa.js';
import { inflate } from './zlib.js';

const MAX_CHUNK = 16 * 1024 * 1024;
const TAG = 16;

function u32(data, at) {
  return ((data[at] << 24) >>> 0) + (data[at + 1] << 16) + (data[at + 2] << 8) + data[at + 3];
}

function leftPad(bytes, length) {
  if (bytes.length > length) throw new DecryptionError();
  if (bytes.length === length) return bytes;
  const out = new Uint8Array(length);
  out.set(bytes, length - bytes.length);
  return out;
}

// The AES key inside W; a bad PKCS#1 block gives a random key, so the failure shows only later,
// in the AES layer, exactly like any other failure (no padding oracle).
async function unwrapPkcs1(key, wrapped) {
  const k = byteLength(key.rsa.n);
  let unpadded = null;
  try {
    unpadded = unpadPkcs1(await rsaPrivate(key.rsa, leftPad(wrapped, k)));
  } catch {
    unpadded = null;
  }
  return unpadded && unpadded.length === 32 ? unpadded : randomBytes(32);
}

// `known`: the message key from an earlier opening (no RSA then). Returns {plain, contentKey}.
async function openRsaAes(key, blob, known) {
  const version = blob[0];
  const lengthAt = version === 0 ? 4 : 1;
  if (blob.length < lengthAt + 4) throw new DecryptionError();
  const wLength = u32(blob, lengthAt);
  const start = lengthAt + 4;
  if (wLength === 0 || wLength > blob.length - start || (!known && wLength > byteLength(key.rsa.n))) {
    throw new DecryptionError();
  }
  const aesKey = known || await unwrapPkcs1(key, blob.subarray(start, start + wLength));
  const rest = blob.subarray(start + wLength);
  const plain = version === 1 ? await decryptEmbedIV(aesKey, rest) : await decryptCBC(aesKey, new Uint8Array(16), rest);
  return { plain, contentKey: aesKey };
}

async function unwrapOaep(key, wrapped) {
  if (key.oaep) {
    try {
      return new Uint8Array(await crypto.subtle.decrypt({ name: 'RSA-OAEP' }, key.oaep, wrapped));
    } catch {
      throw new DecryptionError();
    }
  }
  let unpadded = null;
  try {
    unpadded = await unpadOaep(await rsaPrivate(key.rsa, wrapped));
  } catch {
    unpadded = null;
  }
  if (!unpadded) throw new DecryptionError();
  return unpadded;
}

async function openV2(key, blob, known) {
  if (blob.length < 3) throw new DecryptionError();
  const wLength = (blob[1] << 8) | blob[2];
  const headerLength = 3 + wLength + 4 + 7;
  if ((!known && wLength !== byteLength(key.rsa.n)) || blob.length < headerLength + TAG) throw new DecryptionError();
  const header = blob.subarray(0, headerLength);
  const chunkSize = u32(blob, 3 + wLength);
  if (chunkSize < 1 || chunkSize > MAX_CHUNK) throw new DecryptionError();
  const prefix = blob.subarray(3 + wLength + 4, headerLength);
  const contentKey = known || await unwrapOaep(key, blob.subarray(3, 3 + wLength));
  if (contentKey.length !== 32) throw new DecryptionError();
  let gcm;
  try {
    gcm = await crypto.subtle.importKey('raw', contentKey, { name: 'AES-GCM' }, false, ['decrypt']);
  } catch {
    throw new DecryptionError();
  }
  const body = blob.subarray(headerLength);
  const piece = chunkSize + TAG;
  const count = Math.ceil(body.length / piece);
  const parts = [];
  let total = 0;
  for (let i = 0; i < count; i++) {
    const chunk = body.subarray(i * piece, Math.min(body.length, (i + 1) * piece));
    if (chunk.length < TAG) throw new DecryptionError();
    const nonce = new Uint8Array(12);
    nonce.set(prefix, 0);
    nonce.set([(i >>> 24) & 255, (i >>> 16) & 255, (i >>> 8) & 255, i & 255], 7);
    nonce[11] = i === count - 1 ? 1 : 0;
    try {
      const plain = await crypto.subtle.decrypt(
        { name: 'AES-GCM', iv: nonce, additionalData: header, tagLength: 128 }, gcm, chunk);
      parts.push(new Uint8Array(plain));
      total += plain.byteLength;
    } catch {
      throw new DecryptionError();
    }
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return { plain: out, contentKey };
}

// Any envelope (0x00/0x01 RSA-AES, 0x02 authenticated), with the message key it was opened with: {plain,
// contentKey}. With `known` (that key, from an earlier opening on this device) no RSA runs at all; a wrong one
// fails like any other damage (v2 authenticates; v1's padding and zlib layers catch it).
export async function decryptKeyed(key, blob, known = null) {
  if (!(blob instanceof Uint8Array) || blob.length === 0) throw new DecryptionError();
  if (known && known.length !== 32) throw new DecryptionError();
  if (blob[0] === 0 || blob[0] === 1) return openRsaAes(key, blob, known);
  if (blob[0] === 2) return openV2(key, blob, known);
  throw new DecryptionError();
}

// Decrypt any envelope: 0x00/0x01 RSA-AES, 0x02 authenticated envelope.
export async function decryptAny(key, blob) {
  return (await decryptKeyed(key, blob)).plain;
}

// A stored mail object (envelope(zlib(bytes))) and its message key: {plain, contentKey}.
export async function openMailObjectKeyed(key, blob, limit, known = null) {
  const { plain, contentKey } = await decryptKeyed(key, blob, known);
  try {
    return { plain: await inflate(plain, limit), contentKey };
  } catch {
    throw new DecryptionError();
  }
}

// A stored mail object: envelope(zlib(bytes)).
export async function openMailObject(key, blob, limit) {
  return (await openMailObjectKeyed(key, blob, limit)).plain;
}

// openOwnMailObject with the message key: {plain, contentKey}. A `known` key is tried first; when it fails (a
// cache from before the object was replaced) the account's keys are.
export async function openOwnMailObjectKeyed(key, blob, limit, known = null) {
  if (known) {
    try {
      return await openMailObjectKeyed(null, blob, limit, known);
    } catch { /* the account's keys */ }
  }
  const keys = [key, ...(key.retired || [])];
  for (let i = 0; i < keys.length - 1; i++) {
    try {
      return await openMailObjectKeyed(keys[i], blob, limit);
    } catch { /* the next key */ }
  }
  return openMailObjectKeyed(keys[keys.length - 1], blob, limit);
}

// A mail object sealed to the account itself: tried with the current key, then with each retired key (the key
// object's `retired`, newest first, after a rotation). Still the one DecryptionError when none opens it.
export async function openOwnMailObject(key, blob, limit) {
  const keys = [key, ...(key.retired || [])];
  for (let i = 0; i < keys.length - 1; i++) {
    try {
      return await openMailObject(keys[i], blob, limit);
    } catch { /* the next key */ }
  }
  return openMailObject(keys[keys.length - 1], blob, limit);
}
