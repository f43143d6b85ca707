// "This is spam" and "Not spam": ask before the server may read the message, teach the appliance's spam filter
// with the decrypted original (POST /api/learn/...), then move it (POST /api/move). Training is optional: when
// the user declines or the appliance has no filter to teach, the message is only moved; when the move fails,
// nothing moved and the user is told why.

import { ApiError, learn } from '../api.js';
import { $, status } from './dom.js';

const QUESTION = 'Send this message to your server’s spam filter so it learns? '
  + 'The server reads it once and keeps nothing.';

// 'learn' (send it, then move), 'move' (only move) or '' (cancel: Esc, or the Cancel button).
function askConsent(toSpam) {
  const dialog = $('learn-dialog');
  if (dialog.open) return Promise.resolve('');
  $('learn-title').textContent = toSpam ? 'This is spam' : 'Not spam';
  $('learn-question').textContent = QUESTION;
  $('learn-then').textContent = toSpam
    ? 'Either way, the message moves to Spam.' : 'Either way, the message moves to your inbox.';
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue || ''), { once: true });
    dialog.showModal();
    $('learn-yes').focus();
  });
}

// What became of the training, in words: {text, error}.
async function teach(store, path, toSpam) {
  let original;
  try {
    original = await store.fetchOriginal(path);
  } catch {
    return { text: 'The spam filter was not taught: the original message could not be read.', error: true };
  }
  try {
    const answer = await learn(toSpam ? 'spam' : 'ham', original);
    return answer.learned
      ? { text: 'Your server’s spam filter learned from it.', error: false }
      : { text: 'Your server’s spam filter had already learned from this message.', error: false };
  } catch (e) {
    if (!(e instanceof ApiError)) return { text: `The spam filter was not taught: ${e.message}.`, error: true };
    if (e.status === 503) {
      return { text: 'Training is not available: this server has no spam filter to teach.', error: false };
    }
    if (e.status === 413) return { text: 'The spam filter was not taught: the message is too large.', error: true };
    if (e.status === 502) return { text: 'The spam filter was not taught: it failed on the server. Try again later.', error: true };
    return { text: `The spam filter was not taught: ${e.message}.`, error: true };
  }
}

function moveFailure(e) {
  if (e instanceof ApiError && e.status === 404) {
    return 'the message is no longer there (another device may have moved or deleted it).';
  }
  if (e instanceof ApiError && e.status === 409) return 'the other folder already holds a message with the same name.';
  return `${e.message}.`;
}

// {moved: true} when the message moved (or, judged spam but kept in Mail/In by the appliance, is now marked
// not spam); {moved: false} when the user cancelled or the server refused the move (`gone` after a 404).
export async function trainAndMove(store, item, toSpam) {
  const choice = await askConsent(toSpam);
  if (!choice) return { moved: false };
  status('app-status', choice === 'learn' ? 'Teaching your server’s spam filter…' : 'Moving…');
  const taught = choice === 'learn' ? await teach(store, item.p, toSpam) : { text: '', error: false };
  try {
    await store.moveTo(item.p, toSpam ? 'spam' : 'inbox');
  } catch (e) {
    status('app-status', `${taught.text} Nothing was moved: ${moveFailure(e)}`.trim(), true);
    return { moved: false, gone: e instanceof ApiError && e.status === 404 };
  }
  status('app-status', `${toSpam ? 'Moved to Spam.' : 'Moved to the inbox.'} ${taught.text}`.trim(), taught.error);
  return { moved: true };
}
