// The mailbox: lists Mail/*_Json (Inbox, Sent, Spam, Screener), decrypts new twins, keeps summaries, unread,
// trash and not-spam state in encrypted Cache/ documents, and answers folder, read, delete/restore, move and search requests.
// The same code reads a group's mailbox (issue 20): another store base, the group's keys, read-only and kept in
// memory only (nothing of it is written to the user's own Cache/).

import { changesSince, deleteObject, fetchBatch, getObject, listPage, moveObjects, OWN_STORE } from '../api.js';
import { fromB64, fromUtf8, toB64 } from '../crypto/bytes.js';
import { openOwnMailObjectKeyed } from '../crypto/envelope.js';
import { CacheDoc } from './cache.js';
import { OpenPool } from './openpool.js';
import { MAX_TWIN } from './opentwin.js';
import { folderPrefix, isListedTwin, RECORD, SOURCES, TAMPERED_SUBJECT } from './record.js';
import { summarize } from './twin.js';

export { TAMPERED_SUBJECT };

// Twin folder -> original folder (docs/protocol.md §2.3: deleting or moving a mail touches both objects).
const ORIGINALS = { 'Mail/In_Json/': 'Mail/In/', 'Mail/Sent_Json/': 'Mail/Sent/', 'Mail/Spam_Json/': 'Mail/Spam/',
  'Mail/Screener_Json/': 'Mail/Screener/' };
// Where POST /api/move may put a message.
const MOVABLE = { inbox: 'Mail/In_Json/', spam: 'Mail/Spam_Json/' };
// A cold sync: the newest messages first, in a small batch so they show at once, then larger batches, a few in
// flight while the workers open the ones before (docs/performance.md "Browser sync").
const FIRST_BATCH = 40;
const BATCH = 250;
const IN_FLIGHT = 3;
export const TAMPERED_NOTICE = 'Tampered — not shown. This message failed its integrity check: '
  + 'it was modified or corrupted after it was sealed, so none of it is displayed.';

// The key was checked against the account at login, so a failure here means the stored bytes changed.
export class TamperedError extends Error {
  constructor() {
    super('message failed integrity check');
    this.name = 'TamperedError';
  }
}

// {plain, contentKey}; `known`: the message key from an earlier opening on this device (no RSA then).
async function openSealed(key, data, known = null) {
  try {
    return await openOwnMailObjectKeyed(key, data, MAX_TWIN, known);
  } catch {
    throw new TamperedError();
  }
}

function keyOf(b64) {
  try {
    return b64 ? fromB64(b64) : null;
  } catch {
    return null;
  }
}

function baseName(path) {
  return path.slice(path.lastIndexOf('/') + 1);
}

export class MailStore {
  // key: the key object mail is sealed to (its `retired` keys are tried too). base: the store's API path (a
  // group's: /api/groups/<name>/store). readOnly: no moves, deletes or Cache/ documents; read marks in memory.
  constructor(key, { base = OWN_STORE, readOnly = false } = {}) {
    this.key = key;
    this.base = base;
    this.readOnly = readOnly;
    this.items = new Map();
    this.read = new Set();
    this.trash = new Set();
    // Messages in Mail/In the appliance judged spam and the user said are not (they cannot be moved further).
    this.ham = new Set();
    this.indexDoc = readOnly ? null : new CacheDoc('W_index', key);
    this.stateDoc = readOnly ? null : new CacheDoc('W_state', key);
    this.twins = new Map();
    this.listeners = new Set();
    this.saveTimer = null;
    this.indexDirty = false;
    this.stateDirty = false;
    // The store's change number this mailbox has seen every change up to (0: none; list everything).
    this.seq = 0;
    this.pool = null;
  }

  onChange(fn) {
    this.listeners.add(fn);
  }

  changed() {
    for (const fn of this.listeners) fn();
  }

  // Warm start: the encrypted index and state from Cache/.
  async loadCache() {
    if (this.readOnly) return 0;
    const [index, state] = await Promise.all([this.indexDoc.load(), this.stateDoc.load()]);
    if (index && Array.isArray(index.items)) for (const item of index.items) this.items.set(item.p, item);
    this.seq = index && Number.isSafeInteger(index.seq) ? index.seq : 0;
    if (state) {
      this.read = new Set(state.read || []);
      this.trash = new Set(state.trash || []);
      this.ham = new Set(state.ham || []);
    }
    return this.items.size;
  }

