// End to end (docs/e2e.md): this device builds the message, its JSON twin (as mailiverse/mime/twin.py
// convert_document(..., safe_html=True) would for the same bytes) with the `e2e` signature member, seals one copy
// per recipient, per organisation and for Sent to keys the verified directory gave, and uploads only ciphertext to
// POST /api/send/sealed. The reader's side checks such a signature. One module because the parts share one
// contract (the twin, the signed digest, the envelopes); the key checks themselves are crypto/keylog.js's.

import { ApiError, getJson, getObject, postJson } from '../api.js';
import { encryptEmbedIV } from '../crypto/aes.js';
import {
  bigIntToBytes, bytesToBigInt, concat, equalBytes, fromB64, randomBytes, sha256, toB64, utf8,
} from '../crypto/bytes.js';
import { parsePublicKey } from '../crypto/der.js';
import { openOwnMailObject } from '../crypto/envelope.js';
import { domainOf, KeyAlarm, loadState, saveState, verifyAnswer, verifyRemoteAnswer } from '../crypto/keylog.js';
import { importSealingKey, seal } from '../crypto/seal.js';
import { deflate } from '../crypto/zlib.js';
import { buildMessage } from './compose.js';

const SIGNED_PREFIX = utf8('mailiverse-e2e-v1\n');
const PSS = { name: 'RSA-PSS', saltLength: 32 };
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
// The account an organisation's copies go to ("mailiverse-admin domain policy --account", by default).
const ORGANISATION_ACCOUNT = 'organisation';

// A recipient's key (or the sender's own) that failed verification: `address` and the KeyAlarm's `reason`.
export class RecipientKeyAlarm extends Error {
  constructor(address, reason) {
    super(`Not sent: the key of ${address} failed verification (${reason})`);
    this.name = 'RecipientKeyAlarm';
    this.address = address;
    this.reason = reason;
  }
}

// -- names ------------------------------------------------------------------------------------------------

// `<ms>_<n>`: the time now and a random non-negative 63-bit number, as the appliance names delivered mail.
export function newKeyBase(nowMs) {
  const random = randomBytes(8);
  random[0] &= 0x7f;
  return `${nowMs}_${bytesToBigInt(random).toString()}`;
}

function keyUrl(address) {
  return '/api/keys/' + encodeURIComponent(address).replace(/%40/g, '@');
}

function remoteKeyUrl(address) {
  return '/api/remote/keys/' + encodeURIComponent(address).replace(/%40/g, '@');
}

// -- the JSON twin ----------------------------------------------------------------------------------------

// Text as a parser that reads header bytes as Latin-1 sees it (what convert_document does with UTF-8 in a header).
function latin1(text) {
  let out = '';
  for (const b of utf8(text)) out += String.fromCharCode(b);
  return out;
}

const exactUtf8 = new TextDecoder('utf-8', { ignoreBOM: true });

// decode_text of a value compose.js wrote: its own RFC 2047 words (a folded run of =?UTF-8?B?...?=) or plain
// text without "=?". Anything else would need a reader's full decoder, so it is refused here.
function decodedValue(value) {
  const raw = latin1(value);
  if (!raw.includes('=?')) return raw;
  const words = raw.split('\r\n ').map((w) => /^=\?UTF-8\?B\?([A-Za-z0-9+/]*={0,2})\?=$/.exec(w));
  if (words.some((m) => !m)) throw new Error('This message cannot be sealed end to end: a header holds "=?".');
  return words.map((m) => exactUtf8.decode(fromB64(m[1]))).join('');
}

function b64Text(text) {
  return toB64(utf8(text));
}

function twinHeaders(headers) {
  return headers.map(([name, value]) => [name, b64Text(decodedValue(value))]);
}

// parse_header + bucket for a list compose.js wrote (plain addresses, no specials, folded after commas).
function bucket(value) {
  return latin1(value).split(',').map((a) => {
    const address = a.trim();
    if (address.includes('=?')) throw new Error('This message cannot be sealed end to end: an address holds "=?".');
    return { email: b64Text(address) };
  });
}

function textValue(part, single) {
  const text = exactUtf8.decode(part.bytes);
  // A quoted-printable body that is the whole message keeps its last line break (base64 drops it in decoding).
  return single && part.encoding === 'quoted-printable' ? text + '\r\n' : text;
}

