// zlib wrapper the Mailiverse way: write real zlib, read leniently (skip 2-byte header and 4-byte trailer).

import { Inflate, inflateSync } from '../../vendor/fflate/fflate.js';
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

// Raw deflate. A small body (a twin, most messages) synchronously with vendor/fflate: a DecompressionStream costs
// about a millisecond of set-up per call, more than the RSA step; anything larger through the browser's native one.
const SMALL = 64 * 1024;
const SLICE = 1024;

// fflate's streaming Inflate, fed in slices so no step expands past about 1 MiB before the limit is checked.
function inflateSmall(body, limit) {
  const parts = [];
  let total = 0;
  let ended = false;
  const inflater = new Inflate((chunk, final) => {
    total += chunk.length;
    if (total > limit) throw new Error('inflated data too large');
    if (chunk.length) parts.push(chunk);
    ended = final;
  });
  for (let at = 0; at < body.length; at += SLICE) {
    inflater.push(body.subarray(at, Math.min(body.length, at + SLICE)), at + SLICE >= body.length);
  }
  if (!ended) throw new Error('deflate data cut short');
  return parts.length === 1 ? parts[0] : concat(...parts);
}

export async function inflateRaw(body, limit = MAX_INFLATED) {
  if (!body.length) throw new Error('no deflate data');
  if (body.length <= SLICE) {
    // One step: a body this small expands to at most about 1 MiB.
    const out = inflateSync(body);
    if (out.length > limit) throw new Error('inflated data too large');
    return out;
  }
  if (body.length <= SMALL) return inflateSmall(body, limit);
  const stream = new Blob([body]).stream().pipeThrough(new DecompressionStream('deflate-raw'));
  return drain(stream, limit);
}

// Inflate data[2:-4] as raw deflate; the header and Adler-32 are never checked (web writers zero it).
export async function inflate(data, limit = MAX_INFLATED) {
  if (data.length < 6) throw new Error('zlib data too short');
  return inflateRaw(data.subarray(2, data.length - 4), limit);
}

// Real zlib (header + Adler-32), which both original readers accept.
export async function deflate(data) {
  const stream = new Blob([data]).stream().pipeThrough(new CompressionStream('deflate'));
  return drain(stream, Number.MAX_SAFE_INTEGER);
}
