// Runs one Argon2id derivation off the page's thread, with hash-wasm's WebAssembly build
// (vendor/hash-wasm, see its README). The page starts a worker per derivation and ends it after the answer,
// so the derivation's memory (64 MiB or more) is given back at once.

/* global hashwasm */
importScripts('/vendor/hash-wasm/argon2.umd.min.js');

self.onmessage = async (event) => {
  const { password, salt, m, t, p } = event.data;
  try {
    const started = performance.now();
    const hash = await hashwasm.argon2id({
      password, salt, iterations: t, memorySize: m, parallelism: p, hashLength: 32, outputType: 'binary',
    });
    self.postMessage({ hash, ms: performance.now() - started }, [hash.buffer]);
  } catch (error) {
    self.postMessage({ error: String((error && error.message) || error) });
  }
};
