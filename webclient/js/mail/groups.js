// Group mailboxes (issue 20, docs/keys.md "Groups"): a group address has a key of its own whose private half the
// server holds only wrapped (sealed like a Mail/ object) to each member's key. Opening a group here is what
// mailiverse/client/groups.py open_group does: every wrapped key is opened with the user's keys (current, then
// retired), and the group's current key is checked against the verified key directory answer for the group's
// address before any of its mail is read. The mailbox itself is a read-only MailStore on the group's store.

import { getJson } from '../api.js';
import { fromB64 } from '../crypto/bytes.js';
import { openOwnMailObject } from '../crypto/envelope.js';
import { domainOf, KeyAlarm, verifyGroupKey } from '../crypto/keylog.js';
import { loadPrivateKey } from '../crypto/keys.js';
import { MailStore } from './store.js';

// As MAX_GROUP_KEYS in the Python client: a group is opened from at most this many wrapped keys.
const MAX_GROUP_KEYS = 100;
const MAX_WRAPPED_KEY = 64 * 1024;

function groupUrl(name) {
  return '/api/groups/' + encodeURIComponent(name);
}

export function groupStoreBase(name) {
  return groupUrl(name) + '/store';
}

function isGroup(value) {
  return value && typeof value === 'object' && typeof value.name === 'string' && typeof value.key_id === 'string'
    && Array.isArray(value.addresses) && value.addresses.every((a) => typeof a === 'string');
}

// The user's groups ({name, addresses, kind, key_id, fingerprint, members, ...}), as GET /api/groups lists them.
export async function listGroups() {
  const answer = await getJson('/api/groups');
  if (!answer || !Array.isArray(answer.groups)) throw new Error('The groups answer is malformed.');
  return answer.groups.filter(isGroup);
}

// The group's address at a domain of this account (the Python client accepts no other).
export function groupAddress(session, group) {
  const domains = new Set((session.account.addresses || []).map(domainOf));
  return group.addresses.find((a) => domains.has(domainOf(a))) || null;
}

// Every group key wrapped to the user, opened (the server lists the current one first). One that does not open
// is alarming: the server handed this member something that is not a group key sealed to them.
async function unwrapKeys(session, listed) {
  if (!Array.isArray(listed) || listed.length > MAX_GROUP_KEYS) throw new KeyAlarm("The group's keys are malformed.");
  const keys = [];
  for (const item of listed) {
    try {
      const der = await openOwnMailObject(session.key, fromB64(item.wrapped), MAX_WRAPPED_KEY);
      keys.push(await loadPrivateKey(der));
    } catch {
      throw new KeyAlarm('A group key wrapped to you does not open with your keys.');
    }
  }
  return keys;
}

// {name, address, keyId, members, key, verified}: `key` is the group's current private key as a key object whose
// `retired` are the group's earlier keys (so openOwnMailObject reads mail sealed to any of them). KeyAlarm when
// a key does not open or the current one is not the key the directory publishes for the group.
export async function openGroup(session, name) {
  const group = await getJson(groupUrl(name));
  if (!isGroup(group)) throw new Error('The group answer is malformed.');
  const address = groupAddress(session, group);
  if (!address) throw new KeyAlarm(`The group ${group.name} has no address at a domain of your account.`);
  const keys = await unwrapKeys(session, group.keys);
  const verified = await verifyGroupKey(session, address, group.key_id, keys[0]);
  const key = { ...keys[0], retired: keys.slice(1) };
  return { name: group.name, address, keyId: group.key_id, members: group.members || [], key, verified };
}

// The group's mailbox: the list and reader's store, on the group's objects, with the group's keys, read-only.
export function groupStore(opened) {
  return new MailStore(opened.key, { base: groupStoreBase(opened.name), readOnly: true });
}
