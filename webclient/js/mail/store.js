// The mailbox: lists Mail/*_Json, decrypts new twins, keeps summaries, unread and trash state in
// encrypted Cache/ documents, and answers folder, read, delete/restore and search requests.

import { deleteObject, getObject, listAll } from '../api.js';
import { fromUtf8 } from '../crypto/bytes.js';
import { openMailObject } from '../crypto/envelope.js';
import { CacheDoc } from './cache.js';
import { summarize } from './twin.js';

const SOURCES = { 'Mail/In_Json/': 'inbox', 'Mail/Sent_Json/': 'sent' };
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
    return await openMailObject(key, data, MAX_TWIN);
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
  };
}

export class MailStore {
  constructor(key) {
    this.key = key;
    this.items = new Map();
    this.read = new Set();
    this.trash = new Set();
    this.indexDoc = new CacheDoc('W_index', key.der);
    this.stateDoc = new CacheDoc('W_state', key.der);
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
    const [index, state] = await Promise.all([this.indexDoc.load(), this.stateDoc.load()]);
    if (index && Array.isArray(index.items)) for (const item of index.items) this.items.set(item.p, item);
    if (state) {
      this.read = new Set(state.read || []);
      this.trash = new Set(state.trash || []);
    }
    return this.items.size;
  }

  // List the store, decrypt what is new, forget what is gone. onProgress(done, total).
  async sync(onProgress = () => {}) {
    const listed = [];
    for (const prefix of Object.keys(SOURCES)) {
      for (const info of await listAll(prefix)) {
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
    const fresh = listed.filter((i) => !this.items.has(i.path));
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
          this.items.set(info.path, { p: info.path, k: SOURCES[info.path.slice(0, info.path.lastIndexOf('/') + 1)],
            s: tampered ? TAMPERED_SUBJECT : '(this message could not be decrypted)', fn: '', fe: '', to: '',
            d: info.modified_ms, z: info.size, a: 0, b: '', err: tampered ? 'tampered' : 1 });
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
    const found = await getObject(path);
    if (!found) throw new Error('gone');
    const twin = JSON.parse(fromUtf8(await openSealed(this.key, found.data)));
    const summary = summarize(twin);
    if (this.twins.size > 50) this.twins.delete(this.twins.keys().next().value);
    this.twins.set(path, summary);
    return summary;
  }

  // The original RFC 5322 bytes of a message.
  async fetchOriginal(path) {
    const found = await getObject(this.originalPath(path));
    if (!found) throw new Error('The original message is missing.');
    return openSealed(this.key, found.data);
  }

  originalPath(path) {
    return path.replace('Mail/In_Json/', 'Mail/In/').replace('Mail/Sent_Json/', 'Mail/Sent/');
  }

  folder(name) {
    const out = [];
    for (const item of this.items.values()) {
      const trashed = this.trash.has(item.p);
      if (name === 'trash' ? trashed : !trashed && item.k === name) out.push(item);
    }
    out.sort((a, b) => b.d - a.d || (a.p < b.p ? 1 : -1));
    return out;
  }

  counts() {
    let inbox = 0;
    let unread = 0;
    let sent = 0;
    for (const item of this.items.values()) {
      if (this.trash.has(item.p)) continue;
      if (item.k === 'inbox') {
        inbox++;
        if (!this.read.has(item.p)) unread++;
      } else sent++;
    }
    return { inbox, unread, sent, trash: this.trash.size };
  }

  isUnread(item) {
    return item.k === 'inbox' && !this.read.has(item.p);
  }

  setRead(path, value = true) {
    if (this.read.has(path) === value) return;
    if (value) this.read.add(path);
    else this.read.delete(path);
    this.stateDirty = true;
    this.scheduleFlush();
  }

  moveToTrash(path) {
    this.trash.add(path);
    this.stateDirty = true;
    this.changed();
    this.scheduleFlush();
  }

  restore(path) {
    this.trash.delete(path);
    this.stateDirty = true;
    this.changed();
    this.scheduleFlush();
  }

  async deleteForever(path) {
    await deleteObject(this.originalPath(path));
    await deleteObject(path);
    this.items.delete(path);
    this.trash.delete(path);
    this.read.delete(path);
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
      if (folder && (folder === 'trash') !== this.trash.has(item.p)) continue;
      if (folder && folder !== 'trash' && item.k !== folder) continue;
      const hay = `${item.s}\n${item.fn} ${item.fe}\n${item.to}\n${item.b}`.toLowerCase();
      if (words.every((w) => hay.includes(w))) out.push(item);
    }
    out.sort((a, b) => b.d - a.d);
    return out;
  }

  scheduleFlush() {
    clearTimeout(this.saveTimer);
    this.saveTimer = setTimeout(() => this.flush().catch(() => {}), 800);
  }

  async flush() {
    clearTimeout(this.saveTimer);
    const jobs = [];
    if (this.stateDirty) {
      this.stateDirty = false;
      const mine = { read: [...this.read], trash: [...this.trash] };
      jobs.push(this.stateDoc.save(mine, (remote) => ({
        read: [...new Set([...(remote.read || []), ...mine.read])],
        trash: mine.trash,
      })));
    }
    if (this.indexDirty) {
      this.indexDirty = false;
      jobs.push(this.indexDoc.save({ v: 1, items: [...this.items.values()] }));
    }
    await Promise.all(jobs);
  }
}
