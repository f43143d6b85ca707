// Sign-up, login, logout and password change: every key is derived and checked here, in the browser.

import { deleteJson, getJson, postJson, setCsrf } from './api.js';
import { fromB64, toB64 } from './crypto/bytes.js';
import { decryptKeyBlock, encryptKeyBlock } from './crypto/keyblock.js';
import { generateKeyPair, loadPrivateKey } from './crypto/keys.js';
import { passwordKeys } from './crypto/pbkdf.js';
import { createVerifier, GROUP, SrpClient } from './crypto/srp.js';

const NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

export function canonicalName(text) {
  const name = String(text || '').trim();
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(name)) throw new Error('A user name has 1 to 64 letters, digits, ".", "_" or "-".');
  const lower = name.toLowerCase();
  if (!NAME.test(lower) || lower.includes('..') || lower.endsWith('.')) {
    throw new Error('A user name starts with a letter or digit and has no ".." and no final ".".');
  }
  return lower;
}

async function proof(name, verificationKey) {
  const start = await postJson('/api/login/start', { user: name });
  const client = new SrpClient(name, verificationKey);
  const M = await client.respond(fromB64(start.salt), fromB64(start.B));
  return { client, proof: { handle: start.handle, A: toB64(client.A), M: toB64(M) } };
}

function checkServer(client, hamk) {
  if (!client.verify(fromB64(hamk || ''))) throw new Error('The server could not prove it knows your account. Not logged in.');
}

export async function signup(nameText, password, invite, onStep = () => {}) {
  const name = canonicalName(nameText);
  if (password.length < 8) throw new Error('Use a password of at least 8 characters.');
  onStep('Deriving keys from the password');
  const { cryptoKey, verificationKey } = await passwordKeys(password);
  onStep('Generating your RSA key pair');
  const { publicDer, privateDer } = await generateKeyPair(2048);
  const { salt, verifier } = await createVerifier(name, verificationKey);
  const environment = { 'RSA-PublicKey': toB64(publicDer), 'RSA-PrivateKey': toB64(privateDer) };
  const keyBlock = await encryptKeyBlock(cryptoKey, environment);
  onStep('Creating the account');
  const body = {
    user: name, salt: toB64(salt), verifier: toB64(verifier), group: GROUP,
    public_key: toB64(publicDer), key_block: toB64(keyBlock), format: 'v2',
  };
  if (invite) body.invite = invite.trim();
  return postJson('/api/signup', body);
}

// Logs in and opens the key block: returns the session the rest of the client works with.
export async function login(nameText, password, onStep = () => {}) {
  const name = canonicalName(nameText);
  onStep('Deriving keys from the password');
  const { cryptoKey, verificationKey } = await passwordKeys(password);
  onStep('Proving the password (SRP)');
  const { client, proof: p } = await proof(name, verificationKey);
  const done = await postJson('/api/login/finish', p);
  checkServer(client, done.HAMK);
  setCsrf(done.csrf);
  onStep('Opening your keys');
  const account = await getJson('/api/account');
  const environment = await decryptKeyBlock(cryptoKey, fromB64(account.key_block));
  const privateDer = fromB64(environment['RSA-PrivateKey'] || '');
  const publicDer = fromB64(environment['RSA-PublicKey'] || account.public_key);
  const key = await loadPrivateKey(privateDer, publicDer);
  return { name, account, environment, key, keyBlockVersion: account.key_block_version };
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
  const old = await passwordKeys(oldPassword);
  const fresh = await passwordKeys(newPassword);
  const { client, proof: p } = await proof(session.name, old.verificationKey);
  const { salt, verifier } = await createVerifier(session.name, fresh.verificationKey);
  const keyBlock = await encryptKeyBlock(fresh.cryptoKey, session.environment);
  const done = await postJson('/api/account/password', {
    proof: p, salt: toB64(salt), verifier: toB64(verifier), group: GROUP,
    key_block: toB64(keyBlock), key_block_version: session.keyBlockVersion,
  });
  checkServer(client, done.HAMK);
  setCsrf(done.csrf);
  session.keyBlockVersion = done.key_block_version;
}

export async function deleteAccount(session, password) {
  const { verificationKey } = await passwordKeys(password);
  const { client, proof: p } = await proof(session.name, verificationKey);
  const done = await deleteJson('/api/account', { proof: p });
  checkServer(client, done.HAMK);
}
