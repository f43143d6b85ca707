// The compose dialog: new mail, reply, reply-all and forward (with the original's attachments), with
// From (the account's addresses and active aliases), To/Cc/Bcc and attached files, sent via /api/send, with a
// Hashcash stamp per recipient when asked ("hashcash": true) so that screeners let it in. Before sending, the
// key of every recipient on the account's own domains is looked up in the key directory and verified against
// the transparency log (as the Python client's check_recipients): a key that fails is not sent to.

import { ApiError, getJson, postJson } from '../api.js';
import { fromB64, toB64, utf8 } from '../crypto/bytes.js';
import { domainOf, KeyAlarm, loadState, saveState, verifyAnswer } from '../crypto/keylog.js';
import { attachedBytes, buildMessage, MAX_ATTACHMENT_BYTES, parseAddresses } from '../mail/compose.js';
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

// A recipient's key that failed verification: `address` and the KeyAlarm's `reason`.
export class RecipientKeyAlarm extends Error {
  constructor(address, reason) {
    super(`Not sent: the key of ${address} failed verification (${reason})`);
    this.name = 'RecipientKeyAlarm';
    this.address = address;
    this.reason = reason;
  }
}

// The distinct recipients (by lower-cased address, first spelling kept) on one of the domains of `own`.
export function localRecipients(recipients, own) {
  const domains = new Set(own.map(domainOf));
  const seen = new Map();
  for (const address of recipients) {
    const key = address.toLowerCase();
    if (!seen.has(key) && domains.has(domainOf(address))) seen.set(key, address);
  }
  return [...seen.values()];
}

function keyUrl(address) {
  return '/api/keys/' + encodeURIComponent(address).replace(/%40/g, '@');
}

// check_recipients of mailiverse/client/cli_keys.py: the directory's answer for each recipient on this appliance
// (the answers fetched at once, then verified one after the other against one trust state, loaded and saved
// once); no key published (not_found: an alias, a group) is fine. Throws RecipientKeyAlarm for the first answer
// that fails, an Error naming the address when the directory could not answer (as the CLI, nothing is sent).
export async function checkRecipientKeys(session, recipients) {
  const local = localRecipients(recipients, session.account.addresses || []);
  if (!local.length) return 0;
  const state = await loadState(session);
  const answers = await Promise.allSettled(local.map((address) => getJson(keyUrl(address))));
  for (const [i, address] of local.entries()) {
    const answer = answers[i];
    if (answer.status === 'rejected') {
      const e = answer.reason;
      if (e instanceof ApiError && e.code === 'not_found') continue;
      throw new Error(`Not sent: the key of ${address} could not be looked up (${e.message || e})`);
    }
    try {
      await verifyAnswer(state, address, answer.value);
    } catch (e) {
      if (e instanceof KeyAlarm) throw new RecipientKeyAlarm(address, e.message);
      throw e;
    }
  }
  await saveState(session, state);
  return local.length;
}

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
    this.files = [];
    $('compose-files').addEventListener('change', (e) => this.addFiles(e.target));
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
      status('compose-status', hashcash
        ? `Adding a proof of work for ${recipients.length} recipient(s) (a second or two each) and sending…` : 'Sending…');
      if (this.session) await checkRecipientKeys(this.session, recipients);
      const request = { message: toB64(message), recipients };
      if (hashcash) request.hashcash = true;
      const result = await postJson('/api/send', request);
      this.dialog.close();
      this.onSent(result);
    } catch (e) {
      if (e instanceof RecipientKeyAlarm) {
        this.onKeyAlarm({ address: e.address, text: `The key directory's answer for ${e.address} failed `
          + `verification: ${e.reason}. Mail to ${e.address} was not sent.` });
      }
      status('compose-status', e.message || 'Sending failed.', true);
    } finally {
      button.disabled = false;
    }
  }
}
