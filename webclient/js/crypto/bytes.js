// Byte helpers: base64, hex, UTF-8, concatenation and BigInt <-> big-endian bytes.

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: false });

export function utf8(text) {
  return encoder.encode(text);
}

export function fromUtf8(bytes) {
  return decoder.decode(bytes);
}

export function concat(...parts) {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function toB64(bytes) {
  let text = '';
  const step = 0x8000;
  for (let i = 0; i < bytes.length; i += step) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + step));
  }
  return btoa(text);
}

export function fromB64(text) {
  if (typeof text !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(text.replace(/\s+/g, ''))) {
    throw new Error('bad base64');
  }
  const raw = atob(text.replace(/\s+/g, ''));
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

export function toHex(bytes) {
  let out = '';
  for (const b of bytes) out += b.toString(16).padStart(2, '0');
  return out;
}

export function fromHex(text) {
  if (text.length % 2) throw new Error('odd hex');
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(i * 2, 2), 16);
  return out;
}

export function bytesToBigInt(bytes) {
  if (bytes.length === 0) return 0n;
  return BigInt('0x' + toHex(bytes));
}

// Minimal big-endian bytes (empty for zero), or left-padded to `length` when given.
export function bigIntToBytes(value, length) {
  let hex = value.toString(16);
  if (hex.length % 2) hex = '0' + hex;
  if (value === 0n) hex = '';
  const raw = fromHex(hex);
  if (length === undefined) return raw;
  if (raw.length > length) throw new Error('value too large');
  const out = new Uint8Array(length);
  out.set(raw, length - raw.length);
  return out;
}

// Compare two byte arrays without an early exit.
export function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

export function randomBytes(n) {
  const out = new Uint8Array(n);
  crypto.getRandomValues(out);
  return out;
}

export async function sha256(...parts) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', concat(...parts)));
}
