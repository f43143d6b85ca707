// Turning an HTML mail body into the srcdoc of a sandboxed iframe: scripts, forms, meta refresh,
// event handlers and javascript: URLs removed; remote loads removed (and refused by a CSP meta)
// unless the user allowed them for this message; cid: images inlined as data: URLs.

const DROP = 'script,noscript,iframe,frame,frameset,object,embed,applet,meta,base,link,template,portal,audio source[src^="http"],video source[src^="http"]';
const URL_ATTRS = ['src', 'href', 'action', 'formaction', 'background', 'poster', 'srcset', 'xlink:href', 'data', 'ping', 'cite', 'longdesc', 'lowsrc', 'dynsrc', 'manifest'];
const REMOTE = /^\s*(https?:)?\/\//i;
const CSS_REMOTE = /url\(\s*(['"]?)\s*(?:https?:)?\/\/[^)]*\)/gi;
const CSS_IMPORT = /@import[^;]*;?/gi;

function frameCsp(allowRemote) {
  const remote = allowRemote ? ' https: http:' : '';
  return `default-src 'none'; script-src 'none'; img-src data: blob:${remote}; style-src 'unsafe-inline'; ` +
    `font-src data:; media-src data: blob:; form-action 'none'; frame-src 'none'; base-uri 'none'`;
}

function escapeAttr(text) {
  return text.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
}

function dangerous(value) {
  const squashed = value.replace(/[\u0000-\u0020\u007f-\u00a0]+/g, '').toLowerCase();
  return /^(javascript|vbscript|livescript|mocha|data:text\/html|data:image\/svg|data:application|filesystem|jar):?/.test(squashed) ||
    squashed.startsWith('javascript') || squashed.startsWith('vbscript') || squashed.startsWith('data:text');
}

// A twin made safe by the appliance (docs/protocol.md §2.3.5) carries its remote images as
// data-mv-remote-src/-srcset/-background, which load nothing. They are put back first, so that the
// one rule below (remote loads only once the user allowed them for this message) decides about them
// as about the remote loads of a twin the appliance did not clean.
const INERT_REMOTE = ['src', 'srcset', 'background'];

function restoreRemote(doc) {
  for (const name of INERT_REMOTE) {
    for (const el of doc.querySelectorAll(`[data-mv-remote-${name}]`)) {
      el.setAttribute(name, el.getAttribute(`data-mv-remote-${name}`));
      el.removeAttribute(`data-mv-remote-${name}`);
    }
  }
}

// {srcdoc, remote}: remote = how many remote loads were held back.
export function buildFrame(html, { allowRemote = false, cid = new Map() } = {}) {
  const doc = new DOMParser().parseFromString(String(html), 'text/html');
  let remote = 0;
  restoreRemote(doc);
  for (const el of doc.querySelectorAll(DROP)) el.remove();
  for (const form of doc.querySelectorAll('form')) {
    const box = doc.createElement('div');
    box.append(...form.childNodes);
    form.replaceWith(box);
  }
  for (const el of doc.querySelectorAll('input,button,select,textarea')) el.setAttribute('disabled', '');
  for (const style of doc.querySelectorAll('style')) {
    let css = style.textContent.replace(CSS_IMPORT, () => { remote++; return ''; });
    if (!allowRemote) css = css.replace(CSS_REMOTE, () => { remote++; return 'none'; });
    style.textContent = css;
  }
  for (const el of doc.querySelectorAll('*')) {
    for (const attr of [...el.attributes]) {
      const name = attr.name.toLowerCase();
      const value = attr.value;
      if (name.startsWith('on') || name === 'formaction' || name === 'http-equiv' || name === 'srcdoc') {
        el.removeAttribute(attr.name);
        continue;
      }
      if (name === 'style') {
        if (!allowRemote && CSS_REMOTE.test(value)) {
          remote++;
          el.setAttribute('style', value.replace(CSS_REMOTE, 'none'));
        }
        CSS_REMOTE.lastIndex = 0;
        continue;
      }
      if (!URL_ATTRS.includes(name)) continue;
      if (dangerous(value)) {
        el.removeAttribute(attr.name);
        continue;
      }
      if (/^\s*cid:/i.test(value)) {
        const id = value.trim().slice(4);
        if (cid.has(id)) el.setAttribute(attr.name, cid.get(id));
        else el.removeAttribute(attr.name);
        continue;
      }
      if (name !== 'href' && (REMOTE.test(value) || (name === 'srcset' && /(https?:)?\/\//i.test(value)))) {
        if (!allowRemote) {
          remote++;
          el.removeAttribute(attr.name);
          el.setAttribute('data-mv-blocked', '');
        }
      }
    }
    if (el.tagName === 'A' && el.hasAttribute('href')) {
      el.setAttribute('rel', 'noopener noreferrer');
      el.setAttribute('target', '_blank');
    }
  }
  const head = doc.head ? doc.head.innerHTML : '';
  const body = doc.body ? doc.body.innerHTML : '';
  const srcdoc = '<!doctype html><html><head><meta charset="utf-8">' +
    `<meta http-equiv="Content-Security-Policy" content="${escapeAttr(frameCsp(allowRemote))}">` +
    '<meta name="referrer" content="no-referrer"><base target="_blank">' + head +
    '</head><body>' + body + '</body></html>';
  return { srcdoc, remote };
}

// The sandbox of the reading frame: no scripts, no forms, no same-origin; links may open a new tab.
export const FRAME_SANDBOX = 'allow-popups allow-popups-to-escape-sandbox';
