// One encrypted JSON document under Cache/<name>, keyed by the cache-key rule, with optimistic versions.

import { ApiError, getObject, putObject } from '../api.js';
import { fromUtf8, utf8 } from '../crypto/bytes.js';
import { decryptCacheFile, encryptCacheFile } from '../crypto/cachefile.js';
import { deflate, inflate } from '../crypto/zlib.js';

const MAX_CACHE = 256 * 1024 * 1024;

export class CacheDoc {
  // key: the account's key object ({der, retired}), or the PKCS#8 bytes of one key. A document is written with
  // the current key's rule and read with the current key's, then each retired key's (after a rotation).
  constructor(name, key) {
    this.name = name;
    this.path = 'Cache/' + name;
    this.key = key instanceof Uint8Array ? { der: key } : key;
    this.version = null;
  }

  get privateDer() {
    return this.key.der;
  }

  async open(data, der) {
    const body = await decryptCacheFile(this.name, der, data);
    return JSON.parse(fromUtf8(await inflate(body, MAX_CACHE)));
  }

  // The stored value, or null when absent or unreadable (a cache can always be rebuilt).
  async load() {
    const found = await getObject(this.path);
    if (!found) {
      this.version = null;
      return null;
    }
    this.version = found.version;
    for (const key of [this.key, ...(this.key.retired || [])]) {
      try {
        return await this.open(found.data, key.der);
      } catch { /* the next key */ }
    }
    return null;
  }

  // Writes `value`; on a version conflict calls merge(remote) and tries again (a few times).
  async save(value, merge = null) {
    for (let attempt = 0; attempt < 4; attempt++) {
      const body = await encryptCacheFile(this.name, this.privateDer, await deflate(utf8(JSON.stringify(value))));
      try {
        this.version = await putObject(this.path, body, this.version);
        return value;
      } catch (e) {
        if (!(e instanceof ApiError && e.status === 412)) throw e;
        const remote = await this.load();
        if (merge && remote) value = merge(remote, value);
      }
    }
    throw new Error('could not save ' + this.path);
  }
}
