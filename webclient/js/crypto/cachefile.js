// Cache files (docs/formats.md §7.4): Cache/<name> = EmbedIV(SHA-256(utf8(name) || PKCS#8 bytes), body).

import { decryptEmbedIV, encryptEmbedIV } from './aes.js';
import { sha256, utf8 } from './bytes.js';

export async function cacheKey(name, privateDer) {
  if (!/^[\x21-\x7e]{1,256}$/.test(name) || name.includes('/')) throw new Error('bad cache name');
  return sha256(utf8(name), privateDer);
}

export async function encryptCacheFile(name, privateDer, body) {
  return encryptEmbedIV(await cacheKey(name, privateDer), body);
}

export async function decryptCacheFile(name, privateDer, blob) {
  return decryptEmbedIV(await cacheKey(name, privateDer), blob);
}
