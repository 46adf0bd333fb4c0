// Outbox messages in commit order with the table changes around them: a
// consumer of a source that names a stream in `outbox` reads the messages its
// source's transactions publish to it among those transactions' changes, each
// after the changes before it in its transaction and before the next
// transaction's. Through the whole gateway (capture, buffer, pull API and
// webhook delivery to a real receiver on 127.0.0.1), on a real Postgres.
import http from 'node:http';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import { Gateway } from '../src/gateway.js';
import { createLogger } from '../src/log.js';
import { verifyWebhook } from '../src/receive/index.js';
import { eventually } from './helpers/capture.js';
import { startTestPg, type TestPg } from './helpers/pg.js';
import { TEST_SECRET } from './helpers/receiver.js';

const TOKEN = 'outbox-order-admin-token';
let pgh: TestPg;
let url: string;
let gateway: Gateway;
let receiver: http.Server;
const hooked: any[] = [];

async function call(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const r = await fetch(`${gateway.httpAddress}${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body !== undefined && { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

/** Runs `statements` in one transaction of the application's own connection; rolls back when told. */
async function tx(statements: string[], rollback = false): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query('BEGIN');
    for (const s of statements) await c.query(s);
    await c.query(rollback ? 'ROLLBACK' : 'COMMIT');
  } finally {
    await c.end();
  }
}

/** One message at a time (max_ack_pending 1), acked before the next: the consumer's own order. */
async function receiveInOrder(name: string, count: number): Promise<any[]> {
  const out: any[] = [];
  const deadline = Date.now() + 45_000; // 1,202 receive-ack round trips take ~10 s alone, twice that beside other suites
  while (out.length < count && Date.now() < deadline) {
    const r = await call('POST', `/api/http_pull_consumers/${name}/receive`, { batch_size: 10 });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const items = r.body.data as Array<{ ack_id: string; data: any }>;
    if (items.length === 0) {
      await new Promise((res) => setTimeout(res, 50));
      continue;
    }
    expect(items.length).toBe(1);
    out.push(items[0].data);
    expect((await call('POST', `/api/http_pull_consumers/${name}/ack`, { ack_ids: [items[0].ack_id] })).status).toBe(200);
  }
  return out;
}

const label = (m: any) => (m.subject !== undefined ? `publish:${m.subject}` : `${m.action}:${m.record.id}`);

beforeAll(async () => {
  pgh = await startTestPg();
  url = await pgh.createDatabase('outbox_order');
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await c.query('CREATE TABLE public.orders (id int PRIMARY KEY, status text)');
  await c.end();
  receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      hooked.push(...(verifyWebhook<any>(Buffer.concat(chunks).toString(), req.headers, TEST_SECRET).data as any[]));
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', () => r()));
  const port = (receiver.address() as { port: number }).port;
  const config = loadConfig(
    {
      text: `
http: { host: 127.0.0.1, port: 0 }
auth: { admin_token: ${TOKEN} }
sources:
  - name: app
    tables: [public.orders]
    max_batch_changes: 500
streams:
  - name: events
consumers:
  - name: together
    source: app
    tables: [public.orders]
    outbox: [events]
    kind: pull
    pull: { max_ack_pending: 1 }
  - name: together-hook
    source: app
    tables: [public.orders]
    outbox: [events]
    kind: webhook
    webhook:
      url: http://127.0.0.1:${port}/hook
      secrets: ["${TEST_SECRET}"]
      batch_timeout: 0ms
      allow_private_ranges: ["127.0.0.0/8"]
  - name: big-only
    source: app
    tables: [public.orders]
    outbox: [events]
    subjects: ["big.*"]
    kind: pull
  - name: events-only
    stream: events
    kind: pull
`,
    },
    {},
  );
  gateway = new Gateway({ config, bufferUrl: url, log: createLogger('silent') });
  await gateway.start();
}, 60_000);

afterAll(async () => {
  await gateway?.stop();
  receiver?.close();
  await pgh?.stop();
});

describe('outbox messages among their source\'s changes', () => {
  it('come after their own transaction\'s changes before them and before the next transaction\'s; a rolled-back one never', async () => {
    await tx([
      `INSERT INTO public.orders VALUES (10, 'new')`,
      // The row's own group key as the message's key: one group, one order, for webhooks too.
      `SELECT sluice.publish('events', 'orders.created', '{"id": 10}', 'public.orders:["10"]')`,
      `UPDATE public.orders SET status = 'paid' WHERE id = 10`,
    ]);
    await tx([`INSERT INTO public.orders VALUES (11, 'new')`, `SELECT sluice.publish('events', 'orders.created', '{"id": 11}')`], true);
    await tx([`SELECT sluice.publish('events', 'orders.note', '"first"', 'public.orders:["10"]')`, `DELETE FROM public.orders WHERE id = 10`]);
    await tx([`INSERT INTO public.orders VALUES (12, 'new')`]);

    const got = await receiveInOrder('together', 6);
    expect(got.map(label)).toEqual(['insert:10', 'publish:orders.created', 'update:10', 'publish:orders.note', 'delete:10', 'insert:12']);
    // The message carries its transaction's commit_lsn, the same as its changes;
    // no stream sequence (its place is in the source's order), its own idempotency key.
    const [insert, created, update, note] = got;
    expect(created.metadata).toMatchObject({
      stream: 'events',
      source: 'app',
      sequence: null,
      key: 'public.orders:["10"]',
      commit_lsn: insert.metadata.commit_lsn,
      published_at: insert.metadata.commit_timestamp,
      idempotency_key: `outbox:app:${insert.metadata.commit_lsn}:1`,
      consumer: { name: 'together' },
    });
    expect(created.data).toEqual({ id: 10 });
    expect(update.metadata.commit_idx).toBe(2);
    expect(note.metadata.commit_lsn).toBeGreaterThan(update.metadata.commit_lsn);
    // The row's group key is what the message was given.
    expect(`public.orders:${JSON.stringify(insert.metadata.record_pks)}`).toBe('public.orders:["10"]');

    // The stream's own consumer gets the same messages, with the same idempotency keys.
    const streamed = await receiveEvents(2);
    expect(streamed.map((m) => [m.subject, m.metadata.idempotency_key])).toEqual([
      ['orders.created', created.metadata.idempotency_key],
      ['orders.note', note.metadata.idempotency_key],
    ]);

    // Webhooks: in one group, in commit order.
    await eventually(async () => hooked.length >= 6, 20_000);
    const group = hooked.filter((m) => m.subject !== undefined || m.record.id === 10).map(label);
    expect(group).toEqual(['insert:10', 'publish:orders.created', 'update:10', 'publish:orders.note', 'delete:10']);
    await new Promise((r) => setTimeout(r, 300));
    expect(hooked.map(label).sort()).toEqual([...group, 'insert:12'].sort());
    // The view of captured changes stays changes only.
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    const view = await c.query(`SELECT count(*)::int AS n, count(*) FILTER (WHERE action = 'publish')::int AS published FROM sluice.changes`);
    await c.end();
    expect(view.rows[0]).toEqual({ n: 4, published: 0 });
    // Nothing of the rolled-back transaction.
    expect((await call('POST', '/api/http_pull_consumers/together/receive', { batch_size: 10 })).body.data).toEqual([]);
  });

  it('keep their place in a transaction stored in chunks, and a subject pattern selects them among the changes', async () => {
    // 1,201 changes, over the source's max_batch_changes (500): the message at
    // commit_idx 600 is stored with the first chunks, before the transaction's end.
    await tx([
      `INSERT INTO public.orders SELECT g, 'bulk' FROM generate_series(1000, 1599) g`,
      `SELECT sluice.publish('events', 'big.middle', '{"after": 600}')`,
      `INSERT INTO public.orders SELECT g, 'bulk' FROM generate_series(1600, 2199) g`,
      `SELECT sluice.publish('events', 'other.end', '1')`,
    ]);
    const got: any[] = [];
    await eventually(async () => {
      const r = await call('POST', '/api/http_pull_consumers/big-only/receive', { batch_size: 100 });
      got.push(...r.body.data);
      return got.length >= 1;
    }, 20_000);
    await new Promise((r) => setTimeout(r, 300));
    const r = await call('POST', '/api/http_pull_consumers/big-only/receive', { batch_size: 100 });
    got.push(...r.body.data);
    // Only big.middle: not the table's changes (their subjects are outbox_order.public.orders.*), nor other.end.
    expect(got.map((i) => i.data.subject)).toEqual(['big.middle']);
    expect(got[0].data.data).toEqual({ after: 600 });
    // The ordered consumer: 600 inserts, the message, 600 inserts, the message.
    const all = await receiveBatches('together', 1202);
    expect(all.length).toBe(1202);
    expect(label(all[600])).toBe('publish:big.middle');
    expect(label(all[1201])).toBe('publish:other.end');
    expect(all.filter((m) => m.subject === undefined).map((m) => m.record.id)).toEqual(Array.from({ length: 1200 }, (_, i) => 1000 + i));
    // Replay by query: a where selects rows only; without one, the messages come too.
    const byWhere = await call('POST', '/api/consumers/together/replay', { where: 'id = 12', dry_run: true });
    expect(byWhere.status, JSON.stringify(byWhere.body)).toBe(200);
    expect(byWhere.body.matched).toBe(1);
    const whole = await call('POST', '/api/consumers/together/replay', { dry_run: true });
    expect(whole.body.matched).toBe(6 + 1202);
    // A rewind delivers the messages again with the changes (the rolled-back one was never stored).
    const rewind = await call('POST', '/api/consumers/together/rewind', { to: 'earliest' });
    expect(rewind.status, JSON.stringify(rewind.body)).toBe(200);
    expect(rewind.body.redelivering).toBe(6 + 1202);
    const again = await receiveInOrder('together', 3);
    expect(again.map(label)).toEqual(['insert:10', 'publish:orders.created', 'update:10']);
  });

  it('name existing streams, only on a source\'s consumer; a stream read that way cannot be deleted', async () => {
    const bad = await call('POST', '/api/consumers', { name: 'x', kind: 'pull', source: 'app', tables: ['public.orders'], outbox: ['evnts'] });
    expect(bad.status).toBe(422);
    expect(JSON.stringify(bad.body)).toMatch(/outbox.*no stream named \\"evnts\\".*events/);
    const onStream = await call('POST', '/api/consumers', { name: 'y', kind: 'pull', stream: 'events', outbox: ['events'] });
    expect(onStream.status).toBe(422);
    expect(JSON.stringify(onStream.body)).toMatch(/outbox.*is for a consumer of a source/);
    const shown = await call('GET', '/api/consumers/together');
    expect(shown.body.outbox ?? shown.body.config?.outbox).toEqual(['events']);
    const del = await call('DELETE', '/api/streams/events');
    expect(del.status).toBe(409);
    expect(del.body.summary).toMatch(/big-only.*together.*together-hook|events-only/);
  });
});

/** The stream consumer's messages, by sequence. */
async function receiveEvents(count: number): Promise<any[]> {
  const out: any[] = [];
  await eventually(async () => {
    const r = await call('POST', '/api/http_pull_consumers/events-only/receive', { batch_size: 100 });
    out.push(...r.body.data.map((i: any) => i.data));
    if (r.body.data.length) await call('POST', '/api/http_pull_consumers/events-only/ack', { ack_ids: r.body.data.map((i: any) => i.ack_id) });
    return out.length >= count;
  }, 20_000);
  return out.sort((a, b) => a.metadata.sequence - b.metadata.sequence);
}

/** A max_ack_pending 1 consumer, drained one at a time but quickly. */
async function receiveBatches(name: string, count: number): Promise<any[]> {
  return receiveInOrder(name, count);
}
