// A second `sluice start` while one runs: one line that says what is in use and
// by which process, and a non-zero exit (it printed a TypeError's stack trace).
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/db/embedded.js';
import { describeFailure } from '../src/cli/fatal.js';
import { runFixture, type Child } from './helpers/child.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-in-use-'));
chmodSync(dir, 0o755); // as root, Postgres runs as 'postgres' and must reach the folder
let first: Child;
let env: Record<string, string | undefined>;

beforeAll(async () => {
  env = {
    DATABASE_URL: undefined,
    SLUICE_CONFIG: undefined,
    SLUICE_DATA_DIR: path.join(dir, 'one'),
    SLUICE_EMBEDDED_PORT: String(await freePort()),
    SLUICE_HTTP_PORT: String(await freePort()),
  };
  first = runFixture('src/cli/main.ts', env, { args: ['start'] });
  await first.waitFor(/Sluice is running/, 60_000);
});

afterAll(async () => {
  await first?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function secondStart(overrides: Record<string, string | undefined>) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'start'], {
    encoding: 'utf8',
    env: { ...process.env, ...env, ...overrides },
    timeout: 30_000,
  });
  return { code: r.status, err: r.stderr };
}

function expectOneLine(err: string) {
  expect(err).not.toMatch(/\n\s+at /);
  expect(err).not.toMatch(/TypeError/);
}

describe('a second sluice start', () => {
  it('on the same data folder: names the Postgres and the gateway holding it, exits 1', () => {
    const r = secondStart({ SLUICE_HTTP_PORT: '0' });
    expect(r.code).toBe(1);
    expectOneLine(r.err);
    expect(r.err).toContain(`the data folder ${path.join(dir, 'one', 'pg')} is in use by another Postgres (pid `);
    expect(r.err).toContain(`run by the Sluice gateway pid ${first.proc.pid}`);
    expect(r.err).toMatch(/or set SLUICE_DATA_DIR to another folder/);
  });

  it('on the same HTTP port (another data folder): names the process holding the port, before starting anything', () => {
    const r = secondStart({ SLUICE_DATA_DIR: path.join(dir, 'two') });
    expect(r.code).toBe(1);
    expectOneLine(r.err);
    expect(r.err).toContain(`HTTP port ${env.SLUICE_HTTP_PORT} on 127.0.0.1 is in use by pid ${first.proc.pid} (node `);
    expect(r.err).toMatch(/SLUICE_HTTP_PORT/);
    // It stopped before the embedded Postgres: nothing was made for it.
    expect(r.err).not.toMatch(/starting the embedded Postgres/);
  });

  it('on the same HTTP port with DATABASE_URL set: the same, naming the running gateway', async () => {
    const r = secondStart({ DATABASE_URL: `postgres://postgres:sluice@127.0.0.1:${env.SLUICE_EMBEDDED_PORT}/postgres` });
    expect(r.code).toBe(1);
    expectOneLine(r.err);
    expect(r.err).toContain(`HTTP port ${env.SLUICE_HTTP_PORT} on 127.0.0.1 is in use by the Sluice gateway pid ${first.proc.pid}`);
  });

  it('on the same embedded Postgres port (another data folder): says who holds it, takes a free port and runs', async () => {
    const second = runFixture('src/cli/main.ts', { ...env, SLUICE_DATA_DIR: path.join(dir, 'three'), SLUICE_HTTP_PORT: '0' }, { args: ['start'] });
    try {
      const warning = await second.waitFor(/the embedded Postgres takes a free port/, 60_000);
      const postmaster = readFileSync(path.join(dir, 'one', 'pg', 'postmaster.pid'), 'utf8').split('\n')[0];
      expect(JSON.parse(warning)).toMatchObject({ port: Number(env.SLUICE_EMBEDDED_PORT), by: expect.stringContaining(`pid ${postmaster} (postgres `) });
      await second.waitFor(/Sluice is running/, 60_000);
      const connect = await second.waitFor(/Connect:/);
      expect(connect).toMatch(/127\.0\.0\.1:\d+\/postgres/);
      expect(connect).not.toContain(`:${env.SLUICE_EMBEDDED_PORT}/`);
    } finally {
      await second.stop();
    }
  }, 90_000);

  it('leaves the first one running; SIGINT stops it cleanly', async () => {
    const exited = new Promise<number | null>((resolve) => first.proc.once('exit', (code) => resolve(code)));
    first.proc.kill('SIGINT');
    expect(await exited).toBe(0);
  });
});

describe('the command failing with something that is not an Error', () => {
  it.each([
    [undefined, 'sluice: failed: no reason given (undefined)'],
    [null, 'sluice: failed: no reason given (null)'],
    ['boom', 'sluice: failed: boom'],
    [{ code: 'X' }, "sluice: failed: { code: 'X' }"],
  ])('%s is one line, exit 1', (thrown, text) => {
    expect(describeFailure(thrown)).toEqual({ text, exitCode: 1 });
  });
});
