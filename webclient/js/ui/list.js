// The message list: a virtual-scrolled listbox (only visible rows exist in the DOM). Keyboard: the list holds the
// focus and names the selected row with aria-activedescendant; arrows, Home, End, Page Up and Page Down move the
// selection (opening the message beside the list), Enter opens it and moves the focus into the reader.

import { formatDate, formatSize, h } from './dom.js';
import { rowMarker } from './verdicts.js';
import { rowVia } from './via.js';

const ROW = 70;

export class MessageList {
  // onOpen(item, {focus}): show the message; focus: the user asked to read it (Enter, a click), so the focus goes
  // into the reader; arrows browse and leave it in the list.
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
    this.spacer = h('div', { class: 'spacer', role: 'presentation' });
    this.el.append(this.spacer);
    this.el.addEventListener('scroll', () => this.render());
    window.addEventListener('resize', () => this.render());
    this.el.addEventListener('click', (e) => {
      const row = e.target.closest('[data-index]');
      if (row) this.open(Number(row.dataset.index), true);
    });
    this.el.addEventListener('keydown', (e) => this.key(e));
  }

  key(e) {
    if (e.ctrlKey || e.metaKey || e.altKey || e.target !== this.el || !this.items.length) return;
    const page = Math.max(1, Math.floor((this.el.clientHeight || ROW) / ROW) - 1);
    const at = this.selected;
    const to = {
      ArrowDown: at < 0 ? 0 : at + 1, ArrowUp: at < 0 ? 0 : at - 1, Home: 0, End: this.items.length - 1,
      PageDown: Math.max(at, 0) + page, PageUp: Math.max(at, 0) - page,
    }[e.key];
    if (to !== undefined) {
      e.preventDefault();
      const index = Math.max(0, Math.min(this.items.length - 1, to));
      if (index !== at) this.open(index);
    } else if (e.key === 'Enter') {
      e.preventDefault();
      this.open(at < 0 ? 0 : at, true);
    }
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
    // Only a row that exists may be named: scrolled out of the window, the selection is not in the DOM.
    if (this.selected >= first && this.selected < last) this.el.setAttribute('aria-activedescendant', `row-${this.selected}`);
    else this.el.removeAttribute('aria-activedescendant');
  }

  // A row's spoken name says first what is not visible (unread, the verdict), then its visible text in the order of
  // the DOM, so that what a voice-control user reads on screen is part of the name (WCAG 2.5.3); the DOM order is
  // who, subject, date, size, snippet, and the grid places them (style.css).
  row(item, index) {
    const unread = this.isUnread(item);
    const who = item.k === 'sent' ? `To: ${item.to}` : (item.fn || item.fe || '(unknown sender)');
    const marker = item.k === 'sent' ? null : rowMarker(item.v);
    const folder = this.folderOf(item);
    // Outside their own folder (search results, "via"), Spam and Screener messages say where they are.
    const spamTag = this.showing !== 'spam' && folder === 'spam';
    const screenedTag = this.showing !== 'screener' && folder === 'screener';
    const via = item.k === 'sent' ? null : rowVia(this.aliases(), item);
    const subject = item.s || '(no subject)';
    const date = formatDate(item.d);
    const size = formatSize(item.z);
    const snippet = item.b ? item.b.slice(0, 120) : '';
    const label = `${unread ? 'Unread. ' : ''}${marker ? marker.label : ''}${spamTag ? 'Spam. ' : ''}`
      + `${screenedTag ? 'Screener. ' : ''}${who}. ${subject}. ${date}. ${size}. ${via ? via.label : ''}${snippet}`
      + `${item.a ? `${snippet ? '. ' : ''}With attachments.` : ''}`;
    const el = h('div', {
      class: `row${unread ? ' unread' : ''}${index === this.selected ? ' selected' : ''}`,
      id: `row-${index}`, role: 'option', 'aria-selected': index === this.selected ? 'true' : 'false',
      'aria-setsize': this.items.length, 'aria-posinset': index + 1,
      'aria-label': label, 'data-index': index, 'data-verdict': item.v || null,
    },
    // The spaces between the cells (nothing to the grid) keep their words apart in the row's text.
    h('span', { class: 'who' }, marker ? [marker.mark, ' '] : null, spamTag ? [h('span', { class: 'tag' }, 'Spam'), ' '] : null,
      screenedTag ? [h('span', { class: 'tag' }, 'Screener'), ' '] : null, who), ' ',
    h('span', { class: 'subject' }, item.a ? h('span', { 'aria-hidden': 'true' }, '📎 ') : '', subject), ' ',
    h('span', { class: 'date' }, date), ' ',
    h('span', { class: 'size' }, size), ' ',
    h('span', { class: 'snippet' }, via ? [via.tag, ' '] : null, snippet));
    el.style.top = `${index * ROW}px`;
    return el;
  }

  select(index, scroll = true) {
    if (!this.items.length) return;
    this.selected = Math.max(0, Math.min(this.items.length - 1, index));
    if (scroll) this.reveal();
    this.render();
    if (this.onSelect) this.onSelect(this.current());
  }

  // Scrolls the selected row into view.
  reveal() {
    const top = this.selected * ROW;
    if (top < this.el.scrollTop) this.el.scrollTop = top;
    else if (top + ROW > this.el.scrollTop + this.el.clientHeight) this.el.scrollTop = top + ROW - this.el.clientHeight;
  }

  // focus: the user asked to read the message (Enter or a click), not only to move along the list.
  open(index, focus = false) {
    this.select(index);
    const item = this.current();
    if (item) this.onOpen(item, { focus });
  }

  move(delta) {
    this.open(this.selected < 0 ? 0 : this.selected + delta);
  }
}