// convert_document(message, original_path=originalPath, written_ms=writtenMs, safe_html=True) for a message of
// compose.js's buildMessage(..., {opaque: true}), from its layout: members in the converter's order.
export function twinOf(layout, originalPath, writtenMs) {
  const find = (name) => layout.headers.find(([n]) => n === name);
  const addresses = {};
  if (find('Cc')) addresses.cc = bucket(find('Cc')[1]);
  addresses.from = bucket(find('From')[1]);
  if (find('To')) addresses.to = bucket(find('To')[1]);
  addresses['reply-to'] = addresses.from;
  const doc = { addresses, original: originalPath,
    dates: { written: String(writtenMs), sent: String(Math.floor(layout.date / 1000) * 1000) },
    uidl: latin1(find('Message-ID')[1]) };
  const textPart = (part, single) => ({ headers: twinHeaders(part.headers), class: 'string',
    value: textValue(part, single) });
  if (layout.boundary === null) {
    doc.content = { ...textPart({ ...layout.text, headers: layout.headers }, true) };
  } else {
    doc.content = { headers: twinHeaders(layout.headers), class: 'part', value: [textPart(layout.text, false),
      ...layout.attachments.map((a) => ({ headers: twinHeaders(a.headers), class: 'bytes', value: toB64(a.bytes) }))] };
  }
  return doc;
}

