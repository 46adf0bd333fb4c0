import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool } from '../src/db/pool.js';
import { migrate, readMigrations } from '../src/db/migrate.js';
import { startTestPg, type TestPg } from './helpers/pg.js';

let pg: TestPg;
beforeAll(async () => {
  pg = await startTestPg();
});
afterAll(async () => {
  await pg?.stop();
});

describe('migrations', () => {
  it('apply once, even from concurrent instances, and record each file', async () => {
    const url = await pg.createDatabase('migrate_once');
    const pools = [createPool(url), createPool(url), createPool(url)];
    try {
      const results = await Promise.all(pools.map((p) => migrate(p)));
      const all = results.flat();
      expect(all.sort()).toEqual(readMigrations().map((m) => m.name).sort());
      const again = await migrate(pools[0]);
      expect(again).toEqual([]);
      const { rows } = await pools[0].query('SELECT count(*)::int AS n FROM sluice.migrations');
      expect(rows[0].n).toBe(readMigrations().length);
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });
});
