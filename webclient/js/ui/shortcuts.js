// Keyboard shortcuts (Gmail-like single keys; "g" then a folder letter). Ignored while typing, while a dialog is
// open, before login (handlers.active()) and when a control of the page handled the key itself. Enter and the
// arrows keep their usual meaning on links, buttons and scrolled text; on the list they are the list's own.

const BROWSE = new Set(['Enter', 'ArrowDown', 'ArrowUp']);

export function installShortcuts(handlers) {
  let pendingG = false;
  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented) return;
    if (handlers.active && !handlers.active()) return;
    const target = e.target;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) {
      if (e.key === 'Escape' && target.id === 'search') handlers.clearSearch();
      return;
    }
    if (document.querySelector('dialog[open]')) return;
    if (BROWSE.has(e.key) && target && target !== document.body) return;
    if (pendingG) {
      pendingG = false;
      const folder = { i: 'inbox', s: 'sent', p: 'spam', e: 'screener', t: 'trash', a: 'addresses' }[e.key];
      if (folder) {
        e.preventDefault();
        handlers.folder(folder);
      }
      return;
    }
    const action = {
      j: () => handlers.move(1), ArrowDown: () => handlers.move(1),
      k: () => handlers.move(-1), ArrowUp: () => handlers.move(-1),
      Enter: handlers.open, o: handlers.open,
      u: handlers.back, Escape: handlers.back,
      c: handlers.compose,
      r: () => handlers.reply('reply'), a: () => handlers.reply('all'), f: () => handlers.reply('forward'),
      '#': handlers.trash, Delete: handlers.trash,
      z: handlers.restore,
      '!': handlers.spam,
      '/': handlers.search,
      '?': handlers.help,
      g: () => { pendingG = true; },
    }[e.key];
    if (action) {
      e.preventDefault();
      action();
    }
  });
}
