// The SQL view over the retained log (sluice.changes, migrations/0010_log.sql;
// docs/sql.md): changes captured from a real source appear with their table,
// action, record and changes as jsonb, commit time and LSN (pg_lsn), and stay
// after the consumer acks them. The column list is the documented interface.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ack, claim } from '../src/buffer/claim.js';
import { migrate } from '../src/db/migrate.js';
import { createPool } from '../src/db/pool.js';
import { consumerConfig, eventually, sourceConfig, sql, startCapture } from './helpers/capture.js';
import { startTestPg, type TestPg } from './helpers/pg.js';

let pg: TestPg;
beforeAll(async () => {
  pg = await startTestPg();
});
afterAll(async () => {
  await pg?.stop();
});

describe('sluice.changes', () => {
  it('has the documented columns and types', async () => {
    const url = await pg.createDatabase('sql_view_columns');
    const pool = createPool(url);
    try {
      await migrate(pool);
      const { rows } = await pool.query(
        `SELECT column_name AS name, data_type AS type FROM information_schema.columns
         WHERE table_schema = 'sluice' AND table_name = 'changes' ORDER BY ordinal_position`,
      );
      expect(rows.map((r) => `${r.name} ${r.type}`)).toEqual([
        'source text',
        'table_schema text',
        'table_name text',
        'action text',
        'record jsonb',
        'changes jsonb',
        'committed_at timestamp with time zone',
        'commit_lsn pg_lsn',
        'commit_idx integer',
        'idempotency_key text',
        'transaction_annotations jsonb',
        'message jsonb',
      ]);

      // docs/sql.md: a role granted the view alone reads it, and nothing behind it.
      await pool.query(`DROP ROLE IF EXISTS sluice_test_auditor; CREATE ROLE sluice_test_auditor;
        GRANT USAGE ON SCHEMA sluice TO sluice_test_auditor; GRANT SELECT ON sluice.changes TO sluice_test_auditor`);
      const c = await pool.connect();
      try {
        await c.query('SET ROLE sluice_test_auditor');
        expect((await c.query('SELECT count(*)::int AS n FROM sluice.changes')).rows[0].n).toBe(0);
        for (const table of ['sluice.log', 'sluice.sources', 'sluice.consumers']) {
          await expect(c.query(`SELECT 1 FROM ${table} LIMIT 1`)).rejects.toThrow(/permission denied/);
        }
      } finally {
        await c.query('RESET ROLE').catch(() => {});
        c.release();
      }
    } finally {
      await pool.end();
    }
  });

  it('shows captured inserts, updates and deletes, and keeps them after the consumer acks', async () => {
    const url = await pg.createDatabase('sql_view');
    await sql(url, `CREATE TABLE orders (id bigint PRIMARY KEY, status text, amount numeric(10,2))`);
    // The old row in full, so an update's changes and a delete's record carry every column.
    await sql(url, `ALTER TABLE orders REPLICA IDENTITY FULL`);
    const fx = await startCapture(url, sourceConfig('audit', ['public.orders']), [consumerConfig('auditor', 'audit', ['public.orders'])]);
    try {
      const before = (await sql(url, `SELECT now() AS t, pg_current_wal_lsn()::text AS lsn`)).rows[0];
      await sql(url, `INSERT INTO orders VALUES (42, 'pending', 19.90)`);
      await sql(url, `UPDATE orders SET status = 'paid' WHERE id = 42`);
      await sql(url, `DELETE FROM orders WHERE id = 42`);
      const after = (await sql(url, `SELECT now() AS t`)).rows[0];

      const read = async () =>
        (await fx.pool.query(
          `SELECT source, table_schema, table_name, action, record, changes, committed_at, commit_lsn::text AS commit_lsn,
             commit_idx, idempotency_key, transaction_annotations, message,
             commit_lsn > $1::pg_lsn AS after_start,
             commit_lsn = '0/0'::pg_lsn + (message -> 'metadata' ->> 'commit_lsn')::numeric AS lsn_matches
           FROM sluice.changes WHERE source = 'audit' ORDER BY commit_lsn, commit_idx`,
          [before.lsn],
        )).rows;
      const rows = await eventually(async () => {
        const r = await read();
        return r.length === 3 ? r : null;
      });

      expect(rows.map((r) => [r.source, r.table_schema, r.table_name, r.action])).toEqual([
        ['audit', 'public', 'orders', 'insert'],
        ['audit', 'public', 'orders', 'update'],
        ['audit', 'public', 'orders', 'delete'],
      ]);
      expect(rows.map((r) => [r.record, r.changes])).toEqual([
        [{ id: 42, status: 'pending', amount: '19.90' }, null],
        [{ id: 42, status: 'paid', amount: '19.90' }, { status: 'pending' }],
        [{ id: 42, status: 'paid', amount: '19.90' }, null],
      ]);
      for (const r of rows) {
        // The commit: time within the statements' span, LSN a pg_lsn past where they began.
        expect(r.committed_at.getTime()).toBeGreaterThanOrEqual(before.t.getTime());
        expect(r.committed_at.getTime()).toBeLessThanOrEqual(after.t.getTime());
        expect(r.committed_at).toEqual(new Date(r.message.metadata.commit_timestamp));
        expect(r.commit_lsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
        expect(r).toMatchObject({ after_start: true, lsn_matches: true, commit_idx: 0, transaction_annotations: null });
        // The message's own idempotency key: base64 of "<commit_lsn as an integer>:<commit_idx>".
        expect(r.idempotency_key).toBe(r.message.metadata.idempotency_key);
        expect(Buffer.from(r.idempotency_key, 'base64').toString()).toBe(`${r.message.metadata.commit_lsn}:${r.commit_idx}`);
        expect(r.message).toMatchObject({ record: r.record, changes: r.changes, action: r.action });
      }
      expect(new Set(rows.map((r) => r.commit_lsn)).size).toBe(3);

      // The consumer takes them and acks them: its delivery state goes, the changes stay.
      const consumerId: string = (await fx.pool.query(`SELECT id FROM sluice.consumers WHERE name = 'auditor'`)).rows[0].id;
      const { messages } = await claim(fx.pool, { consumerId, limit: 10, visibilityMs: 30_000, deadLetterBlocksGroup: false });
      // One group (order 42): one at a time.
      const acked: string[] = [];
      let batch = messages;
      for (let i = 0; i < 5 && batch.length > 0; i++) {
        expect((await ack(fx.pool, consumerId, batch.map((m) => m.ackId))).applied).toBe(batch.length);
        acked.push(...batch.map((m) => m.commitLsn));
        batch = (await claim(fx.pool, { consumerId, limit: 10, visibilityMs: 30_000, deadLetterBlocksGroup: false })).messages;
      }
      expect(acked).toHaveLength(3);
      expect(Number((await fx.pool.query('SELECT count(*) FROM sluice.messages WHERE consumer_id = $1', [consumerId])).rows[0].count)).toBe(0);
      expect((await read()).map(({ message, ...r }) => r)).toEqual(rows.map(({ message, ...r }) => r));

      // The queries of docs/sql.md.
      const lastHour = await fx.pool.query(
        `SELECT committed_at, action, record FROM sluice.changes
         WHERE table_schema = 'public' AND table_name = 'orders' AND committed_at > now() - interval '1 hour'
         ORDER BY commit_lsn, commit_idx`,
      );
      expect(lastHour.rows.map((r) => r.action)).toEqual(['insert', 'update', 'delete']);
      const oneRow = await fx.pool.query(
        `SELECT commit_lsn, action, record, changes FROM sluice.changes
         WHERE table_schema = 'public' AND table_name = 'orders' AND message -> 'metadata' -> 'record_pks' = '["42"]'
         ORDER BY commit_lsn, commit_idx`,
      );
      expect(oneRow.rows.map((r) => r.action)).toEqual(['insert', 'update', 'delete']);
      const perMinute = await fx.pool.query(
        `SELECT date_trunc('minute', committed_at) AS minute, action, count(*)::int AS n FROM sluice.changes
         WHERE committed_at > now() - interval '1 hour'
         GROUP BY 1, 2 ORDER BY 1, 2`,
      );
      expect(perMinute.rows.reduce((n, r) => n + r.n, 0)).toBe(3);
      expect(new Set(perMinute.rows.map((r) => r.action))).toEqual(new Set(['insert', 'update', 'delete']));

      // A time filter can use the log's BRIN index on committed_at (the planner picks it on a log
      // of any size; here, with sequential scans off, it shows it can).
      const client = await fx.pool.connect();
      try {
        await client.query('BEGIN');
        await client.query('SET LOCAL enable_seqscan = off');
        const plan = (await client.query(`EXPLAIN SELECT * FROM sluice.changes WHERE committed_at > now() - interval '1 hour'`)).rows
          .map((r) => r['QUERY PLAN'])
          .join('\n');
        expect(plan).toMatch(/Bitmap Index Scan on \S*committed_at\S*/);
        await client.query('ROLLBACK');
      } finally {
        client.release();
      }
    } finally {
      await fx.stop();
    }
  });
});
