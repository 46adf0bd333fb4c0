// Updates and deletes under the default replica identity and under FULL, with a
// composite primary key whose key order differs from the column order: the
// record, `changes`, record_pks and the group key each consumer stores.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from '../src/db/pool.js';
import { consumerConfig, eventually, sourceConfig, sql, startCapture, type CaptureFixture, CONSUMER_CHANGES } from './helpers/capture.js';
import { startTestPg, type TestPg } from './helpers/pg.js';

let server: TestPg;
let url: string;
let fx: CaptureFixture;

// Columns (region, id, …) but key (id, region): record_pks must follow the key.
const TABLE = (name: string) =>
  `CREATE TABLE ${name} (region text, id int, name text, amount int, PRIMARY KEY (id, region))`;

beforeAll(async () => {
  server = await startTestPg();
  url = await server.createDatabase('cap_identity');
  await sql(url, `${TABLE('acct')}; ${TABLE('acct_full')}; ALTER TABLE acct_full REPLICA IDENTITY FULL;`);
  const tables = ['public.acct', 'public.acct_full'];
  fx = await startCapture(url, sourceConfig('ident', tables), [
    consumerConfig('by-pk', 'ident', tables),
    consumerConfig('by-name', 'ident', tables, { group_by: { 'public.acct': ['name'], 'public.acct_full': ['name'] } }),
    consumerConfig('ungrouped', 'ident', tables, { group_by: false }),
  ]);
});
afterAll(async () => {
  await fx?.stop();
  await server?.stop();
});

interface Stored {
  group_key: string | null;
  msg: Record<string, any>;
}

async function stored(pool: Pool, consumer: string, table: string, n: number): Promise<Stored[]> {
  return eventually(async () => {
    const { rows } = await pool.query<{ group_key: string | null; payload: string }>(
      `SELECT m.group_key, m.payload FROM ${CONSUMER_CHANGES} m
        WHERE m.consumer = $1 AND m.payload::json->'metadata'->>'table_name' = $2 ORDER BY m.commit_lsn, m.commit_idx`,
      [consumer, table],
    );
    return rows.length >= n ? rows.map((r) => ({ group_key: r.group_key, msg: JSON.parse(r.payload) })) : null;
  });
}

async function run(table: string): Promise<void> {
  await sql(url, `INSERT INTO ${table} VALUES ('eu', 1, 'ann', 10)`);
  await sql(url, `UPDATE ${table} SET name = 'bob', amount = 11 WHERE id = 1`);
  await sql(url, `UPDATE ${table} SET id = 2 WHERE id = 1`); // a primary-key change
  await sql(url, `DELETE FROM ${table} WHERE id = 2`);
}

