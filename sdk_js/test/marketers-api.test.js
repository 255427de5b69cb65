// The dashboard's calls (src/marketers/api.js) against a fake gateway: the key sent once and
// kept nowhere, the CSRF token on every write, the uniform errors, the retries (key_busy once
// after Retry-After, csrf_failed once with a fresh token), a session that ended, and queries
// one at a time.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApiError, createApi } from '../src/marketers/api.js';

function reply(status, body, headers) {
  const h = new Map(Object.entries(headers || {}).map(([k, v]) => [k.toLowerCase(), v]));
  return {
    status,
    ok: status >= 200 && status < 300,
    headers: { get: (k) => (h.has(k.toLowerCase()) ? h.get(k.toLowerCase()) : null) },
    json: async () => {
      if (body === undefined) throw new SyntaxError('no body');
      return body;
    },
  };
}

/** A fetch answering from `routes` ("METHOD path" -> [reply, ...] taken in turn). */
function fakeFetch(routes) {
  const calls = [];
  const fetch = async (url, init) => {
    const name = init.method + ' ' + url;
    calls.push({ name, headers: init.headers, body: init.body === undefined ? undefined : JSON.parse(init.body), init });
    const queue = routes[name];
    if (!queue || !queue.length) throw new Error('unexpected ' + name);
    const next = queue.shift();
    return typeof next === 'function' ? next() : next;
  };
  return { fetch, calls };
}

const SESSION = { key: { name: 'marketing team' }, csrf: 'csrf-1' };
const error = (status, code, extra) => reply(status, { error: { code, message: code, fields: {} } }, extra);

test('sign in sends the key once; writes carry the session token, reads do not', async () => {
  const { fetch, calls } = fakeFetch({
    'POST /marketers/session': [reply(200, SESSION)],
    'POST /marketers/api/estimate': [reply(200, { estimate: 4200, range: [4100, 4300], below_threshold: false, epsilon_spent: 0.5, budget_left: 9.5 })],
    'GET /marketers/api/account': [reply(200, { recent: [] })],
    'DELETE /marketers/session': [reply(204)],
  });
  const api = createApi({ fetch });
  assert.deepEqual(await api.signIn('secret-key'), SESSION);
  assert.equal((await api.estimate({ category: ['BOLT'] })).estimate, 4200);
  await api.account();
  await api.signOut();
  assert.deepEqual(
    calls.map((c) => c.name),
    ['POST /marketers/session', 'POST /marketers/api/estimate', 'GET /marketers/api/account', 'DELETE /marketers/session'],
  );
  assert.deepEqual(calls[0].body, { key: 'secret-key' });
  assert.equal(calls[0].headers['X-CSRF-Token'], undefined);
  assert.equal(calls[1].headers['X-CSRF-Token'], 'csrf-1');
  assert.deepEqual(calls[1].body, { filters: { category: ['BOLT'] } });
  assert.equal(calls[2].headers['X-CSRF-Token'], undefined);
  assert.equal(calls[3].headers['X-CSRF-Token'], 'csrf-1');
  for (const c of calls) assert.equal(c.init.credentials, 'same-origin');
  // the key went out once and is in no later request
  assert.equal(calls.filter((c) => JSON.stringify(c).includes('secret-key')).length, 1);
  assert.equal(api.signedIn(), false);
});

test('a refusal is an ApiError with the code, fields, status and Retry-After', async () => {
  const fields = { city: { 'unknown values': ['Atlantis'] } };
  const { fetch } = fakeFetch({
    'GET /marketers/session': [reply(200, SESSION)],
    'POST /marketers/api/estimate': [
      reply(400, { error: { code: 'validation_failed', message: 'unknown filters or values', fields } }),
      error(429, 'budget_exhausted', { 'Retry-After': '86400' }),
      reply(502, undefined),
    ],
  });
  const api = createApi({ fetch });
  await api.session();
  const bad = await api.estimate({ city: ['Atlantis'] }).catch((e) => e);
  assert.ok(bad instanceof ApiError);
  assert.deepEqual([bad.status, bad.code, bad.fields], [400, 'validation_failed', fields]);
  const spent = await api.estimate({}).catch((e) => e);
  assert.deepEqual([spent.status, spent.code, spent.retryAfter], [429, 'budget_exhausted', 86400]);
  const html = await api.estimate({}).catch((e) => e); // an answer that is not JSON
  assert.deepEqual([html.status, html.code], [502, 'http_502']);
});

