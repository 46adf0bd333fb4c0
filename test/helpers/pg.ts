// A real embedded Postgres per test file (never a mock), in a temp folder,
// removed when the file's tests end.
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import { startEmbedded, type EmbeddedHandle } from '../../src/db/embedded.js';
import { migrate } from '../../src/db/migrate.js';
import { createPool, type Pool } from '../../src/db/pool.js';

export interface TestPg extends EmbeddedHandle {
  /** A fresh database on the same server; returns its URL. */
  createDatabase(name: string): Promise<string>;
}

/**
 * SLUICE_TEST_PG=14 (or 18) runs the suites on that major, from the binaries
 * the optional dev packages embedded-pg14 and embedded-pg18 install
 * (npm run test:versions); unset, on the default (17).
 */
export function testBinariesDir(): string | undefined {
  const major = process.env.SLUICE_TEST_PG;
  if (!major || major === '17') return undefined;
  const dir = path.resolve('node_modules', `embedded-pg${major}`, 'native');
  if (!existsSync(dir)) throw new Error(`SLUICE_TEST_PG=${major}: ${dir} is missing (the majors installed: 14, 17, 18; run npm ci)`);
  return dir;
}

export async function startTestPg(): Promise<TestPg> {
  if (process.env.TEST_DATABASE_URL) {
    // An external server (must have wal_level=logical).
    const url = process.env.TEST_DATABASE_URL;
    return {
      url,
      port: Number(new URL(url).port || 5432),
      dataDir: '',
      stop: async () => {},
      createDatabase: (name) => createDatabase(url, name),
    };
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-test-'));
  // As root, Postgres runs as the 'postgres' OS user, which must reach the folder. Where the
  // temp folder itself is out of its reach, startEmbedded puts the data under
  // SLUICE_POSTGRES_HOME, or fails at once with one line that names the fix.
  chmodSync(dir, 0o755);
  const h = await startEmbedded({ dataDir: path.join(dir, 'pg'), persistent: false, binariesDir: testBinariesDir() });
  return {
    ...h,
    stop: async () => {
      await h.stop().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
    createDatabase: (name) => createDatabase(h.url, name),
  };
}

async function createDatabase(url: string, name: string): Promise<string> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await c.query(`CREATE DATABASE "${name}"`);
  } finally {
    await c.end();
  }
  const u = new URL(url);
  u.pathname = '/' + name;
  return u.toString();
}

/**
 * A test file's migrated buffer database on its own server, started before its
 * tests and stopped after them. Read `pool` inside hooks and tests (it exists
 * once beforeAll ran).
 */
export function useBufferDb(name: string, opts: { max?: number } = {}): { readonly pool: Pool } {
  let server: TestPg | undefined;
  let pool: Pool | undefined;
  beforeAll(async () => {
    server = await startTestPg();
    pool = createPool(await server.createDatabase(name), { max: opts.max ?? 6 });
    await migrate(pool);
  });
  afterAll(async () => {
    await pool?.end();
    await server?.stop();
  });
  return {
    get pool() {
      if (!pool) throw new Error('useBufferDb: the pool exists once beforeAll has run');
      return pool;
    },
  };
}
