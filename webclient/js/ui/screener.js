// The screener in the page: the reader's banner on a screened message ("First message from ...: Let them in?")
// with Approve sender (the sender approved, then the message's two objects moved to the inbox by one
// POST /api/move) and Block sender (asked first; the sender blocked, then the screened message deleted), and
// the "Screen first-time senders" setting on the Addresses page with the approved and blocked counts (and
// "Unblock a sender").

import { ApiError } from '../api.js';
import { $, h, status } from './dom.js';

// The one address a screened message's From names (what the appliance hashed when it screened it), or ''.
export function screenedSender(summary) {
  const address = (summary.from && summary.from.email ? summary.from.email : '').trim();
  return /^[^\s@]+@[^\s@]+$/.test(address) && address.length <= 254 ? address : '';
}

// The banner above a screened message's headers; actions.approve() and actions.block() do the work.
export function screenerBanner(summary, actions) {
  const sender = screenedSender(summary);
  if (!sender) {
    return h('div', { class: 'screener-banner', id: 'screener-banner', role: 'note' },
      h('p', {}, 'This message was screened, but it names no single sender address to approve or block.'));
  }
  return h('div', { class: 'screener-banner', id: 'screener-banner', role: 'note', 'aria-label': 'Screener' },
    h('p', {}, 'First message from ', h('strong', { class: 'screener-sender' }, sender), '. Let them in?'),
    h('div', { class: 'actions' },
      h('button', { type: 'button', id: 'screener-approve', class: 'primary', onclick: actions.approve,
        title: 'Their mail goes to your inbox from now on; this message moves there' }, 'Approve sender'),
      h('button', { type: 'button', id: 'screener-block', class: 'danger', onclick: actions.block,
        title: 'Refuse their mail from now on and delete this message' }, 'Block sender')));
}

// Asks before blocking; resolves true for "Block sender".
function confirmBlock(sender) {
  const dialog = $('screener-block-dialog');
  if (dialog.open) return Promise.resolve(false);
  $('screener-block-text').textContent = `Their mail will be refused from now on: your server answers ${sender} `
    + 'that you do not accept their mail, and this message is deleted.';
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'block'), { once: true });
    dialog.showModal();
    $('screener-block-cancel').focus();
  });
}

function failure(e) {
  if (e instanceof ApiError && e.status === 404) {
    return 'the message is no longer there (another device may have moved or deleted it).';
  }
  if (e instanceof ApiError && e.status === 409) return 'the inbox already holds a message with the same name.';
  return `${e.message}.`;
}

// The other screened messages from the same sender (they follow the verdict).
function sameSender(store, item, sender) {
  const wanted = sender.toLowerCase();
  return store.folder('screener').filter((i) => i.p !== item.p && (i.fe || '').trim().toLowerCase() === wanted);
}

// Approve or block the sender of the screened message `item` ('approved' or 'blocked'). {done: true} when the
// message left the Screener; {done: false} when the user cancelled or the server refused (`gone` after a 404).
export async function decide(store, screener, item, summary, verdict) {
  const sender = screenedSender(summary);
  if (!sender) return { done: false };
  if (verdict === 'blocked' && !(await confirmBlock(sender))) return { done: false };
  status('app-status', verdict === 'approved' ? `Approving ${sender}…` : `Blocking ${sender}…`);
  try {
    await screener.setSender(sender, verdict);
  } catch (e) {
    status('app-status', `Nothing changed: ${e.message}.`, true);
    return { done: false };
  }
  const others = sameSender(store, item, sender);
  try {
    if (verdict === 'approved') await store.moveTo(item.p, 'inbox');
    else await store.deleteForever(item.p);
  } catch (e) {
    const what = verdict === 'approved' ? 'approved, but the message was not moved' : 'blocked, but the message was not deleted';
    status('app-status', `${sender} is ${what}: ${failure(e)}`, true);
    return { done: false, gone: e instanceof ApiError && e.status === 404 };
  }
  let followed = 0;
  for (const other of others) {
    try {
      if (verdict === 'approved') await store.moveTo(other.p, 'inbox');
      else await store.deleteForever(other.p);
      followed++;
    } catch { /* shown again by the next sync, where the user can decide again */ }
  }
  const more = followed ? ` (and ${followed} more of their screened message${followed === 1 ? '' : 's'})` : '';
  status('app-status', verdict === 'approved'
    ? `${sender} is approved: their mail goes to your inbox from now on. Moved to the inbox${more}.`
    : `${sender} is blocked: their mail is refused from now on. Deleted${more}.`);
  return { done: true };
}

// The "Screen first-time senders" switch and the counts, in the Addresses page's Screener section.
export class ScreenerSetting {
  constructor(screener) {
    this.screener = screener;
    screener.onChange(() => this.render());
    $('screener-enabled').addEventListener('change', () => this.toggle());
    $('screener-forget-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.forget();
    });
  }

  // Unblock: the sender is forgotten (verdict null), so their next message is screened again. The appliance
  // cannot list whom the user blocked (keyed hashes), so the user names the address.
  async forget() {
    const address = $('screener-forget').value.trim();
    if (!/^[^\s@]+@[^\s@]+$/.test(address)) {
      status('screener-status', 'Type the sender’s address, name@example.org.', true);
      $('screener-forget').focus();
      return;
    }
    $('screener-forget-button').disabled = true;
    try {
      await this.screener.setSender(address, null);
      $('screener-forget').value = '';
      status('screener-status', `${address} is no longer blocked or approved: their next message is screened again.`);
    } catch (e) {
      status('screener-status', e.message || 'That did not work.', true);
    } finally {
      $('screener-forget-button').disabled = false;
    }
  }

  async show() {
    this.render();
    try {
      await this.screener.load();
    } catch (e) {
      status('screener-status', `The screener could not be read: ${e.message}.`, true);
    }
  }

  async toggle() {
    const box = $('screener-enabled');
    const wanted = box.checked;
    box.disabled = true;
    status('screener-status', wanted ? 'Turning the screener on…' : 'Turning the screener off…');
    try {
      await this.screener.setEnabled(wanted);
      status('screener-status', wanted
        ? 'On: mail from senders you have never written to or approved waits in the Screener folder.'
        : 'Off: all mail goes to your inbox again. Blocked senders stay blocked.');
    } catch (e) {
      // The server's own words (409 for accounts read by original Mailiverse clients).
      status('screener-status', e.message || 'The screener could not be changed.', true);
    } finally {
      box.disabled = !this.screener.available;
      this.render();
    }
  }

  render() {
    const s = this.screener;
    $('screener-enabled').checked = s.enabled;
    $('screener-enabled').disabled = !s.available;
    $('screener-unavailable').hidden = s.available;
    $('screener-forget-form').hidden = !s.available;
    const senders = (n, word) => `${n} ${word} sender${n === 1 ? '' : 's'}`;
    $('screener-counts').textContent = s.loaded
      ? `${senders(s.approved, 'approved')}, ${senders(s.blocked, 'blocked')}.` : '';
  }
}
