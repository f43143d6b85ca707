// The second factor in the browser (docs/passkeys.md): the login's step after the password (a passkey, or one of
// the recovery codes) and the Passkeys dialog of the account menu (add, list and remove passkeys; see and renew
// the recovery codes, each new set shown once).

import { ApiError } from '../api.js';
import {
  assertPasskey, finishSecondFactor, newRecoveryCodes, passkeysSupported, registerPasskey, removePasskey,
  secondFactorStatus,
} from '../auth/webauthn.js';
import { $, formatDate, h, status } from './dom.js';

// What navigator.credentials rejects with when the user cancels, or no authenticator answers in time.
const CANCELLED = new Set(['NotAllowedError', 'AbortError']);

function cancelled(e) {
  return e instanceof DOMException && CANCELLED.has(e.name);
}

function refused(e) {
  if (e instanceof ApiError && e.code === 'second_factor_failed') {
    return new ApiError(e.status, e.code, 'The passkey or recovery code was not accepted. Log in again.');
  }
  return e;
}

// The step after a right password, in place of the login form. Resolves with the answer of
// /api/login/second-factor (the session's fields); rejects when the appliance refused (the handle is spent: log
// in again) or the user cancelled. A passkey prompt the user dismisses spends nothing: they may try again.
export function askSecondFactor(step) {
  const form = $('second-factor-form');
  const loginForm = $('login-panel') || $('login-form');
  const tabs = document.querySelector('#auth .tabs');
  const passkey = $('second-factor-passkey');
  const code = $('second-factor-code');
  const methods = Array.isArray(step.methods) ? step.methods : [];
  const withPasskey = methods.includes('passkey') && !!step.options && passkeysSupported();
  const withCode = methods.includes('recovery_code');
  passkey.hidden = !withPasskey;
  for (const el of [code, $('second-factor-code-label'), $('second-factor-code-button')]) el.hidden = !withCode;
  $('second-factor-none').hidden = withPasskey || withCode;
  code.value = '';
  status('second-factor-status', '');
  loginForm.hidden = true;
  if (tabs) tabs.hidden = true;
  form.hidden = false;
  (withPasskey ? passkey : withCode ? code : $('second-factor-cancel')).focus();

  return new Promise((resolve, reject) => {
    let busy = false;
    const controls = () => form.querySelectorAll('button,input');
    const setBusy = (on) => {
      busy = on;
      for (const el of controls()) el.disabled = on;
    };
    const settle = (fn, value) => {
      passkey.removeEventListener('click', usePasskey);
      form.removeEventListener('submit', useCode);
      $('second-factor-cancel').removeEventListener('click', cancel);
      setBusy(false);
      code.value = '';
      form.hidden = true;
      loginForm.hidden = false;
      if (tabs) tabs.hidden = false;
      fn(value);
    };
    const send = async (proof) => {
      setBusy(true);
      try {
        settle(resolve, await finishSecondFactor(step.handle, proof));
      } catch (e) {
        settle(reject, refused(e));
      }
    };
    async function usePasskey() {
      if (busy) return;
      setBusy(true);
      status('second-factor-status', 'Waiting for your passkey…');
      let credential;
      try {
        credential = await assertPasskey(step.options);
      } catch (e) {
        setBusy(false);
        status('second-factor-status', cancelled(e)
          ? 'The passkey was not used. Try again, or use a recovery code.' : e.message, true);
        passkey.focus();
        return;
      }
      status('second-factor-status', 'Checking your passkey…');
      await send({ credential });
    }
    function useCode(e) {
      e.preventDefault();
      if (busy) return;
      if (!code.value.trim()) {
        status('second-factor-status', 'Type one of your recovery codes.', true);
        code.focus();
        return;
      }
      status('second-factor-status', 'Checking the recovery code…');
      send({ recovery_code: code.value.trim() });
    }
    function cancel() {
      if (!busy) settle(reject, new Error('Login cancelled.'));
    }
    passkey.addEventListener('click', usePasskey);
    form.addEventListener('submit', useCode);
    $('second-factor-cancel').addEventListener('click', cancel);
  });
}

// -- the Passkeys dialog ----------------------------------------------------------------------------------------

