// The compose dialog: new mail, reply, reply-all and forward (with the original's attachments), with
// From (the account's addresses and active aliases), To/Cc/Bcc and attached files, with a Hashcash stamp per
// recipient when asked so that screeners let it in. Before sending, every recipient's key is looked up in the
// verified key directory (here, or through this appliance at theirs): when all have one, the message is sealed on
// this device and goes to /api/send/sealed (mail/e2e.js); when one has none, the composer says so first and sends
// ordinary mail via /api/send only when Send is pressed again. A key that fails verification is not sent to. The
// lock line says which way the message will go.

import { ApiError, postJson } from '../api.js';
import { fromB64, toB64, utf8 } from '../crypto/bytes.js';
import { attachedBytes, buildMessage, MAX_ATTACHMENT_BYTES, parseAddresses } from '../mail/compose.js';
import { mintStamps, plainNotice, planSend, RecipientKeyAlarm, sendSealed, useSession } from '../mail/e2e.js';
import { formatPerson } from '../mail/twin.js';
import { $, formatDate, formatSize, h, status } from './dom.js';

// The appliance stamps at most this many recipients of one message (mailiverse/web/routes/send.py).
const MAX_STAMPED = 10;

function prefixed(prefix, subject) {
  const s = subject || '';
  return new RegExp(`^${prefix}:`, 'i').test(s.trim()) ? s : `${prefix}: ${s}`;
}

function quote(summary) {
  const text = summary.text || '';
  const said = `On ${formatDate(summary.date, true)}, ${formatPerson(summary.from)} wrote:`;
  return `\n\n${said}\n${text.split(/\r?\n/).map((l) => `> ${l}`).join('\n')}`;
}

// A recipient's key that failed verification: `address` and the KeyAlarm's `reason` (mail/e2e.js).
export { RecipientKeyAlarm };

// The appliance takes at most this many stamps with a message sealed on the device (docs/e2e.md §2).
const MAX_SEALED_STAMPS = 8;
// A plan this recent is used again by Send instead of looking every key up once more.
const PLAN_FRESH_MS = 30000;

