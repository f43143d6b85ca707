// Writing an outgoing RFC 5322 message (UTF-8 text in quoted-printable or base64, whichever is shorter; RFC 2047
// subject; attachments as multipart/mixed with RFC 2231 file names) for /api/send, and its layout (every header
// as written, every part), from which the end-to-end path (mail/e2e.js) builds the JSON twin of the same bytes.
// No value can start a header line of its own: a line break in one is refused, and only this module folds.

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

// A value typed into a header (the subject): a line break in it is refused, never turned into a new header line.
function oneLine(what, text) {
  const value = String(text || '');
  if (/[\r\n]/.test(value)) throw new Error(`The ${what} may not contain a line break.`);
  return value;
}

// Printable ASCII without "=?" (which readers would decode) and short enough for one line stays as it is; else RFC
// 2047 B words of at most 45 UTF-8 bytes each (whole characters), folded onto lines of their own.
function encodeWord(text) {
  // eslint-disable-next-line no-control-regex
  if (/^[\x20-\x7e]*$/.test(text) && !text.includes('=?') && text.length <= 900) return text;
  const words = [];
  let piece = '';
  for (const char of text) {
    if (utf8(piece + char).length > 45) {
      words.push(piece);
      piece = '';
    }
    piece += char;
  }
  words.push(piece);
  return words.map((w) => `=?UTF-8?B?${toB64(utf8(w))}?=`).join('\r\n ');
}

function fold(b64) {
  return b64.replace(/(.{76})/g, '$1\r\n');
}

// Items joined by `separator`, folded before an item that would take the line past 78 characters.
function foldList(name, items, separator) {
  let line = name.length + 2;
  let out = '';
  items.forEach((item, i) => {
    if (i && line + separator.length + item.length > 78) {
      out += `${separator.trimEnd()}\r\n ${item}`;
      line = 1 + item.length;
    } else {
      out += (i ? separator : '') + item;
      line += (i ? separator.length : 0) + item.length;
    }
  });
  return out;
}

function clean(text) {
  return String(text || '').replace(/[\r\n]+/g, ' ').trim();
}

// The message ids of an In-Reply-To or References value taken from a received message (folds and junk dropped).
function messageIds(text) {
  return (String(text || '').match(/<[^<>\s]{1,250}>/g) || []).filter((id) => !id.includes('=?'));
}

// Quoted-printable (RFC 2045 §6.7): CRLF pairs stay hard line breaks, a space or tab ending a line is escaped (a
// reader strips it otherwise), lines stay at most 76 characters with soft breaks.
export function quotedPrintable(bytes) {
  const lines = [];
  let line = '';
  const hex = (b) => `=${b.toString(16).toUpperCase().padStart(2, '0')}`;
  const finish = () => {
    const last = line.charCodeAt(line.length - 1);
    if (last === 32 || last === 9) {
      line = line.slice(0, -1);
      const escaped = hex(last);
      if (line.length + escaped.length > 75) {
        lines.push(line + '=');
        line = '';
      }
      line += escaped;
    }
    lines.push(line);
    line = '';
  };
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (b === 13 && bytes[i + 1] === 10) {
      finish();
      i++;
      continue;
    }
    const token = b === 9 || (b >= 32 && b <= 126 && b !== 61) ? String.fromCharCode(b) : hex(b);
    if (line.length + token.length > 75) {
      lines.push(line + '=');
      line = '';
    }
    line += token;
  }
  finish();
  return lines.join('\r\n');
}

