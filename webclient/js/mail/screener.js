// The account's screener for first-time senders (docs/api.md, "Screener"): whether it is on, how many senders
// are approved and blocked (only counts: the appliance keeps senders as keyed hashes and cannot list them),
// turning it on and off, and a sender's verdict.

import { getJson, postJson, putJson } from '../api.js';

export class Screener {
  constructor() {
    this.enabled = false;
    this.approved = 0;
    this.blocked = 0;
    this.loaded = false;
    // False when the appliance keeps no address key (503 screener_unavailable): it cannot screen.
    this.available = true;
    this.listeners = new Set();
  }

  onChange(fn) {
    this.listeners.add(fn);
  }

  changed() {
    for (const fn of this.listeners) fn();
  }

  take(answer) {
    this.enabled = answer.enabled === true;
    this.approved = Number.isInteger(answer.approved) ? answer.approved : 0;
    this.blocked = Number.isInteger(answer.blocked) ? answer.blocked : 0;
    this.loaded = true;
    this.changed();
  }

  async load() {
    try {
      this.take(await getJson('/api/screener'));
    } catch (e) {
      if (e.status === 404 || e.status === 503) {
        this.available = false;
        this.changed();
      }
      throw e;
    }
  }

  // Throws ApiError: 409 screener_unavailable for an account read by original Mailiverse clients (v1),
  // 503 when the appliance keeps no address key.
  async setEnabled(enabled) {
    try {
      this.take(await putJson('/api/screener', { enabled }));
    } catch (e) {
      if (e.status === 503) {
        this.available = false;
        this.changed();
      }
      throw e;
    }
  }

  // verdict: 'approved' or 'blocked'; the counts are read again afterwards (a sender approved twice counts once).
  async setSender(address, verdict) {
    const answer = await postJson('/api/screener/senders', { address, verdict });
    this.load().catch(() => {});
    return answer;
  }
}
