// A table and a consumer added while capture runs, by another process: every
// change made after the config call returned reaches the new consumer, with no
// restart and without waiting for the NOTIFY reload (this capture's registry
// has no listener at all: only the 'sluice_config' WAL marker can update it).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { markConfigChange } from '../src/capture/config-marker.js';
import { prepareSource } from '../src/capture/setup.js';
import { applyConfig } from '../src/config/apply.js';
import { loadConfig } from '../src/config/load.js';
import { configVersion, selectSources } from '../src/config/queries.js';
import { createPool } from '../src/db/pool.js';
import { consumerConfig, eventually, payloads, sourceConfig, sql, startCapture } from './helpers/capture.js';
import { startTestPg, type TestPg } from './helpers/pg.js';

let pg: TestPg;
beforeAll(async () => {
  pg = await startTestPg();
});
afterAll(async () => {
  await pg?.stop();
});

const yaml = (tables: string) => `
sources:
  - name: live
    tables: [${tables}]
consumers:
  - name: orders-pull
    source: live
    kind: pull
    tables: [public.orders]
  - name: audit-pull
    source: live
    kind: pull
    tables: [public.audit_items]
`;

describe('a table added while capture runs', () => {
  it('is captured from the moment config apply returns, routed by the marker in the WAL', async () => {
    const url = await pg.createDatabase('cap_config_change');
    await sql(url, 'CREATE TABLE orders (id bigint PRIMARY KEY); CREATE TABLE audit_items (id bigint PRIMARY KEY)');
    const fx = await startCapture(url, sourceConfig('live', ['public.orders']), [consumerConfig('orders-pull', 'live', ['public.orders'])]);
    const other = createPool(url, { max: 2 }); // the CLI's own connection
    try {
      const version = fx.consumers.version;
      await sql(url, 'INSERT INTO orders VALUES (1)');
      await sql(url, 'INSERT INTO audit_items VALUES (1)'); // before the table is added: not captured

      // What `sluice config apply` does, from another process.
      const config = loadConfig({ text: yaml('public.orders, public.audit_items') }, {});
      await applyConfig(other, config, { prepareSource: async (s, opts) => void (await prepareSource(s, url, opts)) });
      await markConfigChange(await configVersion(other), await selectSources(other), url, (_s, err) => {
        throw err;
      });
      // Straight after it returned, with no wait.
      await sql(url, 'INSERT INTO audit_items VALUES (2), (3)');
      await sql(url, 'INSERT INTO orders VALUES (2)');

      const audit = await eventually(async () => {
        const p = await payloads(fx.pool, 'audit-pull');
        return p.length >= 2 ? p : null;
      });
      expect(audit.map((m) => m.record.id)).toEqual([2, 3]);
      await eventually(async () => (await payloads(fx.pool, 'orders-pull')).length === 2);
      // The registry moved on because of the marker alone.
      expect(fx.consumers.version).toBeGreaterThan(version);
    } finally {
      await other.end();
      await fx.stop();
    }
  });
});
