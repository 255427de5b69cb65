// The SDK in a (fake) page: consent calls, page views, data attributes, beacons, banner.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { create } from '../src/sdk.js';
import { element, fakeGateway, fakeStorage, fakeTimers, fakeWindow, response, stateOf, tick } from './helpers.js';

async function page(granted, opts) {
  opts = opts || {};
  const gw = fakeGateway(granted);
  if (opts.state) gw.state = opts.state;
  const win = fakeWindow(opts);
  const timers = fakeTimers(opts.manual);
  const sdk = create({ window: win, fetch: gw.fetch, storage: fakeStorage(), ...timers });
  const state = await sdk.init(Object.assign({ endpoint: 'https://t.example.com' }, opts.init));
  return { gw, win, sdk, state, timers };
}
const sent = (gw) => gw.posts.flatMap((b) => b.events);
const lastConsent = (gw) => gw.calls.filter((c) => c.path.startsWith('/v1/consent')).at(-1);
const bannerScript = (win) => win.document.head.children.find((e) => e.tagName === 'SCRIPT');

test('init loads the policy and the state; consent calls send credentials', async () => {
  const { gw, state } = await page(['personalization']);
  assert.equal(state.recorded, true);
  assert.deepEqual(gw.calls.slice(0, 2).map((c) => c.method + ' ' + c.path), ['GET /v1/policy', 'GET /v1/consent']);
  for (const c of gw.calls) assert.equal(c.init.credentials, 'include');
});

test('grant posts the current policy version; withdraw() is one DELETE; withdraw(list) posts false', async () => {
  const { gw, sdk } = await page(null);
  const r = await sdk.consent.grant({ personalization: true, account_security: true }, 'banner');
  assert.ok(r.receipt && r.state.purposes.personalization.granted);
  assert.deepEqual(JSON.parse(lastConsent(gw).init.body), {
    policy_version: '2026-11-01',
    purposes: { personalization: true, account_security: true },
    source: 'banner',
  });
  await sdk.consent.withdraw(['account_security'], 'settings');
  assert.deepEqual(JSON.parse(lastConsent(gw).init.body).purposes, { account_security: false });
  await sdk.consent.withdraw();
  assert.equal(lastConsent(gw).method, 'DELETE');
  assert.equal(lastConsent(gw).path, '/v1/consent');
  assert.equal((await sdk.consent.get()).purposes.personalization.granted, false);
});

test('a gateway error rejects with its status and body', async () => {
  const gw = fakeGateway(null);
  const refuse = response(400, { error: { code: 'validation_failed', message: 'unknown purpose: nope' } });
  const fetch = (url, init) => (init.method === 'POST' ? Promise.resolve(refuse) : gw.fetch(url, init));
  const sdk = create({ fetch, storage: null, ...fakeTimers(true) });
  await sdk.init({ endpoint: 'https://t.example.com' });
  await assert.rejects(sdk.consent.grant({ nope: true }), (e) => {
    return e.status === 400 && e.body.error.code === 'validation_failed' && /unknown purpose/.test(e.message);
  });
});

test('calls before init reject; track resolves false', async () => {
  const sdk = create({ fetch: fakeGateway(null).fetch, storage: null, ...fakeTimers(true) });
  await assert.rejects(sdk.consent.get(), /init first/);
  assert.equal(await sdk.track('search', { keyword: 'a' }), false);
});

test('under Global Privacy Control advertising is never granted', async () => {
  const { gw, sdk } = await page(null, { navigator: { globalPrivacyControl: true } });
  await sdk.consent.grant({ personalization: true, advertising: true });
  assert.deepEqual(JSON.parse(gw.calls.at(-1).init.body).purposes, { personalization: true, advertising: false });
});

test('a page_view goes out on init only when personalization is granted', async () => {
  const no = await page(['account_security'], { href: 'https://shop.example.com/a', title: 'A' });
  await no.sdk.flush();
  assert.equal(sent(no.gw).length, 0);

  const yes = await page(['personalization'], { href: 'https://shop.example.com/a', title: 'A', referrer: 'https://search.example/' });
  await yes.sdk.flush();
  const [pv] = sent(yes.gw);
  assert.equal(pv.type, 'page_view');
  assert.deepEqual([pv.url, pv.referrer, pv.title], ['https://shop.example.com/a', 'https://search.example/', 'A']);
});

