// `npm run build:console` (also run by `npm ci`/`npm install` through
// "prepare", and by `npm run build`): bundles the web console from
// src/console/web into dist/console with esbuild. Everything it needs is in
// node_modules, so a gateway with no internet access serves a complete console.
//   dist/console/index.html               the page (names the hashed files)
//   dist/console/assets/app-<hash>.js     Preact + the views, minified
//   dist/console/assets/app-<hash>.css
// Each file is also written gzipped (.gz), which the gateway serves to
// browsers that accept it.
import { build } from 'esbuild';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { gzipSync } from 'node:zlib';

const root = new URL('../', import.meta.url);
const out = new URL('dist/console/', root);
const web = new URL('src/console/web/', root);

rmSync(out, { recursive: true, force: true });
mkdirSync(new URL('assets/', out), { recursive: true });

const result = await build({
  entryPoints: { app: new URL('main.tsx', web).pathname },
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2022'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  entryNames: '[name]-[hash]',
  outdir: new URL('assets/', out).pathname,
  metafile: true,
  legalComments: 'none',
  logLevel: 'warning',
});

const outputs = Object.keys(result.metafile.outputs).map((p) => basename(p));
const js = outputs.find((f) => f.endsWith('.js'));
const css = outputs.find((f) => f.endsWith('.css'));
if (!js || !css) throw new Error(`build-console: expected a .js and a .css output, got ${outputs.join(', ')}`);

const html = readFileSync(new URL('index.html', web), 'utf8')
  .replace('%APP_JS%', `/console/assets/${js}`)
  .replace('%APP_CSS%', `/console/assets/${css}`);
writeFileSync(new URL('index.html', out), html);

let gzipped = 0;
for (const file of [`assets/${js}`, `assets/${css}`, 'index.html']) {
  const body = readFileSync(new URL(file, out));
  const gz = gzipSync(body, { level: 9 });
  writeFileSync(new URL(`${file}.gz`, out), gz);
  if (!file.endsWith('.html')) gzipped += gz.length;
}
console.log(`console built into dist/console: ${js}, ${css} (${(gzipped / 1024).toFixed(1)} KiB of JS and CSS gzipped)`);
