// The API the web console reads, on a real Postgres with a real capture:
// GET /api/me, scoped tokens reading their own consumers (and nothing else),
// GET /api/overview with the activity samplers' per-minute history, and
// GET /api/consumers/{name}/messages, a peek that delivers nothing.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { writeSample } from '../src/metrics/activity-queries.js';
import { Metrics } from '../src/metrics/metrics.js';
import { ActivitySampler } from '../src/metrics/sampler.js';
import { PULL_CONSUMER, SOURCE, WEBHOOK_CONSUMER, startApi, type ApiFixture } from './api-fixture.js';
import { eventually, quietLog, sourceConfig, startCapture, type CaptureFixture } from './helpers/capture.js';

let f: ApiFixture;
let capture: CaptureFixture;
let metrics: Metrics;
let sampler: ActivitySampler;
let scoped: string;
let backfillId: string;

const TABLES = ['public.orders', 'public.users'];

beforeAll(async () => {
  metrics = new Metrics();
  f = await startApi('api_console', { metrics });
  sampler = new ActivitySampler({ pool: f.pool, totals: () => metrics.activityTotals(), process: 'test:1', log: quietLog, everyMs: 3_600_000 });
  expect((await f.call('POST', '/api/sources', SOURCE)).status).toBe(201);
  for (const body of [
    PULL_CONSUMER,
    { ...PULL_CONSUMER, name: 'other-pull' },
    WEBHOOK_CONSUMER,
    { ...PULL_CONSUMER, name: 'orders-shaped', transform: { path: 'record' } },
    { ...PULL_CONSUMER, name: 'orders-paid', filter: { where: { 'public.orders': "status = 'paid'" } } },
  ]) {
    const r = await f.call('POST', '/api/consumers', body);
    expect(r.status, JSON.stringify(r.body)).toBe(201);
  }
  const bf = await f.call('POST', '/api/consumers/orders-pull/backfills', {});
  expect(bf.status, JSON.stringify(bf.body)).toBe(201);
  backfillId = bf.body.data[0].id;
  scoped = (await f.call('POST', '/api/tokens', { name: 'console-worker', consumers: ['orders-pull', 'orders-hook'] })).body.token;
  capture = await startCapture(f.url, sourceConfig('main', TABLES), []);
  // Done before any order exists: otherwise, started late, it would read the
  // orders the tests insert and send them to orders-pull as reads too.
  await eventually(async () => (await f.call('GET', `/api/consumers/orders-pull/backfills/${backfillId}`)).body.state === 'done');
}, 60_000);

afterAll(async () => {
  await sampler?.stop();
  await capture?.stop();
  await f?.stop();
});

describe('GET /api/me', () => {
  it('tells each kind of token what it is', async () => {
    expect((await f.call('GET', '/api/me')).body).toEqual({ admin: true, name: null, consumers: null });
    const stored = (await f.call('POST', '/api/tokens', { name: 'ops' })).body.token;
    expect((await f.call('GET', '/api/me', undefined, stored)).body).toEqual({ admin: true, name: 'ops', consumers: null });
    const me = await f.call('GET', '/api/me', undefined, scoped);
    expect(me.status).toBe(200);
    expect(me.body).toEqual({ admin: false, name: 'console-worker', consumers: ['orders-pull', 'orders-hook'] });
    expect((await f.call('GET', '/api/me', undefined, null)).status).toBe(401);
  });

  it('the new routes are in the OpenAPI document', async () => {
    const doc = await f.call('GET', '/api/openapi.json');
    expect(doc.status).toBe(200);
    for (const path of ['/api/me', '/api/overview', '/api/consumers/{name}/messages']) expect(Object.keys(doc.body.paths)).toContain(path);
  });
});