export class Composer {
  // addresses: the account's own; aliases(): the alias book (or null), whose active aliases are From choices too;
  // session: the logged-in session, whose trust state checks the recipients' keys (none: no check);
  // onKeyAlarm({address, text}): a recipient's key failed verification (the red banner).
  constructor({ addresses, aliases = () => null, onSent, session = null, onKeyAlarm = () => {} }) {
    this.addresses = addresses;
    this.aliases = aliases;
    this.onSent = onSent;
    this.session = session;
    this.onKeyAlarm = onKeyAlarm;
    this.dialog = $('compose');
    this.reply = null;
    this.fillFrom(null);
    $('compose-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.send();
    });
    $('discard-button').addEventListener('click', () => this.dialog.close());
    // Ctrl+Enter (Cmd+Enter) sends from any field, as in most mail programs.
    $('compose-form').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        $('compose-form').requestSubmit($('send-button'));
      }
    });
    this.files = [];
    $('compose-files').addEventListener('change', (e) => this.addFiles(e.target));
    // The lock line: which way the message will go, judged again whenever the recipients change.
    this.lock = h('p', { id: 'compose-lock', class: 'lock', role: 'status', 'aria-live': 'polite', hidden: !session });
    $('compose-status').before(this.lock);
    this.plan = null;
    this.confirmedPlain = null;
    for (const id of ['compose-to', 'compose-cc', 'compose-bcc']) {
      $(id).addEventListener('change', () => this.judge());
    }
    if (session) useSession(session);
  }

  // The recipients typed so far (null while one is not an address) and the key their plan is remembered by.
  recipients() {
    try {
      const all = ['compose-to', 'compose-cc', 'compose-bcc'].flatMap((id) => parseAddresses($(id).value));
      return { all, key: [...new Set(all.map((a) => a.toLowerCase()))].sort().join(',') };
    } catch {
      return null;
    }
  }

  // planSend for these recipients, shared by the lock line and Send while it is fresh.
  planFor(recipients) {
    const now = Date.now();
    if (!this.plan || this.plan.key !== recipients.key || now - this.plan.at > PLAN_FRESH_MS) {
      const promise = planSend(this.session, recipients.all);
      this.plan = { key: recipients.key, at: now, promise };
      promise.catch(() => { if (this.plan && this.plan.promise === promise) this.plan = null; });
    }
    return this.plan.promise;
  }

  showLock(kind, text) {
    this.lock.className = `lock ${kind}`;
    this.lock.dataset.way = kind;
    this.lock.textContent = text;
  }

  // Judge the way for the lock line (nothing is sent).
  async judge() {
    if (!this.session) return;
    const recipients = this.recipients();
    if (!recipients || !recipients.all.length) {
      this.showLock('idle', 'Sealed on this device when every recipient has a mailiverse key.');
      return;
    }
    this.showLock('checking', 'Checking the recipients’ keys…');
    try {
      const plan = await this.planFor(recipients);
      if ((this.recipients() || {}).key !== recipients.key) return;
      this.showPlan(plan);
    } catch (e) {
      if ((this.recipients() || {}).key !== recipients.key) return;
      this.showLock('alarm', e instanceof RecipientKeyAlarm
        ? `Key alarm: the key of ${e.address} failed verification (${e.reason}). This message cannot be sent.`
        : `${e.message || e}`);
    }
  }

  showPlan(plan) {
    if (plan.e2e) {
      const count = plan.recipients.length;
      this.showLock('e2e', `End-to-end encrypted: sealed on this device for ${count === 1
        ? plan.recipients[0].address : `all ${count} recipients`}; the server cannot read it.`);
    } else {
      this.showLock('plain', plainNotice(plan));
    }
  }

  // The From choices: the account's addresses, then its active aliases (with their labels); `wanted` (an address
  // a message came to) is chosen when it is one of them, so a reply goes out from the alias it was sent to.
  fillFrom(wanted) {
    const book = this.aliases();
    const active = book ? book.active() : [];
    const options = [...this.addresses.map((a) => new Option(a, a)),
      ...active.map((a) => new Option(a.labelText ? `${a.address} (${a.labelText})` : a.address, a.address))];
    $('compose-from').replaceChildren(...options);
    let chosen = this.addresses[0] || '';
    if (wanted) {
      const own = this.addresses.find((a) => a.toLowerCase() === wanted.trim().toLowerCase());
      const alias = book ? book.viaAlias(wanted) : null;
      if (own) chosen = own;
      else if (alias && alias.state === 'active' && alias.address) chosen = alias.address;
    }
    $('compose-from').value = chosen;
  }

  async addFiles(input) {
    const chosen = Array.from(input.files || []);
    input.value = '';
    const room = MAX_ATTACHMENT_BYTES - attachedBytes(this.files);
    const total = chosen.reduce((sum, f) => sum + f.size, 0);
    if (total > room) {
      status('compose-status', `Attachments may add up to ${formatSize(MAX_ATTACHMENT_BYTES)}; that would be ${formatSize(total - room + MAX_ATTACHMENT_BYTES)}.`, true);
      return;
    }
    for (const file of chosen) {
      this.files.push({ filename: file.name, type: file.type, bytes: new Uint8Array(await file.arrayBuffer()) });
    }
    status('compose-status', '');
    this.renderFiles();
  }

  renderFiles() {
    $('compose-attachments').replaceChildren(...this.files.map((file, index) => h('li', {},
      `${file.filename} (${formatSize(file.bytes.length)}) `,
      h('button', { type: 'button', class: 'link', 'aria-label': `Remove ${file.filename}`,
        onclick: () => { this.files.splice(index, 1); this.renderFiles(); } }, 'Remove'))));
  }

  open(mode = 'new', summary = null) {
    const book = this.aliases();
    const own = new Set([...this.addresses, ...(book ? book.aliases.map((a) => a.address).filter(Boolean) : [])]
      .map((a) => a.toLowerCase()));
    const notOwn = (p) => p.email && !own.has(p.email.toLowerCase());
    let to = [];
    let cc = [];
    let subject = '';
    let text = '';
    this.reply = null;
    if (summary && (mode === 'reply' || mode === 'all')) {
      const sender = summary.replyTo.length ? summary.replyTo : [summary.from];
      to = sender.filter((p) => p.email);
      if (mode === 'all') {
        to = [...to, ...summary.to.filter(notOwn)];
        cc = summary.cc.filter(notOwn);
      }
      subject = prefixed('Re', summary.subject);
      text = quote(summary);
      const refs = [summary.references, summary.messageId].filter(Boolean).join(' ');
      this.reply = { inReplyTo: summary.messageId, references: refs };
    }
    this.files = [];
    if (summary && mode === 'forward') {
      this.files = summary.attachments.map((a) => ({ filename: a.filename, type: a.type,
        bytes: a.b64 !== undefined ? fromB64(a.b64) : utf8(a.text || '') }));
      subject = prefixed('Fwd', summary.subject);
      text = `\n\n---------- Forwarded message ----------\nFrom: ${formatPerson(summary.from)}\n` +
        `Date: ${formatDate(summary.date, true)}\nSubject: ${summary.subject}\n` +
        `To: ${summary.to.map(formatPerson).join(', ')}\n\n${summary.text || ''}`;
    }
    const unique = (list) => [...new Map(list.map((p) => [p.email.toLowerCase(), p])).values()];
    $('compose-title').textContent = { reply: 'Reply', all: 'Reply all', forward: 'Forward' }[mode] || 'New message';
    $('compose-to').value = unique(to).map((p) => p.email).join(', ');
    $('compose-cc').value = unique(cc).map((p) => p.email).join(', ');
    $('compose-bcc').value = '';
    $('compose-subject').value = subject;
    $('compose-text').value = text;
    this.fillFrom(summary ? summary.deliveredTo : null);
    this.renderFiles();
    $('compose-hashcash').checked = false;
    status('compose-status', '');
    this.confirmedPlain = null;
    this.plan = null;
    this.judge();
    this.dialog.showModal();
    const focus = to.length ? $('compose-text') : $('compose-to');
    focus.focus();
    if (focus === $('compose-text')) focus.setSelectionRange(0, 0);
  }

  async send() {
    const button = $('send-button');
    try {
      const draft = {
        from: $('compose-from').value,
        to: parseAddresses($('compose-to').value),
        cc: parseAddresses($('compose-cc').value),
        bcc: parseAddresses($('compose-bcc').value),
        subject: $('compose-subject').value,
        text: $('compose-text').value,
        inReplyTo: this.reply && this.reply.inReplyTo,
        references: this.reply && this.reply.references,
        attachments: this.files,
      };
      const host = draft.from.split('@')[1] || location.hostname;
      const { message, recipients } = buildMessage(draft, host);
      const hashcash = $('compose-hashcash').checked;
      if (hashcash && new Set(recipients.map((r) => r.toLowerCase())).size > MAX_STAMPED) {
        throw new Error(`A proof of work goes to at most ${MAX_STAMPED} recipients; untick it or send to fewer.`);
      }
      button.disabled = true;
      if (this.session) {
        status('compose-status', 'Checking the recipients’ keys…');
        const typed = this.recipients() || { all: recipients, key: '' };
        let plan = await this.planFor(typed);
        this.showPlan(plan);
        if (plan.e2e) {
          if (hashcash && plan.recipients.length > MAX_SEALED_STAMPS) {
            throw new Error(`A proof of work goes with at most ${MAX_SEALED_STAMPS} recipients of an end-to-end `
              + 'message; untick it or send to fewer.');
          }
          const stamps = [];
          if (hashcash) {
            status('compose-status', `Adding a proof of work for ${plan.recipients.length} recipient(s) on this device…`);
            stamps.push(...await mintStamps(plan.recipients.map((r) => r.address)));
          }
          status('compose-status', 'Sealing on this device and sending…');
          let result;
          try {
            result = await sendSealed(this.session, draft, plan, { host, stamps });
          } catch (e) {
            if (!(e instanceof ApiError && e.code === 'stale_key')) throw e;
            // A recipient's key changed since it was looked up: look every key up again, once.
            this.plan = null;
            plan = await this.planFor(typed);
            this.showPlan(plan);
            if (!plan.e2e) throw new Error('A recipient’s key changed; press Send again.');
            result = await sendSealed(this.session, draft, plan, { host, stamps });
          }
          this.dialog.close();
          this.onSent(result);
          return;
        }
        // Ordinary mail only once the composer has said so and Send is pressed again for the same recipients.
        if (this.confirmedPlain !== typed.key) {
          this.confirmedPlain = typed.key;
          status('compose-status', `${plainNotice(plan)} Press Send again to send it anyway.`, true);
          return;
        }
      }
      status('compose-status', hashcash
        ? `Adding a proof of work for ${recipients.length} recipient(s) (a second or two each) and sending…` : 'Sending…');
      const request = { message: toB64(message), recipients };
      if (hashcash) request.hashcash = true;
      const result = await postJson('/api/send', request);
      this.dialog.close();
      this.onSent(result);
    } catch (e) {
      if (e instanceof RecipientKeyAlarm) {
        this.showLock('alarm', `Key alarm: the key of ${e.address} failed verification (${e.reason}). `
          + 'This message cannot be sent.');
        this.onKeyAlarm({ address: e.address, text: `The key directory's answer for ${e.address} failed `
          + `verification: ${e.reason}. Mail to ${e.address} was not sent.` });
      }
      status('compose-status', e.message || 'Sending failed.', true);
    } finally {
      button.disabled = false;
      // A disabled button loses the focus: give it back while the composer stays open (a question, an error).
      if (this.dialog.open && (!document.activeElement || document.activeElement === document.body)) button.focus();
    }
  }
}
