// The reading pane: the verdict, headers, plain text or sandboxed HTML, remote content per message,
// attachments, the spam buttons, the alias it came to, the screener's question for a screened message, and the
// end-to-end badge of a message sealed on its sender's device (its signature checked by mail/e2e.js).

import { fromB64, utf8 } from '../crypto/bytes.js';
import { e2eVerdict } from '../mail/e2e.js';
import { buildFrame, FRAME_SANDBOX } from '../mail/htmlframe.js';
import { formatPerson } from '../mail/twin.js';
import { installToolbarArrows } from './a11y.js';
import { formatDate, formatSize, h } from './dom.js';
import { screenerBanner } from './screener.js';
import { verdictViews } from './verdicts.js';
import { readerVia } from './via.js';

const SAFE_IMAGE = /^image\/(png|gif|jpeg|jpg|webp|bmp)$/;

function download(attachment) {
  const data = attachment.b64 !== undefined ? fromB64(attachment.b64) : utf8(attachment.text || '');
  const blob = new Blob([data], { type: 'application/octet-stream' });
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: attachment.filename.replace(/[\\/:*?"<>|\u0000-\u001f]/g, '_') || 'attachment' });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

function cidMap(attachments) {
  const map = new Map();
  for (const a of attachments) {
    if (a.contentId && a.b64 !== undefined && SAFE_IMAGE.test(a.type)) {
      map.set(a.contentId.trim().replace(/^<|>$/g, ''), `data:${a.type};base64,${a.b64.replace(/\s+/g, '')}`);
    }
  }
  return map;
}

function peopleLine(label, list) {
  if (!list.length) return null;
  return h('div', { class: 'hdr' }, h('span', { class: 'hdr-name' }, label), list.map(formatPerson).join(', '));
}

function spamButton(folder, actions) {
  if (folder === 'inbox') {
    return h('button', { type: 'button', id: 'spam-button', onclick: actions.spam,
      title: 'Move to Spam, and if you agree teach your server’s spam filter (!)' }, 'This is spam');
  }
  if (folder === 'spam') {
    return h('button', { type: 'button', id: 'not-spam-button', onclick: actions.notSpam,
      title: 'Move to the inbox, and if you agree teach your server’s spam filter (!)' }, 'Not spam');
  }
  return null;
}

// "End-to-end encrypted · signed by …" once the signature verified, "… · signature not verified (why)" otherwise.
function e2eBadge(summary, twinPath) {
  if (!summary.e2e) return null;
  const badge = h('div', { id: 'e2e-badge', class: 'e2e-badge checking', role: 'status' },
    'End-to-end encrypted · checking the signature…');
  e2eVerdict(summary, twinPath).then((verdict) => {
    badge.textContent = verdict.text;
    badge.className = `e2e-badge ${verdict.verified ? 'verified' : 'unverified'}`;
    badge.dataset.verified = String(verdict.verified);
  });
  return badge;
}

// actions.readOnly (a group's mailbox): no Delete, Restore or spam buttons.
export function renderMessage(container, item, summary, actions) {
  const inTrash = actions.inTrash(item);
  const readOnly = !!actions.readOnly;
  const folder = actions.folderOf(item);
  const verdict = verdictViews(summary, folder);
  const toolbar = h('div', { class: 'toolbar', role: 'toolbar', 'aria-label': 'Message actions' },
    h('button', { type: 'button', class: 'only-phone', onclick: actions.back, 'aria-label': 'Back to the list' }, '← Back'),
    h('button', { type: 'button', onclick: () => actions.reply('reply') }, 'Reply'),
    h('button', { type: 'button', onclick: () => actions.reply('all') }, 'Reply all'),
    h('button', { type: 'button', onclick: () => actions.reply('forward') }, 'Forward'),
    readOnly ? null : inTrash
      ? [h('button', { type: 'button', onclick: actions.restore }, 'Restore'),
        h('button', { type: 'button', class: 'danger', onclick: actions.destroy }, 'Delete forever')]
      : h('button', { type: 'button', onclick: actions.trash }, 'Delete'),
    readOnly ? null : spamButton(folder, actions));
  installToolbarArrows(toolbar);
  const headers = h('div', { class: 'headers' },
    h('h2', { id: 'reader-subject' }, summary.subject || '(no subject)'),
    peopleLine('From', [summary.from].filter((p) => p.email || p.name)),
    verdict.sender,
    e2eBadge(summary, readOnly ? null : item.p),
    peopleLine('To', summary.to),
    actions.aliases && item.k !== 'sent' ? readerVia(actions.aliases, summary) : null,
    peopleLine('Cc', summary.cc),
    peopleLine('Bcc', summary.bcc),
    h('div', { class: 'hdr' }, h('span', { class: 'hdr-name' }, 'Date'), formatDate(summary.date, true)));
  const body = h('div', { class: 'body' });
  const showHtml = (allowRemote) => {
    const { srcdoc, remote } = buildFrame(summary.html, { allowRemote, cid: cidMap(summary.attachments) });
    const frame = h('iframe', { sandbox: FRAME_SANDBOX, title: 'Message content', referrerpolicy: 'no-referrer',
      class: 'mail-frame' });
    frame.srcdoc = srcdoc;
    const banner = remote && !allowRemote
      ? h('div', { class: 'banner', role: 'note' },
        `Remote content (${remote}) was blocked to protect your privacy. `,
        h('button', { type: 'button', id: 'allow-remote', onclick: () => showHtml(true) }, 'Show remote content for this message'))
      : null;
    const switcher = summary.text !== null
      ? h('button', { type: 'button', class: 'link', onclick: showText }, 'Show plain text') : null;
    body.replaceChildren(...[banner, switcher, frame].filter(Boolean));
  };
  const showText = () => {
    const switcher = summary.html !== null
      ? h('button', { type: 'button', class: 'link', onclick: () => showHtml(false) }, 'Show HTML') : null;
    body.replaceChildren(...[switcher, h('pre', { class: 'text', tabindex: '0' }, summary.text || '')].filter(Boolean));
  };
  if (summary.html !== null) showHtml(false);
  else showText();
  const files = summary.attachments.filter((a) => !(a.inline && a.contentId));
  const attachments = files.length
    ? h('ul', { class: 'attachments', 'aria-label': 'Attachments' }, files.map((a) => {
      const size = a.b64 !== undefined ? Math.floor(a.b64.length * 3 / 4) : (a.text || '').length;
      return h('li', {}, h('button', { type: 'button', onclick: () => download(a), 'aria-label': `Download ${a.filename}` },
        `⤓ ${a.filename}`), h('span', { class: 'hint' }, ` ${a.type}, ${formatSize(size)}`));
    }))
    : null;
  const screened = folder === 'screener' && actions.approve ? screenerBanner(summary, actions) : null;
  container.replaceChildren(toolbar, ...(verdict.top || []), ...(screened ? [screened] : []), headers, ...(attachments ? [attachments] : []), body);
  container.setAttribute('aria-labelledby', 'reader-subject');
}
