// The compose dialog: new mail, reply, reply-all and forward, with To/Cc/Bcc, sent via /api/send.

import { postJson } from '../api.js';
import { toB64 } from '../crypto/bytes.js';
import { buildMessage, parseAddresses } from '../mail/compose.js';
import { formatPerson } from '../mail/twin.js';
import { $, formatDate, status } from './dom.js';

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
    } else if (summary && mode === 'forward') {
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
