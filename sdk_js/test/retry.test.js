// The retry policy: which answers are retried, how the wait grows, and that a retry sends
// the same event_ids (so the gateway stores each event once).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ATTEMPTS, FLUSH_DELAY, backoff, create, retryable } from '../src/sdk.js';
import { fakeGateway, fakeStorage, fakeTimers } from './helpers.js';

test('network errors, 429 and 5xx are retried; other answers are not', () => {
  for (const s of [0, 429, 500, 502, 503, 504]) assert.equal(retryable(s), true, String(s));
  for (const s of [200, 202, 400, 401, 403, 404, 405, 413, 415]) assert.equal(retryable(s), false, String(s));
});

test('the wait doubles from about a second, with jitter, and is capped', () => {
  for (let a = 0; a < 6; a++) {
    const base = 1000 * 2 ** a;
    assert.equal(backoff(a, 0), base / 2); // the least jitter
    assert.equal(backoff(a, 0.999999), Math.min(base * 0.9999995, 60000));
    if (a) assert.ok(backoff(a, 0) >= backoff(a - 1, 0.999999), 'grows whatever the jitter');
  }
  assert.equal(backoff(20, 1), 60000);
  assert.equal(backoff(0, 0, 5), 5000, 'Retry-After is honoured');
});

// Two events, one batch, the given answers from /v1/events; the backoff timers fire at
// once, the batching delay never (the test flushes).
async function sendOnce(answers) {
  const gw = fakeGateway(['personalization'], answers);
  const timers = fakeTimers((ms) => ms === FLUSH_DELAY);
  const storage = fakeStorage();
  const sdk = create({ fetch: gw.fetch, storage, random: () => 0.5, ...timers });
  await sdk.init({ endpoint: 'https://t.example.com' });
  await sdk.track('search', { keyword: 'a' });
  await sdk.track('search', { keyword: 'b' });
  await sdk.flush();
  return { gw, sdk, storage, timers };
}

for (const failure of ['network', 429, 503, 500]) {
  test(`${failure} is retried with the same event_ids until accepted`, async () => {
    const { gw, timers } = await sendOnce([failure, failure, failure, 202]);
    assert.equal(gw.posts.length, 4);
    const bodies = gw.posts.map((b) => JSON.stringify(b));
    assert.ok(bodies.every((b) => b === bodies[0]), 'identical requests: same ids, same ts');
    const waits = timers.delays.filter((d) => d !== FLUSH_DELAY);
    assert.deepEqual(waits, [backoff(0, 0.5), backoff(1, 0.5), backoff(2, 0.5)]);
    assert.ok(waits[0] < waits[1] && waits[1] < waits[2]);
  });
}

test('Retry-After of a 503 is waited for', async () => {
  const { gw, timers } = await sendOnce([[503, {}, { 'retry-after': '7' }], 202]);
  assert.equal(gw.posts.length, 2);
  assert.ok(timers.delays.includes(7000));
});

for (const status of [400, 403, 413, 415]) {
  test(`${status} is given up at once, and the events are dropped`, async () => {
    const { gw, sdk } = await sendOnce([status]);
    assert.equal(gw.posts.length, 1);
    await sdk.flush();
    assert.equal(gw.posts.length, 1, 'not sent again');
  });
}

test('a 400 naming one event drops that event and sends the others', async () => {
  const refusal = { error: { code: 'validation_failed', fields: { '$.events[1].keyword': 'too long' } } };
  const { gw } = await sendOnce([[400, refusal], 202]);
  assert.equal(gw.posts.length, 2);
  assert.deepEqual(gw.posts[1].events.map((e) => e.keyword), ['a']);
  assert.equal(gw.posts[1].events[0].event_id, gw.posts[0].events[0].event_id);
});

test('after the last attempt the events stay queued and go with the next flush, same ids', async () => {
  const { gw, sdk, storage } = await sendOnce(Array(ATTEMPTS).fill(503));
  assert.equal(gw.posts.length, ATTEMPTS);
  assert.equal(JSON.parse(storage.getItem('cg_q')).length, 2, 'kept (and stored: personalization)');
  await sdk.flush();
  assert.equal(gw.posts.length, ATTEMPTS + 1);
  assert.equal(JSON.stringify(gw.posts.at(-1)), JSON.stringify(gw.posts[0]));
  assert.equal(storage.getItem('cg_q'), null);
});
