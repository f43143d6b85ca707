// Moving house in the browser (docs/moving.md, "In the web client"): the port of mailiverse/client/moving.py.
// The page runs on the OLD appliance (the user is logged in there, by cookie); the NEW appliance is called
// cross-origin with credentials: 'omit' and a bearer token from an SRP login (its CORS answers only such
// requests: mailiverse/web/cors.py). Steps, each safe to run again (a move resumes): bring the keys, copy every
// object (ciphertext as it is, each checked by SHA-256 before it is stored), verify both listings, mark the
// copied received mail, switch the old account to moved with a signed moved record, catch up and verify again.
// Nothing is deleted.

import { ApiError, getJson, getObject, postJson } from '../api.js';
import { concat, fromB64, sha256, toB64, toHex, utf8 } from '../crypto/bytes.js';
import { deriveKeys, parseKdf } from '../crypto/kdf.js';
import { decryptKeyBlock, encryptKeyBlock } from '../crypto/keyblock.js';
import {
  addressHash, canonicalJson, KeyAlarm, loadRetiredKeys, loadState, MAX_RETIRED_KEYS, RETIRED_KEYS_NAME, saveState,
  STATE_PATH, verifyAnswer,
} from '../crypto/keylog.js';
import { loadPrivateKey } from '../crypto/keys.js';
import { SrpClient } from '../crypto/srp.js';
import { canonicalName } from '../session.js';

export const DEFAULT_GRACE_DAYS = 30;
export const MAX_GRACE_DAYS = 365;
const DAY_MS = 86400000;
// Objects that are each appliance's own and never copied: the pinned log key and last head of *that* log.
const NOT_COPIED = new Set([STATE_PATH]);
const RECEIVED_FOLDERS = new Set(['Mail/In', 'Mail/In_Json', 'Mail/Screener', 'Mail/Screener_Json']);
const MARKED_FOLDERS = new Set(['Mail/In', 'Mail/Screener']);
const MARK_BATCH = 1000;
const PSS = { name: 'RSA-PSS', saltLength: 32 };
const MOVED_RECORD_PREFIX = utf8('mailiverse-moved-record-v1\n');
const BROUGHT_KEY_PREFIX = utf8('mailiverse-brought-key-v1\n');
const KEY_BLOCK_CHANGE_PREFIX = utf8('mailiverse-key-block-change-v1\n');

// The move stopped: the copy does not verify, an object differs at the new appliance, or the account moved
// elsewhere. Nothing was switched unless the message says so.
export class MoveFailed extends Error {}

const folderOf = (path) => path.slice(0, Math.max(0, path.lastIndexOf('/')));
const baseOf = (path) => path.slice(path.lastIndexOf('/') + 1);
const received = (path) => RECEIVED_FOLDERS.has(folderOf(path));
const sameKey = (a, b) => a.rsa.n === b.rsa.n && a.rsa.e === b.rsa.e;
const storePath = (path) => '/api/store/' + path.split('/').map(encodeURIComponent).join('/');

// The new appliance's https origin from what the user typed; never this page's own.
export function newOrigin(text) {
  let url;
  try {
    url = new URL(String(text || '').trim());
  } catch {
    throw new Error('Type the new appliance\'s address, like https://mail.new.example');
  }
  if (url.protocol !== 'https:') throw new Error('The new appliance\'s address must start with https://');
  if (url.origin === location.origin) throw new Error('That is this appliance: type the one you signed up on.');
  return url.origin;
}

// The new appliance's API: cookie-less CORS requests, authenticated by the bearer token of the login.
export class Remote {
  constructor(origin) {
    this.origin = origin;
    this.token = null;
  }

  async call(method, path, { json, body } = {}) {
    const init = { method, mode: 'cors', credentials: 'omit', cache: 'no-store', redirect: 'error', headers: {} };
    if (this.token) init.headers.Authorization = `Bearer ${this.token}`;
    if (json !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(json);
    } else if (body !== undefined) {
      init.headers['Content-Type'] = 'application/octet-stream';
      init.body = body;
    }
    let response;
    try {
      response = await fetch(this.origin + path, init);
    } catch {
      throw new Error(`Could not reach ${this.origin}: is it a mailiverse appliance this browser trusts (its `
        + 'certificate), and new enough to accept moves from another appliance\'s page?');
    }
    if (!response.ok) {
      let answer = {};
      try {
        answer = await response.json();
      } catch {
        answer = {};
      }
      throw new ApiError(response.status, answer.error, `${this.origin}: ${answer.message || answer.error || response.status}`);
    }
    return response;
  }

