// The verdict on screen: the reader's banners (who sent it, why it is in Spam, the checks in detail) and the
// list row's small marker. Words come from mail/verdict.js; every string goes in as text, never as HTML.

import { describeCheck, failedChecks, isFailed, spamReason, verdictText } from '../mail/verdict.js';
import { h } from './dom.js';

const ICONS = { verified: '✓', unverified: '?', failed: '⚠' };

// The list marker for an index record's verdict: {mark, label} or null (nothing shown for unverified mail).
export function rowMarker(verdict) {
  if (verdict === 'verified') {
    return { mark: h('span', { class: 'mark verified', title: 'Verified sender', 'aria-hidden': 'true' }, ICONS.verified),
      label: 'Verified sender. ' };
  }
  if (verdict === 'failed') {
    return { mark: h('span', { class: 'mark failed', title: 'Warning: the sender failed the checks that prove who sent it',
      'aria-hidden': 'true' }, ICONS.failed), label: 'Warning: sender not proven. ' };
  }
  return null;
}

function spamLine(spam) {
  const by = spam.checker === 'rspamd' ? 'Spam filter (rspamd)' : 'Built-in spam check';
  const score = spam.score !== null ? `, score ${spam.score}${spam.threshold !== null ? ` (spam from ${spam.threshold})` : ''}` : '';
  const rules = spam.symbols.length ? `; rules that matched: ${spam.symbols.join(', ')}` : '';
  return `${by}: ${spam.spam ? 'spam' : 'not spam'}${score}${rules}`;
}

// The expandable list of every check; its one-line summary names the checks that failed.
function checkDetails(auth, spam) {
  const failed = failedChecks(auth);
  const lines = (auth ? auth.results : []).map((r) => h('li', { class: isFailed(r) ? 'bad' : null }, describeCheck(r)));
  if (spam) lines.push(h('li', { class: spam.spam ? 'bad' : null }, spamLine(spam)));
  if (!lines.length) return null;
  const title = failed.length ? `Checks that failed: ${failed.join(', ')}` : 'Details of the checks';
  return h('details', { class: 'checks' }, h('summary', {}, title), h('ul', {}, lines));
}

// {top, sender}: `top` goes above the headers (the warning and the Spam notice), `sender` under From
// (verified or not verified, said quietly). Either may be null; a message without verdicts shows neither.
export function verdictViews(summary, folder) {
  const auth = summary.authentication;
  const spam = summary.spam;
  const details = checkDetails(auth, spam);
  let placed = false;
  const top = [];
  let sender = null;
  if (auth) {
    const { level, text } = verdictText(auth, summary.from.email);
    const view = h('div', { class: `verdict ${level}`, id: 'verdict', role: level === 'failed' ? 'alert' : 'note',
      'data-verdict': level },
    h('span', { class: 'verdict-icon', 'aria-hidden': 'true' }, ICONS[level]), ' ',
    h('span', { class: 'verdict-text' }, text), details);
    placed = !!details;
    if (level === 'failed') top.push(view);
    else sender = view;
  }
  if (folder === 'spam') {
    const reason = spamReason(auth, spam);
    top.unshift(h('div', { class: 'verdict spam', id: 'spam-notice', role: 'note' },
      h('strong', {}, 'This message is in Spam. '),
      reason ? `Why: ${reason}.` : 'It was moved here.',
      ' If it is mail you want, choose “Not spam”.',
      placed ? null : details));
  }
  return { top: top.length ? top : null, sender };
}