describe('a scoped token reads its own consumers', () => {
  const reads = (name: string) => [
    `/api/consumers/${name}`,
    `/api/consumers/${name}/stats`,
    `/api/consumers/${name}/dead-letters`,
    `/api/consumers/${name}/backfills`,
    `/api/consumers/${name}/replays`,
    `/api/consumers/${name}/messages`,
  ];

  it('200 on every read route of its own consumers', async () => {
    for (const url of [...reads('orders-pull'), `/api/consumers/orders-pull/backfills/${backfillId}`, '/api/consumers/orders-hook/attempts', '/api/overview']) {
      const r = await f.call('GET', url, undefined, scoped);
      expect(r.status, `${url} ${r.raw}`).toBe(200);
    }
  });

  it('the list holds its consumers only, masked as for an admin', async () => {
    const r = await f.call('GET', '/api/consumers', undefined, scoped);
    expect(r.status).toBe(200);
    expect(r.body.data.map((c: { name: string }) => c.name).sort()).toEqual(['orders-hook', 'orders-pull']);
    const hook = r.body.data.find((c: { name: string }) => c.name === 'orders-hook');
    expect(hook.webhook.headers).toEqual({ 'X-Api-Key': '********' });
    expect(r.raw).not.toContain('super-secret-header-value');
    expect(hook.webhook.secrets[0]).toMatch(/…/);
    const admin = await f.call('GET', `/api/consumers/orders-hook`);
    expect((await f.call('GET', '/api/consumers/orders-hook', undefined, scoped)).body).toEqual(admin.body);
  });

  it('403 on another consumer, whether or not it exists', async () => {
    for (const name of ['other-pull', 'no-such-consumer']) {
      for (const url of [...reads(name), `/api/consumers/${name}/backfills/${backfillId}`, `/api/consumers/${name}/attempts`]) {
        const r = await f.call('GET', url, undefined, scoped);
        expect(r.status, url).toBe(403);
        expect(r.body).toEqual({ summary: `This token may not use consumer "${name}".` });
      }
    }
  });

  it('403 on every write and on the other management routes, even for its own consumers', async () => {
    const cases: Array<[string, string, unknown?]> = [
      ['POST', '/api/consumers/orders-pull/pause', {}],
      ['POST', '/api/consumers/orders-pull/resume'],
      ['PATCH', '/api/consumers/orders-pull', { annotations: {} }],
      ['DELETE', '/api/consumers/orders-pull'],
      ['POST', '/api/consumers/orders-pull/rewind', { to: 'earliest' }],
      ['POST', '/api/consumers/orders-pull/replay', {}],
      ['POST', '/api/consumers/orders-pull/dead-letters/retry', { all: true }],
      ['POST', '/api/consumers/orders-pull/dead-letters/discard', { all: true }],
      ['POST', '/api/consumers/orders-pull/backfills', {}],
      ['DELETE', `/api/consumers/orders-pull/backfills/${backfillId}`],
      ['POST', '/api/consumers/orders-pull/transform/test', {}],
      ['POST', '/api/consumers/orders-hook/rotate-secret', {}],
      ['POST', '/api/consumers', PULL_CONSUMER],
      ['GET', '/api/sources'],
      ['GET', '/api/sources/main'],
      ['GET', '/api/streams'],
      ['GET', '/api/tokens'],
      ['POST', '/api/tokens', { name: 'x' }],
      ['GET', '/api/openapi.json'],
    ];
    for (const [method, url, body] of cases) {
      const r = await f.call(method as 'GET', url, body, scoped);
      expect(r.status, `${method} ${url}`).toBe(403);
      expect(r.body.summary).toMatch(/needs an admin token/);
    }
    expect((await f.call('GET', '/api/consumers/orders-pull')).body.state).toBe('active');
  });
});

/** Inserts orders one transaction each and waits until capture has stored them all. */
async function insertOrders(rows: Array<[number, string]>): Promise<void> {
  const before = Number((await f.pool.query(`SELECT count(*) FROM sluice.log WHERE table_name = 'orders'`)).rows[0].count);
  for (const [id, status] of rows) await f.pool.query('INSERT INTO public.orders (id, status) VALUES ($1, $2)', [id, status]);
  await eventually(async () => Number((await f.pool.query(`SELECT count(*) FROM sluice.log WHERE table_name = 'orders'`)).rows[0].count) >= before + rows.length);
}

