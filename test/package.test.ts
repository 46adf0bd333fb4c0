// The package as users get it: `npm pack`, the tarball unpacked into a fresh
// project, and its two entry points (`sluice`, the signer; `sluice/webhooks`,
// the receiver) loaded by real Node processes as ES modules and through
// require(), and type-checked by tsc the way a user's project would.
//
// The tarball is unpacked into node_modules/sluice rather than `npm install`ed:
// both entries depend on nothing at run time (checked below, and proven by
// loading them with nothing else in node_modules), and a real install pulls the
// gateway's ~90 dependencies (99 MB, 6 to 13 s even from a warm npm cache, and
// the registry on a cold one). The CLI, which does need them, runs from the
// unpacked tarball with this checkout's node_modules as the package's own.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TSC = path.join(ROOT, 'node_modules/typescript/bin/tsc');
const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  name: string;
  dependencies: Record<string, string>;
};

let dir: string;
let project: string;
let installed: string; // <project>/node_modules/sluice
let packed: string[]; // the tarball's file list, as npm reports it

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-pack-'));
  // prepack builds dist/ (git-ignored), so this is what `npm pack` on a fresh clone gives.
  const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: ROOT, timeout: 120_000 });
  const [report] = JSON.parse(stdout.slice(stdout.indexOf('['))) as { filename: string; files: { path: string }[] }[];
  packed = report.files.map((f) => f.path);
  project = path.join(dir, 'consumer');
  installed = path.join(project, 'node_modules', pkg.name);
  mkdirSync(installed, { recursive: true });
  writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
  await run('tar', ['xzf', path.join(dir, report.filename), '-C', installed, '--strip-components=1'], { timeout: 30_000 });
}, 180_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function node(args: string[], cwd = project) {
  return run(process.execPath, args, { cwd, timeout: 30_000 });
}

// Signs with `sluice`, verifies with `sluice/webhooks`, and shows a tampered
// body is refused; prints which files the two names resolved to.
const ROUND_TRIP = `
const secret = generateSecret();
const body = JSON.stringify({ data: [{ action: 'insert', record: { id: 7 } }] });
const headers = webhookHeaders({ id: 'msg_pack', body }, [secret]);
const one = signPayload({ id: 'msg_pack', timestamp: Number(headers['webhook-timestamp']), body, secrets: [secret] });
const verified = verifyWebhook(body, headers, secret);
let tampered = 'accepted';
try { verifyWebhook(body.replace('7', '8'), headers, secret); } catch (e) { tampered = e instanceof WebhookVerificationError ? e.code : String(e); }
console.log(JSON.stringify({ sameSignature: one === headers['webhook-signature'], id: verified.id, data: verified.data, tampered, resolved: [RESOLVE('sluice'), RESOLVE('sluice/webhooks')] }));
`;
const ESM = `import { verifyWebhook, WebhookVerificationError } from 'sluice/webhooks';
import { generateSecret, signPayload, webhookHeaders } from 'sluice';
const RESOLVE = (s) => import.meta.resolve(s);
${ROUND_TRIP}`;
const CJS = `const { verifyWebhook, WebhookVerificationError } = require('sluice/webhooks');
const { generateSecret, signPayload, webhookHeaders } = require('sluice');
const RESOLVE = (s) => require.resolve(s);
${ROUND_TRIP}`;

