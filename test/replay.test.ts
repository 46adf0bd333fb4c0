// Replay by query through the real API on a real capture: the retained
// changes of a range that match tables / actions / where are delivered again
// (pull over HTTP and a webhook to a real receiver), exactly those, in order
// per row, beside live changes captured meanwhile; a replayed change never
// goes out beside a delivery of its group in flight; a dry run counts and
// shows without delivering; bad queries are 422s that change nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsumerRegistry } from '../src/buffer/consumers.js';
import { Dispatcher } from '../src/push/dispatcher.js';
import { startApi, type ApiFixture } from './api-fixture.js';
import { eventually, quietLog, sourceConfig, startCapture, type CaptureFixture } from './helpers/capture.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';

let f: ApiFixture;
let capture: CaptureFixture;
let receiver: Receiver;

const TABLES = ['public.invoices', 'public.orders'];

async function logCount(): Promise<number> {
  return (await f.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM sluice.log')).rows[0].n;
}

type Item = { ack_id: string; data: any };
const label = (d: any) => `${d.action}:${d.metadata.table_name}:${d.metadata.record_pks[0]}:${d.record.status}`;

async function receive(name: string, batch = 100): Promise<Item[]> {
  const r = await f.call('POST', `/api/http_pull_consumers/${name}/receive`, { batch_size: batch });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.data as Item[];
}

async function ack(name: string, items: Item[]): Promise<void> {
  if (items.length === 0) return;
  expect((await f.call('POST', `/api/http_pull_consumers/${name}/ack`, { ack_ids: items.map((i) => i.ack_id) })).status).toBe(200);
}

/** Everything the consumer can take now, acked as it goes. */
async function drain(name: string): Promise<any[]> {
  const out: any[] = [];
  for (let round = 0; round < 200; round++) {
    const items = await receive(name);
    if (items.length === 0) return out;
    out.push(...items.map((i) => i.data));
    await ack(name, items);
  }
  throw new Error('drain did not end');
}

/** Per row, the labels in the order received. */
function perRow(messages: any[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const m of messages) (out[`${m.metadata.table_name}:${m.metadata.record_pks[0]}`] ??= []).push(label(m));
  return out;
}

beforeAll(async () => {
  f = await startApi('replay');
  await f.pool.query('CREATE TABLE public.invoices (id bigint PRIMARY KEY, status text, amount numeric)');
  receiver = await startReceiver();
  expect((await f.call('POST', '/api/sources', { name: 'main', tables: TABLES })).status).toBe(201);
  capture = await startCapture(f.url, sourceConfig('main', TABLES), []);
  const created = await f.call('POST', '/api/consumers', { name: 'app', source: 'main', kind: 'pull', tables: TABLES, start: 'earliest' });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  const before = await logCount();
  for (let i = 1; i <= 20; i++) await f.pool.query('INSERT INTO invoices VALUES ($1, $2, $3)', [i, i % 4 === 0 ? 'paid' : 'open', i * 10]);
  for (let i = 1; i <= 20; i += 2) await f.pool.query(`UPDATE invoices SET status = 'paid' WHERE id = $1`, [i]);
  await f.pool.query(`INSERT INTO orders VALUES (1, 'paid')`);
  await eventually(async () => (await logCount()) >= before + 31);
  expect((await drain('app')).length).toBe(31);
}, 60_000);

afterAll(async () => {
  await capture?.stop();
  await receiver?.close();
  await f?.stop();
});

// Paid invoices: inserts of 4, 8, 12, 16, 20 and updates of 1, 3, …, 19.
const PAID = ['public.invoices'];

describe('replay by query', () => {
  it('a dry run counts the matches and shows the first few, and delivers nothing', async () => {
    const r = await f.call('POST', '/api/consumers/app/replay', { tables: PAID, where: "status = 'paid'", dry_run: true });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toMatchObject({ dry_run: true, matched: 15, complete: true });
    expect(r.body.first.map(label)).toEqual(['insert:invoices:4:paid', 'insert:invoices:8:paid', 'insert:invoices:12:paid', 'insert:invoices:16:paid', 'insert:invoices:20:paid']);
    expect(await receive('app')).toEqual([]);
    expect((await f.call('GET', '/api/consumers/app/replays')).body.data).toEqual([]);
  });

  it('delivers again exactly the matching changes, in order per row', async () => {
    const r = await f.call('POST', '/api/consumers/app/replay', { tables: ['invoices'], actions: ['update'], where: "status = 'paid' AND amount >= 100" });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    expect(r.body).toMatchObject({ tables: PAID, actions: ['update'], where: { 'public.invoices': "status = 'paid' AND amount >= 100" } });
    const got = await drain('app');
    expect(got.map(label).sort()).toEqual([11, 13, 15, 17, 19].map((i) => `update:invoices:${i}:paid`).sort());
    const replays = (await f.call('GET', '/api/consumers/app/replays')).body.data;
    expect(replays[0]).toMatchObject({ status: 'done', matched: 5 });
  });

  it('under concurrent capture: the replayed changes exactly, and every live change once', async () => {
    const before = await logCount();
    let stop = false;
    let next = 1000;
    const writer = (async () => {
      while (!stop && next < 1300) {
        await f.pool.query('INSERT INTO invoices VALUES ($1, $2, 1)', [next, next % 2 ? 'paid' : 'open']);
        next++;
      }
    })();
    await eventually(async () => ((await logCount()) > before + 20 ? true : null));
    const r = await f.call('POST', '/api/consumers/app/replay', { tables: PAID, where: "status = 'paid' AND id < 1000" });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    const got: any[] = [];
    for (let round = 0; round < 100 && (got.length < 15 || !stop); round++) {
      got.push(...(await drain('app')));
      if (next >= 1300) stop = true;
      await new Promise((res) => setTimeout(res, 20));
    }
    stop = true;
    await writer;
    await eventually(async () => ((await logCount()) >= before + (next - 1000) ? true : null));
    got.push(...(await drain('app')));
    const replayed = got.filter((m) => Number(m.metadata.record_pks[0]) < 1000);
    const live = got.filter((m) => Number(m.metadata.record_pks[0]) >= 1000);
    expect(replayed.map(label).sort()).toEqual(
      [...[4, 8, 12, 16, 20].map((i) => `insert:invoices:${i}:paid`), ...[1, 3, 5, 7, 9, 11, 13, 15, 17, 19].map((i) => `update:invoices:${i}:paid`)].sort(),
    );
    // Per row, the replayed insert (if it matched) before the update.
    for (const [row, labels] of Object.entries(perRow(replayed))) expect(labels.length, row).toBe(1);
    expect(live.map((m) => m.metadata.record_pks[0]).sort()).toEqual(Array.from({ length: next - 1000 }, (_, i) => String(1000 + i)).sort());
  });

  it('a replayed change never goes out while a delivery of its group is in flight', async () => {
    const before = await logCount();
    await f.pool.query(`UPDATE invoices SET status = 'late' WHERE id = 4`);
    await eventually(async () => ((await logCount()) > before ? true : null));
    const live = await receive('app');
    expect(live.map((i) => label(i.data))).toEqual(['update:invoices:4:late']);
    // Replays row 4's insert while its update is in flight.
    expect((await f.call('POST', '/api/consumers/app/replay', { tables: PAID, where: 'id = 4' })).status).toBe(202);
    expect(await receive('app')).toEqual([]);
    await ack('app', live);
    // Taken in once the group's delivery ended: the insert, and then the
    // update (the replay covers every change of row 4 up to its position).
    const again = await drain('app');
    expect(again.map(label)).toEqual(['insert:invoices:4:paid', 'update:invoices:4:late']);
  });

  it('a webhook consumer receives the replayed changes over HTTP', async () => {
    const created = await f.call('POST', '/api/consumers', {
      name: 'hook', source: 'main', kind: 'webhook', tables: ['public.orders'],
      webhook: { url: `http://127.0.0.1:${receiver.port}/hook`, batch_size: 10, allow_private_ranges: ['127.0.0.0/8'] },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const registry = new ConsumerRegistry(f.pool);
    await registry.reload();
    const dispatcher = new Dispatcher({ pool: f.pool, consumers: registry, instanceId: 'test', log: quietLog });
    dispatcher.start();
    try {
      // Created "now": nothing of orders yet; the replay sends orders 1 again.
      const r = await f.call('POST', '/api/consumers/hook/replay', { from: 'earliest' });
      expect(r.status, JSON.stringify(r.body)).toBe(202);
      await eventually(async () => (receiver.accepted().length >= 1 ? true : null));
      // Created at the tail: its position is the log's end, so the range holds every retained change of orders.
      expect(receiver.accepted().map((m: any) => label(m))).toEqual(['insert:orders:1:paid']);
    } finally {
      await dispatcher.stop();
    }
  });

  it('refuses a bad query with a 422 naming the field, and starts nothing', async () => {
    const count = async () => (await f.call('GET', '/api/consumers/app/replays')).body.data.length;
    const n = await count();
    const cases: Array<[Record<string, unknown>, string, RegExp]> = [
      [{ from: '2026-12-02T00:00:00Z', to: '2026-12-01T00:00:00Z' }, 'to', /is before from/],
      [{ from: '0/3000000', to: '0/2000000' }, 'to', /is before from/],
      [{ tables: ['public.users'] }, 'tables', /not among the consumer's tables/],
      [{ where: 'colour = 1' }, 'where', /on public\.invoices, at character 1: .*colour/],
      [{ where: { 'public.invoices': 'amount >' } }, 'where["public.invoices"]', /at character/],
      [{ from: 'yesterday' }, 'from', /must be "earliest"/],
    ];
    for (const [body, field, reason] of cases) {
      const r = await f.call('POST', '/api/consumers/app/replay', body);
      expect(r.status, JSON.stringify(body)).toBe(422);
      expect(r.body.validation_errors?.[field]?.[0], JSON.stringify(r.body)).toMatch(reason);
    }
    expect((await f.call('POST', '/api/consumers/app/replay', { actions: ['upsert'] })).status).toBe(422);
    expect((await f.call('POST', '/api/consumers/nobody/replay', {})).status).toBe(404);
    expect(await count()).toBe(n);
  });
});
