// Separate consent (PIPL art. 29): a purpose the policy marks `sensitive` is granted in a
// request of its own. consent.grant refuses a bundle unless the caller says it asked for the
// sensitive purposes separately ({separately: true}, as the banner does); then each goes
// alone, after the other decisions of the same choice.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { create, separately } from '../src/sdk.js';
import { POLICY, fakeGateway, fakeStorage, fakeTimers, fakeWindow, freshPolicy } from './helpers.js';

// The policy with `sensitive` on the purposes named, and only on those.
function policyWith(...sensitive) {
  const p = freshPolicy();
  for (const name in p.purposes) p.purposes[name].sensitive = sensitive.includes(name);
  return p;
}

async function page(granted, opts) {
  opts = opts || {};
  const gw = fakeGateway(granted);
  if (opts.policy) gw.policy = opts.policy;
  const win = fakeWindow(opts);
  const events = [];
  win.CustomEvent = class {
    constructor(type, init) {
      this.type = type;
      this.detail = init.detail;
    }
  };
  win.dispatchEvent = (e) => events.push(e);
  const sdk = create({ window: win, fetch: gw.fetch, storage: fakeStorage(), ...fakeTimers(true) });
  await sdk.init({ endpoint: 'https://t.example.com', autoPageViews: false });
  return { gw, sdk, events };
}
const ASKED = { separately: true }; // the caller's UI asked for the sensitive ones on their own
const consentPosts = (gw) =>
  gw.calls.filter((c) => c.method === 'POST' && c.path === '/v1/consent').map((c) => JSON.parse(c.init.body));
const granted = (state) => Object.keys(state.purposes).filter((p) => state.purposes[p].granted).sort();

test('the fixture marks precise_location sensitive (what the tests below rely on)', () => {
  assert.equal(POLICY.purposes.precise_location.sensitive, true);
});

test('separately(): sensitive grants alone, after the rest; everything else in one request', () => {
  const P = POLICY;
  const one = { personalization: true, account_security: false };
  assert.deepEqual(separately(one, P), [one]);
  assert.deepEqual(separately({ precise_location: true }, P), [{ precise_location: true }]);
  assert.deepEqual(separately({ necessary: true, precise_location: true }, P), [{ necessary: true, precise_location: true }]);
  // refusing it with others is one request: "reject all" stays one click
  const none = { personalization: false, precise_location: false, advertising: false };
  assert.deepEqual(separately(none, P), [none]);
  assert.deepEqual(separately({ precise_location: true, personalization: true, advertising: false, necessary: true }, P), [
    { personalization: true, advertising: false, necessary: true },
    { precise_location: true },
  ]);
  // which purposes are sensitive comes from the policy document
  const two = policyWith('precise_location', 'advertising');
  assert.deepEqual(separately({ advertising: true, precise_location: true, personalization: false }, two), [
    { personalization: false },
    { advertising: true },
    { precise_location: true },
  ]);
  assert.deepEqual(separately({ necessary: true, advertising: true, precise_location: true }, two), [
    { advertising: true, necessary: true },
    { precise_location: true },
  ]);
  const plain = policyWith();
  const both = { precise_location: true, personalization: true };
  assert.deepEqual(separately(both, plain), [both]);
});

test('grant sends the other decisions first, then the sensitive grant alone; resolves with the last answer', async () => {
  const { gw, sdk, events } = await page(null);
  const r = await sdk.consent.grant({ personalization: true, precise_location: true, account_security: false }, 'settings', ASKED);
  assert.deepEqual(consentPosts(gw), [
    { policy_version: '2026-11-01', purposes: { personalization: true, account_security: false }, source: 'settings' },
    { policy_version: '2026-11-01', purposes: { precise_location: true }, source: 'settings' },
  ]);
  assert.equal(r.receipt.id, 'r' + gw.calls.length, 'the receipt of the last request');
  assert.deepEqual(granted(r.state), ['necessary', 'personalization', 'precise_location']);
  assert.deepEqual(granted(await sdk.consent.get()), ['necessary', 'personalization', 'precise_location']);
  assert.equal(events.length, 1, 'one cg:consent for one choice');
  assert.deepEqual(granted(events[0].detail), ['necessary', 'personalization', 'precise_location']);
});

