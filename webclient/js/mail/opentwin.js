// Opening one sealed twin into its index record, in a decryption worker or on the page.

import { fromUtf8 } from '../crypto/bytes.js';
import { openOwnMailObjectKeyed } from '../crypto/envelope.js';
import { failedRecord, record } from './record.js';
import { summarize } from './twin.js';

export const MAX_TWIN = 96 * 1024 * 1024;

// item: {path, data, info, mk?} -> {path, record, mk?}: mk is the message key it opened with (none when it did
// not open). A failure to open means the stored bytes changed (the key was checked against the account at login).
export async function openTwin(key, item) {
  let opened;
  try {
    opened = await openOwnMailObjectKeyed(key, item.data, MAX_TWIN, item.mk || null);
  } catch {
    return { path: item.path, record: failedRecord(item.path, item.info, true) };
  }
  try {
    const summary = summarize(JSON.parse(fromUtf8(opened.plain)));
    return { path: item.path, record: record(item.path, item.info, summary), mk: opened.contentKey };
  } catch {
    return { path: item.path, record: failedRecord(item.path, item.info, false) };
  }
}
