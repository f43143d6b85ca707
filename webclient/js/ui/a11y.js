// Keyboard and screen-reader plumbing shared by the views (docs/accessibility.md): the log-in tabs (arrow keys,
// one tab stop), the account menu (a disclosure: Esc closes it and gives the focus back to its button), the skip
// link, and the focus that returns to the opener when a dialog closes.

// Whether an element takes part in the layout (not hidden, not inside something hidden).
export function isShown(el) {
  return !!el && el.isConnected && el.getClientRects().length > 0;
}

// The tab pattern's one tab stop: the selected tab is the only one Tab reaches.
export function selectTab(tab) {
  for (const t of tab.closest('[role=tablist]').querySelectorAll('[role=tab]')) {
    t.setAttribute('aria-selected', String(t === tab));
    t.tabIndex = t === tab ? 0 : -1;
  }
}

// Left and Right (and Home, End) move between the shown tabs and choose the one they reach: choose(tab).
export function installTabs(tablist, choose) {
  tablist.addEventListener('keydown', (e) => {
    const tabs = [...tablist.querySelectorAll('[role=tab]')].filter(isShown);
    const at = tabs.indexOf(e.target);
    if (at < 0 || e.ctrlKey || e.metaKey || e.altKey) return;
    const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: tabs.length - 1 }[e.key];
    if (to === undefined) return;
    e.preventDefault();
    const tab = tabs[(to + tabs.length) % tabs.length];
    choose(tab);
    tab.focus();
  });
}

// A button that shows and hides a small menu of buttons below it. The menu closes on Esc (the focus back on the
// button), on a click elsewhere and when the focus leaves it; Up and Down move between its buttons.
export function installDisclosure(button, menu) {
  const set = (open) => {
    menu.hidden = !open;
    button.setAttribute('aria-expanded', String(open));
  };
  button.addEventListener('click', () => set(menu.hidden));
  menu.addEventListener('click', (e) => { if (e.target.closest('button')) set(false); });
  const onKey = (e) => {
    if (menu.hidden) return;
    if (e.key === 'Escape') {
      e.preventDefault();
      set(false);
      button.focus();
      return;
    }
    if (e.key !== 'ArrowDown' && e.key !== 'ArrowUp') return;
    const items = [...menu.querySelectorAll('button')].filter((b) => isShown(b) && !b.disabled);
    if (!items.length) return;
    e.preventDefault();
    const at = items.indexOf(document.activeElement);
    const step = e.key === 'ArrowDown' ? 1 : -1;
    items[at < 0 ? (step > 0 ? 0 : items.length - 1) : (at + step + items.length) % items.length].focus();
  };
  button.addEventListener('keydown', onKey);
  menu.addEventListener('keydown', onKey);
  const inside = (node) => node && (node === button || menu.contains(node));
  for (const el of [button, menu]) {
    el.addEventListener('focusout', (e) => { if (e.relatedTarget && !inside(e.relatedTarget)) set(false); });
  }
  document.addEventListener('click', (e) => { if (!menu.hidden && !inside(e.target)) set(false); });
  return { close: () => set(false) };
}

// Left and Right move between a toolbar's buttons (Tab reaches each of them too).
export function installToolbarArrows(toolbar) {
  toolbar.addEventListener('keydown', (e) => {
    if (e.key !== 'ArrowRight' && e.key !== 'ArrowLeft') return;
    const buttons = [...toolbar.querySelectorAll('button')].filter((b) => isShown(b) && !b.disabled);
    const at = buttons.indexOf(document.activeElement);
    if (at < 0) return;
    e.preventDefault();
    buttons[(at + (e.key === 'ArrowRight' ? 1 : -1) + buttons.length) % buttons.length].focus();
  });
}

// "Skip to messages": the focus goes to what the current view shows first (target() gives it).
export function installSkipLink(link, target) {
  link.addEventListener('click', (e) => {
    e.preventDefault();
    const el = target();
    if (el) el.focus();
  });
}

// Every dialog gives the focus back when it closes: to whatever had it before it opened, or, when that is gone or
// hidden (a menu item, a message's button after the message left the list), to fallback(opener).
export function installDialogFocus(fallback) {
  let lastOutside = null;
  document.addEventListener('focusin', (e) => {
    if (!e.target.closest('dialog')) lastOutside = e.target;
  });
  for (const dialog of document.querySelectorAll('dialog')) watchDialog(dialog);
  function watchDialog(dialog) {
    let opener = null;
    new MutationObserver(() => {
      if (dialog.open) opener = lastOutside;
    }).observe(dialog, { attributes: true, attributeFilter: ['open'] });
    dialog.addEventListener('close', () => {
      const now = document.activeElement;
      if (now && now !== document.body && isShown(now) && !now.closest('dialog')) return;
      const to = isShown(opener) ? opener : fallback(opener);
      if (to) to.focus();
    });
  }
}
