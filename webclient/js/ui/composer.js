// The compose dialog: new mail, reply, reply-all and forward (with the original's attachments), with
// To/Cc/Bcc and attached files, sent via /api/send.

import { postJson } from '../api.js';
import { fromB64, toB64, utf8 } from '../crypto/bytes.js';
import { attachedBytes, buildMessage, MAX_ATTACHMENT_BYTES, parseAddresses } from '../mail/compose.js';
import { formatPerson } from '../mail/twin.js';
import { $, formatDate, formatSize, h, status } from './dom.js';

function prefixed(prefix, subject) {
  const s = subject || '';
  return new RegExp(`^${prefix}:`, 'i').test(s.trim()) ? s : `${prefix}: ${s}`;
}

function quote(summary) {
  const text = summary.text || '';
  const said = `On ${formatDate(summary.date, true)}, ${formatPerson(summary.from)} wrote:`;
  return `\n\n${said}\n${text.split(/\r?\n/).map((l) => `> ${l}`).join('\n')}`;
}

export class Composer {
  constructor({ addresses, onSent }) {
    this.addresses = addresses;
    this.onSent = onSent;
    this.dialog = $('compose');
    this.reply = null;
    const from = $('compose-from');
    from.replaceChildren(...addresses.map((a) => new Option(a, a)));
    $('compose-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.send();
    });
    $('discard-button').addEventListener('click', () => this.dialog.close());
    this.files = [];
    $('compose-files').addEventListener('change', (e) => this.addFiles(e.target));
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
    const own = new Set(this.addresses.map((a) => a.toLowerCase()));
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
    this.renderFiles();
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
      button.disabled = true;
      status('compose-status', 'Sending…');
      const result = await postJson('/api/send', { message: toB64(message), recipients });
      this.dialog.close();
      this.onSent(result);
    } catch (e) {
      status('compose-status', e.message || 'Sending failed.', true);
    } finally {
      button.disabled = false;
    }
  }
}
