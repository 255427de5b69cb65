// The snippet's stub queues commands; the SDK replays them in order when it loads. The
// snippet shown in README.md and used by the demo is exactly the built one.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import vm from 'node:vm';
import { install } from '../src/sdk.js';
import { fakeGateway, fakeStorage, fakeWindow, tick } from './helpers.js';

const read = (p) => readFileSync(new URL('../' + p, import.meta.url), 'utf8');
const SNIPPET = read('dist/snippet.min.js').trim();
const CONFIG = '{endpoint:"https://t.example.com",lang:"zh"}';

// Plain data out of the script's realm (deepStrictEqual compares prototypes).
const plain = (x) => JSON.parse(JSON.stringify(x));

// Runs `code` as a classic script of a page whose window is `win`.
function runScript(code, win) {
  win.window = win;
  const ctx = vm.createContext(win);
  vm.runInContext(code, ctx);
  return ctx;
}

test('the snippet queues init, then loads <endpoint>/sdk.js asynchronously', () => {
  const win = fakeWindow();
  runScript(SNIPPET, win);
  const stub = win.ConsentGateway;
  assert.equal(typeof stub, 'function');
  assert.equal(stub.q.length, 1);
  assert.deepEqual(plain(Array.from(stub.q[0])), ['init', { endpoint: 'https://t.example.com', lang: 'zh' }]);
  const [script] = win.document.head.children;
  assert.equal(script.tagName, 'SCRIPT');
  assert.equal(script.src, 'https://t.example.com/sdk.js');
  assert.equal(script.async, true);
});

test('stub calls queue in order and return Promises', () => {
  const win = fakeWindow();
  runScript(SNIPPET, win);
  const p = win.ConsentGateway('track', 'search', { keyword: '轴承' });
  win.ConsentGateway('consent.open');
  assert.equal(typeof p.then, 'function');
  assert.deepEqual(
    plain(win.ConsentGateway.q.map((a) => Array.from(a))),
    [['init', { endpoint: 'https://t.example.com', lang: 'zh' }], ['track', 'search', { keyword: '轴承' }], ['consent.open']],
  );
});

test('install() replays the queue in order and settles the stub Promises', async () => {
  const win = fakeWindow();
  runScript(SNIPPET, win);
  const seen = [];
  const tracked = win.ConsentGateway('track', 'search', { keyword: 'x' });
  const opened = win.ConsentGateway('consent.open');
  const bad = win.ConsentGateway('no.such.command');
  const fake = {
    version: 't',
    init: (o) => (seen.push(['init', o.endpoint]), Promise.resolve('state')),
    track: (type, f) => (seen.push(['track', type, f.keyword]), Promise.resolve(true)),
    consent: {
      open() {
        seen.push(['open', this === fake.consent]);
        return Promise.resolve();
      },
    },
  };
  const api = install(win, fake);
  assert.equal(win.ConsentGateway, api);
  assert.deepEqual(seen, [['init', 'https://t.example.com'], ['track', 'search', 'x'], ['open', true]]);
  assert.equal(await tracked, true);
  assert.equal(await opened, undefined);
  await assert.rejects(bad, /unknown command/);
  // the API is callable the same way, and by method
  await api('track', 'click', { keyword: 'y' });
  await api.track('click', { keyword: 'z' });
  assert.deepEqual(seen.slice(3), [['track', 'click', 'y'], ['track', 'click', 'z']]);
  assert.equal(install(win, { version: 'other' }), api, 'a second copy keeps the first');
});

test('snippet then the real dist/sdk.js: the queued commands run against the gateway', async () => {
  const gw = fakeGateway(['personalization']);
  const win = fakeWindow({ href: 'https://shop.example.com/p/6204', title: '6204' });
  win.fetch = gw.fetch;
  win.localStorage = fakeStorage();
  Object.assign(win, { setTimeout, clearTimeout, Promise, URL, TextEncoder, Uint8Array, crypto: globalThis.crypto, Blob });
  runScript(SNIPPET, win);
  const tracked = win.ConsentGateway('track', 'search', { keyword: '轴承' });
  runScript(read('dist/sdk.js'), win);
  assert.equal(typeof win.ConsentGateway.track, 'function');
  assert.equal(await tracked, true);
  await win.ConsentGateway('flush');
  const events = gw.posts.flatMap((b) => b.events);
  assert.deepEqual(events.map((e) => e.type).sort(), ['page_view', 'search']);
  assert.equal(events.find((e) => e.type === 'page_view').url, 'https://shop.example.com/p/6204');
  await tick();
});

test('README.md shows the built snippet exactly, with the noscript pixel', () => {
  const readme = read('README.md');
  assert.ok(readme.includes(SNIPPET), 'README snippet is dist/snippet.min.js');
  assert.ok(SNIPPET.includes(CONFIG));
  assert.match(readme, /<noscript><img src="https:\/\/t\.example\.com\/p\.gif"[^>]*><\/noscript>/);
});

test('the demo uses the built snippet with endpoint location.origin, in the language of ?lang', () => {
  const demo = read('demo/index.html');
  assert.ok(demo.includes(SNIPPET.replace(CONFIG, '{endpoint:location.origin,lang:DEMO.lang}')));
  assert.match(demo, /<html lang="zh-CN">/);
  // DEMO (the language, and the inspector's hooks) is defined before the snippet runs
  assert.ok(demo.indexOf('var DEMO =') < demo.indexOf(SNIPPET.slice(0, 40)));
});