test('a network failure is status 0, network_error', async () => {
  const api = createApi({
    fetch: async () => {
      throw new TypeError('Failed to fetch');
    },
  });
  const err = await api.dimensions().catch((e) => e);
  assert.deepEqual([err.status, err.code], [0, 'network_error']);
});

test('key_busy is retried once, after its Retry-After (at most 10 s)', async () => {
  const slept = [];
  const ok = { by: 'province', cells: [], epsilon_spent: 0, budget_left: 10 };
  const { fetch, calls } = fakeFetch({
    'GET /marketers/session': [reply(200, SESSION)],
    'POST /marketers/api/breakdown': [error(409, 'key_busy', { 'Retry-After': '2' }), reply(200, ok), error(409, 'key_busy', { 'Retry-After': '60' }), error(409, 'key_busy')],
  });
  const api = createApi({ fetch, sleep: async (ms) => slept.push(ms) });
  await api.session();
  assert.deepEqual(await api.breakdown('province', {}), ok);
  const busy = await api.breakdown('province', {}).catch((e) => e);
  assert.equal(busy.code, 'key_busy'); // the second refusal is the caller's
  assert.deepEqual(slept, [2000, 10000]);
  assert.equal(calls.length, 5);
});

test('csrf_failed fetches the session token again and retries once', async () => {
  const { fetch, calls } = fakeFetch({
    'GET /marketers/session': [reply(200, SESSION), reply(200, { ...SESSION, csrf: 'csrf-2' })],
    'POST /marketers/api/estimate': [error(403, 'csrf_failed'), reply(200, { estimate: null, range: null, below_threshold: true })],
  });
  const api = createApi({ fetch });
  await api.session();
  assert.equal((await api.estimate({})).below_threshold, true);
  assert.deepEqual(
    calls.map((c) => [c.name, c.headers['X-CSRF-Token']]),
    [
      ['GET /marketers/session', undefined],
      ['POST /marketers/api/estimate', 'csrf-1'],
      ['GET /marketers/session', undefined],
      ['POST /marketers/api/estimate', 'csrf-2'],
    ],
  );
});

test('a session that ended under a query tells the page; the session call itself does not', async () => {
  const ended = [];
  const { fetch } = fakeFetch({
    'GET /marketers/session': [error(401, 'not_signed_in')],
    'POST /marketers/session': [error(401, 'invalid_api_key')],
    'GET /marketers/api/account': [error(401, 'not_signed_in')],
  });
  const api = createApi({ fetch, onSignedOut: (e) => ended.push(e.code) });
  assert.equal((await api.session().catch((e) => e)).code, 'not_signed_in');
  assert.equal((await api.signIn('wrong').catch((e) => e)).code, 'invalid_api_key');
  assert.deepEqual(ended, []);
  assert.equal((await api.account().catch((e) => e)).code, 'not_signed_in');
  assert.deepEqual(ended, ['not_signed_in']);
});

test('queries go one at a time, whatever the previous one answered', async () => {
  const order = [];
  let release;
  const first = new Promise((resolve) => (release = resolve));
  const { fetch } = fakeFetch({
    'GET /marketers/session': [reply(200, SESSION)],
    'POST /marketers/api/estimate': [
      async () => {
        order.push('estimate starts');
        await first;
        order.push('estimate ends');
        return error(400, 'too_close_to_earlier_query');
      },
    ],
    'POST /marketers/api/breakdown': [
      () => {
        order.push('breakdown starts');
        return reply(200, { by: 'industry', cells: [] });
      },
    ],
  });
  const api = createApi({ fetch });
  await api.session();
  const a = api.estimate({}).catch((e) => e.code);
  const b = api.breakdown('industry', {});
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(order, ['estimate starts']);
  release();
  assert.equal(await a, 'too_close_to_earlier_query');
  assert.deepEqual((await b).cells, []);
  assert.deepEqual(order, ['estimate starts', 'estimate ends', 'breakdown starts']);
});
