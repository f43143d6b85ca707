// One encrypted JSON document under Cache/<name>, keyed by the cache-key rule, with optimistic versions.

import { ApiError, getObject, putObject } from '../api.js';
import { fromUtf8, utf8 } from '../crypto/bytes.js';
import { decryptCacheFile, encryptCacheFile } from '../crypto/cachefile.js';
import { deflate, inflate } from '../crypto/zlib.js';

const MAX_CACHE = 256 * 1024 * 1024;

export class CacheDoc {
  constructor(name, privateDer) {
    this.name = name;
    this.path = 'Cache/' + name;
    this.privateDer = privateDer;
    this.version = null;
  }

  // The stored value, or null when absent or unreadable (a cache can always be rebuilt).
  async load() {
    const found = await getObject(this.path);
    if (!found) {
      this.version = null;
      return null;
    }
    this.version = found.version;
    try {
      const body = await decryptCacheFile(this.name, this.privateDer, found.data);
      return JSON.parse(fromUtf8(await inflate(body, MAX_CACHE)));
    } catch {
      return null;
    }
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
