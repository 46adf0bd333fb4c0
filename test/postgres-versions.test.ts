// Postgres older than 14, for real: a Postgres 13 server (the optional dev
// package embedded-pg13) as a source and as a buffer is refused with an error
// that names its version and what is needed, before anything is created.
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureSource, SetupError } from '../src/capture/setup.js';
import { startEmbedded, type EmbeddedHandle } from '../src/db/embedded.js';
import { migrate } from '../src/db/migrate.js';
import { createPool } from '../src/db/pool.js';
import { sourceConfig } from './helpers/capture.js';

const PG13 = path.resolve('node_modules/embedded-pg13/native');
let dir: string;
let server: EmbeddedHandle | undefined;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-pg13-'));
  chmodSync(dir, 0o755);
  if (existsSync(PG13)) server = await startEmbedded({ dataDir: path.join(dir, 'pg'), persistent: false, binariesDir: PG13 });
}, 60_000);

afterAll(async () => {
  await server?.stop().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!existsSync(PG13))('Postgres 13', () => {
  it('as a source: refused naming the version and what is needed, nothing created', async () => {
    const c = new pg.Client({ connectionString: server!.url });
    await c.connect();
    await c.query('CREATE TABLE orders (id int PRIMARY KEY)');
    const pool = createPool(server!.url, { max: 1 });
    try {
      const err = await ensureSource(pool, sourceConfig('old', ['public.orders'])).catch((e: Error) => e);
      expect(err).toBeInstanceOf(SetupError);
      expect((err as Error).message).toMatch(/^source "old": Postgres 13\.\d+ is too old; Sluice captures from Postgres 14 or later \(it needs pgoutput's messages option/);
      const { rows } = await c.query(`SELECT (SELECT count(*) FROM pg_publication)::int AS pubs, (SELECT count(*) FROM pg_replication_slots)::int AS slots`);
      expect(rows[0]).toEqual({ pubs: 0, slots: 0 });
    } finally {
      await pool.end();
      await c.end();
    }
  });

  it('as the buffer: migrations refuse it naming the version, and create nothing', async () => {
    const pool = createPool(server!.url, { max: 1 });
    try {
      await expect(migrate(pool)).rejects.toThrow(/^the buffer database runs Postgres 13\.\d+; Sluice needs Postgres 14 or later for its buffer/);
      const { rows } = await pool.query(`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'sluice'`);
      expect(rows[0].n).toBe(0);
    } finally {
      await pool.end();
    }
  });
});
