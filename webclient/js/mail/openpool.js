// Opening many sealed twins at once: one module worker per core (navigator.hardwareConcurrency, at most 8), each
// holding the account's keys; a batch goes to the least busy. Where workers cannot start, the page opens them.

import { openTwin } from './opentwin.js';

const MAX_WORKERS = 8;

// The key object as it crosses to a worker: plain data (BigInts, bytes, CryptoKeys), retired keys included.
function portable(key) {
  const one = (k) => ({ der: k.der, publicDer: k.publicDer, rsa: k.rsa, oaep: k.oaep });
  return { ...one(key), retired: (key.retired || []).map(one) };
}

export class OpenPool {
  constructor(key, size = Math.min(MAX_WORKERS, Math.max(1, navigator.hardwareConcurrency || 2))) {
    this.key = key;
    this.workers = [];
    this.waiting = new Map();
    this.nextId = 1;
    try {
      const shared = portable(key);
      this.sentDer = key.der;
      for (let i = 0; i < size; i++) {
        const worker = new Worker(new URL('./open-worker.js', import.meta.url), { type: 'module' });
        worker.busy = 0;
        worker.onmessage = (event) => this.answered(worker, event.data);
        worker.onerror = () => this.failed(worker);
        worker.postMessage({ type: 'key', key: shared });
        this.workers.push(worker);
      }
    } catch {
      this.close();
    }
  }

  get size() {
    return this.workers.length;
  }

  answered(worker, { id, out }) {
    const job = this.waiting.get(id);
    if (!job) return;
    this.waiting.delete(id);
    worker.busy -= job.count;
    job.resolve(out);
  }

  // A worker that dies takes its batches with it: they are opened here instead.
  failed(worker) {
    this.workers = this.workers.filter((w) => w !== worker);
    worker.terminate();
    for (const [id, job] of this.waiting) {
      if (job.worker !== worker) continue;
      this.waiting.delete(id);
      Promise.all(job.items.map((item) => openTwin(this.key, item))).then(job.resolve, job.reject);
    }
  }

  // items: [{path, data (Uint8Array), info, mk}] -> [{path, record, mk?}] in the same order. The bytes are copied
  // (not transferred): a worker that dies leaves them here to open.
  open(items) {
    // A key rotation changes the account's key object in place: the workers get the new keys (and the retired).
    if (this.key.der !== this.sentDer) {
      this.sentDer = this.key.der;
      const shared = portable(this.key);
      for (const worker of this.workers) worker.postMessage({ type: 'key', key: shared });
    }
    if (!this.workers.length) return Promise.all(items.map((item) => openTwin(this.key, item)));
    const worker = this.workers.reduce((a, b) => (b.busy < a.busy ? b : a));
    const id = this.nextId++;
    worker.busy += items.length;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject, worker, items, count: items.length });
      worker.postMessage({ id, items });
    });
  }

  close() {
    for (const worker of this.workers) worker.terminate();
    this.workers = [];
  }
}
