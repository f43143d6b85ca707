// The key directory and its transparency log (docs/keys.md), checked here with WebCrypto: signed key records
// (RSA-PSS by the record's own key over canonical JSON), RFC 9162 inclusion and consistency proofs, signed tree
// heads (Ed25519 with the log key pinned at first sight), domain policies (signed by the log key, proven in the
// same head, only ever forward), the login-time watch over the user's own keys, the first publication and
// rotation. The same rules as mailiverse/keylog/*.py and mailiverse/client/keys.py; the pinned log key, the last
// verified head and the newest policy entry seen per domain live in Settings/keylog, sealed to the user's own key,
// in the same form the Python client reads and writes. Another appliance's directory (docs/e2e.md §3, through
// /api/remote/...) is checked the same way against its own log key, pinned the first time, and its own last head,
// kept under "remote" in the same state.

import { ApiError, getJson, getObject, postJson, putObject } from '../api.js';
import { concat, equalBytes, fromB64, fromUtf8, sha256, toB64, toHex, utf8 } from './bytes.js';
import { parsePublicKey } from './der.js';
import { openOwnMailObject } from './envelope.js';
import { encryptKeyBlock } from './keyblock.js';
import { generateKeyPair, loadPrivateKey } from './keys.js';
import { importSealingKey, sealMailObject } from './seal.js';

export const STATE_PATH = 'Settings/keylog';
export const RETIRED_KEYS_NAME = 'RSA-RetiredPrivateKeys';
export const MAX_RETIRED_KEYS = 40;
const KEY_RECORD_PREFIX = utf8('mailiverse-key-record-v1\n');
const ADDRESS_HASH_PREFIX = utf8('mailiverse-address-v1\n');
const STH_PREFIX = utf8('mailiverse-sth-v1\n');
const POLICY_RECORD_PREFIX = utf8('mailiverse-policy-record-v1\n');
const EMPTY_ROOT_HEX = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const MAX_STATE = 64 * 1024;
const MAX_PROOF = 128;
const MAX_HISTORY = 1000;
const MAX_RECORD_BYTES = 4096;
const PSS = { name: 'RSA-PSS', saltLength: 32 };
const KEY_MEMBERS = ['addresses', 'algorithm', 'bits', 'created_ms', 'format', 'key_id', 'kind', 'public_key',
  'retired_ms', 'signature', 'status', 'supersedes', 'type', 'v'];
const POLICY_MEMBERS = ['created_ms', 'domain', 'key_id', 'officers', 'policy', 'previous', 'seq', 'signature',
  'type', 'v'];
export const POLICIES = ['personal', 'groups', 'organisation'];
const MAX_OFFICERS = 64;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

// Anything the directory or the log answered that does not verify, or a key the user did not make: loud.
export class KeyAlarm extends Error {
  constructor(message) {
    super(message);
    this.name = 'KeyAlarm';
  }
}

// -- encodings ----------------------------------------------------------------------------------------

// Canonical JSON (sorted keys, no white space, UTF-8) of strings, safe integers, booleans, null, lists, objects:
// what Python's json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False) writes for these values.
export function canonicalJson(value) {
  return utf8(canonicalText(value));
}

function canonicalText(value) {
  if (value === null || typeof value === 'boolean') return String(value);
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new KeyAlarm('a record holds a number that is not a safe integer');
    return String(value);
  }
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return '[' + value.map(canonicalText).join(',') + ']';
  if (typeof value === 'object') {
    const keys = Object.keys(value).sort(byCodePoint);
    return '{' + keys.map((k) => JSON.stringify(k) + ':' + canonicalText(value[k])).join(',') + '}';
  }
  throw new KeyAlarm('a record holds a value JSON cannot carry');
}

