// "via <alias>": the list row's tag and the reader's line for mail delivered to one of the user's aliases,
// with the reader's one-click "Stop mail to this address" (lookup, then disable) and its undo (enable).

import { h, status } from './dom.js';

// The address a message came to when it is not one of the account's own names, else null.
export function viaAddress(book, deliveredTo) {
  if (!book || !deliveredTo || book.isOwn(deliveredTo)) return null;
  const alias = book.viaAlias(deliveredTo);
  return alias ? alias.address : deliveredTo;
}

export function rowVia(book, item) {
  const address = viaAddress(book, item.dt);
  if (!address) return null;
  return { label: `Via ${address}. `, tag: h('span', { class: 'via', title: `Delivered to your alias ${address}` }, `via ${address}`) };
}

async function setState(book, deliveredTo, state) {
  const alias = await book.lookup(deliveredTo);
  return alias.state === state ? alias : book.setState(alias.id, state);
}

// The reader's line; null for mail to the account's own name (or mail without the member).
export function readerVia(book, summary) {
  const address = viaAddress(book, summary.deliveredTo);
  if (!address) return null;
  const alias = book.viaAlias(summary.deliveredTo);
  const label = alias && alias.labelText ? ` (${alias.labelText})` : '';
  const controls = h('span', { class: 'via-controls' });
  const line = h('div', { class: 'hdr via-line', id: 'reader-via' },
    h('span', { class: 'hdr-name' }, 'Via'), h('span', { class: 'via' }, `${address}${label}`), ' ', controls);
  const show = (state) => {
    if (state === 'disabled') {
      controls.replaceChildren(h('span', { class: 'via-stopped', role: 'status' }, 'Mail to this address is refused. '),
        h('button', { type: 'button', id: 'via-undo', onclick: () => act('active') }, 'Undo (accept mail again)'));
    } else {
      controls.replaceChildren(h('button', { type: 'button', id: 'via-stop', class: 'danger', onclick: () => act('disabled'),
        title: 'Refuse all mail to this alias from now on (you can undo it)' }, 'Stop mail to this address'));
    }
  };
  const act = async (state) => {
    for (const b of controls.querySelectorAll('button')) b.disabled = true;
    try {
      const changed = await setState(book, summary.deliveredTo, state);
      show(changed.state);
      status('app-status', changed.state === 'disabled'
        ? `Mail to ${address} is refused from now on.` : `Mail to ${address} is accepted again.`);
    } catch (e) {
      status('app-status', e.status === 404 ? 'That address is no longer one of your aliases.' : `Not changed: ${e.message}`, true);
      for (const b of controls.querySelectorAll('button')) b.disabled = false;
    }
  };
  show(alias ? alias.state : 'active');
  return line;
}
