// The Addresses page: the account's aliases with their (decrypted) addresses and labels, state, kind, mail
// received and last use; new shield and chosen addresses (the new one shown with a Copy button), labels,
// Disable/Enable, "Only known senders", Delete (after a question that says it is for good), and the
// "via this address" filter that lists the mail an alias received.

import { $, formatDate, h, status } from './dom.js';

const SAY = 'alias-status';

function refusal(e) {
  return {
    alias_taken: 'That address is taken (or was used once and can never be issued again).',
    alias_limit: 'You have as many addresses as this server allows. Delete one first.',
    alias_rate_limited: 'Too many new addresses in a short time. Try again in 15 minutes.',
    aliases_unavailable: 'This server keeps no aliases.',
  }[e.code] || e.message || 'That did not work.';
}

// Asks before deleting; resolves true for "Delete for good".
function confirmDelete(address) {
  const dialog = $('alias-delete-dialog');
  if (dialog.open) return Promise.resolve(false);
  $('alias-delete-text').textContent = `${address} will be deleted for good: mail to it is refused from now on, `
    + 'for every sender, and the address can never be used again, by you or anyone. This cannot be undone.';
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'delete'), { once: true });
    dialog.showModal();
    $('alias-delete-cancel').focus();
  });
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // Without clipboard permission: select the address so the user can copy it by hand.
    const out = $('alias-created-address');
    const range = document.createRange();
    range.selectNodeContents(out);
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    return false;
  }
}

export class AddressesPage {
  // book: AliasBook; showMail(alias): list the mail delivered to it.
  constructor({ book, showMail }) {
    this.book = book;
    this.showMail = showMail;
    this.editing = null;
    book.onChange(() => this.render());
    $('alias-new-shield').addEventListener('click', () => this.create('shield'));
    $('alias-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.create('chosen');
    });
    $('alias-copy').addEventListener('click', async () => {
      const address = $('alias-created-address').textContent;
      status(SAY, (await copyText(address)) ? `Copied ${address}.` : 'Selected: press Ctrl+C to copy it.');
    });
  }

  async show() {
    const domains = this.book.domains();
    const select = $('alias-domain');
    if (select.options.length !== domains.length) select.replaceChildren(...domains.map((d) => new Option(d, d)));
    this.render();
    try {
      await this.book.load();
    } catch (e) {
      status(SAY, `Your addresses could not be loaded: ${refusal(e)}`, true);
    }
  }

  async create(kind) {
    const label = $('alias-label').value;
    const domain = $('alias-domain').value;
    const local = $('alias-chosen').value.trim().toLowerCase();
    if (kind === 'chosen' && !local) {
      status(SAY, 'Type the name you want before the @.', true);
      $('alias-chosen').focus();
      return;
    }
    const buttons = [$('alias-new-shield'), $('alias-new-chosen')];
    for (const b of buttons) b.disabled = true;
    status(SAY, 'Creating…');
    try {
      const made = await this.book.create({ kind, domain, address: `${local}@${domain}`, label });
      $('alias-label').value = '';
      $('alias-chosen').value = '';
      $('alias-created-address').textContent = made.address;
      $('alias-created').hidden = false;
      status(SAY, 'Made. Give it out, and stop its mail here whenever you like.');
      $('alias-copy').focus();
    } catch (e) {
      status(SAY, refusal(e), true);
    } finally {
      for (const b of buttons) b.disabled = false;
    }
  }

  async act(what, alias, job) {
    try {
      await job();
      status(SAY, what);
    } catch (e) {
      status(SAY, refusal(e), true);
    }
  }

  labelView(alias) {
    if (this.editing === alias.id) {
      const input = h('input', { id: `alias-label-${alias.id}`, class: 'alias-label-input', maxlength: '256',
        autocomplete: 'off', 'aria-label': `Label for ${alias.address}` });
      input.value = alias.labelText || '';
      const save = () => this.act('Label saved (encrypted: only you can read it).', alias, async () => {
        await this.book.setLabel(alias.id, input.value);
        this.editing = null;
        this.render();
      });
      input.addEventListener('keydown', (e) => {
        if (e.key === 'Enter') { e.preventDefault(); save(); }
        if (e.key === 'Escape') { e.preventDefault(); this.editing = null; this.render(); }
      });
      queueMicrotask(() => input.focus());
      return h('div', { class: 'alias-label' }, input,
        h('button', { type: 'button', class: 'primary', onclick: save }, 'Save label'),
        h('button', { type: 'button', onclick: () => { this.editing = null; this.render(); } }, 'Cancel'));
    }
    return h('div', { class: 'alias-label' },
      h('span', { class: alias.labelText ? 'alias-label-text' : 'alias-label-text hint' }, alias.labelText || 'No label'),
      ' ', h('button', { type: 'button', class: 'link', 'aria-label': `Edit label of ${alias.address}`,
        onclick: () => { this.editing = alias.id; this.render(); } }, 'Edit label'));
  }

  card(alias) {
    const address = alias.address || '(address could not be decrypted)';
    const active = alias.state === 'active';
    const known = alias.senders !== 'any';
    const used = alias.last_used_ms ? `last mail ${formatDate(alias.last_used_ms, true)}` : 'no mail yet';
    return h('li', { class: `alias ${alias.state}`, 'data-alias': alias.id, 'aria-label': address },
      h('div', { class: 'alias-head' },
        h('button', { type: 'button', class: 'link alias-address', title: 'Show the mail delivered to this address',
          onclick: () => this.showMail(alias) }, address),
        h('span', { class: 'tag' }, alias.kind === 'shield' ? 'shield' : 'chosen'),
        h('span', { class: `tag state ${alias.state}` }, active ? 'active' : 'disabled: mail refused')),
      this.labelView(alias),
      h('div', { class: 'hint alias-use' },
        `${alias.received} received · ${used}`, known ? ' · only senders who wrote to it before' : ''),
      h('div', { class: 'toolbar' },
        h('button', { type: 'button', onclick: () => this.showMail(alias) }, 'Via this address'),
        h('button', { type: 'button', class: active ? 'danger' : '',
          onclick: () => this.act(active ? `Mail to ${address} is refused from now on.` : `Mail to ${address} is accepted again.`,
            alias, () => this.book.setState(alias.id, active ? 'disabled' : 'active')) }, active ? 'Disable' : 'Enable'),
        h('button', { type: 'button', 'aria-pressed': String(known),
          title: 'Refuse senders who have never written to this address before',
          onclick: () => this.act(known ? `${address} takes mail from anyone again.` : `${address} now takes mail only from senders it knows.`,
            alias, () => this.book.setSenders(alias.id, known ? 'any' : 'known')) }, 'Only known senders'),
        h('button', { type: 'button', class: 'danger', onclick: async () => {
          if (!(await confirmDelete(address))) return;
          await this.act(`${address} is deleted for good.`, alias, () => this.book.remove(alias.id));
        } }, 'Delete')));
  }

  render() {
    const aliases = this.book.aliases;
    $('alias-rows').replaceChildren(...aliases.map((a) => this.card(a)));
    $('alias-empty').hidden = !this.book.loaded || aliases.length > 0;
    $('alias-unavailable').hidden = this.book.available;
    $('alias-form').hidden = !this.book.available;
  }
}
