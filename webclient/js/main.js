// The application: wires the login screen, the mailbox, the list, the reader, the composer, the Addresses page,
// the screener, the Keys page (with the login-time watch over the account's keys in the key log) and the
// mailboxes of the user's groups (read-only, with the group's keys, once its key is verified in the directory).

import { getJson } from './api.js';
import { KeyAlarm } from './crypto/keylog.js';
import { AliasBook, canonicalAddress } from './mail/aliases.js';
import { groupAddress, groupStore, listGroups, openGroup } from './mail/groups.js';
import { Screener } from './mail/screener.js';
import { MailStore, TAMPERED_NOTICE, TamperedError } from './mail/store.js';
import { changePassword, login, logout, signup } from './session.js';
import { installDialogFocus, installDisclosure, installSkipLink, installTabs, isShown, selectTab } from './ui/a11y.js';
import { AddressesPage } from './ui/addresses.js';
import { Composer } from './ui/composer.js';
import { $, h, status } from './ui/dom.js';
import { MessageList } from './ui/list.js';
import { renderMessage } from './ui/reader.js';
import { decide, ScreenerSetting } from './ui/screener.js';
import { KeysPage } from './ui/keys.js';
import { installMovePage } from './ui/move.js';
import { askSecondFactor, installPasskeys } from './ui/passkeys.js';
import { installServiceWorker } from './pwa.js';
import { installShortcuts } from './ui/shortcuts.js';
import { trainAndMove } from './ui/training.js';

const TITLES = { inbox: 'Inbox', sent: 'Sent', spam: 'Spam', screener: 'Screener', trash: 'Trash' };
// view: 'mail' (a folder, search, the mail of one alias: `via`, or a group's mailbox: `group`), 'addresses' (the
// Addresses page) or 'keys'. group: {name, address, store (null until its key is verified), notice, error}.
const state = { session: null, store: null, folder: 'inbox', query: '', openPath: null, summary: null, timing: {},
  training: false, aliases: null, view: 'mail', via: null, screener: null, screening: false, groups: [],
  group: null };
// The opened group mailboxes by name (in memory only; each open checks the group's key again first).
const groupStores = new Map();
let addressesPage = null;
let keysPage = null;
let screenerSetting = null;
let list = null;
let composer = null;
let pollTimer = null;

function busy(form, on) {
  for (const el of form.querySelectorAll('button,input')) el.disabled = on;
}

// focusField: a click on a tab goes on to its first field; the arrow keys stay on the tabs.
function showTab(which, focusField = true) {
  const login = which === 'login';
  selectTab(login ? $('tab-login') : $('tab-signup'));
  $('login-panel').hidden = !login;
  $('signup-panel').hidden = login;
  status('auth-status', '');
  if (focusField) (login ? $('login-user') : $('signup-user')).focus();
}

// The forms are shown (the page starts with them hidden) only once their handlers are attached: a form
// submitted before would go out the browser's way, password in the URL.
async function setupAuth() {
  $('tab-login').addEventListener('click', () => showTab('login'));
  $('tab-signup').addEventListener('click', () => showTab('signup'));
  installTabs($('tab-login').parentElement, (tab) => showTab(tab === $('tab-login') ? 'login' : 'signup', false));
  $('login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const form = e.target;
    busy(form, true);
    try {
      await enter($('login-user').value, $('login-password').value);
    } catch (err) {
      status('auth-status', err.code === 'auth_failed' ? 'Wrong user name or password.' : err.message, true);
    } finally {
      busy(form, false);
    }
  });
  $('signup-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const form = e.target;
    if ($('signup-password').value !== $('signup-password2').value) {
      status('auth-status', 'The two passwords differ.', true);
      return;
    }
    busy(form, true);
    try {
      await signup($('signup-user').value, $('signup-password').value, $('signup-invite').value,
        (step) => status('auth-status', step + '…'));
      await enter($('signup-user').value, $('signup-password').value);
    } catch (err) {
      status('auth-status', err.message, true);
    } finally {
      busy(form, false);
    }
  });
  if (!state.session) $('auth').hidden = false;
  try {
    const info = await getJson('/api/signup');
    $('signup-domains').textContent = info.domains.length ? `Your address will be name@${info.domains[0]}.` : '';
    if (!info.open) $('signup-invite').required = true;
  } catch {
    $('tab-signup').hidden = true;
  }
}

