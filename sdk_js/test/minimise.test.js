// Field minimisation: a field whose purpose is not granted is never in a payload, and an
// event with nothing left is not sent at all.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { create, minimise, grantedOf } from '../src/sdk.js';
import { POLICY, PURPOSES, fakeGateway, fakeTimers, freshPolicy, stateOf, tick } from './helpers.js';

const ENVELOPE = ['event_id', 'type', 'ts'];
const SAMPLE = { gps: { lat: 31.2, lon: 121.5, accuracy: 10 }, quantity: 2, price: 9.5, action: 'add', channel: 'chat' };

// An event of `type` carrying every field any event type has, gps, and fields no type has.
function everything(type) {
  const ev = { event_id: 'e'.repeat(32), type, ts: '2026-11-25T10:00:00.000Z' };
  for (const t of Object.values(POLICY.event_types)) for (const f of Object.keys(t.fields)) ev[f] = SAMPLE[f] || 'x';
  return Object.assign(ev, { gps: SAMPLE.gps, ip: '1.2.3.4', city: 'Shanghai', unknown: 'y' });
}

// Every subset of the optional purposes.
function* subsets() {
  const optional = PURPOSES.filter((p) => p !== 'necessary');
  for (let m = 0; m < 1 << optional.length; m++) yield optional.filter((_, i) => m & (1 << i));
}

test('no field of an ungranted purpose, for every event type and every combination of grants', () => {
  const policy = freshPolicy();
  for (const type of Object.keys(POLICY.event_types)) {
    for (const granted of subsets()) {
      const g = grantedOf(stateOf(granted));
      const out = minimise(everything(type), policy, g);
      const fieldsOf = POLICY.event_types[type].fields;
      const allowed = Object.keys(fieldsOf).filter((f) => g[fieldsOf[f]]);
      if (g.precise_location) allowed.push('gps');
      if (!allowed.length) {
        assert.equal(out, null, `${type} with ${granted}: nothing left, nothing sent`);
        continue;
      }
      assert.deepEqual(Object.keys(out).filter((k) => !ENVELOPE.includes(k)).sort(), allowed.sort(), `${type} with ${granted}`);
      for (const k of ENVELOPE) assert.ok(k in out);
    }
  }
});

test('fields are judged by their purpose for the event type (design_usage is account security)', () => {
  const policy = freshPolicy();
  const ev = { event_id: 'abcdefgh', type: 'design_usage', software: 'CAD', product: 'bearing', model: '6204' };
  assert.equal(minimise(ev, policy, { necessary: true, personalization: true }), null);
  assert.deepEqual(minimise(ev, policy, { necessary: true, account_security: true }), ev);
  const search = { event_id: 'abcdefgh', type: 'search', product: 'bearing' };
  assert.equal(minimise(search, policy, { necessary: true, account_security: true }), null);
});

test('unknown types, gateway-derived fields and empty values are never sent', () => {
  const policy = freshPolicy();
  const all = grantedOf(stateOf(PURPOSES));
  assert.equal(minimise({ event_id: 'abcdefgh', type: 'no_such_type', url: 'https://a' }, policy, all), null);
  const out = minimise({ event_id: 'abcdefgh', type: 'page_view', url: 'https://a/', referrer: '', title: null, ip: '1.1.1.1', browser: 'x' }, policy, all);
  assert.deepEqual(out, { event_id: 'abcdefgh', type: 'page_view', url: 'https://a/' });
});

test('only necessary granted: nothing is sent, whatever the event', () => {
  const policy = freshPolicy();
  for (const type of Object.keys(POLICY.event_types)) assert.equal(minimise(everything(type), policy, { necessary: true }), null);
});

test('Global Privacy Control takes advertising away from the grants', () => {
  const s = stateOf(['advertising', 'personalization']);
  assert.ok(grantedOf(s, false, POLICY).advertising);
  assert.equal(grantedOf(s, true, POLICY).advertising, undefined);
  assert.ok(grantedOf(s, true, POLICY).personalization);
  // without the policy, GPC cannot tell which purpose advertises: nothing counts as granted
  assert.deepEqual(grantedOf(s, true), {});
  assert.ok(grantedOf(s, false).advertising);
});

async function sdkWith(granted, manual) {
  const gw = fakeGateway(granted);
  const sdk = create({ fetch: gw.fetch, storage: null, ...fakeTimers(manual) });
  await sdk.init({ endpoint: 'https://t.example.com/' });
  return { gw, sdk };
}

test('before any consent the SDK sends nothing but policy and consent calls', async () => {
  const { gw, sdk } = await sdkWith(null);
  assert.equal(await sdk.track('search', { keyword: '轴承' }), false);
  assert.equal(await sdk.track('page_view', { url: 'https://shop.example.com/', gps: SAMPLE.gps }), false);
  await sdk.flush();
  assert.deepEqual(
    gw.calls.map((c) => c.method + ' ' + c.path),
    ['GET /v1/policy', 'GET /v1/consent'],
  );
});

test('after rejecting everything nothing is sent; after granting only the granted fields are', async () => {
  const { gw, sdk } = await sdkWith(null);
  await sdk.consent.grant({ personalization: false, advertising: false }, 'banner');
  await sdk.track('cart', { action: 'add', quantity: 1, gps: SAMPLE.gps });
  await sdk.flush();
  assert.equal(gw.posts.length, 0);

  await sdk.consent.grant({ personalization: true }, 'settings');
  assert.equal(await sdk.track('cart', { action: 'add', product: '轴承', quantity: '3', gps: SAMPLE.gps, ip: '1.2.3.4' }), true);
  assert.equal(await sdk.track('design_usage', { software: 'CAD' }), false); // account_security not granted
  await sdk.flush();
  assert.equal(gw.posts.length, 1);
  const [ev] = gw.posts[0].events;
  assert.match(ev.event_id, /^[0-9a-f]{32}$/);
  assert.ok(!Number.isNaN(Date.parse(ev.ts)));
  assert.deepEqual(
    { ...ev, event_id: 0, ts: 0 },
    { event_id: 0, ts: 0, type: 'cart', action: 'add', product: '轴承', quantity: 3 }, // "3" made a number
  );
});

test('a withdrawal takes the withdrawn fields out of events still queued', async () => {
  const { gw, sdk } = await sdkWith(['personalization', 'precise_location'], true); // no timed flush
  await sdk.track('search', { keyword: 'x', gps: SAMPLE.gps });
  await sdk.track('page_view', { gps: SAMPLE.gps });
  await sdk.consent.withdraw('precise_location');
  assert.equal(JSON.parse(gw.calls.at(-1).init.body).purposes.precise_location, false);
  await sdk.flush();
  await tick();
  const sent = gw.posts.flatMap((b) => b.events);
  assert.equal(sent.length, 1, 'the gps-only page_view has nothing left');
  assert.equal(sent[0].keyword, 'x');
  assert.equal(sent[0].gps, undefined);
});