describe('npm pack', () => {
  it('ships both builds with declarations, the CLI and what it runs, and no tests', () => {
    for (const entry of ['index', 'receive/index']) {
      for (const build of ['esm', 'cjs']) {
        expect(packed).toContain(`dist/${build}/${entry}.js`);
        expect(packed).toContain(`dist/${build}/${entry}.d.ts`);
      }
    }
    expect(packed).toContain('dist/cjs/package.json');
    expect(packed).toContain('bin/sluice.js');
    expect(packed).toContain('src/cli/main.ts');
    for (const m of readdirSync(path.join(ROOT, 'migrations'))) expect(packed).toContain(`migrations/${m}`);
    expect(packed.filter((f) => /^(test|bench|examples|node_modules|\.sluice)\//.test(f))).toEqual([]);
  });

  it('both entries import nothing but their own files and node: builtins', () => {
    const built = packed.filter((f) => /^dist\/(esm|cjs)\/.*\.js$/.test(f));
    expect(built.length).toBeGreaterThan(10);
    const bare = new Set<string>();
    for (const file of built) {
      const info = ts.preProcessFile(readFileSync(path.join(installed, file), 'utf8'), true, true);
      for (const { fileName } of info.importedFiles) if (!fileName.startsWith('.')) bare.add(fileName);
    }
    expect([...bare].filter((s) => !s.startsWith('node:'))).toEqual([]);
  });

  it.each([
    ['ESM import', 'esm.mjs', ESM, 'dist/esm/'],
    ['CommonJS require() (with require(esm) switched off)', 'cjs.cjs', CJS, 'dist/cjs/'],
  ])('%s: signs with sluice and verifies with sluice/webhooks, with nothing else installed', async (_name, file, code, build) => {
    expect(readdirSync(path.join(project, 'node_modules'))).toEqual([pkg.name]);
    writeFileSync(path.join(project, file), code);
    const { stdout } = await node(['--no-experimental-require-module', file]);
    const out = JSON.parse(stdout) as { sameSignature: boolean; id: string; data: unknown; tampered: string; resolved: string[] };
    expect(out).toMatchObject({ sameSignature: true, id: 'msg_pack', data: [{ action: 'insert', record: { id: 7 } }], tampered: 'no_matching_signature' });
    expect(out.resolved).toHaveLength(2);
    for (const r of out.resolved) expect(r).toContain(`node_modules/sluice/${build}`);
  });

  // One tsc run per resolution mode a user's tsconfig may have, at once. The
  // expect-error lines fail if an import resolves to `any` instead of the
  // real types. skipLibCheck is off where it matters (it doubles the time, as
  // @types/node gets checked too): node16 checks both builds' .d.ts files of
  // both entries, the receiver-only run proves it needs neither @types/node nor
  // the DOM lib; the others check that the same files resolve.
  const USE_RECEIVER = `export function check(body: string, headers: Record<string, string>, secret: string): VerifiedWebhook<{ id: number }> {
  // @ts-expect-error the receiver's types are real
  verifyWebhook(42, headers, secret);
  return verifyWebhook<{ id: number }>(body, headers, secret);
}
export const isVerificationError = (e: unknown) => e instanceof WebhookVerificationError;
`;
  const IMPORT_RECEIVER = `import { verifyWebhook, WebhookVerificationError, type VerifiedWebhook } from 'sluice/webhooks';
${USE_RECEIVER}`;
  // What the README offers the signer for: a test delivery, checked by the receiver.
  const IMPORT_BOTH = `${IMPORT_RECEIVER}import { generateSecret, webhookHeaders, type WebhookSignatureHeaders } from 'sluice';
const secret: string = generateSecret();
const headers: WebhookSignatureHeaders = webhookHeaders({ id: 'msg_1', body: '{}' }, [secret]);
export const roundTrip: VerifiedWebhook = verifyWebhook('{}', headers, secret);
// @ts-expect-error the signer's types are real
webhookHeaders({ id: 1, body: '{}' }, [secret]);
`;
  const nodeTypes = { types: ['node'], typeRoots: [path.join(ROOT, 'node_modules/@types')] };

  it.concurrent.each<[string, Record<string, unknown>, Record<string, string>]>([
    ['node16 (ESM and CommonJS files)', { module: 'node16', moduleResolution: 'node16', skipLibCheck: false, ...nodeTypes }, { 'esm.mts': IMPORT_BOTH, 'cjs.cts': IMPORT_BOTH }],
    ['node16, receiver only, no @types/node, no DOM', { module: 'node16', moduleResolution: 'node16', skipLibCheck: false, types: [], lib: ['ES2022'] }, { 'app.mts': IMPORT_RECEIVER }],
    ['bundler', { module: 'preserve', moduleResolution: 'bundler', ...nodeTypes }, { 'app.ts': IMPORT_BOTH }],
    ['node10 (legacy "node")', { module: 'commonjs', moduleResolution: 'node10', ...nodeTypes }, { 'app.ts': IMPORT_BOTH }],
  ])('tsc type-checks imports with moduleResolution %s', async (_name, options, sources) => {
    const folder = mkdtempSync(path.join(project, 'tsc-'));
    for (const [file, text] of Object.entries(sources)) writeFileSync(path.join(folder, file), text);
    const compilerOptions = { strict: true, noEmit: true, skipLibCheck: true, target: 'ES2022', ...options };
    writeFileSync(path.join(folder, 'tsconfig.json'), JSON.stringify({ compilerOptions, files: Object.keys(sources) }));
    const result = await node([TSC, '-p', folder]).catch((e: { stdout: string }) => e);
    expect(result.stdout).toBe('');
  }, 60_000);

  it('the sluice command runs from the tarball, given the dependencies package.json declares', async () => {
    // Every package the shipped sources load at run time (type-only imports
    // are erased by the transpile) is a declared dependency, not a dev one.
    const used = new Set<string>();
    for (const file of packed.filter((f) => f.startsWith('src/') && f.endsWith('.ts'))) {
      const js = ts.transpileModule(readFileSync(path.join(installed, file), 'utf8'), {
        compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
      }).outputText;
      for (const { fileName } of ts.preProcessFile(js, true, true).importedFiles) {
        if (fileName.startsWith('.') || fileName.startsWith('node:') || builtinModules.includes(fileName)) continue;
        used.add(fileName.startsWith('@') ? fileName.split('/').slice(0, 2).join('/') : fileName.split('/')[0]);
      }
    }
    used.add('tsx'); // bin/sluice.js
    expect([...used].filter((d) => !(d in pkg.dependencies))).toEqual([]);

    // As npm nests a package's own dependencies; removed after, so the other
    // tests keep seeing a package with nothing installed beside it.
    const deps = path.join(installed, 'node_modules');
    symlinkSync(path.join(ROOT, 'node_modules'), deps, 'dir');
    try {
      const bin = path.join(installed, 'bin/sluice.js');
      const { stdout: secret } = await node([bin, 'keygen']);
      expect(secret.trim()).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
      const config = path.join(project, 'sluice.yaml');
      writeFileSync(config, 'sources:\n  - name: app\n    tables: [public.orders]\n');
      const { stdout: sql } = await node([bin, 'setup', '--print', '--config', config]);
      expect(sql).toContain('CREATE PUBLICATION');
    } finally {
      rmSync(deps, { force: true });
    }
  }, 60_000);
});
