// The key block (docs/formats.md §7.1): EmbedIV(CryptoKey, zlib(utf8("core.util.Environment!" + JSON))).

import { decryptEmbedIV, encryptEmbedIV } from './aes.js';
import { fromUtf8, utf8 } from './bytes.js';
import { DecryptionError } from './errors.js';
import { deflate, inflate } from './zlib.js';

const PREFIX = 'core.util.Environment!';
const MAX_ENVIRONMENT = 1024 * 1024;

export async function encryptKeyBlock(cryptoKey, environment) {
  const text = PREFIX + JSON.stringify(environment);
  return encryptEmbedIV(cryptoKey, await deflate(utf8(text)));
}

export async function decryptKeyBlock(cryptoKey, block) {
  if (block.length > 2 * MAX_ENVIRONMENT) throw new DecryptionError();
  const compressed = await decryptEmbedIV(cryptoKey, block);
  try {
    const text = fromUtf8(await inflate(compressed, MAX_ENVIRONMENT));
    if (!text.startsWith(PREFIX)) throw new Error('not an environment');
    const env = JSON.parse(text.slice(PREFIX.length));
    if (typeof env !== 'object' || env === null || Array.isArray(env)) throw new Error('not a map');
    for (const value of Object.values(env)) if (typeof value !== 'string') throw new Error('not strings');
    return env;
  } catch {
    throw new DecryptionError();
  }
}
