// dist/ is committed and served as is: it must fit the size budgets and match the sources.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { BUDGETS, buildAll, measure } from '../build.mjs';

const dist = (name) => readFileSync(new URL('../dist/' + name, import.meta.url), 'utf8');

for (const [name, budget] of Object.entries(BUDGETS)) {
  test(`${name} is under its size budget (${budget.max} bytes${budget.gzip ? ' gzipped' : ''})`, () => {
    const size = measure(name);
    assert.ok(size < budget.max, `${name}: ${size} bytes, budget < ${budget.max}`);
  });
}

test('dist/ is what the sources build to (run npm run build and commit dist/)', async () => {
  const built = await buildAll();
  for (const [name, code] of Object.entries(built)) assert.equal(dist(name), code, name);
  assert.equal(dist('sdk.d.ts'), readFileSync(new URL('../src/sdk.d.ts', import.meta.url), 'utf8'));
});

test('the SDK loads the content-hashed banner named in the manifest', () => {
  const manifest = JSON.parse(dist('manifest.json'));
  assert.match(manifest['sdk.js'], /^sdk\.[0-9a-f]{8}\.js$/);
  assert.match(manifest['sdk-banner.js'], /^sdk-banner\.[0-9a-f]{8}\.js$/);
  assert.equal(dist(manifest['sdk.js']), dist('sdk.js'));
  assert.equal(dist(manifest['sdk-banner.js']), dist('sdk-banner.js'));
  assert.ok(dist('sdk.js').includes(JSON.stringify(manifest['sdk-banner.js'])));
  assert.ok(dist('sdk.mjs').includes(JSON.stringify(manifest['sdk-banner.js'])));
});
