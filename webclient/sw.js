// The service worker: keeps the application shell (this client's own files: the page, the style sheet, the
// modules, the vendored code, the icons) so that the client opens without a network, to the login screen, and can
// be installed on a phone's home screen. It keeps nothing else: never mail, never an /api/ answer, never the
// answer to anything but a GET of one of the shell's files. It writes to its cache only while it installs.
//
// The server puts one line before this file (mailiverse/web/assets.py, service_worker): the release's `version`
// (a hash of every file of the client and of this worker) and its `files`. A release that changes any file so
// changes the worker's bytes; the browser, which checks /sw.js on every navigation (served no-cache), installs
// the new worker, which fetches the new release's files into a cache of its own.
//
// Strategy: cache first, from the cache of exactly one release. Every file of a page comes from the same release
// (a module of a new release never meets one of an old), and a start needs no round trip per file. A new release
// is picked up one step later: the new worker waits until the page says to go ahead (js/pwa.js: at once on an
// untouched login screen, else when the user presses Reload), then deletes the older caches as it takes over.

const { version, files } = self.MAILIVERSE_SHELL;
const PREFIX = 'mailiverse-shell-';
const CACHE = PREFIX + version;
const SHELL = new Set(files);

self.addEventListener('install', (event) => {
  // Each file asked of the server again ('no-cache': a copy in the HTTP cache only if the server answers 304), so
  // an older copy there cannot end up in the new release's cache, yet the page's own fresh loads are not fetched
  // twice. One file missing fails the install; the previous worker stays in charge with its own cache whole.
  event.waitUntil(caches.open(CACHE).then((cache) =>
    cache.addAll(files.map((path) => new Request(path, { cache: 'no-cache' })))));
});

self.addEventListener('message', (event) => {
  if (event.data === 'take-over') self.skipWaiting();
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    const names = await caches.keys();
    await Promise.all(names.filter((name) => name.startsWith(PREFIX) && name !== CACHE)
      .map((name) => caches.delete(name)));
    // The first worker also serves the page that registered it (its later loads: workers, lazy modules).
    await self.clients.claim();
  })());
});

// The shell's file a request asks for, or null: anything else (the API, mail, another origin, a non-GET, a file
// of a newer release this worker does not know) goes to the network untouched.
function shellPath(request) {
  if (request.method !== 'GET') return null;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin || url.pathname.startsWith('/api/')) return null;
  const path = request.mode === 'navigate' && url.pathname === '/' ? '/index.html' : url.pathname;
  return SHELL.has(path) ? path : null;
}

self.addEventListener('fetch', (event) => {
  const path = shellPath(event.request);
  if (path === null) return;
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    return (await cache.match(path)) || fetch(event.request);
  })());
});
