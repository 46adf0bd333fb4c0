import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPg, type TestPg } from './helpers/pg.js';
import { ConsumerRegistry } from '../src/buffer/consumers.js';
import { SourceCapture } from '../src/capture/source-capture.js';
import { consumerConfig, eventually, payloads, quietLog, sourceConfig, sql, startCapture } from './helpers/capture.js';

let pg: TestPg;
beforeAll(async () => {
  pg = await startTestPg();
});
afterAll(async () => {
  await pg?.stop();
});

describe('capture', () => {
  it('idle, with the buffer in the source\'s own database, writes its position at most once a second', async () => {
    // Postgres 14 decodes transactions that touch no published table (each
    // buffer write is one), 15+ skip them: unthrottled, each position write
    // made the next (~2,900 a second on 14).
    const url = await pg.createDatabase('cap_idle');
    await sql(url, `CREATE TABLE t (id int PRIMARY KEY)`);
    const fx = await startCapture(url, sourceConfig('idle', ['public.t']), [consumerConfig('c1', 'idle', ['public.t'])]);
    try {
      await sql(url, `INSERT INTO t VALUES (1)`);
      await eventually(async () => (await payloads(fx.pool, 'c1')).length === 1);
      const writes = async () =>
        Number((await fx.pool.query(`SELECT n_tup_ins + n_tup_upd AS n FROM pg_stat_user_tables WHERE schemaname = 'sluice' AND relname = 'source_positions'`)).rows[0].n);
      await new Promise((r) => setTimeout(r, 500));
      const before = await writes();
      await new Promise((r) => setTimeout(r, 3000));
      // Statistics arrive late on 14: a margin, not an exact count.
      expect((await writes()) - before).toBeLessThanOrEqual(6);
    } finally {
      await fx.stop();
    }
  });

  it('captures insert, update and delete into the buffer with the envelope', async () => {
    const url = await pg.createDatabase('cap_basic');
    await sql(url, `CREATE TABLE orders (id bigint PRIMARY KEY, status text, amount numeric(10,2))`);
    const fx = await startCapture(url, sourceConfig('app', ['public.orders']), [consumerConfig('c1', 'app', ['public.orders'])]);
    try {
      await sql(url, `INSERT INTO orders VALUES (42, 'pending', 19.90)`);
      await sql(url, `UPDATE orders SET status = 'paid' WHERE id = 42`);
      await sql(url, `DELETE FROM orders WHERE id = 42`);
      const msgs = await eventually(async () => {
        const p = await payloads(fx.pool, 'c1');
        return p.length === 3 ? p : null;
      });
      expect(msgs.map((m) => m.action)).toEqual(['insert', 'update', 'delete']);
      expect(msgs[0].record).toEqual({ id: 42, status: 'pending', amount: '19.90' });
      expect(msgs[1].changes).toEqual({});
      expect(msgs[2].record).toEqual({ id: 42 });
      expect(msgs[0].metadata.table_name).toBe('orders');
      expect(msgs[0].metadata.record_pks).toEqual(['42']);
      expect(msgs[0].metadata.commit_timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
      const m = msgs[0].metadata;
      expect(Buffer.from(m.idempotency_key, 'base64').toString()).toBe(`${m.commit_lsn}:${m.commit_idx}`);
    } finally {
      await fx.stop();
    }
  });

  it('a second capture of the same source stands by (status standing_by) and takes over when the first stops', async () => {
    const url = await pg.createDatabase('cap_standby');
    await sql(url, `CREATE TABLE orders (id bigint PRIMARY KEY, status text)`);
    // Slots are cluster-wide: a source name of its own.
    const source = sourceConfig('standby', ['public.orders']);
    const first = await startCapture(url, source, [consumerConfig('c1', 'standby', ['public.orders'])]);
    const registry = new ConsumerRegistry(first.pool);
    await registry.reload();
    const second = new SourceCapture(source, { bufferPool: first.pool, sourceUrl: url, consumers: registry, log: quietLog });
    second.start();
    try {
      await eventually(async () => second.status().standing_by);
      expect(second.status()).toMatchObject({ running: false, standing_by: true, last_error: expect.stringMatching(/in use by another process \(standing by\)/) });
      expect(first.capture.status()).toMatchObject({ running: true, standing_by: false });

      await first.capture.stop();
      await eventually(async () => second.status().running, 30_000);
      expect(second.status()).toMatchObject({ running: true, standing_by: false, last_error: null });
      await sql(url, `INSERT INTO orders VALUES (1, 'paid')`);
      await eventually(async () => (await payloads(first.pool, 'c1')).length === 1);
    } finally {
      await second.stop();
      await first.stop();
    }
  });
});
