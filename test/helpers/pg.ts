// A real embedded Postgres per test file (never a mock), in a temp folder,
// removed when the file's tests end.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startEmbedded, type EmbeddedHandle } from '../../src/db/embedded.js';

export interface TestPg extends EmbeddedHandle {
  /** A fresh database on the same server; returns its URL. */
  createDatabase(name: string): Promise<string>;
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
  // As root, Postgres runs as the 'postgres' OS user, which must reach the folder.
  chmodSync(dir, 0o755);
  const h = await startEmbedded({ dataDir: path.join(dir, 'pg'), persistent: false });
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