function byCodePoint(a, b) {
  const x = [...a].map((c) => c.codePointAt(0));
  const y = [...b].map((c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

// Strict standard base64 (the one canonical encoding), optionally of an exact size.
function strictB64(value, what, size = null) {
  let bytes;
  try {
    bytes = fromB64(value);
  } catch {
    throw new KeyAlarm(`${what} is not base64`);
  }
  if (toB64(bytes) !== value || (size !== null && bytes.length !== size)) {
    throw new KeyAlarm(`${what} is not the canonical base64 of ${size || 'its'} bytes`);
  }
  return bytes;
}

function isCount(value) {
  return Number.isSafeInteger(value) && value >= 0;
}

// base64(SHA-256("mailiverse-address-v1\n" || lower-cased address)): how records name addresses.
export async function addressHash(address) {
  return toB64(await sha256(ADDRESS_HASH_PREFIX, utf8(String(address).trim().toLowerCase())));
}

export async function fingerprint(publicDer) {
  return toHex(await sha256(publicDer));
}

// "ab12 cd34 …": the fingerprint as a person reads it aloud.
export function groupedFingerprint(hex) {
  return hex.match(/.{1,4}/g).join(' ');
}

// -- the Merkle tree (RFC 9162 §2.1) --------------------------------------------------------------------

export async function leafHash(leaf) {
  return sha256(new Uint8Array([0]), leaf);
}

async function nodeHash(left, right) {
  return sha256(new Uint8Array([1]), left, right);
}

// RFC 9162 §2.1.3.2, step by step; indexes stay below 2**53, so plain arithmetic on Numbers is exact.
export async function verifyInclusion(hash, index, size, proof, root) {
  if (!isCount(index) || !isCount(size) || index >= size || proof.length > MAX_PROOF) return false;
  let fn = index;
  let sn = size - 1;
  let r = hash;
  for (const p of proof) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = await nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn !== 0 && fn % 2 === 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && equalBytes(r, root);
}

function isPowerOfTwo(n) {
  let m = n;
  while (m > 1 && m % 2 === 0) m /= 2;
  return m === 1;
}

// RFC 9162 §2.1.4.2 for 0 < first < second; equal sizes need equal roots and an empty proof, as in merkle.py.
export async function verifyConsistency(first, second, firstRoot, secondRoot, proof) {
  if (!isCount(first) || !isCount(second) || first > second || proof.length > MAX_PROOF) return false;
  if (first === 0) return toHex(firstRoot) === EMPTY_ROOT_HEX && proof.length === 0;
  if (first === second) return proof.length === 0 && equalBytes(firstRoot, secondRoot);
  if (proof.length === 0) return false;
  const path = [...proof];
  if (isPowerOfTwo(first)) path.unshift(firstRoot);
  let fn = first - 1;
  let sn = second - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      if (fn % 2 === 0) {
        while (fn !== 0 && fn % 2 === 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && equalBytes(fr, firstRoot) && equalBytes(sr, secondRoot);
}

// -- signed tree heads ----------------------------------------------------------------------------------

// {tree_size, root_hash (bytes), timestamp, signature (bytes)} from the API's JSON, form only.
export function parseHead(value) {
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new KeyAlarm('the signed tree head is malformed');
  for (const name of ['tree_size', 'timestamp']) {
    if (!isCount(value[name])) throw new KeyAlarm(`the signed tree head's ${name} is not a count`);
  }
  return {
    tree_size: value.tree_size,
    timestamp: value.timestamp,
    root_hash: strictB64(value.root_hash, "the signed tree head's root_hash", 32),
    signature: strictB64(value.signature, "the signed tree head's signature", 64),
  };
}

export function headJson(head) {
  return { tree_size: head.tree_size, root_hash: toB64(head.root_hash), timestamp: head.timestamp,
    signature: toB64(head.signature) };
}

// The 66 bytes the log key signs: prefix || u64 tree_size || u64 timestamp || root (mailiverse/keylog/sth.py).
export function headBytes(head) {
  const numbers = new DataView(new ArrayBuffer(16));
  numbers.setBigUint64(0, BigInt(head.tree_size));
  numbers.setBigUint64(8, BigInt(head.timestamp));
  return concat(STH_PREFIX, new Uint8Array(numbers.buffer), head.root_hash);
}

export async function verifyHead(head, logKeyRaw) {
  try {
    const key = await crypto.subtle.importKey('raw', logKeyRaw, { name: 'Ed25519' }, false, ['verify']);
    return await crypto.subtle.verify({ name: 'Ed25519' }, key, head.signature, headBytes(head));
  } catch {
    return false;
  }
}

// -- key records ----------------------------------------------------------------------------------------

function unsignedOf(record) {
  const out = { ...record };
  delete out.signature;
  return out;
}

// Shape and the record's own key's signature (RSA-PSS, SHA-256, MGF1-SHA-256, salt 32); the checked record.
export async function verifyKeyRecord(record) {
  if (!record || typeof record !== 'object' || Array.isArray(record)) throw new KeyAlarm('a record is a JSON object');
  const members = Object.keys(record).sort();
  if (members.join() !== KEY_MEMBERS.join()) throw new KeyAlarm("the record's members are wrong");
  if (record.v !== 1 || record.type !== 'key') throw new KeyAlarm('not a version 1 key record');
  if (!UUID.test(record.key_id)) throw new KeyAlarm('key_id is not a lower-case UUID');
  if (!['personal', 'group', 'organisation'].includes(record.kind)) throw new KeyAlarm('kind is unknown');
  const { addresses } = record;
  if (!Array.isArray(addresses) || addresses.length === 0 || addresses.length > 64) {
    throw new KeyAlarm('a key record serves 1 to 64 addresses');
  }
  for (const item of addresses) strictB64(item, 'an address hash', 32);
  if (addresses.join('\n') !== [...new Set(addresses)].sort(byCodePoint).join('\n')) {
    throw new KeyAlarm('the address hashes are not sorted and distinct');
  }
  if (record.algorithm !== 'RSA') throw new KeyAlarm('algorithm must be RSA');
  if (!['v1', 'v2'].includes(record.format)) throw new KeyAlarm('format is unknown');
  if (!['current', 'superseded', 'revoked'].includes(record.status)) throw new KeyAlarm('status is unknown');
  if (!isCount(record.created_ms)) throw new KeyAlarm('created_ms is not a time');
  if (record.retired_ms !== null && !isCount(record.retired_ms)) throw new KeyAlarm('retired_ms is not a time');
  if ((record.status === 'current') !== (record.retired_ms === null)) {
    throw new KeyAlarm('retired_ms is set exactly when the key is no longer current');
  }
  if (record.supersedes !== null && (!UUID.test(record.supersedes) || record.supersedes === record.key_id)) {
    throw new KeyAlarm('supersedes is not another key id');
  }
  const der = strictB64(record.public_key, 'public_key');
  let parsed;
  try {
    parsed = parsePublicKey(der);
  } catch {
    throw new KeyAlarm('public_key is not a DER public key');
  }
  const bits = parsed.n.toString(2).length;
  if (bits < 2048 || bits > 4096 || record.bits !== bits) throw new KeyAlarm('bits does not match the RSA key');
  const signature = strictB64(record.signature, 'signature');
  let ok = false;
  try {
    const key = await crypto.subtle.importKey('spki', der, { name: 'RSA-PSS', hash: 'SHA-256' }, false, ['verify']);
    ok = await crypto.subtle.verify(PSS, key, signature, concat(KEY_RECORD_PREFIX, canonicalJson(unsignedOf(record))));
  } catch {
    ok = false;
  }
  if (!ok) throw new KeyAlarm("the record's signature does not verify with its key");
  return { ...record, der, n: parsed.n, e: parsed.e };
}

async function signingKey(privateDer) {
  try {
    return await crypto.subtle.importKey('pkcs8', privateDer, { name: 'RSA-PSS', hash: 'SHA-256' }, false, ['sign']);
  } catch {
    throw new Error('This browser cannot sign with your key (its encoding is too old for WebCrypto).');
  }
}

// `fields` with the signature of the record's own private key (PKCS#8 DER), checked before it is returned.
export async function signKeyRecord(fields, privateDer) {
  const unsigned = unsignedOf(fields);
  const key = await signingKey(privateDer);
  const signature = new Uint8Array(await crypto.subtle.sign(PSS, key,
    concat(KEY_RECORD_PREFIX, canonicalJson(unsigned))));
  const signed = { ...unsigned, signature: toB64(signature) };
  await verifyKeyRecord(signed);
  return signed;
}

export async function keyRecordFields(publicDer, addresses, { format = 'v2', createdMs, supersedes = null }) {
  const hashes = [...new Set(await Promise.all(addresses.map(addressHash)))].sort(byCodePoint);
  return {
    v: 1, type: 'key', key_id: crypto.randomUUID(), kind: 'personal', addresses: hashes, algorithm: 'RSA',
    bits: parsePublicKey(publicDer).n.toString(2).length, format, public_key: toB64(publicDer),
    created_ms: createdMs, status: 'current', retired_ms: null, supersedes,
  };
}

// -- policy records -------------------------------------------------------------------------------------

// A list of distinct address hashes in code-point order, at most `limit` (mailiverse/keylog/records.py).
function hashList(value, what, limit) {
  if (!Array.isArray(value) || value.length > limit) {
    throw new KeyAlarm(`${what} must be a list of at most ${limit} address hashes`);
  }
  for (const item of value) strictB64(item, what, 32);
  if (value.join('\n') !== [...new Set(value)].sort(byCodePoint).join('\n')) {
    throw new KeyAlarm(`${what} must be sorted and distinct`);
  }
  return value;
}

// Shape and the log key's signature (Ed25519 over the prefix and the canonical JSON without `signature`) of a
// domain-policy record, as verify_policy_record; the record.
export async function verifyPolicyRecord(record, logKeyRaw) {
  if (!record || typeof record !== 'object' || Array.isArray(record)) throw new KeyAlarm('a record is a JSON object');
  if (canonicalJson(record).length > MAX_RECORD_BYTES) throw new KeyAlarm('the record is too long');
  if (Object.keys(record).sort().join() !== POLICY_MEMBERS.join()) {
    throw new KeyAlarm("the record's members are wrong");
  }
  if (record.v !== 1 || record.type !== 'policy') throw new KeyAlarm('not a version 1 policy record');
  const { domain, policy, seq, previous } = record;
  if (typeof domain !== 'string' || domain.length === 0 || domain.length > 253 || domain !== domain.toLowerCase()) {
    throw new KeyAlarm('domain must be a lower-case domain name');
  }
  if (!POLICIES.includes(policy)) throw new KeyAlarm(`policy must be one of ${POLICIES.join(', ')}`);
  if (!Number.isSafeInteger(seq) || seq < 1 || seq > 2 ** 31) throw new KeyAlarm('seq must be a positive integer');
  if (previous !== null) strictB64(previous, 'previous', 32);
  if ((seq === 1) !== (previous === null)) {
    throw new KeyAlarm('the first policy of a domain has no previous entry, and only the first');
  }
  if (record.key_id !== null && !UUID.test(record.key_id)) throw new KeyAlarm('key_id is not a lower-case UUID');
  if ((policy === 'organisation') !== (record.key_id !== null)) {
    throw new KeyAlarm('an organisation policy names its key, and only it');
  }
  const officers = hashList(record.officers, 'officers', MAX_OFFICERS);
  if (policy === 'organisation' && officers.length === 0) {
    throw new KeyAlarm('an organisation policy names its officers');
  }
  if (!isCount(record.created_ms)) throw new KeyAlarm('created_ms must be milliseconds since the epoch');
  const signature = strictB64(record.signature, 'signature', 64);
  let ok = false;
  try {
    const key = await crypto.subtle.importKey('raw', logKeyRaw, { name: 'Ed25519' }, false, ['verify']);
    ok = await crypto.subtle.verify({ name: 'Ed25519' }, key, signature,
      concat(POLICY_RECORD_PREFIX, canonicalJson(unsignedOf(record))));
  } catch {
    ok = false;
  }
  if (!ok) throw new KeyAlarm("the policy's signature does not verify with the log key");
  return record;
}

// -- the trust state (Settings/keylog) ------------------------------------------------------------------

// The saved "policies" member ({domain: seq}), read as load_state reads it: entries that are not integers are
// dropped, anything but an object is none. A Map, so no domain name can reach an object's prototype.
function readPolicies(value) {
  const out = new Map();
  if (!value || typeof value !== 'object' || Array.isArray(value)) return out;
  for (const [domain, seq] of Object.entries(value)) if (Number.isSafeInteger(seq)) out.set(domain, seq);
  return out;
}

// One log's trust: {logKey, head, policies} from its saved {log_key, sth, policies}.
function readLog(value) {
  const logKey = value.log_key === null || value.log_key === undefined
    ? null : strictB64(value.log_key, 'the pinned log key', 32);
  const head = value.sth === null || value.sth === undefined ? null : parseHead(value.sth);
  return { logKey, head, policies: readPolicies(value.policies) };
}

function logJson(log) {
  const value = { log_key: log.logKey ? toB64(log.logKey) : null, sth: log.head ? headJson(log.head) : null };
  if (log.policies.size) value.policies = Object.fromEntries(log.policies);
  return value;
}

// The other appliances' logs ({domain: {log_key, sth, policies}}) as a Map of domain to readLog's shape.
function readRemote(value) {
  const out = new Map();
  if (!value || typeof value !== 'object' || Array.isArray(value)) return out;
  for (const [domain, log] of Object.entries(value)) {
    if (log && typeof log === 'object' && !Array.isArray(log)) out.set(domain, readLog(log));
  }
  return out;
}

const STATE_MEMBERS = ['v', 'log_key', 'sth', 'policies', 'remote'];

// {logKey, head, policies, remote, extra, version, changed}: the pinned log key, the last verified head and the
// newest policy entry seen per domain (a Map of domain to seq), the same per other appliance (`remote`, a Map of
// domain), and members another client wrote that this one does not know (kept as they are); empty the first time.
export async function loadState(session) {
  const found = await getObject(STATE_PATH);
  if (!found) {
    return { logKey: null, head: null, policies: new Map(), remote: new Map(), extra: {}, version: null,
      changed: false };
  }
  try {
    const value = JSON.parse(fromUtf8(await openOwnMailObject(session.key, found.data, MAX_STATE)));
    const extra = {};
    for (const [name, member] of Object.entries(value)) if (!STATE_MEMBERS.includes(name)) extra[name] = member;
    return { ...readLog(value), remote: readRemote(value.remote), extra, version: found.version, changed: false };
  } catch (e) {
    throw new KeyAlarm(`the saved transparency state is unreadable (${e.message})`);
  }
}

// TrustState.to_json's shape: "policies" only when a policy was seen, "remote" only when another appliance's log
// was.
function stateJson(state) {
  const value = { ...(state.extra || {}), v: 1, ...logJson(state) };
  if (state.remote && state.remote.size) {
    value.remote = Object.fromEntries([...state.remote].map(([domain, log]) => [domain, logJson(log)]));
  }
  return value;
}

// The user's current public key for sealing: the key block's copy, else the server's (an older encoding).
async function ownSealingKey(session) {
  try {
    return await importSealingKey(session.key.publicDer);
  } catch {
    return importSealingKey(fromB64(session.account.public_key));
  }
}

// Sealed to the user's own current key, as Mail/ objects are; written only when it changed. Another client of
// the user that saved meanwhile wins when its head is at least as new and it saw every policy entry this one
// did; otherwise the newest entry per domain of both is written (a policy seen once is never forgotten).
export async function saveState(session, state) {
  if (!state.changed) return;
  for (let attempt = 0; attempt < 3; attempt++) {
    const sealed = await sealMailObject(await ownSealingKey(session), utf8(JSON.stringify(stateJson(state))));
    try {
      state.version = await putObject(STATE_PATH, sealed, state.version);
      state.changed = false;
      return;
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 412)) throw e;
      const remote = await loadState(session);
      state.version = remote.version;
      let covered = true;
      for (const [domain, seq] of state.policies) {
        const theirs = remote.policies.get(domain);
        if (theirs === undefined || theirs < seq) covered = false;
        else state.policies.set(domain, theirs);
      }
      for (const [domain, seq] of remote.policies) if (!state.policies.has(domain)) state.policies.set(domain, seq);
      if (mergeRemote(state, remote)) covered = false;
      state.extra = { ...state.extra, ...remote.extra };
      if (remote.head && state.head && remote.head.tree_size >= state.head.tree_size) {
        if (covered) {
          state.changed = false;
          return;
        }
        state.head = remote.head;
      }
    }
  }
}

// Another client's record of other appliances' logs merged into this one's: a domain only one of them saw is kept,
// for one both saw the longer head wins (a pinned log key is never replaced; policies keep the newest entry).
// Whether this one knew something the other did not (so it must still be written).
function mergeRemote(state, saved) {
  let newer = false;
  for (const [domain, log] of state.remote) {
    const theirs = saved.remote.get(domain);
    if (!theirs || (log.logKey && theirs.logKey && !equalBytes(log.logKey, theirs.logKey))) {
      newer = true;
      continue;
    }
    for (const [name, seq] of theirs.policies) {
      if (!log.policies.has(name) || log.policies.get(name) < seq) log.policies.set(name, seq);
    }
    if (!log.logKey) log.logKey = theirs.logKey;
    if (theirs.head && (!log.head || theirs.head.tree_size >= log.head.tree_size)) log.head = theirs.head;
    else if (log.head) newer = true;
  }
  for (const [domain, log] of saved.remote) if (!state.remote.has(domain)) state.remote.set(domain, log);
  return newer;
}

async function pinnedLogKey(state) {
  if (!state.logKey) {
    if (state.domain) throw new KeyAlarm(`no log key is pinned for ${state.domain}`);
    const answer = await getJson('/api/log/key');
    const raw = strictB64(answer.public_key, 'the log key', 32);
    if (answer.algorithm !== 'Ed25519') throw new KeyAlarm('the log key is not an Ed25519 key');
    state.logKey = raw;
    state.changed = true;
  }
  return state.logKey;
}

async function checkConsistency(state, first, second) {
  if (first.tree_size === second.tree_size) {
    if (!equalBytes(first.root_hash, second.root_hash)) {
      throw new KeyAlarm('two signed heads of the same size have different roots: the log forked');
    }
    return;
  }
  if (first.tree_size === 0) {
    if (toHex(first.root_hash) !== EMPTY_ROOT_HEX) throw new KeyAlarm('an empty head with a non-empty root');
    return;
  }
  const q = new URLSearchParams({ first: String(first.tree_size), second: String(second.tree_size) });
  if (state.domain) q.set('domain', state.domain);
  const answer = await getJson((state.domain ? '/api/remote/log/consistency?' : '/api/log/consistency?') + q.toString());
  if (!Array.isArray(answer.consistency) || answer.consistency.length > MAX_PROOF) {
    throw new KeyAlarm('the consistency proof is malformed');
  }
  const proof = answer.consistency.map((node) => strictB64(node, 'a consistency proof node', 32));
  if (!await verifyConsistency(first.tree_size, second.tree_size, first.root_hash, second.root_hash, proof)) {
    throw new KeyAlarm(`the log of ${second.tree_size} entries is not an extension of the one of `
      + `${first.tree_size} this account saw: the log forked`);
  }
}

// Accept a head: signed by the pinned log key and consistent with the last verified one (kept if newer).
export async function advance(state, head) {
  if (!await verifyHead(head, await pinnedLogKey(state))) {
    throw new KeyAlarm('the signed tree head does not verify with the pinned log key');
  }
  const last = state.head;
  if (last) {
    if (head.tree_size < last.tree_size) {
      await checkConsistency(state, head, last);
      return;
    }
    await checkConsistency(state, last, head);
  }
  if (!last || head.tree_size > last.tree_size || head.timestamp > last.timestamp) {
    state.head = head;
    state.changed = true;
  }
}

// -- key answers ----------------------------------------------------------------------------------------

// The leaf of one {record, leaf, leaf_index, tree_size, audit_path} entry and the record it holds (its
// canonical JSON), form only.
function entryLeaf(entry) {
  if (!entry || typeof entry !== 'object' || Array.isArray(entry)) throw new KeyAlarm('the key answer is malformed');
  const leaf = strictB64(entry.leaf, 'the leaf');
  if (leaf.length > MAX_RECORD_BYTES) throw new KeyAlarm('the leaf is longer than any record');
  let document;
  try {
    document = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(leaf));
  } catch {
    throw new KeyAlarm('the leaf is not JSON');
  }
  if (!document || typeof document !== 'object' || Array.isArray(document)
      || !equalBytes(canonicalJson(document), leaf)) {
    throw new KeyAlarm("the leaf is not a record's canonical JSON");
  }
  return { leaf, document };
}

// The entry's record is the leaf, and the inclusion proof puts the leaf in the tree of `head`.
async function proveLeaf(entry, leaf, head) {
  let given;
  try {
    given = canonicalJson(entry.record);
  } catch {
    given = new Uint8Array(0);
  }
  if (!equalBytes(given, leaf)) throw new KeyAlarm('the record differs from the leaf the log hashed');
  const { leaf_index: index, tree_size: size, audit_path: path } = entry;
  if (!isCount(index) || !isCount(size) || !Array.isArray(path) || path.length > MAX_PROOF) {
    throw new KeyAlarm('the inclusion proof is malformed');
  }
  if (size !== head.tree_size) throw new KeyAlarm('the inclusion proof is for another tree than the signed head');
  const nodes = path.map((node) => strictB64(node, 'an audit path node', 32));
  if (!await verifyInclusion(await leafHash(leaf), index, size, nodes, head.root_hash)) {
    throw new KeyAlarm('the inclusion proof does not lead to the signed root');
  }
  return index;
}

// The key record of one entry, its own signature checked (first: the most telling alarm), proven in `head`.
async function provenRecord(entry, head) {
  const { leaf, document } = entryLeaf(entry);
  const record = await verifyKeyRecord(document);
  const index = await proveLeaf(entry, leaf, head);
  return { ...record, leafIndex: index, fingerprint: await fingerprint(record.der) };
}

export function domainOf(address) {
  const text = String(address);
  return text.slice(text.lastIndexOf('@') + 1).toLowerCase();
}

// The domain's policy from a key answer ({domain, policy, seq, keyId, officers, leafIndex}, or null when the
// domain never set one): proven in `head`, signed by the pinned log key, this domain's, naming exactly the
// officers it signs; never older than the entry this account saw before, and never missing once one was seen.
async function provenPolicy(state, domain, entry, head) {
  const seen = state.policies.get(domain);
  if (entry === null || entry === undefined) {
    if (seen !== undefined) {
      throw new KeyAlarm(`the directory no longer shows the policy of ${domain} this account saw (entry ${seen})`);
    }
    return null;
  }
  if (typeof entry !== 'object' || Array.isArray(entry)) throw new KeyAlarm('the domain policy is malformed');
  const { leaf, document } = entryLeaf(entry);
  const index = await proveLeaf(entry, leaf, head);
  let record;
  try {
    record = await verifyPolicyRecord(document, await pinnedLogKey(state));
  } catch (e) {
    throw new KeyAlarm(`the domain policy is refused: ${e.message}`);
  }
  const { officers } = entry;
  if (!Array.isArray(officers) || officers.length > MAX_OFFICERS || !officers.every((o) => typeof o === 'string')) {
    throw new KeyAlarm("the domain policy's officers are malformed");
  }
  const hashes = [...new Set(await Promise.all(officers.map(addressHash)))].sort(byCodePoint);
  if (record.domain !== domain || hashes.join('\n') !== record.officers.join('\n')) {
    throw new KeyAlarm('the domain policy is not this domain\'s, or names other officers than it signs');
  }
  if (seen !== undefined && record.seq < seen) {
    throw new KeyAlarm(`the policy of ${domain} went back from entry ${seen} to entry ${record.seq}`);
  }
  if (seen !== record.seq) {
    state.policies.set(domain, record.seq);
    state.changed = true;
  }
  return { domain, policy: record.policy, seq: record.seq, keyId: record.key_id,
    officers: officers.map((o) => o.toLowerCase()), leafIndex: index };
}

// Every check of a /api/keys/<address> answer: {address, record, history, head, policy}; KeyAlarm says what
// failed.
export async function verifyAnswer(state, address, answer) {
  const head = parseHead(answer && answer.sth);
  await advance(state, head);
  const record = await provenRecord(answer, head);
  const hash = await addressHash(address);
  if (!record.addresses.includes(hash)) throw new KeyAlarm(`the record is not bound to ${address}`);
  if (record.status !== 'current') throw new KeyAlarm('the directory answered a key that is no longer current');
  const listed = answer.history === undefined ? [] : answer.history;
  if (!Array.isArray(listed) || listed.length > MAX_HISTORY) throw new KeyAlarm('the history is malformed');
  const history = [];
  for (const entry of listed) {
    const older = await provenRecord(entry, head);
    if (!older.addresses.includes(hash)) throw new KeyAlarm(`a history record is not bound to ${address}`);
    history.push(older);
  }
  const policy = await provenPolicy(state, domainOf(address), answer.policy, head);
  return { address: address.toLowerCase(), record, history, head, policy };
}

function keyUrl(address) {
  return '/api/keys/' + encodeURIComponent(address).replace(/%40/g, '@');
}

// The verified current key of `address` (ApiError not_found when it has none).
export async function lookup(state, address) {
  return verifyAnswer(state, address, await getJson(keyUrl(address)));
}

// An Ed25519 log key as discovery names it: "ed25519:<base64>" (the DNS form) or the bare base64 of 32 bytes.
function discoveredLogKey(value) {
  const text = typeof value === 'string' ? value.replace(/^ed25519:/i, '') : value;
  return strictB64(text, "the other appliance's log key", 32);
}

// The other appliance's log, as this account saw it, for `domain` (made empty the first time), with where to
// fetch its consistency proofs.
function remoteLog(state, domain) {
  if (!state.remote) state.remote = new Map();
  if (!state.remote.has(domain)) state.remote.set(domain, { logKey: null, head: null, policies: new Map() });
  // A working copy verifyAnswer advances (its policies are the saved Map itself); verifyRemoteAnswer keeps it.
  return { ...state.remote.get(domain), domain, changed: false };
}

// Every check of a /api/remote/keys/<address> answer ({domain, discovery, answer}), against the other appliance's log
// key pinned the first time (trust on first use) and its last head seen: verifyAnswer's result, or KeyAlarm (a log
// key other than the pinned one, a fork, any failed proof).
export async function verifyRemoteAnswer(state, address, wrapped) {
  const domain = domainOf(address);
  if (!wrapped || typeof wrapped !== 'object' || Array.isArray(wrapped) || String(wrapped.domain).toLowerCase() !== domain) {
    throw new KeyAlarm(`the answer for ${address} is not about ${domain}`);
  }
  const discovery = wrapped.discovery && typeof wrapped.discovery === 'object' ? wrapped.discovery : {};
  const announced = discoveredLogKey(discovery.log_key);
  const log = remoteLog(state, domain);
  if (log.logKey && !equalBytes(log.logKey, announced)) {
    throw new KeyAlarm(`the log key ${domain} announces is not the one this account pinned for it`);
  }
  if (!log.logKey) {
    log.logKey = announced;
    log.changed = true;
  }
  const verified = await verifyAnswer(log, address, wrapped.answer);
  if (log.changed) {
    const saved = state.remote.get(domain);
    saved.logKey = log.logKey;
    saved.head = log.head;
    state.changed = true;
  }
  return verified;
}

// -- the owner's watch ----------------------------------------------------------------------------------

// The user's keys: current first, then the retired ones (the key object's `retired`, newest first).
export function ownKeys(session) {
  return [session.key, ...(session.key.retired || [])];
}

function isOwn(session, record) {
  return ownKeys(session).some((k) => k.rsa && k.rsa.n === record.n && k.rsa.e === record.e);
}

// Publish the current key's first record; false when the directory already holds one for the account.
async function publishFirst(session, now) {
  const fields = await keyRecordFields(session.key.publicDer, session.account.addresses,
    { format: session.account.format || 'v2', createdMs: now() });
  const record = await signKeyRecord(fields, session.key.der);
  try {
    await postJson('/api/keys', { records: [record] });
  } catch (e) {
    if (e instanceof ApiError && (e.code === 'already_published' || e.code === 'key_mismatch')) return false;
    throw e;
  }
  return true;
}

// One check at a time per page: the login watch, the Keys page and a rotation share the trust state.
let queue = Promise.resolve();
function serially(job) {
  const run = queue.then(job, job);
  queue = run.catch(() => {});
  return run;
}

// Every record the log holds for the user's addresses must be a key the user holds (current or retired);
// with none yet, the current key's first record is published. Never throws for what it finds: each problem is
// one entry of `alarms` ({address, text}), which the caller shows loudly; `notes` say why nothing could be
// published. {verified, published, alarms, notes, head}.
export function checkOwnKeys(session, now = Date.now) {
  return serially(async () => {
    const result = { verified: [], published: [], alarms: [], notes: [], head: null };
    let state;
    try {
      state = await loadState(session);
    } catch (e) {
      result.alarms.push({ address: null, text: e.message });
      return result;
    }
    for (const address of session.account.addresses || []) {
      let verified;
      try {
        try {
          verified = await lookup(state, address);
        } catch (e) {
          if (!(e instanceof ApiError && e.code === 'not_found')) throw e;
          // Not being able to publish (a server without the directory, a key WebCrypto cannot sign with) is
          // said on the Keys page; only what the log answers is alarming.
          let published = false;
          try {
            published = await publishFirst(session, now);
          } catch (refused) {
            result.notes.push(`Your key could not be published for ${address}: ${refused.message}`);
            continue;
          }
          if (!published) continue;
          result.published.push(address);
          verified = await lookup(state, address);
        }
      } catch (e) {
        result.alarms.push({ address, text: `The key directory's answer for ${address} failed verification: `
          + (e instanceof KeyAlarm || e instanceof ApiError ? e.message : String(e)) });
        continue;
      }
      for (const record of [verified.record, ...verified.history]) {
        if (!isOwn(session, record)) {
          result.alarms.push({ address, stranger: record.key_id,
            text: `A key you did not make is published for ${address}: key ${record.key_id} `
              + `(SHA-256 ${record.fingerprint.slice(0, 16)}…). Do not trust mail sealed to it; tell your operator.` });
        }
      }
      result.verified.push(verified);
    }
    try {
      await saveState(session, state);
    } catch (e) {
      result.notes.push(`The verified log head could not be saved: ${e.message}`);
    }
    result.head = state.head;
    return result;
  });
}

// -- groups ---------------------------------------------------------------------------------------------

// A group's current key checked against the key directory, as mailiverse/client/groups.py open_group does: the
// verified record for `address` is a group (or organisation) key whose key_id is the group's current one, and the
// public half of `current` (the group's current private key as unwrapped here) is the record's public key.
// The verified answer; KeyAlarm says what failed (a directory answer that does not verify is alarming too).
export function verifyGroupKey(session, address, keyId, current) {
  return serially(async () => {
    const state = await loadState(session);
    let verified;
    try {
      verified = await lookup(state, address);
    } catch (e) {
      if (e instanceof KeyAlarm) {
        throw new KeyAlarm(`The key directory's answer for ${address} failed verification: ${e.message}`);
      }
      if (e instanceof ApiError && e.code === 'not_found') {
        throw new KeyAlarm(`The key directory has no key for the group ${address}.`);
      }
      throw e;
    }
    const { record } = verified;
    if (!['group', 'organisation'].includes(record.kind) || record.key_id !== keyId) {
      throw new KeyAlarm(`The directory's key for ${address} is not the group's current key `
        + `(the server says ${keyId}, the directory ${record.key_id}, ${record.kind}). Its mail was not opened.`);
    }
    if (!current || !current.rsa || current.rsa.n !== record.n || current.rsa.e !== record.e) {
      throw new KeyAlarm(`The group key wrapped to you for ${address} is not the key the directory publishes `
        + `(${record.key_id}, SHA-256 ${record.fingerprint.slice(0, 16)}…). Its mail was not opened.`);
    }
    try {
      await saveState(session, state);
    } catch { /* the head is checked again next time */ }
    return verified;
  });
}

// -- rotation -------------------------------------------------------------------------------------------

function retiredDers(session) {
  return (session.key.retired || []).map((k) => toB64(k.der));
}

// A new RSA-2048 key pair made here, published superseding the current key (whose record the old key re-signs
// as superseded); the old private key goes first into the key block's retired keys, the block re-encrypted
// with the in-memory crypto key. The session's key object is updated in place, so every part of the client that
// holds it (mailbox, aliases) seals to the new key and opens with the new and the retired ones.
export function rotateKey(session, now = Date.now) {
  return serially(async () => {
    const addresses = session.account.addresses || [];
    if (!addresses.length) throw new Error('The account has no addresses to bind a key to.');
    if (!session.cryptoKey) throw new Error('Log in again to rotate your key.');
    if ((session.key.retired || []).length >= MAX_RETIRED_KEYS) {
      throw new Error(`Your key block holds ${MAX_RETIRED_KEYS} retired keys already.`);
    }
    const state = await loadState(session);
    const current = await lookup(state, addresses[0]);
    if (current.record.n !== session.key.rsa.n || current.record.e !== session.key.rsa.e) {
      throw new KeyAlarm("The directory's current key is not the one this account holds: rotation refused.");
    }
    const nowMs = now();
    const oldFields = { ...unsignedOf(stripLocal(current.record)), status: 'superseded', retired_ms: nowMs };
    const oldRecord = await signKeyRecord(oldFields, session.key.der);
    const { publicDer, privateDer } = await generateKeyPair(2048);
    const newFields = await keyRecordFields(publicDer, addresses,
      { format: session.account.format || 'v2', createdMs: nowMs, supersedes: current.record.key_id });
    const newRecord = await signKeyRecord(newFields, privateDer);
    const environment = { ...session.environment };
    environment[RETIRED_KEYS_NAME] = JSON.stringify([toB64(session.key.der), ...retiredDers(session)]);
    environment['RSA-PrivateKey'] = toB64(privateDer);
    environment['RSA-PublicKey'] = toB64(publicDer);
    const body = { records: [newRecord, oldRecord], key_block: toB64(await encryptKeyBlock(session.cryptoKey, environment)) };
    if (Number.isInteger(session.keyBlockVersion)) body.key_block_version = session.keyBlockVersion;
    const answer = await postJson('/api/keys', body);
    const fresh = await loadPrivateKey(privateDer, publicDer);
    const old = { ...session.key };
    delete old.retired;
    Object.assign(session.key, fresh, { retired: [old, ...(session.key.retired || [])] });
    session.environment = environment;
    if (Number.isInteger(answer.key_block_version)) session.keyBlockVersion = answer.key_block_version;
    session.account.public_key = toB64(publicDer);
    if (session.account.fingerprint) session.account.fingerprint = await fingerprint(publicDer);
    const verified = await lookup(state, addresses[0]);
    if (verified.record.key_id !== newRecord.key_id) {
      throw new KeyAlarm('After rotation the directory does not serve the new key.');
    }
    state.changed = true;
    await saveState(session, state);
    return { verified, oldKeyId: current.record.key_id };
  });
}

// A verified record without what verification added (der, n, e, leafIndex, fingerprint).
function stripLocal(record) {
  const out = {};
  for (const name of KEY_MEMBERS) out[name] = record[name];
  return out;
}

// Retired keys from a key block environment (none when it has no such entry), as key objects.
export async function loadRetiredKeys(environment) {
  const text = environment[RETIRED_KEYS_NAME];
  if (text === undefined) return [];
  let listed;
  try {
    listed = JSON.parse(text);
  } catch {
    listed = null;
  }
  if (!Array.isArray(listed) || listed.length > MAX_RETIRED_KEYS || !listed.every((x) => typeof x === 'string')) {
    throw new Error("The key block's retired keys are unreadable.");
  }
  try {
    return await Promise.all(listed.map((item) => loadPrivateKey(fromB64(item))));
  } catch {
    throw new Error("The key block's retired keys are unreadable.");
  }
}
