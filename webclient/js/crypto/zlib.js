// zlib wrapper the Mailiverse way: write real zlib, read leniently (skip 2-byte header and 4-byte trailer).

import { concat } from './bytes.js';

export const MAX_INFLATED = 64 * 1024 * 1024;

async function drain(stream, limit) {
  const reader = stream.getReader();
  const parts = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > limit) {
      await reader.cancel();
      throw new Error('inflated data too large');
    }
    parts.push(value);
  }
  return concat(...parts);
}

// Inflate data[2:-4] as raw deflate; the header and Adler-32 are never checked (web writers zero it).
export async function inflate(data, limit = MAX_INFLATED) {
  if (data.length < 6) throw new Error('zlib data too short');
  const body = data.subarray(2, data.length - 4);
  const stream = new Blob([body]).stream().pipeThrough(new DecompressionStream('deflate-raw'));
  return drain(stream, limit);
}

// Real zlib (header + Adler-32), which both original readers accept.
export async function deflate(data) {
  const stream = new Blob([data]).stream().pipeThrough(new CompressionStream('deflate'));
  return drain(stream, Number.MAX_SAFE_INTEGER);
}
