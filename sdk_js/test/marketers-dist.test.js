// The dashboard's built files: named in the manifest by their hashes, and nothing in the
// dashboard's sources that could keep the API key where a script could read it later.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { BUDGETS } from '../build.mjs';

const dist = (name) => readFileSync(new URL('../dist/' + name, import.meta.url), 'utf8');
const srcDir = new URL('../src/marketers/', import.meta.url);

test('the manifest names the hashed dashboard files, the same as the fixed names', () => {
  const manifest = JSON.parse(dist('manifest.json'));
  assert.match(manifest['marketers.js'], /^marketers\.[0-9a-f]{8}\.js$/);
  assert.match(manifest['marketers.css'], /^marketers\.[0-9a-f]{8}\.css$/);
  assert.equal(dist(manifest['marketers.js']), dist('marketers.js'));
  assert.equal(dist(manifest['marketers.css']), dist('marketers.css'));
  assert.ok(BUDGETS['marketers.js'].gzip && BUDGETS['marketers.css'].gzip);
});

test('only the current hashed dashboard files are in dist/', () => {
  const manifest = JSON.parse(dist('manifest.json'));
  const files = readdirSync(new URL('../dist/', import.meta.url)).filter((f) => /^marketers\.[0-9a-f]{8}\./.test(f));
  assert.deepEqual(files.sort(), [manifest['marketers.css'], manifest['marketers.js']].sort());
});

test('the dashboard never touches web storage or script-readable cookies', () => {
  for (const f of readdirSync(srcDir)) {
    const code = readFileSync(new URL(f, srcDir), 'utf8');
    assert.doesNotMatch(code, /localStorage|sessionStorage|indexedDB|document\.cookie/, f);
  }
  assert.doesNotMatch(dist('marketers.js'), /localStorage|sessionStorage|document\.cookie/);
});

test('the page needs no inline style: the sources never write a style attribute', () => {
  for (const f of readdirSync(srcDir).filter((n) => n.endsWith('.js'))) {
    const code = readFileSync(new URL(f, srcDir), 'utf8');
    assert.doesNotMatch(code, /setAttribute\(\s*['"]style|style:\s*['"]|innerHTML/, f);
  }
});
