// The message list: a virtual-scrolled listbox (only visible rows exist in the DOM).

import { formatDate, formatSize, h } from './dom.js';
import { rowMarker } from './verdicts.js';
import { rowVia } from './via.js';

const ROW = 70;

export class MessageList {
  constructor(container, { isUnread, folderOf, onOpen, onSelect, aliases }) {
    // The alias book (for "via <alias>"), or a function giving it once it exists.
    this.aliases = aliases || (() => null);
    this.el = container;
    this.isUnread = isUnread;
    this.folderOf = folderOf || ((item) => item.k);
    // The folder being shown (null for search results, where a Spam message says so).
    this.showing = null;
    this.onOpen = onOpen;
    this.onSelect = onSelect;
    this.items = [];
    this.selected = -1;
    this.spacer = h('div', { class: 'spacer' });
    this.el.append(this.spacer);
    this.el.addEventListener('scroll', () => this.render());
    window.addEventListener('resize', () => this.render());
    this.el.addEventListener('click', (e) => {
      const row = e.target.closest('[data-index]');
      if (row) this.open(Number(row.dataset.index));
    });
  }

  setItems(items, keepPath = null) {
    this.items = items;
    const at = keepPath ? items.findIndex((i) => i.p === keepPath) : -1;
    this.selected = at >= 0 ? at : Math.min(this.selected, items.length - 1);
    this.spacer.style.height = `${items.length * ROW}px`;
    this.render();
  }

  current() {
    return this.items[this.selected] || null;
  }

  render() {
    const top = this.el.scrollTop;
    const height = this.el.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW) - 5);
    const last = Math.min(this.items.length, Math.ceil((top + height) / ROW) + 5);
    const rows = [];
    for (let i = first; i < last; i++) rows.push(this.row(this.items[i], i));
    this.spacer.replaceChildren(...rows);
    if (this.selected >= 0) this.el.setAttribute('aria-activedescendant', `row-${this.selected}`);
  }

  row(item, index) {
    const unread = this.isUnread(item);
    const who = item.k === 'sent' ? `To: ${item.to}` : (item.fn || item.fe || '(unknown sender)');
    const marker = item.k === 'sent' ? null : rowMarker(item.v);
    const folder = this.folderOf(item);
    // Outside their own folder (search results, "via"), Spam and Screener messages say where they are.
    const spamTag = this.showing !== 'spam' && folder === 'spam';
    const screenedTag = this.showing !== 'screener' && folder === 'screener';
    const via = item.k === 'sent' ? null : rowVia(this.aliases(), item);
    const label = `${unread ? 'Unread. ' : ''}${spamTag ? 'Spam. ' : ''}${screenedTag ? 'Screener. ' : ''}${marker ? marker.label : ''}${via ? via.label : ''}${who}. `
      + `${item.s || '(no subject)'}. ${formatDate(item.d, true)}. ${formatSize(item.z)}`;
    const el = h('div', {
      class: `row${unread ? ' unread' : ''}${index === this.selected ? ' selected' : ''}`,
      id: `row-${index}`, role: 'option', 'aria-selected': index === this.selected ? 'true' : 'false',
      'aria-label': label, 'data-index': index, 'data-verdict': item.v || null,
    },
    h('span', { class: 'who' }, marker ? marker.mark : null, spamTag ? h('span', { class: 'tag' }, 'Spam') : null,
      screenedTag ? h('span', { class: 'tag' }, 'Screener') : null, who),
    h('span', { class: 'date' }, formatDate(item.d)),
    h('span', { class: 'subject' }, item.a ? '📎 ' : '', item.s || '(no subject)'),
    h('span', { class: 'size' }, formatSize(item.z)),
    h('span', { class: 'snippet' }, via ? via.tag : null, item.b ? item.b.slice(0, 120) : ''));
    el.style.top = `${index * ROW}px`;
    return el;
  }

  select(index, scroll = true) {
    if (!this.items.length) return;
    this.selected = Math.max(0, Math.min(this.items.length - 1, index));
    if (scroll) {
      const top = this.selected * ROW;
      if (top < this.el.scrollTop) this.el.scrollTop = top;
      else if (top + ROW > this.el.scrollTop + this.el.clientHeight) this.el.scrollTop = top + ROW - this.el.clientHeight;
    }
    this.render();
    if (this.onSelect) this.onSelect(this.current());
  }

  open(index) {
    this.select(index, false);
    const item = this.current();
    if (item) this.onOpen(item);
  }

  move(delta) {
    this.open(this.selected < 0 ? 0 : this.selected + delta);
  }
}
