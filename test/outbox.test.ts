// The transactional outbox: an application publishes to a stream inside its
// own transaction (sluice.publish, or pg_logical_emit_message with the
// 'sluice:<stream>' prefix). On a real source and buffer, through capture and
// the pull API: a rolled-back transaction's message is never delivered, a
// committed one always is, in commit order, carrying its transaction's
// commit_lsn (the same as its changes carry).
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApi, type ApiFixture } from './api-fixture.js';
import { eventually, sourceConfig, startCapture, type CaptureFixture } from './helpers/capture.js';

let f: ApiFixture;
let capture: CaptureFixture;
const SOURCE = { name: 'main', tables: ['public.orders'] };

async function drain(name: string): Promise<any[]> {
  const out: any[] = [];
  for (let round = 0; round < 50; round++) {
    const r = await f.call('POST', `/api/http_pull_consumers/${name}/receive`, { batch_size: 100 });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const items = r.body.data as Array<{ ack_id: string; data: any }>;
    if (items.length === 0) return out;
    out.push(...items.map((i) => i.data));
    expect((await f.call('POST', `/api/http_pull_consumers/${name}/ack`, { ack_ids: items.map((i) => i.ack_id) })).status).toBe(200);
  }
  throw new Error('drain did not end');
}

/** Runs `statements` in one transaction of the application's own connection; rolls back when told. */
async function tx(statements: string[], rollback = false): Promise<void> {
  const c = new pg.Client({ connectionString: f.url });
  await c.connect();
  try {
    await c.query('BEGIN');
    for (const s of statements) await c.query(s);
    await c.query(rollback ? 'ROLLBACK' : 'COMMIT');
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  f = await startApi('outbox');
  expect((await f.call('POST', '/api/sources', SOURCE)).status).toBe(201);
  expect((await f.call('POST', '/api/streams', { name: 'events' })).status).toBe(201);
  for (const body of [
    { name: 'ev', kind: 'pull', stream: 'events' },
    { name: 'ev-paid', kind: 'pull', stream: 'events', subjects: ['orders.paid'] },
    { name: 'rows', kind: 'pull', source: 'main', tables: SOURCE.tables },
  ]) {
    const r = await f.call('POST', '/api/consumers', body);
    expect(r.status, JSON.stringify(r.body)).toBe(201);
  }
  capture = await startCapture(f.url, sourceConfig('main', SOURCE.tables), []);
}, 60_000);

afterAll(async () => {
  await capture?.stop();
  await f?.stop();
});