test('a grant of the sensitive purpose alone, and refusals with others, stay one request', async () => {
  const { gw, sdk } = await page(['personalization']);
  await sdk.consent.grant({ precise_location: true });
  await sdk.consent.grant({ personalization: false, precise_location: false, account_security: false }, 'banner');
  await sdk.consent.withdraw(['precise_location', 'personalization']);
  assert.deepEqual(
    consentPosts(gw).map((b) => b.purposes),
    [{ precise_location: true }, { personalization: false, precise_location: false, account_security: false }, { precise_location: false, personalization: false }],
  );
});

test('the sensitive purposes are read from the policy document', async () => {
  const { gw, sdk } = await page(null, { policy: policyWith('advertising') });
  const r = await sdk.consent.grant({ precise_location: true, advertising: true, personalization: true }, undefined, ASKED);
  assert.deepEqual(
    consentPosts(gw).map((b) => b.purposes),
    [{ precise_location: true, personalization: true }, { advertising: true }],
  );
  assert.deepEqual(granted(r.state), ['advertising', 'necessary', 'personalization', 'precise_location']);
});

test('under GPC advertising is refused in the first request, not granted alone', async () => {
  const { gw, sdk } = await page(null, { navigator: { globalPrivacyControl: true }, policy: policyWith('advertising', 'precise_location') });
  await sdk.consent.grant({ advertising: true, precise_location: true, personalization: true }, undefined, ASKED);
  assert.deepEqual(
    consentPosts(gw).map((b) => b.purposes),
    [{ advertising: false, personalization: true }, { precise_location: true }],
  );
});

for (const failure of ['network', 503, 400]) {
  test(`when the first request fails (${failure}) nothing more is sent and the state is unchanged`, async () => {
    const { gw, sdk, events } = await page(['account_security']);
    gw.consentAnswers.push(failure);
    await assert.rejects(sdk.consent.grant({ personalization: true, precise_location: true }, 'banner', ASKED), (e) =>
      failure === 'network' ? e instanceof TypeError : e.status === failure,
    );
    assert.equal(consentPosts(gw).length, 1);
    assert.deepEqual(granted(await sdk.consent.get()), ['account_security', 'necessary']);
    assert.equal(events.length, 0);
  });
}

test('when a later request fails the state keeps what was recorded and the promise rejects', async () => {
  const { gw, sdk, events } = await page(null, { policy: policyWith('precise_location', 'advertising') });
  gw.consentAnswers.push(null, 503); // the first is recorded, the second refused
  await assert.rejects(
    sdk.consent.grant({ personalization: true, advertising: true, precise_location: true }, 'banner', ASKED),
    (e) => e.status === 503,
  );
  assert.deepEqual(
    consentPosts(gw).map((b) => b.purposes),
    [{ personalization: true }, { advertising: true }],
    'the third is not sent',
  );
  assert.deepEqual(granted(gw.state), ['necessary', 'personalization']);
  assert.equal(events.length, 1, 'the page learns what was recorded');
  assert.deepEqual(granted(events[0].detail), ['necessary', 'personalization']);
  // the SDK's state is what the gateway recorded: personalization's fields go, gps does not
  assert.equal(await sdk.track('search', { keyword: 'a', gps: { lat: 30, lon: 120 } }), true);
  await sdk.flush();
  assert.deepEqual(
    gw.posts.flatMap((b) => b.events).map(({ event_id, ts, ...rest }) => rest),
    [{ type: 'search', keyword: 'a' }],
  );
});

test('a bundled sensitive grant is refused before anything is sent, unless asked separately', async () => {
  const { gw, sdk, events } = await page(null);
  await assert.rejects(sdk.consent.grant({ personalization: true, precise_location: true }, 'app'), (e) =>
    e.code === 'separate_consent_required',
  );
  assert.deepEqual(consentPosts(gw), [], 'nothing sent');
  assert.equal(events.length, 0);
  await sdk.consent.grant({ precise_location: true }); // alone: fine
  await sdk.consent.grant({ personalization: true, precise_location: false }); // refused with others: fine
  assert.equal(consentPosts(gw).length, 2);
});
