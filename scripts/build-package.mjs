// `npm run build` (and `prepack`): the two published entry points, `sluice`
// (src/index.ts, the signer) and `sluice/webhooks` (src/receive/index.ts, the
// receiver), compiled twice: ES modules into dist/esm and CommonJS into
// dist/cjs, each with its .d.ts files, so `import` and `require()` both load
// real code on every Node version (no reliance on require(esm)). The CLI is
// not compiled: bin/sluice.js runs the shipped sources through tsx.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const root = new URL('../', import.meta.url);

// A clean folder: a file left from an older build would otherwise be packed.
rmSync(new URL('dist/', root), { recursive: true, force: true });
for (const project of ['tsconfig.pkg.json', 'tsconfig.pkg-cjs.json']) {
  execFileSync(process.execPath, [tsc, '-p', project], { cwd: root, stdio: 'inherit' });
}
// The package is "type": "module"; this marks dist/cjs/**/*.js (and its .d.ts) as CommonJS.
mkdirSync(new URL('dist/cjs/', root), { recursive: true });
writeFileSync(new URL('dist/cjs/package.json', root), '{ "type": "commonjs" }\n');
// dist/ was emptied above: the web console the gateway serves, again.
execFileSync(process.execPath, ['scripts/build-console.mjs'], { cwd: root, stdio: 'inherit' });