test('autoPageViews: false sends none', async () => {
  const { gw, sdk } = await page(['personalization'], { init: { autoPageViews: false } });
  await sdk.flush();
  assert.equal(sent(gw).length, 0);
});

test('granting personalization sends the page view of the page the visitor is on', async () => {
  const { gw, sdk } = await page(null, { href: 'https://shop.example.com/b' });
  await sdk.flush();
  assert.equal(sent(gw).length, 0);
  await sdk.consent.grant({ personalization: true }, 'banner');
  await sdk.flush();
  assert.deepEqual(sent(gw).map((e) => [e.type, e.url]), [['page_view', 'https://shop.example.com/b']]);
});

test('pushState, replaceState and popstate send page views, once per address', async () => {
  const { gw, sdk, win } = await page(['personalization'], { href: 'https://shop.example.com/' });
  win.history.pushState({}, '', '/products');
  win.document.title = 'Products';
  await sdk.flush();
  win.history.replaceState({}, '', '/products'); // same address: no new page view
  await sdk.flush();
  win.location.href = 'https://shop.example.com/about';
  win.fire('window', 'popstate');
  await sdk.flush();
  const views = sent(gw).filter((e) => e.type === 'page_view');
  assert.deepEqual(
    views.map((e) => [e.url, e.referrer]),
    [
      ['https://shop.example.com/', undefined],
      ['https://shop.example.com/products', 'https://shop.example.com/'],
      ['https://shop.example.com/about', 'https://shop.example.com/products'],
    ],
  );
  assert.equal(views[1].title, 'Products', 'the title the router set');
});

test('data-cg-track clicks and search forms send their events with data-cg-* fields', async () => {
  const { gw, sdk, win } = await page(['personalization'], { init: { autoPageViews: false } });
  const button = element('button', {
    'data-cg-track': 'cart',
    'data-cg-action': 'add',
    'data-cg-product': '深沟球轴承',
    'data-cg-model': '6204-2RS',
    'data-cg-quantity': '2',
    'data-cg-unknown': 'dropped',
  });
  const icon = element('span', {}, button);
  win.fire('document', 'click', { target: icon });
  const form = element('form', { 'data-cg-track': 'search' });
  form.elements = { q: { value: ' 轴承 ' } };
  win.fire('document', 'submit', { target: form });
  win.fire('document', 'click', { target: element('button', {}, form) }); // a click inside the form is not the form's event
  win.fire('document', 'click', { target: element('a', {}) });
  await sdk.flush();
  const events = sent(gw).map(({ event_id, ts, ...rest }) => rest);
  assert.deepEqual(events, [
    { type: 'cart', action: 'add', product: '深沟球轴承', model: '6204-2RS', quantity: 2 },
    { type: 'search', keyword: '轴承' },
  ]);
});

test('when the page is hidden the queue goes by sendBeacon as text/plain', async () => {
  const beacons = [];
  const navigator = { sendBeacon: (url, blob) => (beacons.push([url, blob]), true) };
  const { gw, sdk, win } = await page(['personalization'], { navigator, manual: true, init: { autoPageViews: false } });
  await sdk.track('search', { keyword: 'a' });
  win.document.visibilityState = 'hidden';
  win.fire('document', 'visibilitychange');
  assert.equal(beacons.length, 1);
  assert.equal(beacons[0][0], 'https://t.example.com/v1/events');
  assert.equal(beacons[0][1].type, 'text/plain');
  const body = JSON.parse(await beacons[0][1].text());
  assert.deepEqual(body.events.map((e) => e.keyword), ['a']);
  await sdk.flush();
  assert.equal(gw.posts.length, 0, 'handed to the beacon, not sent twice');
  win.fire('window', 'pagehide');
  assert.equal(beacons.length, 1, 'nothing left to send');
});

test('a refused beacon keeps the events for the next flush', async () => {
  const navigator = { sendBeacon: () => false };
  const { gw, sdk, win } = await page(['personalization'], { navigator, manual: true, init: { autoPageViews: false } });
  await sdk.track('search', { keyword: 'a' });
  win.fire('window', 'pagehide');
  await sdk.flush();
  assert.equal(gw.posts.length, 1);
});

