// Writing an outgoing RFC 5322 message (UTF-8 text, base64 body, RFC 2047 subject, attachments as
// multipart/mixed with RFC 2231 file names) for /api/send.

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

// Base64 grows data by 4/3: this much attached stays under the appliance's 50 MiB message limit.
export const MAX_ATTACHMENT_BYTES = 36 * 1024 * 1024;
const MEDIA_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/i;

function safeFilename(name) {
  // eslint-disable-next-line no-control-regex
  return clean(name).replace(/[\u0000-\u001f\u007f\\/]/g, '_').slice(0, 180) || 'attachment';
}

// filename="..." for plain ASCII names, else RFC 2231 filename*0*=UTF-8''... in pieces that keep lines short
// (alone: readers differ on which form wins when both are present).
function dispositionFor(name) {
  // eslint-disable-next-line no-control-regex
  if (/^[\x20-\x7e]*$/.test(name) && !/["\\]/.test(name)) return `attachment; filename="${name}"`;
  let value = 'attachment';
  const encoded = "UTF-8''" + Array.from(utf8(name), (b) => (
    /[A-Za-z0-9!#$&+.^_`|~-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`
  )).join('');
  const pieces = encoded.match(/(?:%[0-9A-F]{2}|[^%]){1,60}/g) || [];
  pieces.forEach((piece, i) => { value += `;\r\n filename*${i}*=${piece}`; });
  return value;
}

function attachmentPart(file) {
  const type = MEDIA_TYPE.test(file.type || '') ? file.type.toLowerCase() : 'application/octet-stream';
  return [
    `Content-Type: ${type}`,
    `Content-Disposition: ${dispositionFor(safeFilename(file.filename))}`,
    'Content-Transfer-Encoding: base64',
    '',
    fold(toB64(file.bytes)),
  ].join('\r\n');
}

export function attachedBytes(files) {
  return (files || []).reduce((sum, f) => sum + f.bytes.length, 0);
}

// {from, to[], cc[], bcc[], subject, text, inReplyTo, references, attachments[{filename, type, bytes}]}
//   -> {message (bytes), recipients}
export function buildMessage(draft, host) {
  const recipients = [...draft.to, ...draft.cc, ...draft.bcc];
  if (!recipients.length) throw new Error('Add at least one recipient.');
  if (recipients.length > 100) throw new Error('At most 100 recipients.');
  const files = draft.attachments || [];
  if (attachedBytes(files) > MAX_ATTACHMENT_BYTES) {
    throw new Error(`Attachments may add up to ${MAX_ATTACHMENT_BYTES / 1024 / 1024} MiB.`);
  }
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
  const textPart = ['Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: base64', '',
    fold(toB64(utf8(String(draft.text || '').replace(/\r?\n/g, '\r\n'))))].join('\r\n');
  lines.push('MIME-Version: 1.0');
  if (!files.length) {
    return { message: utf8(lines.join('\r\n') + '\r\n' + textPart + '\r\n'), recipients };
  }
  const marker = `=_mv_${toHex(randomBytes(16))}`;
  lines.push(`Content-Type: multipart/mixed; boundary="${marker}"`, '', 'This is a multi-part message in MIME format.');
  const parts = [textPart, ...files.map(attachmentPart)].map((part) => `--${marker}\r\n${part}\r\n`);
  return { message: utf8(lines.join('\r\n') + '\r\n' + parts.join('') + `--${marker}--\r\n`), recipients };
}
