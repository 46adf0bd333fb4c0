// filter.actions through the real API on a real capture: a consumer takes in
// only the kinds of change it selects (pulled over HTTP, and posted to a real
// webhook receiver), its stats and a rewind's count see only those, the
// changes it steps over never hold up a group, and a bad filter is refused
// with a 4xx that changes nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import { formatStatus } from '../src/cli/status.js';
import { consumerStats } from '../src/buffer/dead-letters.js';
import { expectRejections, startApi, type ApiFixture } from './api-fixture.js';
import { eventually, quietLog, sourceConfig, startCapture, type CaptureFixture } from './helpers/capture.js';
import { ConsumerRegistry } from '../src/buffer/consumers.js';
import { Dispatcher } from '../src/push/dispatcher.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';

let f: ApiFixture;
let capture: CaptureFixture;
let receiver: Receiver;

const SOURCE = { name: 'main', tables: ['public.orders', 'public.users'] };

async function logCount(): Promise<number> {
  return (await f.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM sluice.log')).rows[0].n;
}

/** Everything the pull consumer can take now, acked as it goes. */
async function drain(name: string): Promise<string[]> {
  const out: string[] = [];
  for (let round = 0; round < 50; round++) {
    const r = await f.call('POST', `/api/http_pull_consumers/${name}/receive`, { batch_size: 100 });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const items = r.body.data as Array<{ ack_id: string; data: any }>;
    if (items.length === 0) return out;
    for (const { data } of items) out.push(`${data.action}:${data.record?.id ?? data.changes?.id}`);
    expect((await f.call('POST', `/api/http_pull_consumers/${name}/ack`, { ack_ids: items.map((i) => i.ack_id) })).status).toBe(200);
  }
  throw new Error('drain did not end');
}

beforeAll(async () => {
  f = await startApi('filter_actions');
  receiver = await startReceiver();
  expect((await f.call('POST', '/api/sources', SOURCE)).status).toBe(201);
  capture = await startCapture(f.url, sourceConfig('main', SOURCE.tables), []);
}, 60_000);

afterAll(async () => {
  await capture?.stop();
  await receiver?.close();
  await f?.stop();
});

describe('filter.actions', () => {
  it('delivers only the selected kinds of change, in order; a stepped-over change never holds up its group', async () => {
    const created = await f.call('POST', '/api/consumers', {
      name: 'no-updates', source: 'main', kind: 'pull', tables: ['public.orders'], start: 'earliest',
      filter: { actions: ['insert', 'delete'] },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body.filter).toEqual({ actions: ['insert', 'delete'] });
    const all = await f.call('POST', '/api/consumers', { name: 'everything', source: 'main', kind: 'pull', tables: ['public.orders'], start: 'earliest' });
    expect(all.status).toBe(201);
    expect(all.body.filter).toBeUndefined();

    const before = await logCount();
    await f.pool.query(`INSERT INTO orders VALUES (1, 'new')`);
    await f.pool.query(`UPDATE orders SET status = 'paid' WHERE id = 1`);
    await f.pool.query(`INSERT INTO orders VALUES (2, 'new')`);
    await f.pool.query(`UPDATE orders SET status = 'paid' WHERE id = 2`);
    await f.pool.query(`DELETE FROM orders WHERE id = 1`);
    await eventually(async () => (await logCount()) >= before + 5);

    // Pending counts only what the filter selects.
    const id = (await f.pool.query<{ id: string }>(`SELECT id FROM sluice.consumers WHERE name = 'no-updates'`)).rows[0].id;
    expect((await consumerStats(f.pool, id)).pending).toBe(3);
    // Group 1's update is never taken in, so its delete follows its insert at once.
    expect(await drain('no-updates')).toEqual(['insert:1', 'insert:2', 'delete:1']);
    // Without a filter: every change (pull hands out the heads of groups, so
    // the order holds per row, not across rows).
    const everything = await drain('everything');
    expect(everything.filter((w) => w.endsWith(':1'))).toEqual(['insert:1', 'update:1', 'delete:1']);
    expect(everything.filter((w) => w.endsWith(':2'))).toEqual(['insert:2', 'update:2']);
    // Nothing was kept for the stepped-over updates.
    expect((await f.pool.query('SELECT count(*)::int AS n FROM sluice.messages WHERE consumer_id = $1', [id])).rows[0].n).toBe(0);

    // A rewind counts (and delivers) only what the filter selects.
    const rewound = await f.call('POST', '/api/consumers/no-updates/rewind', { to: 'earliest' });
    expect(rewound.status, JSON.stringify(rewound.body)).toBe(200);
    expect(rewound.body).toMatchObject({ redelivering: 3 });
    expect(await drain('no-updates')).toEqual(['insert:1', 'insert:2', 'delete:1']);
  });

  it('a changed filter applies from the consumer\'s position on; a null removes it', async () => {
    const r = await f.call('PATCH', '/api/consumers/no-updates', { filter: { actions: ['update'] } });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.filter).toEqual({ actions: ['update'] });
    const before = await logCount();
    await f.pool.query(`INSERT INTO orders VALUES (3, 'new')`);
    await f.pool.query(`UPDATE orders SET status = 'paid' WHERE id = 3`);
    await eventually(async () => (await logCount()) >= before + 2);
    expect(await drain('no-updates')).toEqual(['update:3']);
    // A merge patch's null removes the filter: every change again.
    const removed = await f.call('PATCH', '/api/consumers/no-updates', { filter: null });
    expect(removed.status, JSON.stringify(removed.body)).toBe(200);
    expect(removed.body.filter).toBeUndefined();
    await f.pool.query(`INSERT INTO orders VALUES (4, 'new')`);
    await f.pool.query(`DELETE FROM orders WHERE id = 4`);
    await eventually(async () => (await logCount()) >= before + 4);
    expect(await drain('no-updates')).toEqual(['insert:4', 'delete:4']);
  });

  it('a webhook consumer receives only the selected changes over HTTP', async () => {
    const created = await f.call('POST', '/api/consumers', {
      name: 'deletes-hook', source: 'main', kind: 'webhook', tables: ['public.orders'], start: 'earliest',
      filter: { actions: ['delete'] },
      webhook: { url: `http://127.0.0.1:${receiver.port}/hook`, batch_size: 10, allow_private_ranges: ['127.0.0.0/8'] },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const registry = new ConsumerRegistry(f.pool);
    await registry.reload();
    const dispatcher = new Dispatcher({ pool: f.pool, consumers: registry, instanceId: 'test', log: quietLog });
    dispatcher.start();
    const got = await eventually(async () => {
      const a = receiver.accepted();
      return a.length >= 2 ? a : null;
    });
    await new Promise((r) => setTimeout(r, 300));
    expect(receiver.accepted().map((m: any) => `${m.action}:${m.record?.id ?? m.changes?.id}`)).toEqual(['delete:1', 'delete:4']);
    expect(got.length).toBe(2);
    await dispatcher.stop();
  });

  it('shows in sluice status, and a bad filter is refused with the field and changes nothing', async () => {
    expect(formatStatus({ sources: [], consumers: [{ name: 'x', kind: 'pull', state: 'active', state_reason: null, filter: 'actions insert, delete', transform: null, pending: 0, in_flight: 0, dead_lettered: 0, oldest_pending_age_ms: null }] }))
      .toContain('filter: actions insert, delete');
    const before = JSON.stringify((await f.pool.query('SELECT name, config FROM sluice.consumers ORDER BY name')).rows);
    const body = (filter: unknown) => ({ name: 'bad', source: 'main', kind: 'pull', tables: ['public.orders'], filter });
    await expectRejections(f, [
      ['POST', '/api/consumers', body({ actions: ['upsert'] }), 422, /filter\/actions\/0|actions/],
      ['POST', '/api/consumers', body({ actions: [] }), 422, /actions/],
      ['POST', '/api/consumers', body({ actions: ['insert', 'insert'] }), 422, /actions/],
      ['POST', '/api/consumers', body({ actions: 'insert' }), 422, /actions/],
      ['PATCH', '/api/consumers/no-updates', { filter: { actions: ['truncate'] } }, 422, /actions/],
    ]);
    expect(JSON.stringify((await f.pool.query('SELECT name, config FROM sluice.consumers ORDER BY name')).rows)).toBe(before);
  });

  it('is read from YAML, and refused there with the path', () => {
    const yaml = (actions: string) => `
sources: [{ name: main, url: "postgres://u@127.0.0.1/db", tables: [public.orders] }]
consumers: [{ name: c, source: main, kind: pull, tables: [public.orders], filter: { actions: ${actions} } }]
`;
    expect(loadConfig({ text: yaml('[insert, delete]') }).consumers[0].filter).toEqual({ actions: ['insert', 'delete'] });
    expect(() => loadConfig({ text: yaml('[upsert]') })).toThrow(/consumers\[0\]\.filter\.actions\[0\]|consumers.0.filter.actions/);
  });
});
