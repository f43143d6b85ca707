// Passkeys, the second factor on top of SRP (docs/passkeys.md): the server's JSON options turned into what
// navigator.credentials takes, the credential it gives turned back into JSON, and the routes that use them.
// Nothing here is secret: a passkey's private key never leaves its authenticator.

import { deleteJson, getJson, postJson } from '../api.js';

function fromB64url(text) {
  const b64 = String(text).replace(/-/g, '+').replace(/_/g, '/');
  const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

function toB64url(buffer) {
  const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

// Whether this browser can use passkeys at all (a secure context with WebAuthn).
export function passkeysSupported() {
  return typeof window.PublicKeyCredential === 'function' && !!navigator.credentials && window.isSecureContext;
}

function descriptors(list) {
  return (list || []).map((c) => ({ ...c, id: fromB64url(c.id) }));
}

function requestOptions(json) {
  return { ...json, challenge: fromB64url(json.challenge), allowCredentials: descriptors(json.allowCredentials) };
}

function creationOptions(json) {
  return {
    ...json,
    challenge: fromB64url(json.challenge),
    user: { ...json.user, id: fromB64url(json.user.id) },
    excludeCredentials: descriptors(json.excludeCredentials),
  };
}

// RegistrationResponseJSON or AuthenticationResponseJSON (WebAuthn Level 3), written out by hand so that
// browsers without PublicKeyCredential.toJSON() send the same thing.
function credentialJson(credential) {
  const r = credential.response;
  const response = { clientDataJSON: toB64url(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = toB64url(r.attestationObject);
    response.transports = typeof r.getTransports === 'function' ? r.getTransports() : [];
  } else {
    response.authenticatorData = toB64url(r.authenticatorData);
    response.signature = toB64url(r.signature);
    response.userHandle = r.userHandle ? toB64url(r.userHandle) : null;
  }
  const json = {
    id: credential.id,
    rawId: toB64url(credential.rawId),
    type: credential.type,
    response,
    clientExtensionResults: typeof credential.getClientExtensionResults === 'function'
      ? credential.getClientExtensionResults() : {},
  };
  if (credential.authenticatorAttachment) json.authenticatorAttachment = credential.authenticatorAttachment;
  return json;
}

// The user touches their passkey: the assertion for the options of /api/login/finish's second_factor.
// Rejects with a DOMException NotAllowedError when the user cancels or the time runs out (the handle is unspent).
export async function assertPasskey(options) {
  const credential = await navigator.credentials.get({ publicKey: requestOptions(options) });
  if (!credential) throw new DOMException('No passkey was used.', 'NotAllowedError');
  return credentialJson(credential);
}

// The login's third round trip: {credential} or {recovery_code} for the handle; the session fields back.
export function finishSecondFactor(handle, proof) {
  return postJson('/api/login/second-factor', { handle, ...proof });
}

// {enabled, passkeys: [{id, name, created_ms, last_used_ms}], recovery_codes: {remaining, total}, rp_id}.
export function secondFactorStatus() {
  return getJson('/api/account/second-factor');
}

// Registers a passkey made here; {passkey, recovery_codes?} (the codes come with the first one, shown once).
export async function registerPasskey(name) {
  const start = await postJson('/api/account/passkeys/register/start', {});
  const credential = await navigator.credentials.create({ publicKey: creationOptions(start.options) });
  if (!credential) throw new DOMException('No passkey was made.', 'NotAllowedError');
  return postJson('/api/account/passkeys/register/finish',
    { handle: start.handle, credential: credentialJson(credential), name });
}

export function removePasskey(id) {
  return deleteJson(`/api/account/passkeys/${encodeURIComponent(id)}`);
}

// New recovery codes (the old ones stop working): {recovery_codes}.
export function newRecoveryCodes() {
  return postJson('/api/account/recovery-codes', {});
}
