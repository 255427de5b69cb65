// Builds dist/ (committed: a fresh checkout serves without building) and enforces the size
// budgets. `node build.mjs`; `node build.mjs --check` only measures what is in dist/.
//
//   dist/sdk.js, dist/sdk.<hash>.js                 minified IIFE (what the snippet loads)
//   dist/sdk.mjs                                     ES module
//   dist/sdk.d.ts                                    from src/sdk.d.ts
//   dist/sdk-banner.js, dist/sdk-banner.<hash>.js    the banner, loaded lazily by the SDK
//   dist/snippet.min.js                              the snippet as pasted (README.md)
//   dist/marketers.js, dist/marketers.<hash>.js      the marketers' dashboard (/marketers), Chart.js inside
//   dist/marketers.css, dist/marketers.<hash>.css    its style sheet
//   dist/manifest.json                               {"sdk.js": "sdk.<hash>.js", ...}
//
// <hash> is the first 8 hex digits of the SHA-256 of the file. The SDK embeds the hashed
// banner name, so a new banner gives a new SDK hash too.

import { build, transform } from 'esbuild';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, readdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = dirname(fileURLToPath(import.meta.url));
const src = join(root, 'src');
const dist = join(root, 'dist');

/** Byte budgets: raw for the snippet, gzipped for the rest. */
export const BUDGETS = {
  'snippet.min.js': { max: 600, gzip: false },
  'sdk.js': { max: 5 * 1024, gzip: true },
  'sdk-banner.js': { max: 8 * 1024, gzip: true },
  // Chart.js (bar charts only: the rest is left out by the bundler) is most of it
  'marketers.js': { max: 64 * 1024, gzip: true },
  'marketers.css': { max: 2560, gzip: true },
};

export function measure(name, dir = dist) {
  const code = readFileSync(join(dir, name));
  return BUDGETS[name].gzip ? gzipSync(code, { level: 9 }).length : code.length;
}

const hash = (code) => createHash('sha256').update(code).digest('hex').slice(0, 8);

async function bundle(entry, options) {
  const out = await build({
    entryPoints: [join(src, entry)],
    bundle: true,
    write: false,
    target: 'es2017',
    charset: 'utf8', // keep the Chinese strings as UTF-8, not \u escapes (smaller)
    legalComments: 'none',
    ...options,
  });
  return out.outputFiles[0].text;
}

/** Every dist/ file but sdk.d.ts, as {name: text}: deterministic for the same sources. */
export async function buildAll() {
  const banner = await bundle('banner.js', { format: 'iife', minify: true });
  const bannerName = `sdk-banner.${hash(banner)}.js`;
  const define = { __BANNER__: JSON.stringify(bannerName) };
  const sdk = await bundle('sdk.js', { format: 'iife', minify: true, define });
  const sdkName = `sdk.${hash(sdk)}.js`;
  const esm = await bundle('sdk.js', { format: 'esm', define });
  const marketers = await bundle('marketers/main.js', { format: 'iife', minify: true });
  const marketersName = `marketers.${hash(marketers)}.js`;
  const style = await bundle('marketers/marketers.css', { minify: true });
  const styleName = `marketers.${hash(style)}.css`;
  const snippet = (await transform(readFileSync(join(src, 'snippet.js'), 'utf8'), { minify: true, target: 'es5' })).code;
  return {
    'sdk.js': sdk,
    [sdkName]: sdk,
    'sdk.mjs': esm,
    'sdk-banner.js': banner,
    [bannerName]: banner,
    'snippet.min.js': snippet,
    'marketers.js': marketers,
    [marketersName]: marketers,
    'marketers.css': style,
    [styleName]: style,
    'manifest.json':
      JSON.stringify(
        { 'sdk.js': sdkName, 'sdk-banner.js': bannerName, 'marketers.js': marketersName, 'marketers.css': styleName },
        null,
        2,
      ) + '\n',
  };
}

async function main() {
  mkdirSync(dist, { recursive: true });
  // Hashed copies of an earlier build would pile up: remove them.
  const stale = /^(sdk|sdk-banner|marketers)\.[0-9a-f]{8}\.js$|^marketers\.[0-9a-f]{8}\.css$/;
  for (const f of readdirSync(dist)) if (stale.test(f)) unlinkSync(join(dist, f));
  for (const [name, code] of Object.entries(await buildAll())) writeFileSync(join(dist, name), code);
  copyFileSync(join(src, 'sdk.d.ts'), join(dist, 'sdk.d.ts'));
}

function check() {
  let ok = true;
  for (const [name, b] of Object.entries(BUDGETS)) {
    const size = measure(name);
    const fits = size < b.max;
    ok = ok && fits;
    console.log(`${fits ? 'ok  ' : 'OVER'} ${name}: ${size} bytes${b.gzip ? ' gzipped' : ''} (budget < ${b.max})`);
  }
  if (!ok) {
    console.error('size budget exceeded');
    process.exit(1);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (!process.argv.includes('--check')) await main();
  check();
}