describe('the transactional outbox', () => {
  it('setup installs sluice.publish, which refuses a bad subject or stream in the application\'s own statement', async () => {
    const fn = await f.pool.query(`SELECT to_regprocedure('sluice.publish(text,text,jsonb,text,text)') IS NOT NULL AS ok`);
    expect(fn.rows[0].ok).toBe(true);
    await expect(tx([`SELECT sluice.publish('events', 'orders..new', '{}')`])).rejects.toThrow(/'orders\.\.new' is not a subject/);
    await expect(tx([`SELECT sluice.publish('Events!', 'orders.new', '{}')`])).rejects.toThrow(/is not a stream name/);
    await expect(tx([`SELECT sluice.publish('events', 'orders.new', '{}', '')`])).rejects.toThrow(/key and idempotency_key/);
  });

  it('sends a message if and only if its transaction commits, in commit order, placed by its commit_lsn among the changes', async () => {
    await tx([`INSERT INTO public.orders VALUES (1, 'new')`, `SELECT sluice.publish('events', 'orders.created', '{"id": 1, "total": 12345678901234567}')`]);
    await tx([`INSERT INTO public.orders VALUES (2, 'new')`, `SELECT sluice.publish('events', 'orders.created', '{"id": 2}')`], true);
    // Published before its row change, with a key and an idempotency key, by the raw function.
    await tx([
      `SELECT pg_logical_emit_message(true, 'sluice:events', '{"subject": "orders.paid", "data": {"id": 1}, "key": "order-1", "idempotency_key": "paid-1"}')`,
      `UPDATE public.orders SET status = 'paid' WHERE id = 1`,
    ]);
    // The same idempotency key again: stored once.
    await tx([`SELECT sluice.publish('events', 'orders.paid', '{"id": 1}', 'order-1', 'paid-1')`, `INSERT INTO public.orders VALUES (3, 'new')`]);
    await tx([`INSERT INTO public.orders VALUES (4, 'new')`, `SELECT sluice.publish('events', 'orders.created', 'null')`, `SELECT sluice.publish('events', 'orders.created', '[4]')`]);

    const rows = await eventually(async () => {
      const got = await drain('rows');
      return got.length ? got : null;
    });
    await eventually(async () => {
      if (rows.length < 4) rows.push(...(await drain('rows')));
      return rows.length >= 4;
    });
    // In commit order (a pull consumer serves different rows' changes side by side).
    rows.sort((a, b) => a.metadata.commit_lsn - b.metadata.commit_lsn || a.metadata.commit_idx - b.metadata.commit_idx);
    expect(rows.map((r) => `${r.action}:${r.record.id}`)).toEqual(['insert:1', 'update:1', 'insert:3', 'insert:4']);
    const events: any[] = [];
    await eventually(async () => {
      events.push(...(await drain('ev')));
      return events.length >= 4;
    });
    // By position in the stream (a pull consumer serves different keys side by side).
    events.sort((a, b) => a.metadata.sequence - b.metadata.sequence);
    expect(events.map((e) => [e.subject, e.data])).toEqual([
      ['orders.created', { id: 1, total: 12345678901234567 }],
      ['orders.paid', { id: 1 }],
      ['orders.created', null],
      ['orders.created', [4]],
    ]);
    // Positions follow commit order, and each message carries its transaction's
    // commit_lsn: after its own changes' commit and before the next transaction's.
    expect(events.map((e) => e.metadata.commit_lsn)).toEqual([rows[0], rows[1], rows[3], rows[3]].map((r) => r.metadata.commit_lsn));
    expect(events[0].metadata).toMatchObject({
      stream: 'events',
      source: 'main',
      key: 'orders.created',
      published_at: rows[0].metadata.commit_timestamp,
      idempotency_key: `outbox:main:${rows[0].metadata.commit_lsn}:1`,
      consumer: { name: 'ev' },
    });
    expect(events[1].metadata).toMatchObject({ key: 'order-1', idempotency_key: 'paid-1' });
    expect((await drain('ev-paid')).map((e) => e.data)).toEqual([{ id: 1 }]);
    // Nothing else comes (the rolled-back message, the duplicate).
    await new Promise((r) => setTimeout(r, 300));
    expect(await drain('ev')).toEqual([]);
  });

  it('stores data and keys exactly: escapes, backslashes, quotes and unicode', async () => {
    const data = { note: 'tab\there\nline \\ "quoted" é€😀', nested: { path: 'C:\\dir\\file' } };
    await tx([`SELECT sluice.publish('events', 'orders.noted', $j$${JSON.stringify(data)}$j$, 'clé-😀')`]);
    const got: any[] = [];
    await eventually(async () => {
      got.push(...(await drain('ev')).filter((e) => e.subject === 'orders.noted'));
      return got.length >= 1;
    });
    expect(got[0].data).toEqual(data);
    expect(got[0].metadata.key).toBe('clé-😀');
  });

  it('interleaves with messages published over the API, in one order', async () => {
    const api = await f.call('POST', '/api/streams/events/messages', { subject: 'api.one', data: 1 });
    expect(api.status).toBe(200);
    await tx([`SELECT sluice.publish('events', 'outbox.two', '2')`]);
    const got: any[] = [];
    await eventually(async () => {
      got.push(...(await drain('ev')));
      return got.length >= 1 && got.some((e) => e.subject === 'outbox.two');
    });
    const api2 = await f.call('POST', '/api/streams/events/messages', { subject: 'api.three', data: 3 });
    expect(api2.status).toBe(200);
    await eventually(async () => {
      got.push(...(await drain('ev')));
      return got.length >= 3;
    });
    got.sort((a, b) => a.metadata.sequence - b.metadata.sequence);
    expect(got.map((e) => e.subject)).toEqual(['api.one', 'outbox.two', 'api.three']);
  });

  it('refuses what it cannot store, says why in the log and the source status, and goes on', async () => {
    await tx([
      `SELECT pg_logical_emit_message(true, 'sluice:events', 'not json')`,
      `SELECT pg_logical_emit_message(true, 'sluice:nope', '{"subject": "a.b", "data": 1}')`,
      `SELECT pg_logical_emit_message(false, 'sluice:events', '{"subject": "a.b", "data": 1}')`,
      `SELECT pg_logical_emit_message(true, 'sluice:events', '{"subject": "a.>", "data": 1}')`,
      `SELECT sluice.publish('events', 'after.refusals', '5')`,
    ]);
    const got: any[] = [];
    await eventually(async () => {
      got.push(...(await drain('ev')));
      return got.length >= 1;
    });
    expect(got.map((e) => e.subject)).toEqual(['after.refusals']);
    const refused = capture.capture.status().outbox_refused;
    expect(refused?.count).toBe(4);
    // The unknown stream is found out when the batch is stored, after the others.
    expect(refused?.last_reason).toMatch(/stream "nope": stream "nope" does not exist/);
  });

  it('a stream cannot be named "backfill" (Sluice\'s own messages use sluice:backfill)', async () => {
    const r = await f.call('POST', '/api/streams', { name: 'backfill' });
    expect(r.status).toBe(422);
    expect(JSON.stringify(r.body)).toMatch(/reserved/);
  });
});