async function enter(name, password) {
  const t0 = performance.now();
  const session = await login(name, password, (step) => status('auth-status', step + '…'), askSecondFactor);
  state.session = session;
  state.store = new MailStore(session.key);
  $('login-password').value = '';
  $('signup-password').value = $('signup-password2').value = '';
  $('auth').hidden = true;
  $('app').hidden = false;
  $('account-button').textContent = session.account.addresses[0] || session.name;
  $('account-button').setAttribute('aria-label', `Account ${session.account.addresses[0] || session.name}`);
  state.aliases = new AliasBook(session);
  state.aliases.onChange(() => {
    $('addresses-link').hidden = !state.aliases.available;
    refresh();
  });
  addressesPage = new AddressesPage({ book: state.aliases, showMail: showVia });
  state.screener = new Screener();
  state.screener.onChange(refresh);
  screenerSetting = new ScreenerSetting(state.screener);
  // A recipient's key that fails verification at send time raises the Keys page's red banner.
  composer = new Composer({ addresses: session.account.addresses, aliases: () => state.aliases, onSent: afterSend,
    session, onKeyAlarm: (alarm) => {
      keysPage.alarms.set(alarm.text, alarm);
      keysPage.showAlarms();
    } });
  state.store.onChange(refresh);
  // Every login checks the key log for the account's addresses (and publishes the first record); the mailbox
  // does not wait for it. A rotation updates session.key in place; the alias labels are sealed to the new key.
  keysPage = new KeysPage({ session, onRotated: () => {
    state.aliases.sealingKey = null;
    state.aliases.publicSources = [session.key.publicDer];
  } });
  keysPage.check();
  loadGroups();
  const t1 = performance.now();
  const cached = await state.store.loadCache();
  refresh();
  state.timing = { login: t1 - t0, warm: performance.now() - t1, cached };
  document.body.dataset.cached = String(cached);
  list.el.focus();
  // The aliases name the "via" of each message and the From choices; the mailbox does not wait for them.
  state.aliases.load().catch(() => {});
  // Whether the screener is on decides whether its folder is shown even while empty.
  state.screener.load().catch(() => {});
  await runSync();
  pollTimer = setInterval(checkAll, 30000);
}

// "Check for new mail" and the poll: the mailbox, the list of groups, and the group mailbox being shown.
function checkAll() {
  loadGroups();
  if (state.group && state.group.store) syncGroup(state.group);
  return runSync().catch(() => {});
}

// -- groups ---------------------------------------------------------------------------------------------

async function loadGroups() {
  let groups;
  try {
    groups = await listGroups();
  } catch {
    return; // a server without groups, or a passing failure: the section stays as it was
  }
  state.groups = groups;
  $('group-links').replaceChildren(...groups.map((g) => {
    const address = groupAddress(state.session, g) || g.addresses[0] || g.name;
    return h('li', {}, h('a', { href: `#group-${encodeURIComponent(g.name)}`, 'data-group': g.name, title: address,
      onclick: (e) => { e.preventDefault(); showGroup(g.name); } }, g.name));
  }));
  $('groups-nav').hidden = groups.length === 0;
  if (state.group) markCurrent(`group:${state.group.name}`);
}