test('the banner loads only without a recorded choice, on a policy change, or when opened', async () => {
  const chose = await page(['personalization']);
  await tick();
  assert.equal(bannerScript(chose.win), undefined, 'a visitor who chose does not load it');

  const first = await page(null);
  await tick();
  assert.match(bannerScript(first.win).src, /^https:\/\/t\.example\.com\/sdk-banner\.(\w{8}\.)?js$/);

  const changed = await page(null, { state: stateOf(['account_security'], { needs_reconsent: ['personalization'] }) });
  await tick();
  const script = bannerScript(changed.win);
  assert.ok(script);
  const calls = [];
  changed.win.ConsentGatewayBanner = (ctx) => calls.push(ctx);
  script.onload();
  await tick();
  assert.equal(calls[0].mode, 'reconsent');
  assert.equal(calls[0].lang, 'en');
  assert.equal(typeof calls[0].grant, 'function');

  const opened = changed.sdk.consent.open();
  await opened;
  assert.equal(calls[1].mode, 'settings');
  assert.equal(changed.win.document.head.children.filter((e) => e.tagName === 'SCRIPT').length, 1, 'loaded once');
});

test('a grant made when logging in (saved_login) is no answer to the banner', async () => {
  // Only saved_login decided, from a login form: the visitor never chose on the banner.
  const atLogin = stateOf(['saved_login']);
  for (const p in atLogin.purposes) if (p !== 'necessary') atLogin.purposes[p].decided = p === 'saved_login';
  const loggedIn = await page(null, { state: atLogin });
  await tick();
  const script = bannerScript(loggedIn.win);
  assert.ok(script, 'the banner still asks');
  const calls = [];
  loggedIn.win.ConsentGatewayBanner = (ctx) => calls.push(ctx);
  script.onload();
  await tick();
  assert.equal(calls[0].mode, 'first');

  // A policy change to saved_login alone is asked again at the next login, not by the banner.
  const loginChanged = await page(null, { state: stateOf(['personalization'], { needs_reconsent: ['saved_login'] }) });
  await tick();
  assert.equal(bannerScript(loginChanged.win), undefined);
  const both = await page(null, { state: stateOf([], { needs_reconsent: ['saved_login', 'personalization'] }) });
  await tick();
  assert.ok(bannerScript(both.win));
});

test('consent.grant from a login form posts source "login"', async () => {
  const { gw, sdk } = await page(['personalization']);
  const r = await sdk.consent.grant({ saved_login: true }, 'login');
  assert.equal(r.state.purposes.saved_login.granted, true);
  assert.deepEqual(JSON.parse(lastConsent(gw).init.body), {
    policy_version: '2026-11-01',
    purposes: { saved_login: true },
    source: 'login',
  });
});

test('bannerUrl overrides where the banner comes from', async () => {
  const { win } = await page(null, { init: { bannerUrl: '/static/banner.js' } });
  await tick();
  assert.equal(bannerScript(win).src, '/static/banner.js');
});

test('the privacy settings link is added, in the page language, and opens the settings', async () => {
  const zh = await page(['personalization'], { lang: 'zh-CN' });
  const link = zh.win.document.getElementById('cg-settings-link');
  assert.equal(link.tagName, 'BUTTON');
  assert.equal(link.textContent, '隐私设置');
  assert.match(link.style.cssText, /position:fixed/);
  const calls = [];
  zh.win.ConsentGatewayBanner = (ctx) => calls.push(ctx);
  link.onclick();
  await tick();
  bannerScript(zh.win).onload();
  await tick();
  assert.equal(calls[0].mode, 'settings');
  assert.equal(calls[0].lang, 'zh');

  const en = await page(['personalization'], { lang: 'de' });
  assert.equal(en.win.document.getElementById('cg-settings-link').textContent, 'Privacy settings');
  const forced = await page(['personalization'], { lang: 'en', init: { lang: 'zh' } });
  assert.equal(forced.win.document.getElementById('cg-settings-link').textContent, '隐私设置');
});

test('flush right after init (before it has loaded) still sends the first page view', async () => {
  const gw = fakeGateway(['personalization']);
  const win = fakeWindow({ href: 'https://shop.example.com/x' });
  const sdk = create({ window: win, fetch: gw.fetch, storage: fakeStorage(), ...fakeTimers(true) });
  sdk.init({ endpoint: 'https://t.example.com' });
  await sdk.flush();
  assert.deepEqual(sent(gw).map((e) => e.url), ['https://shop.example.com/x']);
});