const peek = async (name: string, query = '', token?: string) => {
  const r = await f.call('GET', `/api/consumers/${name}/messages${query}`, undefined, token);
  expect(r.status, r.raw).toBe(200);
  return r;
};
const ids = (data: Array<{ message: { record: { id: number } } }>) => data.map((d) => d.message.record.id);
const statuses = (data: Array<{ status: string }>) => data.map((d) => d.status);

async function receive(name: string, batch: number): Promise<Array<{ ack_id: string; data: { record: { id: number } } }>> {
  const r = await f.call('POST', `/api/http_pull_consumers/${name}/receive`, { batch_size: batch });
  expect(r.status, r.raw).toBe(200);
  return r.body.data;
}

describe('GET /api/consumers/{name}/messages', () => {
  beforeAll(async () => {
    // A change of another table of the source: routed to none of the orders consumers.
    await f.pool.query(`INSERT INTO public.users (id, name) VALUES (1, 'ann')`);
    await insertOrders([[1, 'new'], [2, 'paid'], [3, 'new'], [4, 'paid'], [5, 'new']]);
  }, 30_000);

  it('newest first, rendered as sent, pending, and delivering nothing', async () => {
    const first = await peek('orders-pull', '?limit=3');
    expect(ids(first.body.data)).toEqual([5, 4, 3]);
    expect(statuses(first.body.data)).toEqual(['pending', 'pending', 'pending']);
    const item = first.body.data[0];
    expect(Object.keys(item).sort()).toEqual(['commit_idx', 'commit_lsn', 'committed_at', 'message', 'status']);
    expect(item.commit_lsn).toMatch(/^\d+$/);
    expect(Date.parse(item.committed_at)).not.toBeNaN();
    // As the consumer is sent it: its own metadata.consumer.
    expect(item.message.metadata.consumer.name).toBe('orders-pull');
    expect(item.message.metadata).toMatchObject({ table_name: 'orders', commit_lsn: Number(item.commit_lsn), commit_idx: item.commit_idx });
    // The default limit holds them all; the users change is not this consumer's.
    expect(ids((await peek('orders-pull')).body.data)).toEqual([5, 4, 3, 2, 1]);
    // Nothing was taken in or handed out by peeking.
    const { rows } = await f.pool.query(`SELECT count(*)::int AS n FROM sluice.messages m JOIN sluice.consumers c ON c.id = m.consumer_id WHERE c.name = 'orders-pull'`);
    expect(rows[0].n).toBe(0);
  });

  it('statuses follow receive and ack; a following receive still gets everything', async () => {
    const got = await receive('orders-pull', 2);
    expect(got.map((m) => m.data.record.id)).toEqual([1, 2]);
    const out = await peek('orders-pull');
    expect(ids(out.body.data)).toEqual([5, 4, 3, 2, 1]);
    expect(statuses(out.body.data)).toEqual(['pending', 'pending', 'pending', 'in_flight', 'in_flight']);
    const ack = await f.call('POST', '/api/http_pull_consumers/orders-pull/ack', { ack_ids: got.map((m) => m.ack_id) });
    expect(ack.body.applied).toBe(2);
    expect(statuses((await peek('orders-pull')).body.data)).toEqual(['pending', 'pending', 'pending', 'delivered', 'delivered']);
    // Peeking again delivered nothing: the rest are all still there.
    const rest = await receive('orders-pull', 10);
    expect(rest.map((m) => m.data.record.id)).toEqual([3, 4, 5]);
    expect(statuses((await peek('orders-pull')).body.data)).toEqual(['in_flight', 'in_flight', 'in_flight', 'delivered', 'delivered']);
    await f.call('POST', '/api/http_pull_consumers/orders-pull/ack', { ack_ids: rest.map((m) => m.ack_id) });
  });

  it('a dead letter shows as one', async () => {
    const got = await receive('other-pull', 1);
    await f.pool.query(
      `UPDATE sluice.messages m SET state = 1, delivery_token = NULL FROM sluice.consumers c
        WHERE c.id = m.consumer_id AND c.name = 'other-pull' AND m.delivery_token IS NOT NULL`,
    );
    expect(got.map((m) => m.data.record.id)).toEqual([1]);
    expect(statuses((await peek('other-pull')).body.data)).toEqual(['pending', 'pending', 'pending', 'pending', 'dead_lettered']);
  });

  it('applies the consumer\'s transform', async () => {
    const r = await peek('orders-shaped', '?limit=2');
    expect(r.body.data.map((d: { message: unknown }) => d.message)).toEqual([{ id: 5, status: 'new' }, { id: 4, status: 'paid' }]);
  });

  it('applies the consumer\'s where filter, as delivery does', async () => {
    const r = await peek('orders-paid');
    expect(r.body.data.map((d: { message: { record: { id: number } } }) => d.message.record.id)).toEqual([4, 2]);
    const got = await receive('orders-paid', 10);
    expect(got.map((m) => m.data.record.id)).toEqual([2, 4]);
    expect((await f.call('POST', '/api/http_pull_consumers/orders-paid/ack', { ack_ids: got.map((m) => m.ack_id) })).body.applied).toBe(2);
    expect(statuses((await peek('orders-paid')).body.data)).toEqual(['delivered', 'delivered']);
  });

  it('limit is 1..100', async () => {
    for (const q of ['?limit=0', '?limit=101', '?limit=x']) {
      const r = await f.call('GET', `/api/consumers/orders-pull/messages${q}`);
      expect(r.status, q).toBe(422);
      expect(typeof r.body.summary).toBe('string');
    }
    expect((await f.call('GET', '/api/consumers/nope/messages')).status).toBe(404);
  });
});