  // Bring the mailbox up to date: what changed in the store since the change number it holds (everything, on a
  // first sync), the new twins fetched in batches, newest first, and opened in the workers. onProgress(done, total);
  // onFirst() once the newest messages are in the list.
  async sync(onProgress = () => {}, onFirst = () => {}) {
    const t0 = performance.now();
    this.spent = { fetch: 0, decrypt: 0 };
    // An empty mailbox (a new device) shows the newest page of the inbox while the full listing is on its way.
    const early = this.items.size ? null : this.openNewest().then((count) => {
      if (count) onFirst();
      return count;
    }, () => 0);
    const { reset, seq, changes } = await changesSince(this.seq, this.base);
    const shown = early ? await early : 0;
    const t1 = performance.now();
    const latest = new Map();
    for (const change of changes) latest.set(change.path, change);
    const moved = new Map();
    if (reset) {
      for (const path of [...this.items.keys()]) {
        const change = latest.get(path);
        if (!change || change.deleted) this.forget(path, moved);
      }
    }
    let stateChanged = false;
    const wanted = [];
    for (const change of latest.values()) {
      if (change.deleted) {
        this.forget(change.path, moved);
        continue;
      }
      if (this.stateDoc && change.path === this.stateDoc.path) {
        stateChanged = change.version !== this.stateDoc.version;
        continue;
      }
      if (!isListedTwin(change.path)) continue;
      const held = this.items.get(change.path);
      if (held && held.r === RECORD && (!held.ver || held.ver === change.version)) continue;
      const before = !held && moved.get(baseName(change.path));
      if (before && before.z === change.size) {
        // Moved (another device's "not spam", say): the same twin under another folder, nothing to open.
        const folder = SOURCES[folderPrefix(change.path)];
        this.items.set(change.path, { ...before, p: change.path, k: folder, ver: change.version });
        this.indexDirty = true;
        continue;
      }
      wanted.push(change);
    }
    if (stateChanged) await this.reloadState();
    wanted.sort((a, b) => b.modified_ms - a.modified_ms || (a.path < b.path ? 1 : -1));
    const t2 = performance.now();
    await this.openAll(wanted, shown, onProgress, shown ? () => {} : onFirst);
    const t3 = performance.now();
    // The new change number is kept with the index (an empty mailbox writes nothing: it has nothing to keep).
    if (seq !== this.seq && this.items.size) this.indexDirty = true;
    this.seq = seq;
    this.changed();
    if (this.indexDirty) await this.flush();
    // Where the time went (milliseconds; for measurements, never mail): listing, opening, saving the index.
    this.stats = { changes: t1 - t0, prepare: t2 - t1, open: t3 - t2, save: performance.now() - t3,
      listed: changes.length, opened: wanted.length + shown, workers: this.pool ? this.pool.size : 0,
      fetchSum: this.spent.fetch, decryptSum: this.spent.decrypt };
    return wanted.length + shown;
  }

  // The newest page of the inbox, opened and in the list; how many.
  async openNewest() {
    const listed = await listPage('Mail/In_Json/', FIRST_BATCH, this.base);
    const batch = listed.filter((info) => isListedTwin(info.path));
    if (!batch.length) return 0;
    await this.openBatch(batch);
    this.changed();
    return batch.length;
  }

  // Fetch `batch` (store listings) in one request and open it in the workers, a slice per worker.
  async openBatch(batch) {
    if (!this.pool) this.pool = new OpenPool(this.key);
    const f0 = performance.now();
    const fetched = await fetchBatch(batch.map((c) => c.path), this.base);
    this.spent.fetch += performance.now() - f0;
    const items = [];
    for (const change of batch) {
      const got = fetched.get(change.path);
      if (!got) continue;
      const info = { size: change.size, modified_ms: change.modified_ms, version: got.version };
      items.push({ path: change.path, data: got.data, info });
    }
    const slices = [];
    const per = Math.max(1, Math.ceil(items.length / Math.max(1, this.pool.size)));
    for (let at = 0; at < items.length; at += per) slices.push(this.pool.open(items.slice(at, at + per)));
    const d0 = performance.now();
    const opened = await Promise.all(slices);
    this.spent.decrypt += performance.now() - d0;
    for (const out of opened) {
      for (const { path, record, mk } of out) {
        if (mk) record.mk = toB64(mk);
        this.items.set(path, record);
      }
    }
    this.indexDirty = true;
  }

  forget(path, moved) {
    const item = this.items.get(path);
    if (!item) return;
    moved.set(baseName(path), item);
    this.items.delete(path);
    this.twins.delete(path);
    this.indexDirty = true;
  }