  async json(method, path, json) {
    return (await this.call(method, path, { json })).json();
  }
}

// SRP login at the new appliance (its proof checked) and its key block opened: {name, account, environment, key,
// cryptoKey, addresses}, with the bearer token kept on `remote`.
export async function loginRemote(remote, nameText, password, onStep = () => {}) {
  const name = canonicalName(nameText);
  const start = await remote.json('POST', '/api/login/start', { user: name });
  onStep('Deriving the keys of your password at the new appliance');
  const keys = await deriveKeys(password, parseKdf(start.kdf));
  onStep('Proving the password there (SRP)');
  const client = new SrpClient(name, keys.verificationKey);
  const M = await client.respond(fromB64(start.salt), fromB64(start.B));
  const done = await remote.json('POST', '/api/login/finish', { handle: start.handle, A: toB64(client.A), M: toB64(M) });
  if (!client.verify(fromB64(done.HAMK || ''))) throw new Error('The new appliance could not prove it knows your account.');
  remote.token = done.token;
  const account = await remote.json('GET', '/api/account');
  const environment = await decryptKeyBlock(keys.cryptoKey, fromB64(account.key_block));
  const publicDer = fromB64(environment['RSA-PublicKey'] || account.public_key);
  if (toB64(publicDer) !== account.public_key) throw new Error('The new key block does not hold the new account\'s key.');
  const key = await loadPrivateKey(fromB64(environment['RSA-PrivateKey'] || ''), publicDer);
  key.retired = await loadRetiredKeys(environment);
  const addresses = Array.isArray(account.addresses) ? account.addresses.filter((a) => typeof a === 'string') : [];
  return { name, account, environment, key, cryptoKey: keys.cryptoKey, addresses };
}

async function sign(privateDer, message) {
  let key;
  try {
    key = await crypto.subtle.importKey('pkcs8', privateDer, { name: 'RSA-PSS', hash: 'SHA-256' }, false, ['sign']);
  } catch {
    throw new Error('This browser cannot sign with your key (its encoding is too old for WebCrypto).');
  }
  return new Uint8Array(await crypto.subtle.sign(PSS, key, message));
}

// Every object of an account as `get` (a JSON GET of either appliance) lists it: Map path -> {size, sha256 (hex),
// modified}.
export async function digests(get) {
  const found = new Map();
  let after = null;
  for (;;) {
    const q = new URLSearchParams({ limit: '200' });
    if (after !== null) q.set('after', after);
    const page = await get('/api/account/digests?' + q.toString());
    if (!page || !Array.isArray(page.objects) || !(page.next === null || typeof page.next === 'string')) {
      throw new Error('The digest listing is malformed.');
    }
    for (const o of page.objects) {
      if (typeof o.path !== 'string' || !Number.isSafeInteger(o.size) || typeof o.sha256 !== 'string') {
        throw new Error('The digest listing is malformed.');
      }
      found.set(o.path, { size: o.size, sha256: o.sha256, modified: Number(o.modified_ms) || 0 });
    }
    if (page.next === null) return found;
    if (page.next === after) throw new Error('The digest listing did not end.');
    after = page.next;
  }
}

// Compare the two listings: before the switch every object must be at the new appliance, same size and SHA-256;
// after it, received mail that arrived after the copy may be forwarded instead (found by its SHA-256) or waiting.
export function verify(source, target, afterSwitch) {
  const byHash = new Set([...target.values()].map((t) => t.sha256));
  const out = { verified: [], mismatched: [], forwarded: 0, awaiting: 0, considered: 0 };
  for (const path of [...source.keys()].sort()) {
    if (NOT_COPIED.has(path)) continue;
    out.considered++;
    const here = source.get(path);
    const there = target.get(path);
    if (there && there.sha256 === here.sha256 && there.size === here.size) out.verified.push(path);
    else if (afterSwitch && received(path)) {
      if (byHash.has(here.sha256)) out.forwarded++;
      else if (MARKED_FOLDERS.has(folderOf(path))) out.awaiting++;
    } else out.mismatched.push(path);
  }
  return out;
}

// One move from the logged-in old `session` to the logged-in new account (`neu`, from loginRemote) at `remote`.
export class Move {
  constructor(session, remote, neu, { graceDays = DEFAULT_GRACE_DAYS, progress = () => {}, now = Date.now } = {}) {
    if (!Number.isInteger(graceDays) || graceDays < 0 || graceDays > MAX_GRACE_DAYS) {
      throw new Error(`Forward for 0 to ${MAX_GRACE_DAYS} days.`);
    }
    this.session = session;
    this.remote = remote;
    this.neu = neu;
    this.graceDays = graceDays;
    // progress(text, done, total): a line for the log, and the copy's progress when it is copying.
    this.progress = progress;
    this.now = now;
    this.report = { newAddress: (neu.addresses[0] || '').toLowerCase(), objects: 0, copied: 0, copiedBytes: 0,
      already: 0, verified: 0, forwarded: 0, awaiting: 0, keysBrought: [], switchedNow: false, forwardUntil: null };
  }

