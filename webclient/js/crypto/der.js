// Lenient DER/BER reader for RSA keys: PKCS#8 (or bare PKCS#1) private keys and SPKI public keys.
// Non-minimal length forms (as written by the original web client's asn1writer) are accepted.

import { bytesToBigInt } from './bytes.js';

const MAX_KEY_BYTES = 16 * 1024;

function readTlv(data, at) {
  if (at + 2 > data.length) throw new Error('truncated DER');
  const tag = data[at];
  let length = data[at + 1];
  let offset = at + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 4 || offset + count > data.length) throw new Error('bad DER length');
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + data[offset + i];
    offset += count;
  }
  if (offset + length > data.length) throw new Error('truncated DER');
  return { tag, start: offset, end: offset + length, value: data.subarray(offset, offset + length) };
}

function children(data) {
  const out = [];
  let at = 0;
  while (at < data.length) {
    const tlv = readTlv(data, at);
    out.push(tlv);
    at = tlv.end;
  }
  return out;
}

function integer(tlv) {
  if (tlv.tag !== 0x02 || tlv.value.length === 0) throw new Error('expected INTEGER');
  if (tlv.value[0] & 0x80) throw new Error('negative INTEGER');
  return bytesToBigInt(tlv.value);
}

function rsaPrivate(seq) {
  const items = children(seq.value);
  if (items.length < 9) throw new Error('short RSAPrivateKey');
  const [, n, e, d, p, q, dp, dq, qi] = items.slice(0, 9).map(integer);
  return { n, e, d, p, q, dp, dq, qi };
}

// Returns {n, e, d, p, q, dp, dq, qi} as BigInts.
export function parsePrivateKey(der) {
  if (der.length > MAX_KEY_BYTES) throw new Error('key too large');
  const top = readTlv(der, 0);
  if (top.tag !== 0x30) throw new Error('expected SEQUENCE');
  const items = children(top.value);
  if (items.length >= 3 && items[1].tag === 0x30 && items[2].tag === 0x04) {
    const inner = readTlv(items[2].value, 0);
    return rsaPrivate(inner);
  }
  return rsaPrivate(top);
}

// Returns {n, e} from a SubjectPublicKeyInfo.
export function parsePublicKey(der) {
  if (der.length > MAX_KEY_BYTES) throw new Error('key too large');
  const top = readTlv(der, 0);
  const items = children(top.value);
  const bits = items[1];
  if (!bits || bits.tag !== 0x03) throw new Error('expected BIT STRING');
  const inner = readTlv(bits.value.subarray(1), 0);
  const [n, e] = children(inner.value).map(integer);
  return { n, e };
}