  // Another device changed the read, trash or not-spam marks: theirs, with what this one has not saved yet.
  async reloadState() {
    const state = await this.stateDoc.load();
    if (!state) return;
    const read = new Set(state.read || []);
    if (this.stateDirty) for (const path of this.read) read.add(path);
    this.read = read;
    if (!this.stateDirty) {
      this.trash = new Set(state.trash || []);
      this.ham = new Set(state.ham || []);
    }
  }

  // Fetch and open `wanted` (store listings, newest first) in batches, a few in flight: the first small, so it
  // shows at once (unless `shown` messages are in the list already).
  async openAll(wanted, shown, onProgress, onFirst) {
    let done = 0;
    const total = wanted.length + shown;
    onProgress(shown, total);
    if (!wanted.length) {
      onFirst();
      return;
    }
    const first = shown ? BATCH : FIRST_BATCH;
    const batches = [wanted.slice(0, first)];
    for (let at = first; at < wanted.length; at += BATCH) batches.push(wanted.slice(at, at + BATCH));
    const step = async (batch) => {
      await this.openBatch(batch);
      done += batch.length;
      onProgress(shown + done, total);
    };
    await step(batches[0]);
    this.changed();
    onFirst();
    let next = 1;
    const lane = async () => {
      while (next < batches.length) {
        await step(batches[next++]);
        if (next % 4 === 0) this.changed();
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  }

  close() {
    if (this.pool) this.pool.close();
    this.pool = null;
  }

  async fetchTwin(path) {
    if (this.twins.has(path)) return this.twins.get(path);
    const found = await getObject(path, this.base);
    if (!found) throw new Error('gone');
    const item = this.items.get(path);
    const { plain, contentKey } = await openSealed(this.key, found.data, keyOf(item && item.mk));
    const summary = summarize(JSON.parse(fromUtf8(plain)));
    if (item && !item.mk) {
      item.mk = toB64(contentKey);
      this.indexDirty = true;
      this.scheduleFlush();
    }
    if (this.twins.size > 50) this.twins.delete(this.twins.keys().next().value);
    this.twins.set(path, summary);
    return summary;
  }

  // The original RFC 5322 bytes of a message.
  async fetchOriginal(path) {
    const found = await getObject(this.originalPath(path), this.base);
    if (!found) throw new Error('The original message is missing.');
    const item = this.items.get(path);
    const { plain, contentKey } = await openSealed(this.key, found.data, keyOf(item && item.ok));
    if (item && !item.ok) {
      item.ok = toB64(contentKey);
      this.indexDirty = true;
      this.scheduleFlush();
    }
    return plain;
  }

  originalPath(path) {
    const prefix = folderPrefix(path);
    return prefix in ORIGINALS ? ORIGINALS[prefix] + path.slice(prefix.length) : path;
  }

  // The folder a message shows in: trash (the user's), spam (filed there, or judged spam in Mail/In and not
  // marked otherwise), else where it is stored.
  folderOf(item) {
    if (this.trash.has(item.p)) return 'trash';
    if (item.k === 'inbox' && item.j && !this.ham.has(item.p)) return 'spam';
    return item.k;
  }

  folder(name) {
    const out = [];
    for (const item of this.items.values()) if (this.folderOf(item) === name) out.push(item);
    out.sort((a, b) => b.d - a.d || (a.p < b.p ? 1 : -1));
    return out;
  }

  // Every message but those in Trash, newest first (a group's mailbox shows all it holds in one list).
  all() {
    const out = [];
    for (const item of this.items.values()) if (this.folderOf(item) !== 'trash') out.push(item);
    out.sort((a, b) => b.d - a.d || (a.p < b.p ? 1 : -1));
    return out;
  }

  // Every message received (not Sent, not in Trash) at an address `matches` accepts (the "via this address"
  // filter). A Sent twin's delivered_to names the address it went out from, not one it came to.
  deliveredTo(matches) {
    const out = [];
    for (const item of this.items.values()) {
      if (item.dt && item.k !== 'sent' && this.folderOf(item) !== 'trash' && matches(item.dt)) out.push(item);
    }
    out.sort((a, b) => b.d - a.d || (a.p < b.p ? 1 : -1));
    return out;
  }

  counts() {
    const c = { inbox: 0, unread: 0, sent: 0, spam: 0, screener: 0, trash: 0 };
    for (const item of this.items.values()) {
      const folder = this.folderOf(item);
      c[folder] = (c[folder] || 0) + 1;
      if (folder === 'inbox' && !this.read.has(item.p)) c.unread++;
    }
    c.trash = this.trash.size;
    return c;
  }

  isUnread(item) {
    const folder = this.folderOf(item);
    return (folder === 'inbox' || folder === 'spam' || folder === 'screener') && !this.read.has(item.p);
  }

  // Move a message (twin and original, one transaction on the server) to 'inbox' or 'spam'. A message the
  // appliance judged spam but kept in Mail/In is not moved to the inbox (it is there): it is marked not spam.
  // Returns the twin's new path; throws ApiError (nothing moved) when the server refuses.
  async moveTo(path, folder) {
    this.writable();
    const item = this.items.get(path);
    const target = MOVABLE[folder] + path.slice(folderPrefix(path).length);
    if (target !== path) {
      await moveObjects([{ from: this.originalPath(path), to: this.originalPath(target) }, { from: path, to: target }]);
      this.items.delete(path);
      if (item) this.items.set(target, { ...item, p: target, k: folder });
      for (const set of [this.read, this.trash, this.ham]) {
        if (set.delete(path)) set.add(target);
      }
      if (this.twins.has(path)) {
        this.twins.set(target, this.twins.get(path));
        this.twins.delete(path);
      }
      this.indexDirty = true;
    }
    const moved = this.items.get(target);
    if (folder === 'spam') this.ham.delete(target);
    else if (moved && this.folderOf(moved) === 'spam') this.ham.add(target);
    this.stateDirty = true;
    this.changed();
    this.scheduleFlush();
    return target;
  }

  setRead(path, value = true) {
    if (this.read.has(path) === value) return;
    if (value) this.read.add(path);
    else this.read.delete(path);
    this.stateDirty = true;
    this.scheduleFlush();
  }

  moveToTrash(path) {
    this.writable();
    this.trash.add(path);
    this.stateDirty = true;
    this.changed();
    this.scheduleFlush();
  }

  restore(path) {
    this.writable();
    this.trash.delete(path);
    this.stateDirty = true;
    this.changed();
    this.scheduleFlush();
  }

  async deleteForever(path) {
    this.writable();
    await deleteObject(this.originalPath(path));
    await deleteObject(path);
    this.items.delete(path);
    this.trash.delete(path);
    this.read.delete(path);
    this.ham.delete(path);
    this.twins.delete(path);
    this.indexDirty = this.stateDirty = true;
    this.changed();
    this.scheduleFlush();
  }

  // Every word of the query must appear in the subject, the addresses or the body.
  search(query, folder = null) {
    const words = query.toLowerCase().split(/\s+/).filter(Boolean);
    if (!words.length) return [];
    const out = [];
    for (const item of this.items.values()) {
      if (folder && this.folderOf(item) !== folder) continue;
      const hay = `${item.s}\n${item.fn} ${item.fe}\n${item.to}\n${item.b}`.toLowerCase();
      if (words.every((w) => hay.includes(w))) out.push(item);
    }
    out.sort((a, b) => b.d - a.d);
    return out;
  }

  writable() {
    if (this.readOnly) throw new Error('This mailbox is read-only.');
  }

  scheduleFlush() {
    if (this.readOnly) return;
    clearTimeout(this.saveTimer);
    this.saveTimer = setTimeout(() => this.flush().catch(() => {}), 800);
  }

  async flush() {
    clearTimeout(this.saveTimer);
    if (this.readOnly) return;
    // A save already under way (the timer's, or the end of a sync) is waited for too: logging out right after a
    // sync must not leave before the cache it changed is written.
    const jobs = [this.flushing ? this.flushing.catch(() => {}) : Promise.resolve()];
    if (this.stateDirty) {
      this.stateDirty = false;
      const mine = { read: [...this.read], trash: [...this.trash], ham: [...this.ham] };
      jobs.push(this.stateDoc.save(mine, (remote) => ({
        read: [...new Set([...(remote.read || []), ...mine.read])],
        trash: mine.trash,
        ham: mine.ham,
      })));
    }
    if (this.indexDirty) {
      this.indexDirty = false;
      jobs.push(this.indexDoc.save({ v: 2, seq: this.seq, items: [...this.items.values()] }));
    }
    const all = Promise.all(jobs);
    this.flushing = all;
    try {
      await all;
    } finally {
      if (this.flushing === all) this.flushing = null;
    }
  }
}
