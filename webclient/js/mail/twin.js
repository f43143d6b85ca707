// Reading a JSON twin (docs/protocol.md §2.3) the way the original client does: subject, people, date,
// first text/plain and text/html bodies (breadth-first), the attachments (bytes parts), and the appliance's
// verdicts (authentication, spam) when it judged the message, and the address it was delivered to.

import { fromB64, fromUtf8 } from '../crypto/bytes.js';
import { readAuthentication, readSpam } from './verdict.js';

const MAX_PARTS = 10000;

function unb64(value) {
  if (typeof value !== 'string') return null;
  try {
    return fromUtf8(fromB64(value));
  } catch {
    return null;
  }
}

function people(list) {
  if (!Array.isArray(list)) return [];
  return list.filter((e) => e && typeof e === 'object')
    .map((e) => ({ name: unb64(e.name) || '', email: unb64(e.email) || '' }));
}

function header(part, name, encoded) {
  for (const pair of Array.isArray(part.headers) ? part.headers : []) {
    if (Array.isArray(pair) && pair.length === 2 && String(pair[0]).toLowerCase() === name) {
      return encoded ? unb64(pair[1]) : String(pair[1]);
    }
  }
  return null;
}

// RFC 2231: name*=charset'lang'%XX... or its numbered pieces name*0*=..., name*1*=... (UTF-8 and ASCII only).
function extendedParameter(text, name) {
  const pieces = [];
  const re = new RegExp(`(?:^|;)\\s*${name}\\*(?:(\\d{1,3})(\\*)?|())\\s*=\\s*(?:"((?:[^"\\\\]|\\\\.)*)"|([^;\\s]+))`, 'gi');
  for (const m of text.matchAll(re)) {
    const index = m[1] === undefined ? 0 : Number(m[1]);
    const encoded = m[1] === undefined || m[2] !== undefined;
    pieces[index] = { encoded, value: m[4] !== undefined ? m[4].replace(/\\(.)/g, '$1') : m[5] };
  }
  if (!pieces.length) return null;
  for (let i = 0; i < pieces.length; i++) if (!pieces[i]) return null;
  const first = /^([^']*)'[^']*'(.*)$/.exec(pieces[0].encoded ? pieces[0].value : '');
  const charset = first ? first[1].toLowerCase() : 'us-ascii';
  if (!['utf-8', 'utf8', 'us-ascii', ''].includes(charset)) return null;
  const bytes = [];
  pieces.forEach((piece, i) => {
    const value = i === 0 && first ? first[2] : piece.value;
    for (let j = 0; j < value.length; j++) {
      if (piece.encoded && value[j] === '%' && /^[0-9a-f]{2}$/i.test(value.substr(j + 1, 2))) {
        bytes.push(parseInt(value.substr(j + 1, 2), 16));
        j += 2;
      } else {
        bytes.push(...new TextEncoder().encode(value[j]));
      }
    }
  });
  return new TextDecoder('utf-8').decode(new Uint8Array(bytes));
}

function filenameOf(disposition, contentType) {
  for (const [text, name] of [[disposition, 'filename'], [contentType, 'name']]) {
    if (!text) continue;
    const extended = extendedParameter(text, name);
    if (extended) return extended;
  }
  for (const text of [disposition, contentType]) {
    if (!text) continue;
    const m = /(?:file)?name\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))/i.exec(text);
    if (m) return (m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]);
  }
  return null;
}

function mapping(value) {
  return value && typeof value === 'object' && !Array.isArray(value) ? value : {};
}

export function summarize(twin) {
  twin = mapping(twin);
  const isError = 'headers' in twin && !('addresses' in twin);
  const encoded = !isError;
  const content = mapping(twin.content);
  const addresses = mapping(twin.addresses);
  const dates = mapping(twin.dates);
  let date = null;
  for (const key of ['sent', 'received', 'written']) {
    if (typeof dates[key] === 'string' && /^-?[0-9]+$/.test(dates[key])) {
      date = Number(dates[key]);
      break;
    }
  }
  let text = null;
  let html = null;
  const attachments = [];
  const queue = [content];
  let seen = 0;
  while (queue.length && seen++ < MAX_PARTS) {
    const part = mapping(queue.shift());
    const type = header(part, 'content-type', encoded);
    const lowered = (type || 'text/plain').toLowerCase().trim();
    const disposition = header(part, 'content-disposition', encoded);
    if (part.class === 'part' && Array.isArray(part.value)) {
      queue.push(...part.value);
    } else if (part.class === 'string' && typeof part.value === 'string') {
      const isAttachment = disposition && /^\s*attachment/i.test(disposition);
      if (!isAttachment && html === null && lowered.startsWith('text/html')) html = part.value;
      else if (!isAttachment && text === null && lowered.startsWith('text/plain')) text = part.value;
      else if (isAttachment) {
        attachments.push({ type: lowered.split(';')[0], filename: filenameOf(disposition, type) || 'attachment.txt',
          contentId: header(part, 'content-id', encoded), text: part.value });
      }
    } else if (part.class === 'bytes' && typeof part.value === 'string') {
      attachments.push({ type: lowered.split(';')[0], filename: filenameOf(disposition, type) || 'attachment',
        contentId: header(part, 'content-id', encoded), b64: part.value,
        inline: !!(disposition && /^\s*inline/i.test(disposition)) });
    }
  }
  const from = people(addresses.from);
  return {
    subject: header(content, 'subject', encoded) || '',
    from: from[0] || { name: '', email: '' },
    to: people(addresses.to),
    cc: people(addresses.cc),
    bcc: people(addresses.bcc),
    replyTo: people(addresses['reply-to']),
    date,
    text,
    html,
    attachments,
    messageId: typeof twin.uidl === 'string' ? twin.uidl.trim() : null,
    references: header(content, 'references', encoded),
    original: typeof twin.original === 'string' ? twin.original : null,
    // Which of the user's addresses the appliance delivered it to (an alias or the account's own name).
    deliveredTo: typeof twin.delivered_to === 'string' ? twin.delivered_to.slice(0, 254) : null,
    isError,
    authentication: readAuthentication(twin),
    spam: readSpam(twin),
    // The sender device's signature when it sealed the message end to end (docs/e2e.md; checked by mail/e2e.js).
    e2e: Object.keys(mapping(twin.e2e)).length ? mapping(twin.e2e) : null,
  };
}

export function formatPerson(p) {
  if (!p) return '';
  return p.name ? `${p.name} <${p.email}>` : p.email;
}
