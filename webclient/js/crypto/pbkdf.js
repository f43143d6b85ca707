// Password keys (docs/formats.md §5): CryptoKey and VerificationKey, PBKDF2-HMAC-SHA256, 131072 rounds.

import { fromHex, utf8 } from './bytes.js';

export const ITERATIONS = 131072;
const CRYPTO_SALT = fromHex('c873418c7ed8ee89');
const VERIFICATION_SALT = fromHex('125314bb7e97ce55');

async function pbkdf2(password, salt) {
  const base = await crypto.subtle.importKey('raw', utf8(password), 'PBKDF2', false, ['deriveBits']);
  const bits = await crypto.subtle.deriveBits(
    { name: 'PBKDF2', hash: 'SHA-256', salt, iterations: ITERATIONS }, base, 256);
  return new Uint8Array(bits);
}

export async function passwordKeys(password) {
  const [cryptoKey, verificationKey] = await Promise.all([
    pbkdf2(password, CRYPTO_SALT), pbkdf2(password, VERIFICATION_SALT)]);
  return { cryptoKey, verificationKey };
}
