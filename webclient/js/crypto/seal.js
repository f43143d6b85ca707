// Sealing to a public key in the authenticated v2 envelope (mailiverse/crypto/envelope.py, docs/formats.md):
// what the client writes for itself alone (an alias's label) must open with the same code as the mail the
// appliance seals, in this client and in Python. WebCrypto only; the random parts come from the browser.

import { concat, randomBytes } from './bytes.js';
import { deflate } from './zlib.js';

const VERSION = 2;
const NONCE_PREFIX = 7;
export const DEFAULT_CHUNK = 65536;
const MAX_CHUNK = 16 * 1024 * 1024;

function u32(value) {
  return new Uint8Array([(value >>> 24) & 255, (value >>> 16) & 255, (value >>> 8) & 255, value & 255]);
}

// RSA-OAEP (SHA-256, MGF1-SHA-256, no label) from an SPKI public key.
export async function importSealingKey(spki) {
  return crypto.subtle.importKey('spki', spki, { name: 'RSA-OAEP', hash: 'SHA-256' }, false, ['encrypt']);
}

// header = 0x02 || u16(len W) || W || u32(chunk) || prefix(7); chunk i = AES-256-GCM(CK, prefix || u32(i) ||
// final, aad = header). Every chunk is full but the last, which holds 1..chunk bytes (0 only when all is empty).
export async function seal(publicKey, plaintext, chunkSize = DEFAULT_CHUNK) {
  if (!Number.isInteger(chunkSize) || chunkSize < 1 || chunkSize > MAX_CHUNK) throw new Error('bad chunk size');
  const contentKey = randomBytes(32);
  const wrapped = new Uint8Array(await crypto.subtle.encrypt({ name: 'RSA-OAEP' }, publicKey, contentKey));
  const prefix = randomBytes(NONCE_PREFIX);
  const header = concat(new Uint8Array([VERSION, wrapped.length >> 8, wrapped.length & 255]), wrapped,
    u32(chunkSize), prefix);
  const gcm = await crypto.subtle.importKey('raw', contentKey, { name: 'AES-GCM' }, false, ['encrypt']);
  contentKey.fill(0);
  const count = Math.max(1, Math.ceil(plaintext.length / chunkSize));
  const parts = [header];
  for (let i = 0; i < count; i++) {
    const nonce = concat(prefix, u32(i), new Uint8Array([i === count - 1 ? 1 : 0]));
    const piece = plaintext.subarray(i * chunkSize, Math.min(plaintext.length, (i + 1) * chunkSize));
    parts.push(new Uint8Array(await crypto.subtle.encrypt(
      { name: 'AES-GCM', iv: nonce, additionalData: header, tagLength: 128 }, gcm, piece)));
  }
  return concat(...parts);
}

// A stored mail object in v2: envelope(zlib(data)), as `seal_mail_object("v2", ...)` writes it.
export async function sealMailObject(publicKey, data) {
  return seal(publicKey, await deflate(data));
}