// A group's mailbox in the list and reader: its key is checked against the key directory first (every time it
// is opened, as the Python client's open_group); on a mismatch the red key alarm goes up and nothing is opened.
async function showGroup(name) {
  const listed = state.groups.find((g) => g.name === name);
  if (!listed || !state.session) return;
  const group = { name, address: groupAddress(state.session, listed) || listed.addresses[0] || name, store: null,
    notice: 'Checking the group’s key in the key directory…', error: false, syncing: null };
  state.group = group;
  state.via = null;
  state.query = '';
  $('search').value = '';
  state.openPath = null;
  markCurrent(`group:${name}`);
  showView('mail');
  closeReader();
  list.el.scrollTop = 0;
  list.selected = -1;
  refresh();
  document.body.classList.remove('nav-open');
  let opened;
  try {
    opened = await openGroup(state.session, name);
  } catch (e) {
    groupStores.delete(name);
    group.error = true;
    if (e instanceof KeyAlarm) {
      keysPage.alarms.set(e.message, { address: group.address, text: e.message });
      keysPage.showAlarms();
      group.notice = `The key of ${group.address} failed verification: its mail was not opened.`;
    } else {
      group.notice = `The group could not be opened: ${e.message}`;
    }
    if (state.group === group) refresh();
    return;
  }
  let store = groupStores.get(name);
  if (store) {
    store.key = opened.key;
  } else {
    store = groupStore(opened);
    store.onChange(() => { if (state.group && state.group.store === store) refresh(); });
    groupStores.set(name, store);
  }
  if (state.group !== group) return;
  group.store = store;
  group.address = opened.address;
  group.notice = 'Decrypting the group’s mail…';
  refresh();
  await syncGroup(group);
}

function syncGroup(group) {
  if (group.syncing) return group.syncing;
  group.syncing = group.store.sync().then(() => {
    group.notice = '';
    group.error = false;
  }).catch((e) => {
    group.notice = `Sync failed: ${e.message}`;
    group.error = true;
  }).finally(() => {
    group.syncing = null;
    document.body.dataset.groupSynced = String((Number(document.body.dataset.groupSynced) || 0) + 1);
    if (state.group === group) refresh();
  });
  return group.syncing;
}

// The store the list and reader show: the group's while one is open, else the user's own.
function activeStore() {
  return state.group ? state.group.store : state.store;
}

let syncing = null;
function runSync() {
  if (syncing) return syncing;
  const t = performance.now();
  syncing = state.store.sync((done, total) => {
    const bar = $('sync');
    bar.hidden = !(total > 0 && done < total);
    $('sync-progress').max = Math.max(total, 1);
    $('sync-progress').value = done;
    $('sync-label').textContent = `Decrypting mail: ${done} of ${total}`;
  }, () => {
    // The newest mail is in the list; older mail fills in behind it.
    if (state.timing.first === undefined) state.timing.first = performance.now() - t;
    document.body.dataset.firstPage = '1';
  }).then((fresh) => {
    state.timing.sync = performance.now() - t;
    state.timing.phases = state.store.stats;
    document.body.dataset.synced = String((Number(document.body.dataset.synced) || 0) + 1);
    return fresh;
  }).catch((e) => {
    status('app-status', `Sync failed: ${e.message}`, true);
  }).finally(() => {
    $('sync').hidden = true;
    syncing = null;
  });
  return syncing;
}

function currentItems() {
  if (state.group) {
    const store = state.group.store;
    if (!store) return [];
    return state.query ? store.search(state.query) : store.all();
  }
  if (state.query) return state.store.search(state.query);
  if (state.via) {
    const wanted = canonicalAddress(state.via.address);
    return state.store.deliveredTo((dt) => canonicalAddress(dt) === wanted);
  }
  return state.store.folder(state.folder);
}

function listTitle(count) {
  if (state.group) {
    return state.query ? `Search ${state.group.address}: ${state.query} (${count})` : state.group.address;
  }
  if (state.query) return `Search: ${state.query} (${count})`;
  if (state.via) return `Via ${state.via.address} (${count})`;
  return TITLES[state.folder];
}

