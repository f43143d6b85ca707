// The compact index record of one message (what the list and the search need), built from its twin's summary.
// No DOM here: records are built in the decryption workers (mail/open-worker.js) as well as on the page.

import { judgedSpam } from './verdict.js';

export const SOURCES = { 'Mail/In_Json/': 'inbox', 'Mail/Sent_Json/': 'sent', 'Mail/Spam_Json/': 'spam',
  'Mail/Screener_Json/': 'screener' };
// Index records of an older shape (without the verdict, or the address it came to) are shown at once and
// decrypted again by the next sync.
export const RECORD = 3;
const SNIPPET = 2000;
const ENTITIES = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ' };

export function folderPrefix(path) {
  return path.slice(0, path.lastIndexOf('/') + 1);
}

// Whether the store object at `path` is a twin the mailbox lists (not a lock, not in a subfolder).
export function isListedTwin(path) {
  const prefix = folderPrefix(path);
  return prefix in SOURCES && !path.endsWith('.lock');
}

function decodeEntities(text) {
  return text.replace(/&(#x[0-9a-f]{1,6}|#[0-9]{1,7}|[a-z]{2,8});/gi, (whole, name) => {
    if (name[0] === '#') {
      const code = name[1] === 'x' || name[1] === 'X' ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10);
      return code > 0 && code <= 0x10ffff && !(code >= 0xd800 && code <= 0xdfff) ? String.fromCodePoint(code) : ' ';
    }
    return ENTITIES[name.toLowerCase()] ?? whole;
  });
}

// The text of an HTML body for the snippet and the search: scripts, styles and templates dropped, tags removed,
// entities decoded. Shown only as text (textContent), never parsed as HTML.
export function htmlText(html) {
  const stripped = String(html).slice(0, 4 * SNIPPET * 8)
    .replace(/<(script|style|template|head)\b[\s\S]*?(<\/\1\s*>|$)/gi, ' ')
    .replace(/<!--[\s\S]*?(-->|$)/g, ' ')
    .replace(/<[^>]*>?/g, ' ');
  return decodeEntities(stripped);
}

function plainOf(summary) {
  if (summary.text) return summary.text;
  if (!summary.html) return '';
  return htmlText(summary.html);
}

function people(list) {
  return list.map((p) => (p.name ? `${p.name} <${p.email}>` : p.email)).join(', ');
}

// The appliance judged it spam but filed it in Mail/In (a v1 account, whose original clients list only Mail/In):
// the twin's `original` then names Mail/In. A quarantined message later moved to the inbox still names Mail/Spam.
function judgedInInbox(summary) {
  return judgedSpam(summary.authentication, summary.spam) && !(summary.original || '').startsWith('Mail/Spam/');
}

// info: the store's metadata of the twin ({size, modified_ms, version}).
export function record(path, info, summary) {
  return {
    p: path,
    k: SOURCES[folderPrefix(path)],
    s: summary.subject,
    fn: summary.from.name,
    fe: summary.from.email,
    to: people([...summary.to, ...summary.cc]),
    d: summary.date || info.modified_ms,
    z: info.size,
    a: summary.attachments.filter((x) => !x.inline).length,
    b: plainOf(summary).replace(/\s+/g, ' ').trim().slice(0, SNIPPET),
    v: summary.authentication ? summary.authentication.verdict : '',
    j: judgedInInbox(summary) ? 1 : 0,
    dt: summary.deliveredTo || '',
    r: RECORD,
    ver: info.version || 0,
  };
}

// Shown instead of a message whose sealed bytes fail to decrypt or authenticate with the account's key.
export const TAMPERED_SUBJECT = '(tampered — not shown)';

export function failedRecord(path, info, tampered) {
  return { p: path, k: SOURCES[folderPrefix(path)],
    s: tampered ? TAMPERED_SUBJECT : '(this message could not be decrypted)', fn: '', fe: '', to: '',
    d: info.modified_ms, z: info.size, a: 0, b: '', v: '', j: 0, dt: '', r: RECORD, ver: info.version || 0,
    err: tampered ? 'tampered' : 1 };
}
