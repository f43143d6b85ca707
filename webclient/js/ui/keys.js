// The Keys page and the key alarm: the account's current key (id, fingerprint, whether its record is proven in
// the transparency log), the keys it had before, "Rotate key", and the red banner the login-time watch raises
// when the log shows a key the user did not make for one of their addresses, or an answer that does not verify;
// and the domain's encryption policy (issue 20): a row of the Keys page, and above the mailbox a plain notice when
// an organisation key can also read the user's mail.

import { checkOwnKeys, domainOf, groupedFingerprint, KeyAlarm, rotateKey } from '../crypto/keylog.js';
import { $, formatDate, h, status } from './dom.js';

const SAY = 'key-status';

export class KeysPage {
  // session: the logged-in session; onRotated(): the rest of the client adopts the new key.
  constructor({ session, onRotated = () => {} }) {
    this.session = session;
    this.onRotated = onRotated;
    this.result = null;
    // Alarms stay up until the page is left: a key that showed once and vanished is still worth knowing.
    this.alarms = new Map();
    // The newest verified policy per domain of the account (null: never set). A domain whose check failed keeps
    // what was verified before: who else can read the mail is worth knowing even while the log misbehaves.
    this.policies = new Map();
    this.checking = null;
    $('key-rotate').addEventListener('click', () => this.rotate());
    $('key-check').addEventListener('click', () => this.check());
  }

  // The watch over the user's own keys (at login, on "Check again", after a rotation). Never throws.
  check() {
    if (this.checking) return this.checking;
    $('key-proof').textContent = 'Checking the key log…';
    $('key-proof').className = 'key-proof';
    this.checking = checkOwnKeys(this.session).catch((e) => ({
      verified: [], published: [], notes: [], head: null,
      alarms: [{ address: null, text: `The key log could not be checked: ${e.message}` }],
    })).then((result) => {
      this.result = result;
      for (const alarm of result.alarms) this.alarms.set(alarm.text, alarm);
      for (const verified of result.verified) this.policies.set(domainOf(verified.address), verified.policy);
      this.render();
      this.showAlarms();
      this.showPolicyNotice();
      document.body.dataset.keysChecked = String((Number(document.body.dataset.keysChecked) || 0) + 1);
      return result;
    }).finally(() => {
      this.checking = null;
    });
    return this.checking;
  }

  showAlarms() {
    const banner = $('key-alarm');
    banner.replaceChildren(
      h('strong', {}, 'Warning about your keys'),
      ...[...this.alarms.values()].map((a) => h('p', { class: 'key-alarm-line' }, a.text)),
      h('p', {}, h('a', { href: '#keys', onclick: (e) => { e.preventDefault(); $('keys-link').click(); } },
        'See the Keys page')),
    );
    banner.hidden = this.alarms.size === 0;
  }

  // "Mail to DOMAIN can also be read by OFFICERS (organisation policy)": informational, not an alarm.
  showPolicyNotice() {
    const notice = $('policy-notice');
    const lines = [...this.policies.values()].filter((p) => p && p.policy === 'organisation')
      .map((p) => h('p', { class: 'policy-notice-line', 'data-domain': p.domain },
        `Mail to ${p.domain} can also be read by ${p.officers.join(', ')} (organisation policy)`));
    notice.replaceChildren(...lines);
    notice.hidden = lines.length === 0;
  }

  // The Keys page's "Domain policy" row: one line per domain of the account's addresses, in the admin tool's words.
  renderPolicies() {
    const cell = $('key-policy');
    const domains = [...new Set((this.session.account.addresses || []).map(domainOf))];
    const known = domains.filter((d) => this.policies.has(d));
    cell.replaceChildren(...known.map((domain) => {
      const p = this.policies.get(domain);
      if (!p) {
        return h('div', { class: 'key-policy-line', 'data-domain': domain, 'data-policy': 'personal' },
          `${domain}: personal (never changed)`);
      }
      const entry = `entry ${p.seq}, log leaf ${p.leafIndex}`;
      const text = p.policy === 'organisation'
        ? `${domain}: organisation. Mail to ${domain} can also be read by ${p.officers.join(', ')} `
          + `(organisation key ${p.keyId}; ${entry})`
        : `${domain}: ${p.policy} (${entry})`;
      return h('div', { class: `key-policy-line ${p.policy}`, 'data-domain': domain, 'data-policy': p.policy,
        'data-seq': String(p.seq), 'data-leaf': String(p.leafIndex) }, text);
    }));
    if (!known.length) cell.textContent = '—';
  }

  render() {
    const result = this.result;
    if (!result) return;
    this.renderPolicies();
    const mine = result.verified.find((v) => v.address === (this.session.account.addresses[0] || '').toLowerCase())
      || result.verified[0];
    const proof = $('key-proof');
    const failed = result.alarms.length > 0;
    if (mine) {
      $('key-id').textContent = mine.record.key_id;
      $('key-fingerprint').textContent = groupedFingerprint(mine.record.fingerprint);
      $('key-created').textContent = formatDate(mine.record.created_ms, true);
    } else {
      $('key-id').textContent = '—';
      $('key-fingerprint').textContent = '—';
      $('key-created').textContent = '';
    }
    if (mine && !failed) {
      const head = mine.head;
      proof.textContent = `Verified: in the key log's tree of ${head.tree_size} `
        + `${head.tree_size === 1 ? 'entry' : 'entries'} (leaf ${mine.record.leafIndex}), signed by the log `
        + `key this account pinned, ${formatDate(head.timestamp, true)}; consistent with the log seen before.`;
      proof.className = 'key-proof verified';
    } else {
      proof.textContent = failed ? 'Not verified: see the warning above.'
        : ['No key is published for your addresses.', ...result.notes].join(' ');
      proof.className = 'key-proof failed';
    }
    proof.dataset.treeSize = mine ? String(mine.head.tree_size) : '';
    const rows = $('key-history');
    const history = mine ? [...mine.history].reverse() : [];
    rows.replaceChildren(...history.map((r) => h('li', { class: `key-old ${r.status}`, 'data-key-id': r.key_id },
      h('span', { class: 'key-old-id' }, r.key_id), ' ',
      h('span', { class: `tag key-old-status ${r.status}` }, r.status), ' ',
      h('span', { class: 'hint' }, `made ${formatDate(r.created_ms, true)}`
        + (r.retired_ms ? `, retired ${formatDate(r.retired_ms, true)}` : '')),
      h('div', { class: 'key-old-fingerprint' }, groupedFingerprint(r.fingerprint)))));
    $('key-history-empty').hidden = history.length > 0;
  }

  show() {
    this.render();
    if (!this.result && !this.checking) this.check();
  }

  async rotate() {
    const button = $('key-rotate');
    if (button.disabled) return;
    button.disabled = true;
    status(SAY, 'Making a new key pair in this browser and publishing it…');
    try {
      const { verified, oldKeyId } = await rotateKey(this.session);
      this.onRotated();
      await this.check();
      status(SAY, `New key ${verified.record.key_id} published. The old key ${oldKeyId} is kept in your key block `
        + 'to read the mail sealed to it.');
    } catch (e) {
      status(SAY, e instanceof KeyAlarm ? e.message : `The key was not rotated: ${e.message}`, true);
    } finally {
      button.disabled = false;
    }
  }
}
