// The HTTPS API (docs/api.md) over fetch: JSON routes, raw store objects, CSRF header on writes.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

let csrf = null;

export function setCsrf(value) {
  csrf = value;
}

// Your own store; a group's is /api/groups/<name>/store, read the same way (docs/api.md).
export const OWN_STORE = '/api/store';

function storeUrl(path, base = OWN_STORE) {
  return base + '/' + path.split('/').map(encodeURIComponent).join('/');
}

async function failure(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    body = {};
  }
  return new ApiError(response.status, body.error, body.message);
}

async function call(method, url, { json, body, type = 'application/octet-stream', headers = {} } = {}) {
  const init = { method, headers: { ...headers }, credentials: 'same-origin', cache: 'no-store' };
  if (json !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.headers['Content-Type'] = type;
    init.body = body;
  }
  if (method !== 'GET' && csrf) init.headers['X-CSRF-Token'] = csrf;
  const response = await fetch(url, init);
  if (!response.ok && response.status !== 304) throw await failure(response);
  return response;
}

export async function getJson(url) {
  return (await call('GET', url)).json();
}

export async function postJson(url, json) {
  return (await call('POST', url, { json })).json();
}

export async function putJson(url, json) {
  return (await call('PUT', url, { json })).json();
}

export async function patchJson(url, json) {
  return (await call('PATCH', url, { json })).json();
}

export async function deleteJson(url, json) {
  return (await call('DELETE', url, json === undefined ? {} : { json })).json();
}

// The newest `limit` objects under a prefix of the store at `base` (one page).
export async function listPage(prefix, limit, base = OWN_STORE) {
  const q = new URLSearchParams({ prefix, order: 'newest', limit: String(limit) });
  return (await getJson(base + '?' + q.toString())).objects;
}

// {data: Uint8Array, version} or null when the object does not exist (in the store at `base`).
export async function getObject(path, base = OWN_STORE) {
  try {
    const response = await call('GET', storeUrl(path, base));
    const etag = (response.headers.get('ETag') || '').replace(/"/g, '');
    return { data: new Uint8Array(await response.arrayBuffer()), version: Number(etag) || null };
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return null;
    throw e;
  }
}

// PUT with If-Match (version) or If-None-Match: * (version null); returns the new version.
export async function putObject(path, data, version) {
  const headers = version ? { 'If-Match': `"${version}"` } : { 'If-None-Match': '*' };
  const response = await call('PUT', storeUrl(path), { body: data, headers });
  return (await response.json()).version;
}

export async function deleteObject(path) {
  try {
    await call('DELETE', storeUrl(path));
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 404)) throw e;
  }
}

// Hand a message's original bytes to the appliance's spam filter ('spam' or 'ham'): {learned, reason?}.
// ApiError 503 no_spam_filter when the appliance has none to train; the appliance keeps nothing.
export async function learn(kind, original) {
  const response = await call('POST', `/api/learn/${kind === 'spam' ? 'spam' : 'ham'}`,
    { body: original, type: 'message/rfc822' });
  return response.json();
}

// Move objects between Mail/In, Mail/Spam and Mail/Screener in one transaction: moves = [{from, to}, ...]; {moved}.
// ApiError 404 not_found or 409 conflict, and then nothing moved.
export async function moveObjects(moves) {
  return postJson('/api/move', { moves });
}

// What changed in the store at `base` after change `since` (docs/api.md "Changes since"), every page of the
// round: {reset, seq, changes: [{path, version, size, modified_ms, seq} | {path, seq, deleted: true}] in change
// order}. reset: a full listing (since 0, or a since the store no longer answers for) to replace what is held.
export async function changesSince(since, base = OWN_STORE) {
  const changes = [];
  let after = null;
  for (;;) {
    const q = new URLSearchParams({ since: String(since), limit: '5000' });
    if (after !== null) q.set('after', String(after));
    const page = await getJson(base + '?' + q.toString());
    const merged = [...page.objects, ...page.deleted.map((d) => ({ ...d, deleted: true }))];
    merged.sort((a, b) => a.seq - b.seq);
    changes.push(...merged);
    if (page.next === null || page.next === undefined) return { reset: page.reset, seq: page.seq, changes };
    after = page.next;
  }
}

function batchUrl(base) {
  return base === OWN_STORE ? '/api/batch' : base.replace(/\/store$/, '/batch');
}

// Many objects of the store at `base` in one request (POST /api/batch): a Map path -> {data, version, seq} of
// those sent; a path the answer says to fetch alone (too_large) or again (limit) is fetched here one by one.
export async function fetchBatch(paths, base = OWN_STORE) {
  const response = await call('POST', batchUrl(base), { json: { paths } });
  const body = new Uint8Array(await response.arrayBuffer());
  const found = new Map();
  const alone = [];
  let at = 0;
  while (at < body.length) {
    const end = body.indexOf(10, at);
    if (end < 0) throw new ApiError(502, 'bad_batch', 'the batch answer is cut short');
    const header = JSON.parse(new TextDecoder().decode(body.subarray(at, end)));
    at = end + 1;
    if (header.error) {
      if (header.error !== 'not_found') alone.push(header.path);
      continue;
    }
    if (at + header.size > body.length) throw new ApiError(502, 'bad_batch', 'the batch answer is cut short');
    found.set(header.path, { data: body.slice(at, at + header.size), version: header.version, seq: header.seq });
    at += header.size;
  }
  for (const path of alone) {
    const one = await getObject(path, base);
    if (one) found.set(path, { data: one.data, version: one.version, seq: 0 });
  }
  return found;
}