  newDigests() {
    return digests((path) => this.remote.json('GET', path));
  }

  // The old account's verified directory entry and its records (current and history), from the old directory.
  async ownKeys() {
    const { session } = this;
    const address = session.account.addresses[0];
    const state = await loadState(session);
    const own = await verifyAnswer(state, address, await getJson('/api/keys/' + encodeURIComponent(address).replace(/%40/g, '@')));
    await saveState(session, state);
    if (!(own.record.n === session.key.rsa.n && own.record.e === session.key.rsa.e)) {
      throw new KeyAlarm('the old directory\'s current key is not the one this account holds: not moved');
    }
    return { own, records: [own.record, ...own.history] };
  }

  // The old private keys into the new key block (as retired keys); those with a key id registered there.
  async bringKeys(records) {
    const { session, neu, report } = this;
    const address = report.newAddress;
    const oldKeys = [session.key, ...(session.key.retired || [])];
    const held = [neu.key, ...(neu.key.retired || [])];
    const missing = oldKeys.filter((k) => !held.some((x) => sameKey(x, k)));
    let keyBlock = null;
    if (missing.length) {
      const retired = [...JSON.parse(neu.environment[RETIRED_KEYS_NAME] || '[]'), ...missing.map((k) => toB64(k.der))];
      if (retired.length > MAX_RETIRED_KEYS) {
        throw new MoveFailed(`The new account's key block would hold more than ${MAX_RETIRED_KEYS} retired keys.`);
      }
      keyBlock = await encryptKeyBlock(neu.cryptoKey, { ...neu.environment, [RETIRED_KEYS_NAME]: JSON.stringify(retired) });
    }
    const brought = [];
    for (const k of oldKeys) {
      const record = records.find((r) => r.n === k.rsa.n && r.e === k.rsa.e);
      if (!record) continue; // a key from before the directory: readable with the key block, never sealed to by id
      const statement = { address, key_id: record.key_id, public_key: toB64(record.der) };
      const signature = await sign(k.der, concat(BROUGHT_KEY_PREFIX, canonicalJson(statement)));
      brought.push({ key_id: record.key_id, public_key: statement.public_key, signature: toB64(signature) });
    }
    report.keysBrought = [...new Set(records.map((r) => r.key_id))].sort();
    if (!brought.length && keyBlock === null) return [];
    if (!brought.length) throw new MoveFailed('The old account has no key in its directory to bring along.');
    const change = {
      address,
      key_ids: [...new Set(brought.map((b) => b.key_id))].sort(),
      key_block_sha256: toB64(await sha256(keyBlock || new Uint8Array(0))),
    };
    const body = {
      address, keys: brought,
      signature: toB64(await sign(neu.key.der, concat(KEY_BLOCK_CHANGE_PREFIX, canonicalJson(change)))),
    };
    if (keyBlock !== null) {
      body.key_block = toB64(keyBlock);
      if (Number.isInteger(neu.account.key_block_version)) body.key_block_version = neu.account.key_block_version;
    }
    const answer = await this.remote.json('POST', '/api/account/brought-keys', body);
    return Array.isArray(answer.added) ? answer.added.map(String) : [];
  }

  // Copy what the new appliance lacks (each object's SHA-256 checked against the old listing before it is
  // stored); both listings as they were before the copy.
  async copy(skip = () => false) {
    const { report } = this;
    const source = await digests(getJson);
    const target = await this.newDigests();
    const todo = [...source.keys()].sort().filter((p) => !NOT_COPIED.has(p) && !skip(p));
    const differ = todo.filter((p) => target.has(p) && target.get(p).sha256 !== source.get(p).sha256);
    if (differ.length) {
      const shown = differ.slice(0, 5).join(', ') + (differ.length > 5 ? ' …' : '');
      throw new MoveFailed(`${differ.length} object(s) differ at the new appliance (${shown}): delete them there, then move again.`);
    }
    const wanted = todo.filter((p) => !target.has(p));
    this.progress(`Copying ${wanted.length} of ${todo.length} object(s) (${todo.length - wanted.length} already there)`, 0, wanted.length);
    let done = 0;
    for (const path of wanted) {
      const listed = source.get(path);
      const found = await getObject(path);
      // Gone or changed since the listing: the verification below finds it and the next pass copies it afresh.
      if (found && found.data.length === listed.size && toHex(await sha256(found.data)) === listed.sha256) {
        const url = storePath(path) + '?' + new URLSearchParams({ modified_ms: String(Math.max(0, listed.modified)) });
        const response = await this.remote.call('POST', url, { body: found.data });
        if (response.status === 201) {
          report.copied++;
          report.copiedBytes += found.data.length;
        }
      }
      done++;
      this.progress(null, done, wanted.length);
    }
    if (wanted.length) this.progress(`Copied ${done} of ${wanted.length} (${report.copiedBytes} bytes)`, done, wanted.length);
    return source;
  }

