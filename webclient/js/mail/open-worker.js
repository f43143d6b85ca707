// A decryption worker (one per core, mail/openpool.js): opens sealed twins with the account's keys, reads them
// and answers the index records, with each message's key so this device never runs RSA for it again.
// The keys arrive once by postMessage and live only in this worker's memory.

import { openTwin } from './opentwin.js';

let key = null;

self.onmessage = async (event) => {
  const message = event.data;
  if (message.type === 'key') {
    key = message.key;
    return;
  }
  // Several at once: WebCrypto's RSA and AES run off this thread, so a worker keeps more than one in flight.
  const out = await Promise.all(message.items.map((item) => openTwin(key, item)));
  self.postMessage({ id: message.id, out });
};