function showCodes(codes) {
  $('recovery-codes-list').replaceChildren(...codes.map((c) => h('li', {}, c)));
  $('recovery-codes-shown').hidden = false;
  $('recovery-codes-note').focus();
}

function forgetCodes() {
  $('recovery-codes-list').replaceChildren();
  $('recovery-codes-shown').hidden = true;
}

function passkeyRow(passkey, onRemove) {
  const used = passkey.last_used_ms ? `last used ${formatDate(passkey.last_used_ms, true)}` : 'not used yet';
  return h('li', { class: 'passkey', 'data-passkey': passkey.id },
    h('span', { class: 'passkey-name' }, passkey.name),
    h('span', { class: 'hint' }, `added ${formatDate(passkey.created_ms, true)}, ${used}`),
    h('button', { type: 'button', class: 'danger', 'aria-label': `Remove passkey ${passkey.name}`,
      onclick: () => onRemove(passkey) }, 'Remove'));
}

// Wires the account menu's "Passkeys" button and its dialog; `sessionOf()` is the logged-in session.
export function installPasskeys(sessionOf) {
  const dialog = $('passkeys-dialog');
  let working = false;

  async function run(text, action) {
    if (working) return;
    working = true;
    for (const el of dialog.querySelectorAll('button,input')) el.disabled = true;
    status('passkeys-status', text);
    try {
      await action();
    } catch (e) {
      status('passkeys-status', cancelled(e) ? 'No passkey was made.' : e.message, true);
    } finally {
      working = false;
      for (const el of dialog.querySelectorAll('button,input')) el.disabled = false;
      await refresh().catch((e) => status('passkeys-status', e.message, true));
    }
  }

  async function refresh() {
    const state = await secondFactorStatus();
    $('passkey-rows').replaceChildren(...state.passkeys.map((p) => passkeyRow(p, remove)));
    $('passkeys-empty').hidden = state.passkeys.length > 0;
    $('passkeys-state').textContent = state.enabled
      ? 'On: after your password, each login asks for one of these passkeys or a recovery code.'
      : 'Off: your password alone logs in. Add a passkey to ask for it too.';
    const codes = state.recovery_codes;
    $('recovery-state').textContent = codes.total
      ? `${codes.remaining} of ${codes.total} recovery codes left.`
      : 'No recovery codes yet: they come with your first passkey.';
    $('recovery-regenerate').disabled = !state.enabled;
    const usable = passkeysSupported() && !!state.rp_id;
    $('passkey-add').disabled = !usable;
    $('passkey-name').disabled = !usable;
    $('passkeys-unavailable').hidden = usable;
    document.body.dataset.passkeys = String(state.passkeys.length);
  }

  function remove(passkey) {
    run(`Removing ${passkey.name}…`, async () => {
      const done = await removePasskey(passkey.id);
      status('passkeys-status', done.enabled ? `Removed ${passkey.name}.`
        : `Removed ${passkey.name}. Your password alone logs in now.`);
    });
  }

  $('passkeys-button').addEventListener('click', () => {
    $('account-menu').hidden = true;
    $('account-button').setAttribute('aria-expanded', 'false');
    if (!sessionOf()) return;
    forgetCodes();
    status('passkeys-status', '');
    dialog.showModal();
    refresh().catch((e) => status('passkeys-status', e.message, true));
  });
  $('passkeys-close').addEventListener('click', () => {
    forgetCodes();
    dialog.close();
  });
  // Recovery codes are shown once: closing the dialog forgets them.
  dialog.addEventListener('close', forgetCodes);

  $('passkey-add-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const name = $('passkey-name').value.trim() || 'Passkey';
    run('Follow your browser’s prompt to make the passkey…', async () => {
      const done = await registerPasskey(name);
      $('passkey-name').value = '';
      status('passkeys-status', `Added ${done.passkey.name}.`);
      if (done.recovery_codes) showCodes(done.recovery_codes);
    });
  });
  $('recovery-regenerate').addEventListener('click', () => {
    run('Making new recovery codes…', async () => {
      const done = await newRecoveryCodes();
      status('passkeys-status', 'New recovery codes: the old ones no longer work.');
      showCodes(done.recovery_codes);
    });
  });
}
