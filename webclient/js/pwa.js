// Installable: registers the service worker (/sw.js), which keeps this client's own files so that it opens
// offline to the login screen, and takes a new release in once the worker carrying it has fetched it: at once
// while the login screen is untouched, else when the user says so (a reload ends the session, which lives in
// this page's memory only).

import { $, h, status } from './ui/dom.js';

// A page open for days still learns of a new release (a browser checks only when it navigates).
const UPDATE_CHECK_MS = 60 * 60 * 1000;

let takeOverAsked = false;
let notice = null;

// Signed out, and nothing typed into the login or sign-up form: a reload costs the user nothing.
function untouched() {
  if ($('auth').hidden || !$('app').hidden) return false;
  return [...$('auth').querySelectorAll('input')].every((input) => input.value === '');
}

function offer(act) {
  if (untouched()) {
    act();
    return;
  }
  if (notice) return;
  const signedIn = $('auth').hidden;
  const text = 'A new version of mailiverse is ready' + (signedIn ? '; reloading logs you out. ' : '. ');
  notice = h('div', { class: 'policy-notice', id: 'update-ready', role: 'status' }, text,
    h('button', { type: 'button', onclick: act }, 'Reload'));
  // Where the app shows its other notices (under the top bar), or above the login form.
  if (signedIn) $('key-alarm').before(notice);
  else $('auth').prepend(notice);
}

function waitingWorker(registration) {
  offer(() => {
    takeOverAsked = true;
    registration.waiting?.postMessage('take-over');
  });
}

// Opened without a network (from the worker's cache): the login screen says why logging in cannot work yet.
const OFFLINE = 'This device is offline. Log in once it is back online.';

function showOffline() {
  const shown = $('auth-status').textContent;
  if (!navigator.onLine && !shown) status('auth-status', OFFLINE);
  else if (navigator.onLine && shown === OFFLINE) status('auth-status', '');
}

export function installServiceWorker() {
  showOffline();
  window.addEventListener('online', showOffline);
  window.addEventListener('offline', showOffline);
  // No worker (an http: origin other than localhost, a browser without them): the client works online as before.
  if (!('serviceWorker' in navigator)) return;
  let controlled = Boolean(navigator.serviceWorker.controller);
  navigator.serviceWorker.addEventListener('controllerchange', () => {
    if (!controlled) {
      controlled = true; // the first worker took this page on: it runs the same release, nothing to reload
      return;
    }
    // A new release took over, asked for here or in another tab of this client.
    if (takeOverAsked) window.location.reload();
    else offer(() => window.location.reload());
  });
  // After the page's own loads: the worker's first install fetches the whole client once more (mostly as 304s).
  if (document.readyState === 'complete') register();
  else window.addEventListener('load', register, { once: true });
}

function register() {
  navigator.serviceWorker.register('/sw.js', { scope: '/' }).then((registration) => {
    // A new release's worker may be waiting already, installing (the browser checked as this page loaded), or
    // found later.
    const installed = (worker) => worker?.addEventListener('statechange', () => {
      if (worker.state === 'installed' && navigator.serviceWorker.controller) waitingWorker(registration);
    });
    if (registration.waiting && navigator.serviceWorker.controller) waitingWorker(registration);
    installed(registration.installing);
    registration.addEventListener('updatefound', () => installed(registration.installing));
    setInterval(() => registration.update().catch(() => {}), UPDATE_CHECK_MS);
  }).catch(() => {});
}
