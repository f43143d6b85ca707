// What the appliance found about a message (the twin's `authentication` and `spam` members, docs/protocol.md
// §2.3), read defensively and put into words a reader who knows nothing of SPF or DMARC can act on.

const METHODS = ['spf', 'dkim', 'dmarc', 'arc'];
const RESULTS = ['pass', 'fail', 'softfail', 'neutral', 'none', 'temperror', 'permerror', 'policy'];
const VERDICTS = ['verified', 'unverified', 'failed'];
const POLICIES = ['none', 'quarantine', 'reject'];
const ACTIONS = ['no action', 'greylist', 'add header', 'rewrite subject', 'soft reject', 'reject'];
const MAX_RESULTS = 32;
const MAX_SYMBOLS = 64;
// Results that mean "this check speaks against the sender" (shown as failed checks).
const BAD = ['fail', 'softfail', 'permerror', 'policy'];

function mapping(value) {
  return value && typeof value === 'object' && !Array.isArray(value) ? value : null;
}

function word(value, allowed) {
  return typeof value === 'string' && allowed.includes(value) ? value : '';
}

function name(value) {
  return typeof value === 'string' && value.length <= 253 && /^[A-Za-z0-9._-]*$/.test(value) ? value.toLowerCase() : '';
}

function finite(value) {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

// The `authentication` member as {verdict, results, quarantined}, or null when absent or not understood.
export function readAuthentication(twin) {
  const member = mapping(mapping(twin) && twin.authentication);
  if (!member || !word(member.verdict, VERDICTS)) return null;
  const results = [];
  for (const r of (Array.isArray(member.results) ? member.results : []).slice(0, MAX_RESULTS)) {
    const one = mapping(r);
    if (!one || !word(one.method, METHODS) || !word(one.result, RESULTS)) continue;
    results.push({ method: one.method, result: one.result, domain: name(one.domain), selector: name(one.selector),
      identity: word(one.identity, ['mailfrom', 'helo']), policy: word(one.policy, POLICIES) });
  }
  return { verdict: member.verdict, results, quarantined: member.quarantined === true };
}

// The `spam` member as {spam, score, threshold, checker, action, symbols}, or null.
export function readSpam(twin) {
  const member = mapping(mapping(twin) && twin.spam);
  if (!member || typeof member.spam !== 'boolean') return null;
  const symbols = (Array.isArray(member.symbols) ? member.symbols : [])
    .filter((s) => typeof s === 'string' && /^[A-Z0-9_]{1,64}$/.test(s)).slice(0, MAX_SYMBOLS);
  return { spam: member.spam, score: finite(member.score), threshold: finite(member.threshold),
    checker: word(member.checker, ['rspamd', 'built-in']), action: word(member.action, ACTIONS), symbols };
}

// Whether the appliance itself judged the message to be spam (a failed DMARC quarantine or the spam filter).
export function judgedSpam(auth, spam) {
  return !!((auth && auth.quarantined) || (spam && spam.spam));
}

const CHECK_NAMES = {
  spf: 'Sending server allowed by the domain (SPF)',
  dkim: 'Digital signature (DKIM)',
  dmarc: 'Sender domain’s own rules (DMARC)',
  arc: 'Forwarding chain (ARC)',
};

const RESULT_WORDS = {
  pass: 'passed',
  fail: 'failed',
  softfail: 'failed (the domain calls it doubtful)',
  neutral: 'no answer either way',
  none: 'nothing published to check against',
  temperror: 'could not be checked (the lookup did not answer)',
  permerror: 'could not be checked (the domain’s record is broken)',
  policy: 'failed (refused by local rules)',
};

// "none" means something different for each check.
const NONE_WORDS = {
  spf: 'the domain publishes no list of sending servers',
  dkim: 'the message is not signed',
  dmarc: 'the domain publishes no rules',
  arc: 'it was not forwarded through a sealing server',
};

const POLICY_WORDS = {
  none: 'the domain asks receivers only to report such mail',
  quarantine: 'the domain asks receivers to treat mail failing its checks as spam',
  reject: 'the domain asks receivers to refuse mail failing its checks',
};

export function isFailed(result) {
  return BAD.includes(result.result);
}

// One line per check, for the expandable details.
export function describeCheck(r) {
  const about = r.domain ? ` for ${r.domain}` : '';
  const identity = r.method === 'spf' && r.identity === 'helo' ? ' (server greeting)' : '';
  const policy = r.method === 'dmarc' && r.policy ? `; ${POLICY_WORDS[r.policy]}` : '';
  const result = r.result === 'none' ? NONE_WORDS[r.method] : RESULT_WORDS[r.result];
  return `${CHECK_NAMES[r.method]}${identity}${about}: ${result}${policy}`;
}

// The short names of the checks that failed, e.g. "SPF, DMARC".
export function failedChecks(auth) {
  const names = [];
  for (const r of auth ? auth.results : []) {
    const label = r.method.toUpperCase();
    if (isFailed(r) && !names.includes(label)) names.push(label);
  }
  return names;
}

// The verdict in words: {level: 'verified'|'unverified'|'failed', text}.
export function verdictText(auth, fromEmail) {
  if (auth.verdict === 'verified') {
    const dmarc = auth.results.find((r) => r.method === 'dmarc' && r.result === 'pass');
    const domain = dmarc && dmarc.domain ? dmarc.domain : (fromEmail.split('@')[1] || '');
    return { level: 'verified', text: `Verified sender: ${domain}` };
  }
  if (auth.verdict === 'failed') {
    const who = fromEmail ? ` It may not be from ${fromEmail}.` : '';
    return { level: 'failed',
      text: `Warning: this message failed the checks that prove who sent it.${who} Do not trust links or requests in it.` };
  }
  return { level: 'unverified', text: 'Sender not verified' };
}

// Why a message is in Spam, in words ('' when only the user put it there). `quarantined` alone means the
// appliance filed it as spam, for its sender's DMARC policy or its spam check's score.
export function spamReason(auth, spam) {
  const reasons = [];
  const dmarc = auth && auth.quarantined
    && auth.results.some((r) => r.method === 'dmarc' && isFailed(r) && r.policy === 'quarantine');
  if (dmarc) reasons.push('it failed the checks of the sender’s domain, which asks for such mail to be treated as spam');
  if (spam && spam.spam) {
    const by = spam.checker === 'rspamd' ? 'the spam filter' : 'the built-in spam check';
    const score = spam.score !== null && spam.threshold !== null ? ` (score ${spam.score}, spam from ${spam.threshold})` : '';
    reasons.push(`${by} judged it to be spam${score}`);
  }
  if (!reasons.length && auth && auth.quarantined) reasons.push('your server filed it as spam');
  return reasons.join('; and ');
}
