// AES-CBC-256-EmbedIV: IV(16) || AES-256-CBC(key, IV, PKCS#7(plaintext)), via WebCrypto.

import { concat, randomBytes } from './bytes.js';
import { DecryptionError } from './errors.js';

async function cbcKey(raw, usage) {
  if (raw.length !== 32) throw new DecryptionError();
  return crypto.subtle.importKey('raw', raw, { name: 'AES-CBC' }, false, [usage]);
}

export async function encryptEmbedIV(rawKey, plaintext) {
  const iv = randomBytes(16);
  const key = await cbcKey(rawKey, 'encrypt');
  const body = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-CBC', iv }, key, plaintext));
  return concat(iv, body);
}

// Decrypt with an explicit IV; WebCrypto checks every PKCS#7 byte. Any failure is DecryptionError.
export async function decryptCBC(rawKey, iv, body) {
  if (body.length === 0 || body.length % 16 !== 0) throw new DecryptionError();
  try {
    const key = await cbcKey(rawKey, 'decrypt');
    return new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-CBC', iv }, key, body));
  } catch {
    throw new DecryptionError();
  }
}

export async function decryptEmbedIV(rawKey, blob) {
  if (blob.length < 32) throw new DecryptionError();
  return decryptCBC(rawKey, blob.subarray(0, 16), blob.subarray(16));
}