describe('capture: update and delete by replica identity', () => {
  it('default identity: changes are {} except a key change (old key), delete carries the key only', async () => {
    await run('acct');
    const rows = await stored(fx.pool, 'by-pk', 'acct', 4);
    const [ins, upd, keyChange, del] = rows.map((r) => r.msg);
    expect(rows.map((r) => r.msg.action)).toEqual(['insert', 'update', 'update', 'delete']);

    expect(ins.record).toEqual({ region: 'eu', id: 1, name: 'ann', amount: 10 });
    expect(ins.changes).toBeNull();
    expect(ins.metadata.record_pks).toEqual(['1', 'eu']);

    // The old row is not in the WAL: nothing to compare with.
    expect(upd.record).toEqual({ region: 'eu', id: 1, name: 'bob', amount: 11 });
    expect(upd.changes).toEqual({});

    // A key change logs the old key: its changed column is reported.
    expect(keyChange.record).toEqual({ region: 'eu', id: 2, name: 'bob', amount: 11 });
    expect(keyChange.changes).toEqual({ id: 1 });
    expect(keyChange.metadata.record_pks).toEqual(['2', 'eu']);

    // Delete: only the key columns, in table order, with no TOAST report.
    expect(del.record).toEqual({ region: 'eu', id: 2 });
    expect(Object.keys(del.record)).toEqual(['region', 'id']);
    expect(del.changes).toBeNull();
    expect(del.metadata.record_pks).toEqual(['2', 'eu']);
    expect(del.metadata.unchanged_toast_columns).toBeUndefined();

    // Group key: table and primary key in key order.
    expect(rows.map((r) => r.group_key)).toEqual([
      'public.acct:["1","eu"]',
      'public.acct:["1","eu"]',
      'public.acct:["2","eu"]',
      'public.acct:["2","eu"]',
    ]);
    // Grouped by a non-key column: the delete's key-only record lacks it, so it
    // falls back to the primary key group rather than inventing a value.
    const byName = await stored(fx.pool, 'by-name', 'acct', 4);
    expect(byName.map((r) => r.group_key)).toEqual([
      'public.acct:["ann"]',
      'public.acct:["bob"]',
      'public.acct:["bob"]',
      'public.acct:["2","eu"]',
    ]);
    const ungrouped = await stored(fx.pool, 'ungrouped', 'acct', 4);
    expect(ungrouped.map((r) => r.group_key)).toEqual([null, null, null, null]);
    // Every consumer stores the same payload for a change.
    expect(ungrouped.map((r) => r.msg)).toEqual(rows.map((r) => r.msg));
  });

  it('REPLICA IDENTITY FULL: changes hold the previous values of changed columns, delete carries the full row', async () => {
    await run('acct_full');
    const rows = await stored(fx.pool, 'by-pk', 'acct_full', 4);
    const [ins, upd, keyChange, del] = rows.map((r) => r.msg);
    expect(ins.record).toEqual({ region: 'eu', id: 1, name: 'ann', amount: 10 });
    expect(ins.metadata.record_pks).toEqual(['1', 'eu']);

    expect(upd.record).toEqual({ region: 'eu', id: 1, name: 'bob', amount: 11 });
    expect(upd.changes).toEqual({ name: 'ann', amount: 10 });

    expect(keyChange.record).toEqual({ region: 'eu', id: 2, name: 'bob', amount: 11 });
    expect(keyChange.changes).toEqual({ id: 1 });
    expect(keyChange.metadata.record_pks).toEqual(['2', 'eu']);

    expect(del.action).toBe('delete');
    expect(del.record).toEqual({ region: 'eu', id: 2, name: 'bob', amount: 11 });
    expect(del.changes).toBeNull();
    // record_pks stay the primary key even though FULL marks every column as identity.
    expect(del.metadata.record_pks).toEqual(['2', 'eu']);

    expect(rows.map((r) => r.group_key)).toEqual([
      'public.acct_full:["1","eu"]',
      'public.acct_full:["1","eu"]',
      'public.acct_full:["2","eu"]',
      'public.acct_full:["2","eu"]',
    ]);
    // With the full old row, a group on a non-key column is known for the delete too.
    const byName = await stored(fx.pool, 'by-name', 'acct_full', 4);
    expect(byName.map((r) => r.group_key)).toEqual([
      'public.acct_full:["ann"]',
      'public.acct_full:["bob"]',
      'public.acct_full:["bob"]',
      'public.acct_full:["bob"]',
    ]);
  });

  it('one transaction touching several rows: commit_idx counts its changes, one commit_lsn', async () => {
    await sql(
      url,
      `BEGIN;
       INSERT INTO acct VALUES ('us', 7, 'x', 1), ('us', 8, 'y', 2);
       UPDATE acct SET amount = amount + 1 WHERE region = 'us';
       DELETE FROM acct WHERE id = 7;
       COMMIT;`,
    );
    const rows = (await stored(fx.pool, 'by-pk', 'acct', 9)).slice(4).map((r) => r.msg);
    expect(rows.map((m) => `${m.action}:${m.metadata.record_pks.join('/')}`)).toEqual([
      'insert:7/us',
      'insert:8/us',
      'update:7/us',
      'update:8/us',
      'delete:7/us',
    ]);
    expect(new Set(rows.map((m) => m.metadata.commit_lsn)).size).toBe(1);
    expect(rows.map((m) => m.metadata.commit_idx)).toEqual([0, 1, 2, 3, 4]);
    expect(new Set(rows.map((m) => m.metadata.idempotency_key)).size).toBe(5);
  });
});