function refresh() {
  if (!state.store) return;
  const items = currentItems();
  list.showing = state.query || state.via ? null : state.group ? 'inbox' : state.folder;
  list.setItems(items, state.openPath);
  const notice = state.group ? state.group.notice : '';
  $('group-notice').hidden = !notice;
  $('group-notice').textContent = notice;
  $('group-notice').classList.toggle('error', !!(state.group && state.group.error));
  $('empty').hidden = items.length > 0 || !!notice;
  $('empty').textContent = state.query ? 'Nothing matches your search.' : 'No messages.';
  $('list-title').textContent = listTitle(items.length);
  const c = state.store.counts();
  // The counts are spoken as part of their folder's link ("Inbox, 2 unread"): a bare number says nothing.
  const counted = (folder, n, words) => {
    $(`count-${folder}`).textContent = n ? String(n) : '';
    const link = $(`count-${folder}`).closest('a');
    if (n) link.setAttribute('aria-label', `${TITLES[folder]}, ${n} ${words}`);
    else link.removeAttribute('aria-label');
  };
  counted('inbox', c.unread, 'unread');
  $('count-sent').textContent = '';
  counted('spam', c.spam, 'messages');
  counted('screener', c.screener, 'waiting');
  $('screener-folder').hidden = !(c.screener || (state.screener && state.screener.enabled) || state.folder === 'screener');
  counted('trash', c.trash, 'messages');
  document.title = c.unread ? `(${c.unread}) mailiverse` : 'mailiverse';
}

