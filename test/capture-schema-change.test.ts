// Schema changes while capture runs (shared/spec/capture.md: "a schema change is
// picked up without a restart"): a table added to the publication, columns added,
// retyped and dropped, a type created after capture started. One SourceCapture
// streams throughout; the test checks it never restarted.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { consumerConfig, eventually, insertConsumer, payloads, sourceConfig, sql, startCapture, type CaptureFixture } from './helpers/capture.js';
import { startTestPg, type TestPg } from './helpers/pg.js';

let server: TestPg;
let url: string;
let fx: CaptureFixture;
let walsender: number;

/** The pid of capture's walsender: unchanged means the stream never restarted. */
async function walsenderPid(): Promise<number> {
  const { rows } = await sql(url, `SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'sluice_schema'`);
  return rows[0].active_pid;
}

beforeAll(async () => {
  server = await startTestPg();
  url = await server.createDatabase('cap_schema');
  await sql(url, `CREATE TABLE a (id int PRIMARY KEY, n int, gone text)`);
  fx = await startCapture(url, sourceConfig('schema', ['public.a']), [consumerConfig('ca', 'schema', ['public.a'])]);
  walsender = await walsenderPid();
  expect(walsender).toBeGreaterThan(0);
});
afterAll(async () => {
  await fx?.stop();
  await server?.stop();
});

async function waitFor(consumer: string, n: number): Promise<Record<string, any>[]> {
  return eventually(async () => {
    const p = await payloads(fx.pool, consumer);
    return p.length >= n ? p : null;
  });
}

describe('capture: schema changes without a restart', () => {
  it('columns added, retyped and dropped; a type created after capture started', async () => {
    await sql(url, `INSERT INTO a VALUES (1, 5, 'bye')`);
    await waitFor('ca', 1);

    await sql(url, `ALTER TABLE a ADD COLUMN extra text DEFAULT 'dflt'`);
    await sql(url, `INSERT INTO a VALUES (2, 6, 'bye', 'given')`);
    // A row written before the column existed: its default is decoded.
    await sql(url, `UPDATE a SET n = 50 WHERE id = 1`);

    await sql(url, `ALTER TABLE a DROP COLUMN gone, ALTER COLUMN n TYPE numeric(12,3)`);
    await sql(url, `CREATE TYPE color AS ENUM ('red', 'green'); ALTER TABLE a ADD COLUMN c color, ADD COLUMN cs color[]`);
    await sql(url, `INSERT INTO a (id, n, c, cs) VALUES (3, 7.5, 'green', '{red,NULL}')`);

    const msgs = await waitFor('ca', 4);
    expect(msgs.map((m) => m.record)).toEqual([
      { id: 1, n: 5, gone: 'bye' },
      { id: 2, n: 6, gone: 'bye', extra: 'given' },
      { id: 1, n: 50, gone: 'bye', extra: 'dflt' },
      // numeric now: a string with its scale; the dropped column is gone.
      { id: 3, n: '7.500', extra: 'dflt', c: 'green', cs: ['red', null] },
    ]);
    expect(fx.capture.status()).toMatchObject({ running: true, last_error: null });
  });

  it('a table added to the publication and a consumer for it, while capture runs', async () => {
    await sql(url, `CREATE TABLE b (k text PRIMARY KEY, v jsonb)`);
    await sql(url, `ALTER PUBLICATION sluice_schema ADD TABLE b`);
    await insertConsumer(fx.pool, consumerConfig('cb', 'schema', ['public.b']));
    // A consumer of both tables, too: it receives both from now on.
    await insertConsumer(fx.pool, consumerConfig('cab', 'schema', ['public.a', 'public.b']));
    await fx.consumers.reload();

    await sql(url, `INSERT INTO b VALUES ('k1', '{"x": 1}')`);
    await sql(url, `BEGIN; INSERT INTO a (id, n) VALUES (10, 1); INSERT INTO b VALUES ('k2', '[]'); COMMIT;`);

    const cb = await waitFor('cb', 2);
    expect(cb.map((m) => [m.metadata.table_name, m.record])).toEqual([
      ['b', { k: 'k1', v: { x: 1 } }],
      ['b', { k: 'k2', v: [] }],
    ]);
    const cab = await waitFor('cab', 3);
    expect(cab.map((m) => `${m.metadata.table_name}:${m.metadata.record_pks[0]}:${m.metadata.commit_idx}`)).toEqual(['b:k1:0', 'a:10:0', 'b:k2:1']);
    // The first consumer still sees only its own table.
    const ca = await waitFor('ca', 5);
    expect(ca.map((m) => m.metadata.table_name)).toEqual(['a', 'a', 'a', 'a', 'a']);
    expect(ca.length).toBe(5);
    expect(fx.capture.status()).toMatchObject({ running: true, last_error: null });
  });

  it('a consumer removed while capture runs stops receiving', async () => {
    const { rows } = await fx.pool.query(`DELETE FROM sluice.consumers WHERE name = 'cb' RETURNING id`);
    await fx.consumers.reload();
    await sql(url, `INSERT INTO b VALUES ('k3', 'null')`);
    const cab = await waitFor('cab', 4);
    expect(cab[3].record).toEqual({ k: 'k3', v: null });
    // Nothing of the removed consumer is left to deliver (its position went with it).
    const left = await fx.pool.query(
      `SELECT (SELECT count(*) FROM sluice.messages WHERE consumer_id = $1)::int AS rows,
              (SELECT count(*) FROM sluice.consumer_positions WHERE consumer_id = $1)::int AS positions`,
      [rows[0].id],
    );
    expect(left.rows[0]).toEqual({ rows: 0, positions: 0 });
    // The same walsender throughout: nothing above needed a reconnect.
    expect(await walsenderPid()).toBe(walsender);
  });
});