describe('GET /api/overview', () => {
  it('sources and consumers with their state', async () => {
    f.statuses.splice(0, f.statuses.length, { name: 'main', running: true, standing_by: false, slot: 'sluice_main', lag_bytes: 128, last_error: null });
    const r = await f.call('GET', '/api/overview');
    expect(r.status, r.raw).toBe(200);
    expect(r.body.window).toEqual({ minutes: 60, bucket_seconds: 60 });
    expect(Math.abs(Date.parse(r.body.generated_at) - Date.now())).toBeLessThan(60_000);
    expect(r.body.sources).toHaveLength(1);
    const main = r.body.sources[0];
    expect(main).toMatchObject({ name: 'main', status: 'running', lag_bytes: 128, last_error: null });
    expect(main.position).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(main.captured_per_minute).toHaveLength(60);
    const byName = new Map(r.body.consumers.map((c: { name: string }) => [c.name, c]));
    expect([...byName.keys()].sort()).toEqual(['orders-hook', 'orders-paid', 'orders-pull', 'orders-shaped', 'other-pull']);
    expect(byName.get('other-pull')).toMatchObject({ source: 'main', kind: 'pull', state: 'active', dead_lettered: 1, pending: 4, in_flight: 0 });
    expect(byName.get('orders-hook')).toMatchObject({ kind: 'webhook', oldest_pending_age_ms: expect.any(Number) });
    expect(byName.get('orders-pull')).toMatchObject({ pending: 0, in_flight: 0, dead_lettered: 0 });

    f.statuses.splice(0, 1, { name: 'main', running: false, standing_by: true, slot: 'sluice_main', lag_bytes: null, last_error: null });
    expect((await f.call('GET', '/api/overview')).body.sources[0]).toMatchObject({ status: 'standing_by', lag_bytes: null });
    f.statuses.splice(0, 1, { name: 'main', running: false, standing_by: false, slot: 'sluice_main', lag_bytes: null, last_error: 'connection refused' });
    expect((await f.call('GET', '/api/overview')).body.sources[0]).toMatchObject({ status: 'failing', last_error: 'connection refused' });
    f.statuses.splice(0, 1);
    expect((await f.call('GET', '/api/overview')).body.sources[0].status).toBe('unknown');
  });

  it('pending counts what is not yet taken in, as /stats does; past 1,000 log entries it says "at least"', async () => {
    const agree = async () => {
      const r = await f.call('GET', '/api/overview');
      for (const c of r.body.consumers) {
        const stats = (await f.call('GET', `/api/consumers/${c.name}/stats`)).body;
        if (!c.pending_at_least) expect(c.pending, c.name).toBe(stats.pending);
        else expect(c.pending, c.name).toBeLessThanOrEqual(stats.pending);
      }
      return new Map<string, { pending: number; pending_at_least: boolean }>(r.body.consumers.map((c: { name: string }) => [c.name, c]));
    };
    const before = await agree();
    expect(before.get('orders-shaped')).toMatchObject({ pending_at_least: false });
    const start = before.get('orders-shaped')!.pending;
    expect(start).toBeGreaterThan(0);
    // One transaction of 1,200 orders: orders-shaped (never received) is now far behind.
    const n = Number((await f.pool.query(`SELECT count(*) FROM sluice.log WHERE table_name = 'orders'`)).rows[0].count);
    await f.pool.query(`INSERT INTO public.orders (id, status) SELECT 100000 + g, 'bulk' FROM generate_series(1, 1200) g`);
    await eventually(async () => Number((await f.pool.query(`SELECT count(*) FROM sluice.log WHERE table_name = 'orders'`)).rows[0].count) >= n + 1200);
    const after = (await agree()).get('orders-shaped')!;
    expect(after.pending_at_least).toBe(true);
    // Its tables' changes among the next 1,000 log entries (others are other tables').
    expect(after.pending).toBeGreaterThan(900);
    expect((await f.call('GET', '/api/consumers/orders-shaped/stats')).body).toMatchObject({ pending: start + 1200, pending_at_least: false });
    // The console's bounded count: a lower bound once the scan limit is reached.
    const bounded = (await f.call('GET', '/api/consumers/orders-shaped/stats?scan_limit=100')).body;
    expect(bounded.pending_at_least).toBe(true);
    expect(bounded.pending).toBeLessThan(start + 1200);
    // The same oldest change (ages read a moment apart).
    const full = (await f.call('GET', '/api/consumers/orders-shaped/stats')).body;
    expect(Math.abs(bounded.oldest_pending_age_ms - full.oldest_pending_age_ms)).toBeLessThan(1000);
    expect((await f.call('GET', '/api/consumers/orders-shaped/stats?scan_limit=100000')).body).toMatchObject({ pending: start + 1200, pending_at_least: false });
    expect((await f.call('GET', '/api/consumers/orders-shaped/stats?scan_limit=0')).status).toBe(422);
  });

  it('a scoped token gets its own consumers and no sources', async () => {
    const r = await f.call('GET', '/api/overview', undefined, scoped);
    expect(r.status).toBe(200);
    expect(r.body.sources).toEqual([]);
    expect(r.body.consumers.map((c: { name: string }) => c.name)).toEqual(['orders-hook', 'orders-pull']);
  });

  it('counts deliveries (pull acks) and captures a minute at a time, summed over processes', async () => {
    // The pull acks of the peek tests above (5 of orders-pull, 2 of orders-paid), and captures counted here.
    await sampler.sampleNow();
    metrics.changesCaptured.inc({ source: 'main' }, 7);
    await sampler.sampleNow();
    // Another gateway process's sample in the same minute.
    await writeSample(f.pool, 'test:2', { main: 3 }, { 'orders-paid': 1 });

    const r = await f.call('GET', '/api/overview');
    const main = r.body.sources[0];
    const c = r.body.consumers.find((x: { name: string }) => x.name === 'orders-paid');
    const pull = r.body.consumers.find((x: { name: string }) => x.name === 'orders-pull');
    // Samples are stamped by the database's clock: the minute may have turned between them.
    const lastTwo = (a: number[]) => a[58] + a[59];
    expect(lastTwo(main.captured_per_minute)).toBe(10);
    expect(lastTwo(c.delivered_per_minute)).toBe(3);
    expect(lastTwo(pull.delivered_per_minute)).toBe(5);
    expect(c.delivered_per_minute.slice(0, 58).every((n: number) => n === 0)).toBe(true);
    expect(c.delivered_per_second).toBe(c.delivered_per_minute[58] / 60);

    // Nothing new: the next sample writes no row.
    const count = async () => Number((await f.pool.query('SELECT count(*) FROM sluice.activity_samples')).rows[0].count);
    const n = await count();
    await sampler.sampleNow();
    expect(await count()).toBe(n);
  });

  it('samples older than 2 h are deleted by the next sample; older than the hour are not shown', async () => {
    await f.pool.query(`INSERT INTO sluice.activity_samples (at, process, delivered) VALUES
      (now() - interval '3 hours', 'old', '{"orders-pull": 100}'), (now() - interval '90 minutes', 'old', '{"orders-pull": 100}')`);
    await sampler.sampleNow();
    const { rows } = await f.pool.query(`SELECT at FROM sluice.activity_samples WHERE process = 'old'`);
    expect(rows).toHaveLength(1);
    const pull = (await f.call('GET', '/api/overview')).body.consumers.find((x: { name: string }) => x.name === 'orders-pull');
    expect(pull.delivered_per_minute.reduce((a: number, b: number) => a + b, 0)).toBe(5);
  });

  it('a failing sample keeps its counts for the next one and never throws out of the timer', async () => {
    const warn = vi.fn();
    const broken = { query: () => Promise.reject(new Error('db down')) } as unknown as typeof f.pool;
    let total = 4;
    const s = new ActivitySampler({
      pool: broken,
      totals: async () => ({ captured: new Map(), delivered: new Map([['x', total]]) }),
      process: 'test:3',
      log: { ...quietLog, warn },
      everyMs: 20,
    });
    s.start();
    await eventually(async () => warn.mock.calls.length >= 2);
    await s.stop();
    expect(warn.mock.calls[0][1]).toMatch(/activity sample failed/);
    // The same growth, stored once the database answers.
    const ok = new ActivitySampler({ pool: f.pool, totals: async () => ({ captured: new Map(), delivered: new Map([['x', total]]) }), process: 'test:3', log: quietLog });
    total = 6;
    await ok.sampleNow();
    await ok.sampleNow();
    const { rows } = await f.pool.query(`SELECT delivered FROM sluice.activity_samples WHERE process = 'test:3'`);
    expect(rows).toEqual([{ delivered: { x: 6 } }]);
  });

  it('200 consumers: a constant number of queries, well under a second', async () => {
    const queries = async () => {
      const spy = vi.spyOn(f.pool, 'query');
      try {
        const t = performance.now();
        const r = await f.call('GET', '/api/overview');
        expect(r.status).toBe(200);
        return { n: spy.mock.calls.length, ms: performance.now() - t, consumers: r.body.consumers.length };
      } finally {
        spy.mockRestore();
      }
    };
    const few = await queries();
    await f.pool.query(
      `INSERT INTO sluice.consumers (name, source_name, kind, config)
       SELECT 'bulk-' || g, 'main', 'pull',
              jsonb_build_object('name', 'bulk-' || g, 'source', 'main', 'kind', 'pull', 'tables', '["public.orders"]'::jsonb)
         FROM generate_series(1, 200) g`,
    );
    await f.pool.query(`INSERT INTO sluice.activity_samples (process, delivered)
      SELECT 'bulk', jsonb_object_agg('bulk-' || g, g) FROM generate_series(1, 200) g`);
    await queries();
    const many = await queries();
    expect(many.consumers).toBe(few.consumers + 200);
    expect(many.n).toBe(few.n);
    expect(many.n).toBe(4);
    expect(many.ms).toBeLessThan(500);
    console.log(`overview: ${few.consumers} consumers ${few.ms.toFixed(1)} ms, ${many.consumers} consumers ${many.ms.toFixed(1)} ms, ${many.n} queries`);
  });
});