function markCurrent(name) {
  for (const a of document.querySelectorAll('[data-folder],[data-view],[data-group]')) {
    const which = a.dataset.group !== undefined ? `group:${a.dataset.group}` : a.dataset.folder || a.dataset.view;
    if (which === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function showView(view) {
  state.view = view;
  document.body.classList.toggle('addresses', view === 'addresses');
  $('addresses-page').hidden = view !== 'addresses';
  document.body.classList.toggle('keys-view', view === 'keys');
  $('keys-page').hidden = view !== 'keys';
}

function showKeys() {
  if (!keysPage) return;
  state.via = null;
  state.group = null;
  closeReader();
  markCurrent('keys');
  showView('keys');
  document.body.classList.remove('nav-open');
  keysPage.show();
  $('keys-title').focus();
}

function showAddresses() {
  if (!state.aliases) return;
  state.via = null;
  state.group = null;
  closeReader();
  markCurrent('addresses');
  showView('addresses');
  document.body.classList.remove('nav-open');
  addressesPage.show();
  screenerSetting.show();
  $('addresses-title').focus();
}

// "Via this address": the mail (all folders but Trash) the appliance delivered to one alias.
function showVia(alias) {
  if (!alias.address) return;
  state.via = alias;
  state.group = null;
  state.query = '';
  $('search').value = '';
  state.openPath = null;
  markCurrent(null);
  showView('mail');
  closeReader();
  list.el.scrollTop = 0;
  list.selected = -1;
  refresh();
  list.el.focus();
}

function setFolder(name) {
  if (name === 'addresses') {
    showAddresses();
    return;
  }
  if (name === 'keys') {
    showKeys();
    return;
  }
  state.folder = name;
  state.via = null;
  state.group = null;
  state.query = '';
  $('search').value = '';
  state.openPath = null;
  markCurrent(name);
  showView('mail');
  closeReader();
  list.el.scrollTop = 0;
  list.selected = -1;
  refresh();
  document.body.classList.remove('nav-open');
}

function closeReader() {
  $('reader').hidden = true;
  $('reader').replaceChildren();
  document.body.classList.remove('reading');
  state.summary = null;
}

// focus: the user asked to read it (Enter, a click): the focus goes into the reader, as it must when the reader
// takes the list's place (phones).
async function openItem(item, { focus = false } = {}) {
  const store = activeStore();
  if (!store) return;
  state.openPath = item.p;
  const reader = $('reader');
  reader.hidden = false;
  document.body.classList.add('reading');
  reader.replaceChildren(document.createTextNode('Decrypting…'));
  try {
    const summary = await store.fetchTwin(item.p);
    if (state.openPath !== item.p || activeStore() !== store) return;
    state.summary = summary;
    store.setRead(item.p, true);
    // A group's mailbox is read-only: reply and forward (from your own addresses), nothing that changes it.
    renderMessage(reader, item, summary, store.readOnly ? {
      back: () => { closeReader(); list.el.focus(); },
      reply: (mode) => composer.open(mode, summary),
      readOnly: true,
      inTrash: () => false,
      folderOf: (i) => store.folderOf(i),
      aliases: null,
    } : {
      back: () => { closeReader(); list.el.focus(); },
      reply: (mode) => composer.open(mode, summary),
      trash: () => trash(),
      restore: () => restore(),
      destroy: () => trash(),
      inTrash: (i) => state.store.trash.has(i.p),
      folderOf: (i) => state.store.folderOf(i),
      spam: () => markSpam(true),
      notSpam: () => markSpam(false),
      approve: () => screen('approved'),
      block: () => screen('blocked'),
      aliases: state.aliases,
    });
    list.render();
    refresh();
  } catch (e) {
    if (state.openPath !== item.p || activeStore() !== store) return;
    reader.replaceChildren(e instanceof TamperedError
      ? h('p', { class: 'notice tampered', role: 'alert' }, TAMPERED_NOTICE)
      : document.createTextNode('This message could not be decrypted.'));
  }
  if (focus || !isShown(list.el)) reader.focus();
}

// After the open message left the list (Trash, Restore), the focus it had goes back to the list.
function focusListIfLost() {
  const now = document.activeElement;
  if (!now || now === document.body || !isShown(now)) list.el.focus();
}

async function trash() {
  const item = list.current();
  if (!item || state.group) return;
  if (state.store.trash.has(item.p)) {
    await state.store.deleteForever(item.p);
    status('app-status', 'Deleted for good.');
  } else {
    state.store.moveToTrash(item.p);
    status('app-status', 'Moved to Trash.');
  }
  closeReader();
  state.openPath = null;
  refresh();
  focusListIfLost();
}

// "This is spam" (inbox) or "Not spam" (Spam) on the open message; `toSpam` null: whichever fits (the ! key).
async function markSpam(toSpam) {
  const item = state.openPath && !state.group ? state.store.items.get(state.openPath) : null;
  if (!item) return;
  const folder = state.store.folderOf(item);
  if (toSpam === null) toSpam = folder === 'inbox';
  if (folder !== (toSpam ? 'inbox' : 'spam') || state.training) return;
  state.training = true;
  let result;
  try {
    result = await trainAndMove(state.store, item, toSpam);
  } finally {
    state.training = false;
  }
  if (result.moved) {
    closeReader();
    state.openPath = null;
    refresh();
    list.el.focus();
  } else if (result.gone) {
    await runSync();
  }
}

// "Approve sender" / "Block sender" on the open screened message.
async function screen(verdict) {
  const item = state.openPath && !state.group ? state.store.items.get(state.openPath) : null;
  if (!item || !state.summary || state.store.folderOf(item) !== 'screener' || state.screening) return;
  state.screening = true;
  let result;
  try {
    for (const b of document.querySelectorAll('#screener-banner button')) b.disabled = true;
    result = await decide(state.store, state.screener, item, state.summary, verdict);
  } finally {
    state.screening = false;
    for (const b of document.querySelectorAll('#screener-banner button')) b.disabled = false;
  }
  if (result.done) {
    closeReader();
    state.openPath = null;
    refresh();
    list.el.focus();
  } else if (result.gone) {
    await runSync();
  }
}

function restore() {
  const item = list.current();
  if (!item || state.group || !state.store.trash.has(item.p)) return;
  state.store.restore(item.p);
  status('app-status', 'Restored.');
  closeReader();
  refresh();
  focusListIfLost();
}

async function afterSend(result) {
  status('app-status', `Sent to ${[...result.local, ...result.remote].length} recipient(s).`);
  await runSync();
}

async function leave() {
  clearInterval(pollTimer);
  try {
    if (state.store) await state.store.flush();
  } catch { /* the cache can be rebuilt */ }
  try {
    await logout();
  } catch { /* the session may already be gone */ }
  // Forget every key and decrypted message by reloading the page.
  location.replace('/');
}

function setupApp() {
  list = new MessageList($('list'), {
    isUnread: (item) => (activeStore() || state.store).isUnread(item),
    folderOf: (item) => (activeStore() || state.store).folderOf(item),
    onOpen: (item, how) => openItem(item, how),
    aliases: () => (state.group ? null : state.aliases),
  });
  for (const a of document.querySelectorAll('[data-folder],[data-view]')) {
    a.addEventListener('click', (e) => {
      e.preventDefault();
      setFolder(a.dataset.folder || a.dataset.view);
    });
  }
  $('search-form').addEventListener('submit', (e) => e.preventDefault());
  $('search').addEventListener('input', () => {
    state.query = $('search').value.trim();
    if (state.view !== 'mail') {
      markCurrent(state.folder);
      showView('mail');
    }
    closeReader();
    list.selected = -1;
    refresh();
  });
  $('compose-button').addEventListener('click', () => composer.open('new'));
  $('refresh-button').addEventListener('click', () => checkAll());
  installDisclosure($('account-button'), $('account-menu'));
  installSkipLink($('skip-link'), () => (state.view === 'addresses' ? $('addresses-title')
    : state.view === 'keys' ? $('keys-title') : list.el));
  // A dialog opened from the account menu gives the focus back to the account button (the menu is closed).
  installDialogFocus((opener) => (opener && opener.closest('#account-menu') ? $('account-button')
    : isShown(list.el) ? list.el : $('compose-button')));
  $('menu-button').addEventListener('click', () => {
    const open = document.body.classList.toggle('nav-open');
    $('menu-button').setAttribute('aria-expanded', String(open));
  });
  $('logout-button').addEventListener('click', leave);
  $('help-button').addEventListener('click', () => { $('account-menu').hidden = true; $('help').showModal(); });
  $('password-button').addEventListener('click', () => {
    $('account-menu').hidden = true;
    status('password-status', '');
    $('password-dialog').showModal();
  });
  $('password-cancel').addEventListener('click', () => $('password-dialog').close());
  installMovePage(() => state.session);
  installPasskeys(() => state.session);
  $('password-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    if ($('new-password').value !== $('new-password2').value) {
      status('password-status', 'The two new passwords differ.', true);
      return;
    }
    busy(e.target, true);
    try {
      status('password-status', 'Changing…');
      await changePassword(state.session, $('old-password').value, $('new-password').value);
      for (const id of ['old-password', 'new-password', 'new-password2']) $(id).value = '';
      $('password-dialog').close();
      status('app-status', 'Password changed.');
    } catch (err) {
      status('password-status', err.code === 'auth_failed' ? 'The current password is wrong.' : err.message, true);
    } finally {
      busy(e.target, false);
    }
  });
  installShortcuts({
    active: () => !!state.store && !$('app').hidden,
    move: (d) => list.move(d),
    open: () => { const i = list.current(); if (i) openItem(i, { focus: true }); else list.open(0, true); },
    back: () => { closeReader(); list.el.focus(); },
    compose: () => composer.open('new'),
    reply: (mode) => { if (state.summary) composer.open(mode, state.summary); },
    trash: () => trash(),
    restore: () => restore(),
    spam: () => markSpam(null),
    search: () => $('search').focus(),
    clearSearch: () => { $('search').value = ''; state.query = ''; refresh(); $('search').blur(); },
    help: () => $('help').showModal(),
    folder: setFolder,
  });
}

// Exposed for tests and measurements only: timings, never keys or mail.
window.mailiverseTiming = () => ({ ...state.timing });

setupApp();
setupAuth();
installServiceWorker();
