// The user's RSA key pair: generation (WebCrypto RSA-OAEP), import from PKCS#8, and the key object
// the envelope code uses ({der, rsa, oaep, publicDer}).

import { parsePrivateKey } from './der.js';

export async function generateKeyPair(bits = 2048) {
  const pair = await crypto.subtle.generateKey(
    { name: 'RSA-OAEP', modulusLength: bits, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
    true, ['encrypt', 'decrypt']);
  const publicDer = new Uint8Array(await crypto.subtle.exportKey('spki', pair.publicKey));
  const privateDer = new Uint8Array(await crypto.subtle.exportKey('pkcs8', pair.privateKey));
  return { publicDer, privateDer };
}

// Builds the key object; WebCrypto's strict DER parser may refuse old web keys, then OAEP runs in BigInt.
export async function loadPrivateKey(privateDer, publicDer = null) {
  const rsa = parsePrivateKey(privateDer);
  let oaep = null;
  try {
    oaep = await crypto.subtle.importKey('pkcs8', privateDer, { name: 'RSA-OAEP', hash: 'SHA-256' }, false, ['decrypt']);
  } catch {
    oaep = null;
  }
  return { der: privateDer, publicDer, rsa, oaep };
}