// The shorter of quoted-printable (mostly readable text) and base64 (anything else) for a text part's bytes.
function textEncoding(bytes) {
  const qp = quotedPrintable(bytes);
  const b64 = fold(toB64(bytes));
  return qp.length <= b64.length ? { encoding: 'quoted-printable', body: qp } : { encoding: 'base64', body: b64 };
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
  if (/^[\x20-\x7e]*$/.test(name) && !/["\\]/.test(name) && !name.includes('=?')) return `attachment; filename="${name}"`;
  let value = 'attachment';
  const encoded = "UTF-8''" + Array.from(utf8(name), (b) => (
    /[A-Za-z0-9!#$&+.^_`|~-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`
  )).join('');
  const pieces = encoded.match(/(?:%[0-9A-F]{2}|[^%]){1,60}/g) || [];
  pieces.forEach((piece, i) => { value += `;\r\n filename*${i}*=${piece}`; });
  return value;
}

// Media types a reader's MIME parser turns into text, a nested message or parts rather than bytes.
const PARSED_TYPES = /^(text\/(plain|html|xml)|message\/rfc822|multipart\/.*)$/;

// opaque: a type that would be parsed (text, HTML, a message) is sent as application/octet-stream, so the JSON
// twin carries the file's bytes as they are (the end-to-end path, whose twin the device builds itself).
function attachmentPart(file, opaque) {
  let type = MEDIA_TYPE.test(file.type || '') ? file.type.toLowerCase() : 'application/octet-stream';
  if (opaque && PARSED_TYPES.test(type)) type = 'application/octet-stream';
  return {
    headers: [['Content-Type', type], ['Content-Disposition', dispositionFor(safeFilename(file.filename))],
      ['Content-Transfer-Encoding', 'base64']],
    bytes: file.bytes,
    body: fold(toB64(file.bytes)),
  };
}

function textPart(text) {
  const bytes = utf8(String(text || '').replace(/\r?\n/g, '\r\n'));
  const { encoding, body } = textEncoding(bytes);
  return { headers: [['Content-Type', 'text/plain; charset=utf-8'], ['Content-Transfer-Encoding', encoding]],
    bytes, encoding, body };
}

function headerBlock(headers) {
  return headers.map(([name, value]) => `${name}: ${value}\r\n`).join('');
}

export function attachedBytes(files) {
  return (files || []).reduce((sum, f) => sum + f.bytes.length, 0);
}

// {from, to[], cc[], bcc[], subject, text, inReplyTo, references, attachments[{filename, type, bytes}]}
//   -> {message (bytes), recipients, layout}
// layout = {headers: [[name, value as written]], text: part, attachments: [part], boundary (null: one part), date}
// with part = {headers, bytes (decoded), body (as written)}. options.date (ms) fixes the Date; options.opaque
// sends parsed media types as application/octet-stream (attachmentPart); options.stamps are Hashcash stamps
// written first as X-Hashcash fields, as the appliance adds them to what /api/send is given.
export function buildMessage(draft, host, options = {}) {
  const recipients = [...draft.to, ...draft.cc, ...draft.bcc];
  if (!recipients.length) throw new Error('Add at least one recipient.');
  if (recipients.length > 100) throw new Error('At most 100 recipients.');
  const files = draft.attachments || [];
  if (attachedBytes(files) > MAX_ATTACHMENT_BYTES) {
    throw new Error(`Attachments may add up to ${MAX_ATTACHMENT_BYTES / 1024 / 1024} MiB.`);
  }
  const date = options.date === undefined ? Date.now() : options.date;
  const headers = [
    ...(options.stamps || []).map((stamp) => ['X-Hashcash', oneLine('proof of work', stamp)]),
    ['From', oneLine('sender', draft.from).trim()],
    ['Date', new Date(date).toUTCString().replace('GMT', '+0000')],
    ['Message-ID', `<${toHex(randomBytes(12))}@${host}>`],
    ['Subject', encodeWord(oneLine('subject', draft.subject).trim())],
  ];
  if (draft.to.length) headers.push(['To', foldList('To', draft.to, ', ')]);
  if (draft.cc.length) headers.push(['Cc', foldList('Cc', draft.cc, ', ')]);
  const inReplyTo = messageIds(draft.inReplyTo);
  const references = messageIds(draft.references);
  if (inReplyTo.length) headers.push(['In-Reply-To', foldList('In-Reply-To', inReplyTo, ' ')]);
  if (references.length) headers.push(['References', foldList('References', references, ' ')]);
  headers.push(['MIME-Version', '1.0']);
  const text = textPart(draft.text);
  if (!files.length) {
    const layout = { headers: [...headers, ...text.headers], text, attachments: [], boundary: null, date };
    return { message: utf8(headerBlock(layout.headers) + '\r\n' + text.body + '\r\n'), recipients, layout };
  }
  const boundary = `=_mv_${toHex(randomBytes(16))}`;
  headers.push(['Content-Type', `multipart/mixed; boundary="${boundary}"`]);
  const attachments = files.map((file) => attachmentPart(file, !!options.opaque));
  const parts = [text, ...attachments].map((part) => `--${boundary}\r\n${headerBlock(part.headers)}\r\n${part.body}\r\n`);
  const layout = { headers, text, attachments, boundary, date };
  return { message: utf8(headerBlock(headers) + '\r\nThis is a multi-part message in MIME format.\r\n' + parts.join('')
    + `--${boundary}--\r\n`), recipients, layout };
}
