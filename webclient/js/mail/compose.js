// Writing an outgoing RFC 5322 message (UTF-8 text, base64 body, RFC 2047 subject) for /api/send.

import { randomBytes, toB64, toHex, utf8 } from '../crypto/bytes.js';

const ADDRESS = /^[^\s@<>(),;:"\\[\]]+@[A-Za-z0-9.-]+$/;

export function parseAddresses(text) {
  const out = [];
  for (const raw of String(text || '').split(/[,;\n]/)) {
    const item = raw.trim();
    if (!item) continue;
    const m = /<([^<>]+)>\s*$/.exec(item);
    const address = (m ? m[1] : item).trim();
    if (!ADDRESS.test(address) || address.length > 254) throw new Error(`Not an e-mail address: ${address}`);
    out.push(address);
  }
  return out;
}

function encodeWord(text) {
  // eslint-disable-next-line no-control-regex
  if (/^[\x20-\x7e]*$/.test(text)) return text;
  return `=?UTF-8?B?${toB64(utf8(text))}?=`;
}

function fold(b64) {
  return b64.replace(/(.{76})/g, '$1\r\n');
}

function clean(text) {
  return String(text || '').replace(/[\r\n]+/g, ' ').trim();
}

// {from, to[], cc[], bcc[], subject, text, inReplyTo, references} -> {message (bytes), recipients}
export function buildMessage(draft, host) {
  const recipients = [...draft.to, ...draft.cc, ...draft.bcc];
  if (!recipients.length) throw new Error('Add at least one recipient.');
  if (recipients.length > 100) throw new Error('At most 100 recipients.');
  const lines = [
    `From: ${draft.from}`,
    `Date: ${new Date().toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: <${toHex(randomBytes(12))}@${host}>`,
    `Subject: ${encodeWord(clean(draft.subject))}`,
  ];
  if (draft.to.length) lines.push(`To: ${draft.to.join(', ')}`);
  if (draft.cc.length) lines.push(`Cc: ${draft.cc.join(', ')}`);
  if (draft.inReplyTo) lines.push(`In-Reply-To: ${clean(draft.inReplyTo)}`);
  if (draft.references) lines.push(`References: ${clean(draft.references)}`);
  lines.push('MIME-Version: 1.0', 'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: base64');
  const body = fold(toB64(utf8(String(draft.text || '').replace(/\r?\n/g, '\r\n'))));
  return { message: utf8(lines.join('\r\n') + '\r\n\r\n' + body + '\r\n'), recipients };
}
