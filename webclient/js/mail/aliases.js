// The account's aliases (docs/api.md, /api/aliases): listed with their addresses opened from `sealed_address`
// and their labels opened (the client seals each label to its own key, so the server only holds ciphertext),
// created, limited, disabled, enabled and deleted; and which of a message's addresses is an alias.

import { getJson, patchJson, postJson, deleteJson } from '../api.js';
import { fromB64, fromUtf8, toB64, utf8 } from '../crypto/bytes.js';
import { openOwnMailObject } from '../crypto/envelope.js';
import { importSealingKey, sealMailObject } from '../crypto/seal.js';

const MAX_OBJECT = 64 * 1024;
// As mailiverse-client (mailiverse/client/aliases.py): at most 256 characters, one line, no control characters.
export const MAX_LABEL = 256;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

export function cleanLabel(text) {
  return String(text || '').replace(CONTROL, '').trim();
}

// The directory's comparison (mailiverse/store/aliases.py canonical_local): lower case, 1/i/l, 0/o and v/w one.
export function canonicalAddress(address) {
  const text = String(address || '').trim().toLowerCase();
  const at = text.lastIndexOf('@');
  if (at < 0) return text;
  return text.slice(0, at).replace(/[il]/g, '1').replace(/o/g, '0').replace(/w/g, 'v') + text.slice(at);
}

async function openJson(key, b64) {
  return JSON.parse(fromUtf8(await openOwnMailObject(key, fromB64(b64), MAX_OBJECT)));
}

export class AliasBook {
  // session: the logged-in session (key, account.addresses, account.public_key).
  constructor(session) {
    this.key = session.key;
    this.own = (session.account.addresses || []).map((a) => a.toLowerCase());
    this.publicSources = [session.key.publicDer, session.account.public_key ? fromB64(session.account.public_key) : null];
    this.aliases = [];
    this.available = true;
    this.loaded = false;
    this.listeners = new Set();
    this.sealingKey = null;
  }

  onChange(fn) {
    this.listeners.add(fn);
  }

  changed() {
    for (const fn of this.listeners) fn();
  }

  // The served domains, from the account's own addresses (name@each domain).
  domains() {
    return [...new Set(this.own.map((a) => a.slice(a.lastIndexOf('@') + 1)))];
  }

  async sealer() {
    if (this.sealingKey) return this.sealingKey;
    for (const der of this.publicSources) {
      if (!der || !der.length) continue;
      try {
        this.sealingKey = await importSealingKey(der);
        return this.sealingKey;
      } catch { /* an older key encoding: try the server's copy */ }
    }
    throw new Error('Your public key cannot be used for sealing in this browser.');
  }

  // {label} sealed to the account's own public key, base64 (what the server stores and returns as is).
  async sealLabel(text) {
    const label = cleanLabel(text);
    if (!label) return null;
    if (label.length > MAX_LABEL) throw new Error(`A label has at most ${MAX_LABEL} characters.`);
    return toB64(await sealMailObject(await this.sealer(), utf8(JSON.stringify({ label }))));
  }

  // The server's ALIAS with `address` and `labelText` opened (null when they do not open).
  async open(alias) {
    const out = { ...alias, address: null, labelText: '' };
    try {
      const found = await openJson(this.key, alias.sealed_address);
      if (typeof found.address === 'string') out.address = found.address;
    } catch { out.address = null; }
    if (alias.label) {
      try {
        const found = await openJson(this.key, alias.label);
        out.labelText = typeof found.label === 'string' ? cleanLabel(found.label) : '';
      } catch { out.labelText = '(label could not be decrypted)'; }
    }
    return out;
  }

  async load() {
    try {
      const answer = await getJson('/api/aliases');
      this.aliases = await Promise.all(answer.aliases.map((a) => this.open(a)));
      this.available = true;
    } catch (e) {
      if (e.status === 503 || e.status === 404) this.available = false;
      else throw e;
    }
    this.loaded = true;
    this.changed();
    return this.aliases;
  }

  replace(alias) {
    const at = this.aliases.findIndex((a) => a.id === alias.id);
    if (at >= 0) this.aliases[at] = alias;
    else this.aliases.push(alias);
    this.changed();
    return alias;
  }

  // kind 'shield' (the server picks the address) or 'chosen' (address given); the answer names the address.
  async create({ kind, address, domain, label }) {
    const body = { kind };
    if (kind === 'chosen') body.address = address;
    else if (domain) body.domain = domain;
    const sealed = await this.sealLabel(label);
    if (sealed) body.label = sealed;
    const made = await postJson('/api/aliases', body);
    const opened = await this.open(made);
    if (!opened.address) opened.address = made.address;
    return this.replace(opened);
  }

  async change(id, fields) {
    const changed = await patchJson(`/api/aliases/${encodeURIComponent(id)}`, fields);
    return this.replace(await this.open(changed));
  }

  setState(id, state) {
    return this.change(id, { state });
  }

  setSenders(id, senders) {
    return this.change(id, { senders });
  }

  async setLabel(id, text) {
    return this.change(id, { label: await this.sealLabel(text) });
  }

  async remove(id) {
    await deleteJson(`/api/aliases/${encodeURIComponent(id)}`);
    this.aliases = this.aliases.filter((a) => a.id !== id);
    this.changed();
  }

  // The caller's alias at an address (from a message's delivered_to); ApiError 404 when it is none of theirs.
  async lookup(address) {
    return this.replace(await this.open(await postJson('/api/aliases/lookup', { address })));
  }

  isOwn(address) {
    return this.own.includes(String(address || '').trim().toLowerCase());
  }

  // The alias a message was delivered to, or null when it came to one of the account's own names.
  viaAlias(deliveredTo) {
    if (!deliveredTo || this.isOwn(deliveredTo)) return null;
    const wanted = canonicalAddress(deliveredTo);
    return this.aliases.find((a) => a.address && canonicalAddress(a.address) === wanted) || null;
  }

  active() {
    return this.aliases.filter((a) => a.state === 'active' && a.address);
  }
}