  async markCopied(verified) {
    const bases = [...new Set(verified.filter((p) => MARKED_FOLDERS.has(folderOf(p))).map(baseOf))].sort();
    for (let i = 0; i < bases.length; i += MARK_BATCH) {
      await postJson('/api/account/move/copied', { key_bases: bases.slice(i, i + MARK_BATCH) });
    }
  }

  // The moved record, signed by the old account's current key, and the switch.
  async switchOver(own) {
    const { session, report } = this;
    const created = this.now();
    const hashes = [...new Set(await Promise.all(session.account.addresses.map(addressHash)))].sort();
    const fields = { v: 1, type: 'moved', key_id: own.record.key_id, addresses: hashes, to: report.newAddress,
      created_ms: created, forward_until_ms: created + this.graceDays * DAY_MS };
    const signature = await sign(session.key.der, concat(MOVED_RECORD_PREFIX, canonicalJson(fields)));
    return postJson('/api/account/move', { to: report.newAddress, grace_days: this.graceDays,
      record: { ...fields, signature: toB64(signature) } });
  }

  async run() {
    const { session, neu, report } = this;
    const newAddress = report.newAddress;
    if (!newAddress) throw new Error('The new account has no address.');
    const old = new Set(session.account.addresses.map((a) => a.toLowerCase()));
    if (neu.addresses.some((a) => old.has(a.toLowerCase()))) {
      throw new Error('The new account is this one: move to an account on another appliance.');
    }
    const status = await getJson('/api/account/move');
    const movedTo = status.moved ? status.moved_to : null;
    if (movedTo && movedTo !== newAddress) throw new MoveFailed(`This account moved to ${movedTo} already.`);
    this.progress('Checking your keys in this appliance\'s directory');
    const { own, records } = await this.ownKeys();
    const added = await this.bringKeys(records);
    this.progress(`Keys: ${report.keysBrought.length} with their ids at ${newAddress} (${added.length} registered now)`);
    let until;
    if (!movedTo) {
      let source = await this.copy();
      let checked = verify(source, await this.newDigests(), false);
      if (checked.mismatched.length) {
        this.progress(`${checked.mismatched.length} object(s) changed during the copy: copying again`);
        source = await this.copy();
        checked = verify(source, await this.newDigests(), false);
      }
      if (checked.mismatched.length) {
        throw new MoveFailed(`${checked.mismatched.length} object(s) do not verify at the new appliance; nothing was switched.`);
      }
      this.progress(`Verified ${checked.verified.length} of ${checked.considered} object(s) by SHA-256; switching`);
      await this.markCopied(checked.verified);
      const answer = await this.switchOver(own);
      report.switchedNow = true;
      until = answer.forward_until_ms;
    } else {
      this.progress(`Moved to ${newAddress} already: catching up`);
      until = status.forward_until_ms;
    }
    report.forwardUntil = Number.isSafeInteger(until) ? until : null;
    const source = await this.copy(received);
    const final = verify(source, await this.newDigests(), true);
    if (final.mismatched.length) {
      throw new MoveFailed(`${final.mismatched.length} object(s) do not verify at the new appliance after the switch.`);
    }
    Object.assign(report, { objects: final.considered, verified: final.verified.length, forwarded: final.forwarded,
      awaiting: final.awaiting });
    report.already = Math.max(0, report.verified - report.copied);
    const address = session.account.addresses[0];
    const answer = await getJson('/api/keys/' + encodeURIComponent(address).replace(/%40/g, '@'));
    const state = await loadState(session);
    await verifyAnswer(state, address, answer);
    await saveState(session, state);
    const published = answer.moved && typeof answer.moved === 'object' ? answer.moved.to : null;
    if (published !== newAddress) throw new KeyAlarm(`the old directory does not publish the move to ${newAddress}`);
    return report;
  }
}
