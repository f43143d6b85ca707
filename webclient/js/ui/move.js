// The "Move to another appliance" page (a dialog from the account menu): asks for the new appliance, the user
// name and password there and the grace period, runs the move (mail/moving.js) with its progress, and shows the
// summary mailiverse-client move prints. Nothing is deleted here.

import { DEFAULT_GRACE_DAYS, loginRemote, Move, newOrigin, Remote } from '../mail/moving.js';
import { $, h, status } from './dom.js';

function day(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}

function summary(report) {
  const rows = [
    ['Moved to', report.newAddress],
    ['Objects', String(report.objects)],
    ['Copied', `${report.copied} (${report.copiedBytes} bytes); already there: ${report.already}`],
    ['Verified', `${report.verified} of ${report.objects} with equal SHA-256`],
    ['Keys brought', report.keysBrought.join(', ') || '-'],
  ];
  if (report.forwarded || report.awaiting) {
    rows.push(['Arrived after the copy', `${report.forwarded} forwarded, ${report.awaiting} waiting to be forwarded`]);
  }
  if (report.forwardUntil !== null) rows.push(['Forwarding until', day(report.forwardUntil)]);
  return rows;
}

// Wires the account menu's button and the dialog; `sessionOf()` is the logged-in session of this appliance.
export function installMovePage(sessionOf) {
  const dialog = $('move-dialog');
  const form = $('move-form');
  const bar = $('move-progress');
  const log = $('move-log');
  const result = $('move-summary');
  let running = false;

  const line = (text) => {
    log.append(h('li', {}, text));
    log.hidden = false;
  };

  $('move-button').addEventListener('click', () => {
    $('account-menu').hidden = true;
    const session = sessionOf();
    if (!session) return;
    if (!running) {
      status('move-status', '');
      $('move-user').value = session.name;
      if (!$('move-grace').value) $('move-grace').value = String(DEFAULT_GRACE_DAYS);
      $('move-from').textContent = session.account.addresses.join(', ');
    }
    dialog.showModal();
  });
  $('move-cancel').addEventListener('click', () => dialog.close());
  dialog.addEventListener('cancel', (e) => { if (running) e.preventDefault(); });

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (running) return;
    const session = sessionOf();
    let origin;
    try {
      origin = newOrigin($('move-url').value);
    } catch (err) {
      status('move-status', err.message, true);
      return;
    }
    const graceDays = Number($('move-grace').value);
    running = true;
    form.classList.add('busy');
    for (const el of form.elements) el.disabled = true;
    log.replaceChildren();
    result.replaceChildren();
    result.hidden = true;
    bar.hidden = false;
    bar.removeAttribute('value');
    const remote = new Remote(origin);
    try {
      status('move-status', `Logging in at ${origin}…`);
      const neu = await loginRemote(remote, $('move-user').value, $('move-password').value, line);
      $('move-password').value = '';
      line(`Logged in at ${origin} as ${neu.addresses[0] || neu.name}`);
      status('move-status', 'Moving…');
      const move = new Move(session, remote, neu, {
        graceDays,
        progress: (text, done, total) => {
          if (text) line(text);
          if (total) {
            bar.max = total;
            bar.value = done;
          }
        },
      });
      const report = await move.run();
      bar.max = 1;
      bar.value = 1;
      for (const [name, value] of summary(report)) result.append(h('dt', {}, name), h('dd', {}, value));
      result.hidden = false;
      status('move-status', `Moved to ${report.newAddress}. Mail to your old address is now refused with its new one`
        + ' and forwarded during the grace period; nothing was deleted here.');
    } catch (err) {
      bar.hidden = true;
      const text = err.code === 'auth_failed' ? 'The user name or password at the new appliance is wrong.' : err.message;
      status('move-status', `Not moved: ${text}. Running the move again resumes it.`, true);
    } finally {
      try {
        if (remote.token) await remote.call('POST', '/api/logout', { json: {} });
      } catch {
        // the session there ends on its own
      }
      running = false;
      form.classList.remove('busy');
      for (const el of form.elements) el.disabled = false;
    }
  });
}