// org.json's JSONObject.quote, as mailiverse/mime/jsonout.py writes it.
function quote(text) {
  const escaped = text.replace(/[\\"\n\r\t\b\f]/g, (c) => ({ '\\': '\\\\', '"': '\\"', '\n': '\\n', '\r': '\\r',
    '\t': '\\t', '\b': '\\b', '\f': '\\f' })[c]).replace(/<\//g, '<\\/');
  // eslint-disable-next-line no-control-regex
  return '"' + escaped.replace(/[\x00-\x07\x0b\x0e-\x1f\x80-\x9f\u2000-\u20ff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`) + '"';
}

// jsonout.dumps: compact, members in insertion order, org.json's escaping.
export function twinJson(value) {
  if (typeof value === 'string') return quote(value);
  if (Array.isArray(value)) return '[' + value.map(twinJson).join(',') + ']';
  if (value === null) return 'null';
  if (typeof value === 'object') {
    return '{' + Object.entries(value).map(([k, v]) => quote(k) + ':' + twinJson(v)).join(',') + '}';
  }
  return String(value);
}

// -- the signature ----------------------------------------------------------------------------------------

// The `e2e` member: RSA-PSS (SHA-256, MGF1-SHA-256, salt 32) by the sender's private key (PKCS#8 DER) over
// "mailiverse-e2e-v1\n" + SHA-256(original).
export async function signOriginal(privateDer, original, from, keyId) {
  let key;
  try {
    key = await crypto.subtle.importKey('pkcs8', privateDer, { name: 'RSA-PSS', hash: 'SHA-256' }, false, ['sign']);
  } catch {
    throw new Error('This browser cannot sign with your key (its encoding is too old for WebCrypto).');
  }
  const digest = await sha256(original);
  const signature = new Uint8Array(await crypto.subtle.sign(PSS, key, concat(SIGNED_PREFIX, digest)));
  return { v: 1, from, key_id: keyId, sha256: toB64(digest), signature: toB64(signature) };
}

// Whether `signature` (bytes) is the PSS signature of the SPKI key `publicDer` over the prefix and `digest`.
async function signatureHolds(publicDer, digest, signature) {
  try {
    const key = await crypto.subtle.importKey('spki', publicDer, { name: 'RSA-PSS', hash: 'SHA-256' }, false,
      ['verify']);
    return await crypto.subtle.verify(PSS, key, signature, concat(SIGNED_PREFIX, digest));
  } catch {
    return false;
  }
}

// -- sealing ----------------------------------------------------------------------------------------------

// RSAES-PKCS1-v1_5 encryption (the v1 format's W; WebCrypto has none) with the public key's n and e.
function pkcs1Encrypt(n, e, message) {
  const k = Math.ceil(n.toString(16).length / 2);
  const padding = new Uint8Array(k - 3 - message.length);
  for (let i = 0; i < padding.length; i++) {
    do padding[i] = randomBytes(1)[0]; while (padding[i] === 0);
  }
  const m = bytesToBigInt(concat(new Uint8Array([0, 2]), padding, new Uint8Array([0]), message));
  let c = 1n;
  let base = m % n;
  for (let x = e; x > 0n; x >>= 1n) {
    if (x & 1n) c = (c * base) % n;
    base = (base * base) % n;
  }
  return bigIntToBytes(c, k);
}

// v1: 0x01 || u32(len W) || W || IV || AES-256-CBC(K, IV, data), as mailiverse/crypto/rsaaes.py writes it.
async function sealV1(publicDer, data) {
  const { n, e } = parsePublicKey(publicDer);
  const aesKey = randomBytes(32);
  const wrapped = pkcs1Encrypt(n, e, aesKey);
  const body = await encryptEmbedIV(aesKey, data);
  aesKey.fill(0);
  const length = new Uint8Array([wrapped.length >>> 24, (wrapped.length >>> 16) & 255, (wrapped.length >>> 8) & 255,
    wrapped.length & 255]);
  return concat(new Uint8Array([1]), length, wrapped, body);
}

// A stored mail object for `key` ({format, publicDer}) from data already zlib-compressed.
export async function sealCompressed(key, compressed) {
  if (key.format === 'v1') return sealV1(key.publicDer, compressed);
  if (key.format === 'v2') return seal(await importSealingKey(key.publicDer), compressed);
  throw new Error(`A key's envelope format ${key.format} is unknown.`);
}

// -- where the message can go -----------------------------------------------------------------------------

function isOwnKey(session, record) {
  return !!(session.key.rsa && session.key.rsa.n === record.n && session.key.rsa.e === record.e);
}

function sealingKey(verified) {
  return { keyId: verified.record.key_id, format: verified.record.format, publicDer: verified.record.der,
    kind: verified.record.kind };
}

// The directory's answer for `address` (here, or through this appliance at its own one): {answer} or {none: why}.
// Error when the other appliance cannot be reached or the lookup failed otherwise.
// `local` is a guess from the account's own domains: a domain this appliance also serves (400 invalid_request
// from /api/remote) is looked up here instead; {local} says where the answer came from.
async function fetchKey(address, local) {
  try {
    return { answer: await getJson(local ? keyUrl(address) : remoteKeyUrl(address)), local };
  } catch (e) {
    if (!local && e instanceof ApiError && e.code === 'invalid_request') return fetchKey(address, true);
    if (!(e instanceof ApiError)) throw new Error(`The key of ${address} could not be looked up (${e.message || e}).`);
    if (e.code === 'no_appliance') return { none: `${address} has no mailiverse appliance` };
    if (e.status === 404) {
      return { none: local ? `${address} has no published key` : `${address} has no key at its appliance` };
    }
    if (e.code === 'remote_unavailable') {
      throw new Error(`The mailiverse appliance of ${domainOf(address)} cannot be reached right now (${e.message}); `
        + 'nothing was sent. Try again later.');
    }
    throw new Error(`The key of ${address} could not be looked up (${e.message}).`);
  }
}

// fetchKey's result verified against `state`: {verified} or {none}; KeyAlarm when the answer does not verify.
async function verifyFound(state, address, found) {
  if (found.none) return found;
  return { verified: found.local ? await verifyAnswer(state, address, found.answer)
    : await verifyRemoteAnswer(state, address, found.answer) };
}

async function directoryKey(state, address, local) {
  return verifyFound(state, address, await fetchKey(address, local));
}

async function checked(address, job) {
  try {
    return await job();
  } catch (e) {
    if (e instanceof KeyAlarm) throw new RecipientKeyAlarm(address, e.message);
    throw e;
  }
}

// How a message from the account to `recipients` can go: {e2e: true, recipients: [{address, key}], organisations:
// [{domain, key}], sender: key} when every recipient has a verified key (key = {keyId, format, publicDer}), or
// {e2e: false, reasons: ["x@y has no mailiverse appliance", ...]} when some cannot get it end to end. Throws
// RecipientKeyAlarm for a key that fails verification (the sender's own included), Error when a directory cannot
// answer. One trust state for all the checks, loaded and saved once.
export async function planSend(session, recipients) {
  const ownAddresses = session.account.addresses || [];
  if (!ownAddresses.length) throw new Error('The account has no address to send from.');
  const ownDomains = new Set(ownAddresses.map(domainOf));
  const seen = new Map();  // the distinct recipients, each as first spelled
  for (const address of recipients) if (!seen.has(address.toLowerCase())) seen.set(address.toLowerCase(), address);
  const distinct = [...seen.values()];
  const state = await loadState(session);
  const reasons = [];
  const targets = [];
  const policies = new Map();
  const isLocal = (address) => ownDomains.has(domainOf(address));
  // Every answer fetched at once, then verified one after the other against the one trust state.
  const fetched = await Promise.allSettled(distinct.map((address) => fetchKey(address, isLocal(address))));
  for (const [i, address] of distinct.entries()) {
    if (fetched[i].status === 'rejected') throw fetched[i].reason;
    const found = await checked(address, () => verifyFound(state, address, fetched[i].value));
    if (found.none) {
      reasons.push(found.none);
      continue;
    }
    targets.push({ address, key: sealingKey(found.verified) });
    const { policy } = found.verified;
    if (policy && policy.policy === 'organisation') {
      policies.set(policy.domain, { policy, local: fetched[i].value.local });
    }
  }
  const sender = ownAddresses[0];
  const own = reasons.length ? null : await checked(sender, async () => {
    const found = await directoryKey(state, sender, true);
    if (found.none) return null;
    if (!isOwnKey(session, found.verified.record)) throw new KeyAlarm('the directory serves a key you do not hold');
    return found.verified;
  });
  if (!reasons.length && !own) reasons.push('your own key is not published yet');
  if (reasons.length) {
    await saveState(session, state);
    return { e2e: false, reasons };
  }
  // The policy names only the organisation key's id; its record is the organisation account's, at
  // organisation@<domain> (an organisation account under another name: the message goes as ordinary mail, which the
  // appliance seals to that key itself).
  const organisations = [];
  for (const [domain, { policy, local }] of policies) {
    const address = `${ORGANISATION_ACCOUNT}@${domain}`;
    const found = await checked(address, () => directoryKey(state, address, local));
    if (found.none || found.verified.record.kind !== 'organisation' || found.verified.record.key_id !== policy.keyId) {
      reasons.push(`the organisation key of ${domain} is not in its directory`);
    } else {
      organisations.push({ domain, address, key: sealingKey(found.verified) });
    }
  }
  await saveState(session, state);
  if (reasons.length) return { e2e: false, reasons };
  return { e2e: true, recipients: targets, organisations, sender: sealingKey(own) };
}

// The composer's words for a plan that cannot go end to end.
export function plainNotice(plan) {
  return `Not end-to-end: ${plan.reasons.join('; ')}; this message will be sent as ordinary mail.`;
}

// -- sending ----------------------------------------------------------------------------------------------

// Build, sign, seal and upload `draft` (composer's draft) along `plan` (planSend's, e2e): the /api/send/sealed
// answer. `stamps`: Hashcash stamps for the recipients' screeners, which the appliance is given beside the
// envelopes; those for To and Cc are also written into the message, as /api/send does (a Bcc recipient's would
// name them to everyone). A key base already used (409 conflict) is replaced by a new one once.
export async function sendSealed(session, draft, plan, { host, stamps = [] } = {}) {
  const shown = new Set([...draft.to, ...draft.cc].map((a) => a.trim().toLowerCase()));
  const written = stamps.filter((stamp) => shown.has(stamp.split(':')[3]));
  for (let attempt = 0; ; attempt++) {
    const nowMs = Date.now();
    const keyBase = newKeyBase(nowMs);
    // The Sent copy has a key base of its own: a message to oneself then has distinct IDs in Inbox and Sent.
    const sentKeyBase = newKeyBase(nowMs);
    const { message, layout } = buildMessage(draft, host, { date: nowMs, opaque: true, stamps: written });
    // From an alias: no signature, which would name the account's key and tie the alias to it in the public log.
    const own = (session.account.addresses || []).some((a) => a.toLowerCase() === draft.from.toLowerCase());
    const e2e = own ? await signOriginal(session.key.der, message, draft.from, plan.sender.keyId)
      : { v: 1, from: draft.from };
    const original = await deflate(message);
    const twins = { In: twinOf(layout, `Mail/In/${keyBase}`, nowMs),
      Sent: twinOf(layout, `Mail/Sent/${sentKeyBase}`, nowMs) };
    // Each copy's twin names the address it is for, as delivery records it (`delivered_to`, after `e2e`).
    const objects = async (key, folder, deliveredTo) => {
      const twin = await deflate(utf8(twinJson({ ...twins[folder], e2e, delivered_to: deliveredTo })));
      return { key_id: key.keyId, original: toB64(await sealCompressed(key, original)),
        twin: toB64(await sealCompressed(key, twin)) };
    };
    const envelopes = [];
    for (const { address, key } of plan.recipients) {
      envelopes.push({ to: address, ...await objects(key, 'In', address) });
    }
    for (const { domain, address, key } of plan.organisations) {
      envelopes.push({ organisation: domain, ...await objects(key, 'In', address) });
    }
    const sent = { ...await objects(plan.sender, 'Sent', draft.from), key_base: sentKeyBase };
    const body = { from: draft.from, key_base: keyBase, envelopes, sent };
    if (stamps.length) body.stamps = stamps;
    try {
      return await postJson('/api/send/sealed', body);
    } catch (e) {
      if (!(attempt === 0 && e instanceof ApiError && e.code === 'conflict')) throw e;
    }
  }
}

// -- proofs of work ---------------------------------------------------------------------------------------

// Hashcash version 1 as mailiverse/hashcash.py mints it: 20 bits, the recipient's address as the resource, dated
// to the minute in UTC, 12 random bytes, a counter in the base-64 alphabet. Made here because the appliance cannot
// stamp what it cannot read.
const STAMP_BITS = 20;
const COUNTER_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const schedule = new Int32Array(80);

// The first 32 bits of SHA-1 over `buffer`, already padded to `blocks` 64-byte blocks.
function sha1Head(buffer, blocks) {
  let h0 = 0x67452301;
  let h1 = 0xefcdab89 | 0;
  let h2 = 0x98badcfe | 0;
  let h3 = 0x10325476;
  let h4 = 0xc3d2e1f0 | 0;
  const w = schedule;
  for (let block = 0; block < blocks; block++) {
    for (let t = 0, o = block * 64; t < 16; t++, o += 4) {
      w[t] = (buffer[o] << 24) | (buffer[o + 1] << 16) | (buffer[o + 2] << 8) | buffer[o + 3];
    }
    for (let t = 16; t < 80; t++) {
      const x = w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16];
      w[t] = (x << 1) | (x >>> 31);
    }
    let a = h0; let b = h1; let c = h2; let d = h3; let e = h4;
    for (let t = 0; t < 80; t++) {
      let f;
      let k;
      if (t < 20) {
        f = (b & c) | (~b & d);
        k = 0x5a827999;
      } else if (t < 40) {
        f = b ^ c ^ d;
        k = 0x6ed9eba1;
      } else if (t < 60) {
        f = (b & c) | (b & d) | (c & d);
        k = 0x8f1bbcdc | 0;
      } else {
        f = b ^ c ^ d;
        k = 0xca62c1d6 | 0;
      }
      const next = (((a << 5) | (a >>> 27)) + f + e + k + w[t]) | 0;
      e = d; d = c; c = (b << 30) | (b >>> 2); b = a; a = next;
    }
    h0 = (h0 + a) | 0; h1 = (h1 + b) | 0; h2 = (h2 + c) | 0; h3 = (h3 + d) | 0; h4 = (h4 + e) | 0;
  }
  return h0 >>> 0;
}

function counterText(number) {
  let text = '';
  let n = number;
  do {
    text = COUNTER_ALPHABET[n % 64] + text;
    n = Math.floor(n / 64);
  } while (n > 0);
  return text;
}

// One stamp for `resource` (printable ASCII without ':'), yielding to the page every 65536 tries.
export async function mintStamp(resource, now = new Date()) {
  if (!/^[\x21-\x39\x3b-\x7e]+$/.test(resource)) throw new Error(`No proof of work can name ${resource}.`);
  const two = (n) => String(n).padStart(2, '0');
  const date = `${two(now.getUTCFullYear() % 100)}${two(now.getUTCMonth() + 1)}${two(now.getUTCDate())}`
    + `${two(now.getUTCHours())}${two(now.getUTCMinutes())}`;
  const prefix = `1:${STAMP_BITS}:${date}:${resource}::${toB64(randomBytes(12)).replace(/=+$/, '')}:`;
  const buffer = new Uint8Array(Math.ceil((prefix.length + 16 + 9) / 64) * 64);
  buffer.set(utf8(prefix));
  const limit = 2 ** (32 - STAMP_BITS);
  for (let counter = 0; ; counter++) {
    if (counter % 65536 === 65535) await new Promise((resolve) => setTimeout(resolve, 0));
    const tail = counterText(counter);
    let at = prefix.length;
    for (let i = 0; i < tail.length; i++) buffer[at++] = tail.charCodeAt(i);
    const length = at;
    buffer[at++] = 0x80;
    const blocks = Math.ceil((length + 9) / 64);
    buffer.fill(0, at, blocks * 64 - 4);
    const bits = length * 8;
    buffer[blocks * 64 - 4] = bits >>> 24;
    buffer[blocks * 64 - 3] = (bits >>> 16) & 255;
    buffer[blocks * 64 - 2] = (bits >>> 8) & 255;
    buffer[blocks * 64 - 1] = bits & 255;
    if (sha1Head(buffer, blocks) < limit) return prefix + tail;
  }
}

// A stamp for each distinct ASCII address among `addresses` (a non-ASCII one can match no stamp).
export async function mintStamps(addresses) {
  const distinct = [...new Set(addresses.map((a) => a.trim().toLowerCase()))];
  const stamps = [];
  for (const address of distinct) {
    if (/^[\x21-\x39\x3b-\x7e]+$/.test(address)) stamps.push(await mintStamp(address));
  }
  return stamps;
}

// -- reading ----------------------------------------------------------------------------------------------

let readerSession = null;
const verdicts = new Map();

// The logged-in session the reader checks signatures with (its directory trust state and its key).
export function useSession(session) {
  readerSession = session;
  verdicts.clear();
}

function strictB64(value, size) {
  const bytes = fromB64(value);
  if (toB64(bytes) !== value || (size && bytes.length !== size)) throw new Error('not base64');
  return bytes;
}

// The stored original of a twin at `twinPath` (Mail/<Folder>_Json/<key>), opened with the user's keys.
async function ownOriginal(session, twinPath) {
  const path = twinPath.replace(/^Mail\/([A-Za-z]+)_Json\//, 'Mail/$1/');
  const found = path === twinPath ? null : await getObject(path);
  if (!found) throw new Error('the original message is missing');
  return openOwnMailObject(session.key, found.data);
}

async function checkSignature(session, summary, twinPath) {
  const e2e = summary.e2e;
  let digest;
  let signature;
  try {
    if (e2e.v !== 1 || typeof e2e.from !== 'string' || !UUID.test(e2e.key_id)) throw new Error('malformed');
    digest = strictB64(e2e.sha256, 32);
    signature = strictB64(e2e.signature);
  } catch {
    return 'its signature is malformed';
  }
  const from = e2e.from.trim().toLowerCase();
  if (!summary.from.email || summary.from.email.trim().toLowerCase() !== from) {
    return `it is signed by ${e2e.from}, not by its sender ${summary.from.email || '(none)'}`;
  }
  let original;
  try {
    original = await ownOriginal(session, twinPath);
  } catch (e) {
    return e.message;
  }
  if (!equalBytes(await sha256(original), digest)) return 'the message is not the one that was signed';
  const state = await loadState(session);
  const local = (session.account.addresses || []).map(domainOf).includes(domainOf(from));
  let found;
  try {
    found = await directoryKey(state, from, local);
  } catch (e) {
    return e instanceof KeyAlarm ? `the directory's key for ${from} failed verification: ${e.message}` : e.message;
  }
  try {
    await saveState(session, state);
  } catch { /* the head is checked again next time */ }
  if (found.none) return `the directory has no key for ${from}`;
  const record = [found.verified.record, ...found.verified.history].find((r) => r.key_id === e2e.key_id);
  if (!record) return `the directory has no key ${e2e.key_id} for ${from}`;
  if (!await signatureHolds(record.der, digest, signature)) {
    return `the signature does not verify with the key of ${from}`;
  }
  return null;
}

// {verified, text} for a message whose twin has an `e2e` member, else null. `twinPath` names the twin in the
// user's own store (null in a group's mailbox, whose original this client does not fetch).
export async function e2eVerdict(summary, twinPath) {
  if (!summary || !summary.e2e) return null;
  const key = `${twinPath}\n${JSON.stringify(summary.e2e)}`;
  if (!verdicts.has(key)) {
    const job = (async () => {
      let why;
      if (!readerSession) why = 'not logged in';
      else if (!twinPath) why = 'it is in a group mailbox';
      else {
        try {
          why = await checkSignature(readerSession, summary, twinPath);
        } catch (e) {
          why = e.message || String(e);
        }
      }
      return why === null
        ? { verified: true, text: `End-to-end encrypted · signed by ${summary.e2e.from}` }
        : { verified: false, text: `End-to-end encrypted · signature not verified (${why})` };
    })();
    verdicts.set(key, job);
    job.then((v) => { if (!v.verified) verdicts.delete(key); });
  }
  return verdicts.get(key);
}
