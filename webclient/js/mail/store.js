// The mailbox: lists Mail/*_Json (Inbox, Sent, Spam, Screener), decrypts new twins, keeps summaries, unread,
// trash and not-spam state in encrypted Cache/ documents, and answers folder, read, delete/restore, move and search requests.
// The same code reads a group's mailbox (issue 20): another store base, the group's keys, read-only and kept in
// memory only (nothing of it is written to the user's own Cache/).

import { deleteObject, getObject, listAll, moveObjects, OWN_STORE } from '../api.js';
import { fromUtf8 } from '../crypto/bytes.js';
import { openOwnMailObject } from '../crypto/envelope.js';
import { CacheDoc } from './cache.js';
import { summarize } from './twin.js';
import { judgedSpam } from './verdict.js';

const SOURCES = { 'Mail/In_Json/': 'inbox', 'Mail/Sent_Json/': 'sent', 'Mail/Spam_Json/': 'spam',
  'Mail/Screener_Json/': 'screener' };
// Twin folder -> original folder (docs/protocol.md §2.3: deleting or moving a mail touches both objects).
const ORIGINALS = { 'Mail/In_Json/': 'Mail/In/', 'Mail/Sent_Json/': 'Mail/Sent/', 'Mail/Spam_Json/': 'Mail/Spam/',
  'Mail/Screener_Json/': 'Mail/Screener/' };
// Where POST /api/move may put a message.
const MOVABLE = { inbox: 'Mail/In_Json/', spam: 'Mail/Spam_Json/' };
// Index records of an older shape (without the verdict, or the address it came to) are shown at once and
// decrypted again by the next sync.
const RECORD = 3;
const MAX_TWIN = 96 * 1024 * 1024;
const SNIPPET = 2000;
const PARALLEL = 6;
// Shown instead of a message whose sealed bytes fail to decrypt or authenticate with the account's key.
export const TAMPERED_SUBJECT = '(tampered — not shown)';
export const TAMPERED_NOTICE = 'Tampered — not shown. This message failed its integrity check: '
  + 'it was modified or corrupted after it was sealed, so none of it is displayed.';

// The key was checked against the account at login, so a failure here means the stored bytes changed.
export class TamperedError extends Error {
  constructor() {
    super('message failed integrity check');
    this.name = 'TamperedError';
  }
}

async function openSealed(key, data) {
  try {
    return await openOwnMailObject(key, data, MAX_TWIN);
  } catch {
    throw new TamperedError();
  }
}

function plainOf(summary) {
  if (summary.text) return summary.text;
  if (!summary.html) return '';
  const doc = new DOMParser().parseFromString(summary.html, 'text/html');
  for (const el of doc.querySelectorAll('script,style,template')) el.remove();
  return (doc.body ? doc.body.textContent : '') || '';
}

function people(list) {
  return list.map((p) => (p.name ? `${p.name} <${p.email}>` : p.email)).join(', ');
}

// Compact index record of one message (what the list and the search need).
function record(path, info, summary) {
  return {
    p: path,
    k: SOURCES[path.slice(0, path.lastIndexOf('/') + 1)],
    s: summary.subject,
    fn: summary.from.name,
    fe: summary.from.email,
    to: people([...summary.to, ...summary.cc]),
    d: summary.date || info.modified_ms,
    z: info.size,
    a: summary.attachments.filter((x) => !x.inline).length,
    b: plainOf(summary).replace(/\s+/g, ' ').slice(0, SNIPPET),
    v: summary.authentication ? summary.authentication.verdict : '',
    j: judgedInInbox(summary) ? 1 : 0,
    dt: summary.deliveredTo || '',
    r: RECORD,
  };
}

// The appliance judged it spam but filed it in Mail/In (a v1 account, whose original clients list only Mail/In):
// the twin's `original` then names Mail/In. A quarantined message later moved to the inbox still names Mail/Spam.
function judgedInInbox(summary) {
  return judgedSpam(summary.authentication, summary.spam) && !(summary.original || '').startsWith('Mail/Spam/');
}

function folderPrefix(path) {
  return path.slice(0, path.lastIndexOf('/') + 1);
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
    if (state) {
      this.read = new Set(state.read || []);
      this.trash = new Set(state.trash || []);
      this.ham = new Set(state.ham || []);
    }
    return this.items.size;
  }

  // List the store, decrypt what is new, forget what is gone. onProgress(done, total).
  async sync(onProgress = () => {}) {
    const listed = [];
    for (const prefix of Object.keys(SOURCES)) {
      for (const info of await listAll(prefix, undefined, this.base)) {
        if (info.path.slice(prefix.length).includes('/') || info.path.endsWith('.lock')) continue;
        listed.push(info);
      }
    }
    const present = new Set(listed.map((i) => i.path));
    for (const path of [...this.items.keys()]) {
      if (!present.has(path)) {
        this.items.delete(path);
        this.indexDirty = true;
      }
    }
    const fresh = listed.filter((i) => !this.items.has(i.path) || this.items.get(i.path).r !== RECORD);
    let done = 0;
    onProgress(done, fresh.length);
    const queue = fresh.slice();
    const worker = async () => {
      while (queue.length) {
        const info = queue.shift();
        try {
          const summary = await this.fetchTwin(info.path);
          this.items.set(info.path, record(info.path, info, summary));
        } catch (e) {
          const tampered = e instanceof TamperedError;
          this.items.set(info.path, { p: info.path, k: SOURCES[folderPrefix(info.path)],
            s: tampered ? TAMPERED_SUBJECT : '(this message could not be decrypted)', fn: '', fe: '', to: '',
            d: info.modified_ms, z: info.size, a: 0, b: '', v: '', j: 0, dt: '', r: RECORD, err: tampered ? 'tampered' : 1 });
        }
        this.indexDirty = true;
        done++;
        onProgress(done, fresh.length);
        if (done % 200 === 0) this.changed();
      }
    };
    await Promise.all(Array.from({ length: PARALLEL }, worker));
    this.changed();
    if (this.indexDirty) await this.flush();
    return fresh.length;
  }

  async fetchTwin(path) {
    if (this.twins.has(path)) return this.twins.get(path);
    const found = await getObject(path, this.base);
    if (!found) throw new Error('gone');
    const twin = JSON.parse(fromUtf8(await openSealed(this.key, found.data)));
    const summary = summarize(twin);
    if (this.twins.size > 50) this.twins.delete(this.twins.keys().next().value);
    this.twins.set(path, summary);
    return summary;
  }

  // The original RFC 5322 bytes of a message.
  async fetchOriginal(path) {
    const found = await getObject(this.originalPath(path), this.base);
    if (!found) throw new Error('The original message is missing.');
    return openSealed(this.key, found.data);
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
      jobs.push(this.indexDoc.save({ v: 1, items: [...this.items.values()] }));
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
