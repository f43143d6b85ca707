// Sign-up, login, logout and password change: every key is derived and checked here, in the browser.

import { ApiError, deleteJson, getJson, postJson, setCsrf } from './api.js';
import { fromB64, toB64 } from './crypto/bytes.js';
import { ARGON2ID, deriveKeys, needsUpgrade, newKdf, parseKdf } from './crypto/kdf.js';
import { decryptKeyBlock, encryptKeyBlock } from './crypto/keyblock.js';
import { loadRetiredKeys } from './crypto/keylog.js';
import { generateKeyPair, loadPrivateKey } from './crypto/keys.js';
import { createVerifier, GROUP, SrpClient } from './crypto/srp.js';

const NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
// Refusals after which a login stands and the KDF upgrade waits for the next one.
const UPGRADE_LATER = new Set(['version_conflict', 'rate_limited']);

export function canonicalName(text) {
  const name = String(text || '').trim();
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(name)) throw new Error('A user name has 1 to 64 letters, digits, ".", "_" or "-".');
  const lower = name.toLowerCase();
  if (!NAME.test(lower) || lower.includes('..') || lower.endsWith('.')) {
    throw new Error('A user name starts with a letter or digit and has no ".." and no final ".".');
  }
  return lower;
}

function deriving(kdf) {
  return kdf.kdf === ARGON2ID ? 'Deriving keys from the password (Argon2id)' : 'Deriving keys from the password';
}

// Round trip 1, the keys of the password under the KDF description it names (`known` when they match),
// and the proof {handle, A, M}.
async function proof(name, password, known = null, onStep = () => {}) {
  const start = await postJson('/api/login/start', { user: name });
  const kdf = parseKdf(start.kdf);
  let keys = known;
  if (!keys || JSON.stringify(keys.kdf) !== JSON.stringify(kdf)) {
    onStep(deriving(kdf));
    keys = await deriveKeys(password, kdf);
  }
  onStep('Proving the password (SRP)');
  const client = new SrpClient(name, keys.verificationKey);
  const M = await client.respond(fromB64(start.salt), fromB64(start.B));
  // A server that describes no KDF predates Argon2id: it could not describe new keys, so none are sent to it.
  const described = start.kdf !== undefined && start.kdf !== null;
  return { client, keys, described, proof: { handle: start.handle, A: toB64(client.A), M: toB64(M) } };
}

function checkServer(client, hamk) {
  if (!client.verify(fromB64(hamk || ''))) throw new Error('The server could not prove it knows your account. Not logged in.');
}

export async function signup(nameText, password, invite, onStep = () => {}) {
  const name = canonicalName(nameText);
  if (password.length < 8) throw new Error('Use a password of at least 8 characters.');
  const kdf = newKdf();
  onStep(deriving(kdf));
  const { cryptoKey, verificationKey } = await deriveKeys(password, kdf);
  onStep('Generating your RSA key pair');
  const { publicDer, privateDer } = await generateKeyPair(2048);
  const { salt, verifier } = await createVerifier(name, verificationKey);
  const environment = { 'RSA-PublicKey': toB64(publicDer), 'RSA-PrivateKey': toB64(privateDer) };
  const keyBlock = await encryptKeyBlock(cryptoKey, environment);
  onStep('Creating the account');
  const body = {
    user: name, salt: toB64(salt), verifier: toB64(verifier), group: GROUP,
    public_key: toB64(publicDer), key_block: toB64(keyBlock), format: 'v2', kdf,
  };
  if (invite) body.invite = invite.trim();
  return postJson('/api/signup', body);
}

// A fresh proof with the old password, then a new SRP verifier, the same environment re-wrapped under the
// keys of `newPassword` under `kdf`, and the description itself, in one request.
async function rekey(session, oldPassword, known, kdf, newPassword, onStep = () => {}) {
  onStep(deriving(kdf));
  const fresh = await deriveKeys(newPassword, kdf);
  const { client, proof: p } = await proof(session.name, oldPassword, known, onStep);
  const { salt, verifier } = await createVerifier(session.name, fresh.verificationKey);
  const keyBlock = await encryptKeyBlock(fresh.cryptoKey, session.environment);
  const done = await postJson('/api/account/password', {
    proof: p, salt: toB64(salt), verifier: toB64(verifier), group: GROUP,
    key_block: toB64(keyBlock), key_block_version: session.keyBlockVersion, kdf,
  });
  checkServer(client, done.HAMK);
  setCsrf(done.csrf);
  session.keyBlockVersion = done.key_block_version;
  session.kdf = kdf;
  session.cryptoKey = fresh.cryptoKey;
}

// Logs in and opens the key block: returns the session the rest of the client works with. An account still on
// the fixed-salt PBKDF2 rule (or a weaker Argon2id) is moved to a fresh Argon2id description right away.
// An account with a second factor (docs/passkeys.md) gets no session for its password alone: `secondFactor(step)`
// (ui/passkeys.js) gets {handle, methods, options}, has the user use a passkey or a recovery code, and resolves
// with the answer of /api/login/second-factor, which opens the session.
export async function login(nameText, password, onStep = () => {}, secondFactor = null) {
  const name = canonicalName(nameText);
  const { client, keys, described, proof: p } = await proof(name, password, null, onStep);
  let done = await postJson('/api/login/finish', p);
  checkServer(client, done.HAMK);
  if (done.second_factor) {
    if (!secondFactor) throw new Error('This account needs its second factor: a passkey or a recovery code.');
    onStep('Waiting for your second factor');
    done = await secondFactor(done.second_factor);
  }
  setCsrf(done.csrf);
  onStep('Opening your keys');
  const account = await getJson('/api/account');
  const environment = await decryptKeyBlock(keys.cryptoKey, fromB64(account.key_block));
  const privateDer = fromB64(environment['RSA-PrivateKey'] || '');
  const publicDer = fromB64(environment['RSA-PublicKey'] || account.public_key);
  const key = await loadPrivateKey(privateDer, publicDer);
  // After key rotations the key block also holds the earlier private keys: mail sealed to them stays readable.
  key.retired = await loadRetiredKeys(environment);
  // The crypto key stays in memory (like the private keys) so a key rotation can re-encrypt the key block.
  const session = { name, account, environment, key, keyBlockVersion: account.key_block_version, kdf: keys.kdf,
    cryptoKey: keys.cryptoKey };
  if (described && needsUpgrade(keys.kdf)) {
    onStep('Strengthening how your password protects your keys (Argon2id)');
    try {
      await rekey(session, password, keys, newKdf(), password, onStep);
      session.upgraded = true;
    } catch (e) {
      if (!(e instanceof ApiError && UPGRADE_LATER.has(e.code))) throw e;
      session.upgradeError = e.code;
    }
  }
  return session;
}

export async function logout() {
  try {
    await postJson('/api/logout', {});
  } finally {
    setCsrf(null);
  }
}

export async function changePassword(session, oldPassword, newPassword) {
  if (newPassword.length < 8) throw new Error('Use a password of at least 8 characters.');
  await rekey(session, oldPassword, null, newKdf(), newPassword);
}

export async function deleteAccount(session, password) {
  const { client, proof: p } = await proof(session.name, password);
  const done = await deleteJson('/api/account', { proof: p });
  checkServer(client, done.HAMK);
}
