// The queue: bounded, batched, and kept in localStorage only while personalization is granted.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { create, cut, MAX_BATCH, MAX_BYTES, MAX_QUEUE } from '../src/sdk.js';
import { fakeGateway, fakeStorage, fakeTimers } from './helpers.js';

const KEY = 'cg_q';
const stored = (storage) => JSON.parse(storage.getItem(KEY) || '[]');

async function sdkWith(granted, { storage = fakeStorage(), answers, manual = true } = {}) {
  const gw = fakeGateway(granted, answers);
  const timers = fakeTimers(manual);
  const sdk = create({ fetch: gw.fetch, storage, ...timers });
  await sdk.init({ endpoint: 'https://t.example.com' });
  return { gw, sdk, storage, timers };
}

test('the queue holds at most MAX_QUEUE events and drops the oldest', async () => {
  // The gateway never answers: nothing leaves the queue.
  const { sdk, storage } = await sdkWith(['personalization'], { answers: Array(20).fill('hang') });
  for (let i = 0; i < MAX_QUEUE + 150; i++) await sdk.track('search', { keyword: 'k' + i });
  const q = stored(storage);
  assert.equal(q.length, MAX_QUEUE);
  assert.equal(q[0].keyword, 'k150');
  assert.equal(q.at(-1).keyword, 'k' + (MAX_QUEUE + 149));
});

test('batches hold at most MAX_BATCH events and MAX_BYTES bytes', () => {
  const small = Array.from({ length: 250 }, (_, i) => ({ event_id: 'id' + i, type: 'search', keyword: 'k' }));
  assert.equal(cut(small).length, MAX_BATCH);
  const big = Array.from({ length: 50 }, (_, i) => ({ event_id: 'id' + i, type: 'page_view', url: 'https://a/' + '页'.repeat(2000) }));
  const batch = cut(big);
  assert.ok(batch.length < 50 && batch.length > 1);
  assert.ok(Buffer.byteLength(JSON.stringify({ events: batch })) <= MAX_BYTES);
  assert.equal(cut([big[0]]).length, 1);
});

test('a flush sends everything queued, 100 a request', async () => {
  const { gw, sdk } = await sdkWith(['personalization']);
  for (let i = 0; i < 230; i++) await sdk.track('search', { keyword: 'k' + i });
  await sdk.flush();
  assert.deepEqual(gw.posts.map((b) => b.events.length), [100, 100, 30]);
  const ids = new Set(gw.posts.flatMap((b) => b.events.map((e) => e.event_id)));
  assert.equal(ids.size, 230);
  const events = gw.calls.filter((c) => c.path === '/v1/events');
  for (const c of events) {
    assert.equal(c.init.keepalive, true);
    assert.equal(c.init.credentials, 'include');
    assert.equal(typeof c.init.body, 'string'); // sent as text/plain: no preflight
  }
});

test('queued events are stored while personalization is granted, and not when it is withdrawn', async () => {
  const { sdk, storage } = await sdkWith(['personalization', 'account_security']);
  await sdk.track('search', { keyword: 'a' });
  assert.equal(stored(storage).length, 1);
  await sdk.consent.withdraw(['personalization']);
  assert.equal(storage.getItem(KEY), null);
  // an account-security event is queued in memory, never stored without personalization
  assert.equal(await sdk.track('design_usage', { software: 'CAD' }), true);
  assert.equal(storage.getItem(KEY), null);
});

test('a sent queue is removed from storage', async () => {
  const { sdk, storage } = await sdkWith(['personalization']);
  await sdk.track('search', { keyword: 'a' });
  assert.equal(stored(storage).length, 1);
  await sdk.flush();
  assert.equal(storage.getItem(KEY), null);
});

const old = (keyword, ageMs) => ({
  event_id: 'stored-' + keyword.padEnd(8, '0'),
  type: 'search',
  ts: new Date(Date.now() - ageMs).toISOString(),
  keyword,
  gps: { lat: 1, lon: 2, accuracy: 3 },
});

test('the next page sends what the previous one left, when personalization is granted', async () => {
  const storage = fakeStorage({ [KEY]: JSON.stringify([old('fresh', 60e3), old('stale', 8 * 864e5)]) });
  const { gw, sdk } = await sdkWith(['personalization'], { storage });
  await sdk.flush();
  const sent = gw.posts.flatMap((b) => b.events);
  assert.deepEqual(sent.map((e) => e.keyword), ['fresh']); // too old for the gateway: dropped
  assert.equal(sent[0].event_id, 'stored-fresh000'); // the same id: stored once if sent before
  assert.equal(sent[0].gps, undefined); // precise_location is not granted
});

test('without personalization a stored queue is cleared, not sent', async () => {
  const storage = fakeStorage({ [KEY]: JSON.stringify([old('fresh', 60e3)]) });
  const { gw, sdk } = await sdkWith(['account_security', 'precise_location'], { storage });
  await sdk.flush();
  assert.equal(gw.posts.length, 0);
  assert.equal(storage.getItem(KEY), null);
});

test('storage that throws does not stop tracking', async () => {
  const boom = () => {
    throw new Error('SecurityError');
  };
  const { gw, sdk } = await sdkWith(['personalization'], { storage: { getItem: boom, setItem: boom, removeItem: boom } });
  assert.equal(await sdk.track('search', { keyword: 'a' }), true);
  await sdk.flush();
  assert.equal(gw.posts.length, 1);
});

test('events are sent on their own after a short delay', async () => {
  const { gw, sdk, timers } = await sdkWith(['personalization']);
  await sdk.track('search', { keyword: 'a' });
  await sdk.track('search', { keyword: 'b' });
  assert.ok(timers.delays.includes(1000));
  timers.run();
  await sdk.flush();
  assert.equal(gw.posts.length, 1);
  assert.equal(gw.posts[0].events.length, 2);
});
