// Consumers of streams: pull and webhook consumers name a stream and subject
// patterns in place of a source and tables, and get its published messages
// through the same delivery as table changes (order per key, rewind), on a
// real buffer and a real webhook receiver.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApi, type ApiFixture } from './api-fixture.js';
import { applyConfig, exportConfig } from '../src/config/apply.js';
import { loadConfig, stringifyConfig } from '../src/config/load.js';

let f: ApiFixture;
beforeAll(async () => {
  f = await startApi('stream_consumers');
  expect((await f.call('POST', '/api/streams', { name: 'ev' })).status).toBe(201);
});
afterAll(async () => {
  await f?.stop();
});

const publish = async (messages: object[]) => {
  const r = await f.call('POST', '/api/streams/ev/messages', { messages });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.data as Array<{ sequence: number }>;
};

/** Everything the pull consumer can take now, acked as it goes. */
async function drain(name: string): Promise<any[]> {
  const out: any[] = [];
  for (let round = 0; round < 100; round++) {
    const r = await f.call('POST', `/api/http_pull_consumers/${name}/receive`, { batch_size: 100 });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const items = r.body.data as Array<{ ack_id: string; data: any }>;
    if (items.length === 0) return out;
    out.push(...items.map((i) => i.data));
    expect((await f.call('POST', `/api/http_pull_consumers/${name}/ack`, { ack_ids: items.map((i) => i.ack_id) })).status).toBe(200);
  }
  throw new Error('drain did not end');
}

describe('consumers of a stream', () => {
  it('a pull consumer gets the messages its subject patterns match, in order, in the documented envelope', async () => {
    for (const body of [
      { name: 'ev-all', kind: 'pull', stream: 'ev' },
      { name: 'ev-orders', kind: 'pull', stream: 'ev', subjects: ['orders.*', 'sensors.>'] },
    ]) {
      const r = await f.call('POST', '/api/consumers', body);
      expect(r.status, JSON.stringify(r.body)).toBe(201);
    }
    await f.deps.consumers.reload();
    const got = (await f.call('GET', '/api/consumers/ev-orders')).body;
    expect(got).toMatchObject({ stream: 'ev', subjects: ['orders.*', 'sensors.>'] });
    expect(got.source).toBeUndefined();
    expect(got.tables).toBeUndefined();
    const seqs = await publish([
      { subject: 'orders.new', data: { id: 1 } },
      { subject: 'orders.new.extra', data: 2 },
      { subject: 'sensors.t.us-west', data: 21.5 },
      { subject: 'orders', data: 4 },
      { subject: 'users.new', data: 5 },
      { subject: 'orders.paid', data: { id: 1 } },
    ]);
    const all = await drain('ev-all');
    expect(all.map((m) => m.data)).toEqual([{ id: 1 }, 2, 21.5, 4, 5, { id: 1 }]);
    const orders = await drain('ev-orders');
    expect(orders.map((m) => m.subject)).toEqual(['orders.new', 'sensors.t.us-west', 'orders.paid']);
    expect(orders[0]).toEqual({
      subject: 'orders.new',
      data: { id: 1 },
      metadata: {
        stream: 'ev',
        sequence: seqs[0].sequence,
        key: 'orders.new',
        published_at: expect.any(String),
        idempotency_key: Buffer.from(`${seqs[0].sequence}:0`).toString('base64'),
        consumer: { id: expect.any(String), name: 'ev-orders', annotations: {} },
      },
    });
  });

  it('keeps order per key: a later message of a key waits while an earlier one is out', async () => {
    await publish([
      { subject: 'orders.new', data: 1, key: 'order-7' },
      { subject: 'orders.paid', data: 2, key: 'order-7' },
      { subject: 'orders.new', data: 3, key: 'order-8' },
    ]);
    const first = await f.call('POST', '/api/http_pull_consumers/ev-orders/receive', { batch_size: 1 });
    expect(first.body.data.map((i: any) => i.data.data)).toEqual([1]);
    const next = await f.call('POST', '/api/http_pull_consumers/ev-orders/receive', { batch_size: 10 });
    // order-7's second message waits behind its first; order-8 is free.
    expect(next.body.data.map((i: any) => i.data.data)).toEqual([3]);
    const acks = [...first.body.data, ...next.body.data].map((i: any) => i.ack_id);
    expect((await f.call('POST', '/api/http_pull_consumers/ev-orders/ack', { ack_ids: acks })).status).toBe(200);
    expect((await drain('ev-orders')).map((m) => m.data)).toEqual([2]);
    await drain('ev-all');
  });

  it('is rewound like a consumer of a source, and starts at the tail when created', async () => {
    const r = await f.call('POST', '/api/consumers/ev-orders/rewind', { to: 'earliest' });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.redelivering).toBe(9);
    const again = await drain('ev-orders');
    // Each key's messages in publish order (keys may interleave).
    expect(again.map((m) => m.metadata.sequence)).toHaveLength(6);
    const byKey = (key: string) => again.filter((m) => m.metadata.key === key).map((m) => m.data);
    expect(byKey('order-7')).toEqual([1, 2]);
    expect(again.filter((m) => !m.metadata.key.startsWith('order-')).map((m) => m.subject)).toEqual(['orders.new', 'sensors.t.us-west', 'orders.paid']);
    // Replay by query (tables, where) is a source's; a stream's consumer is rewound instead.
    const replay = await f.call('POST', '/api/consumers/ev-orders/replay', { from: 'earliest' });
    expect(replay.status, JSON.stringify(replay.body)).toBe(422);
    expect(replay.body.summary).toMatch(/replay by query is for consumers of sources; .*rewind/);
    expect((await f.call('POST', '/api/consumers', { name: 'ev-late', kind: 'pull', stream: 'ev' })).status).toBe(201);
    await f.deps.consumers.reload();
    expect(await drain('ev-late')).toEqual([]);
    await publish([{ subject: 'late.one', data: 1 }]);
    expect((await drain('ev-late')).map((m) => m.subject)).toEqual(['late.one']);
  });

  it('bad consumers of streams are 422s naming the field; nothing is saved', async () => {
    const count = async () => (await f.pool.query('SELECT count(*)::int AS n FROM sluice.consumers')).rows[0].n;
    const before = await count();
    const cases: Array<[object, string, RegExp]> = [
      [{ name: 'x1', kind: 'pull', stream: 'nope' }, 'stream', /no stream named "nope"/],
      [{ name: 'x2', kind: 'pull', stream: 'ev', subjects: ['a..b'] }, 'subjects[0]', /empty token/],
      [{ name: 'x3', kind: 'pull', stream: 'ev', subjects: ['a.>.b'] }, 'subjects[0]', /only be the last token/],
      [{ name: 'x4', kind: 'pull', stream: 'ev', tables: ['public.orders'] }, 'tables', /consumer of a source/],
      [{ name: 'x5', kind: 'pull', stream: 'ev', source: 'main' }, 'source', /either source/],
      [{ name: 'x6', kind: 'pull', stream: 'ev', backfill: true }, 'backfill', /no table/],
      [{ name: 'x7', kind: 'pull', stream: 'ev', group_by: { a: ['b'] } }, 'group_by', /grouped by their key/],
      [{ name: 'x8', kind: 'pull' }, 'source', /is required \(or stream/],
    ];
    for (const [body, field, reason] of cases) {
      const r = await f.call('POST', '/api/consumers', body);
      expect(r.status, JSON.stringify(r.body)).toBe(422);
      const messages = (r.body.validation_errors?.[field] ?? []) as string[];
      expect(messages.join(' '), JSON.stringify(r.body)).toMatch(reason);
    }
    expect(await count()).toBe(before);
    // A stream with consumers is not deleted.
    const del = await f.call('DELETE', '/api/streams/ev');
    expect(del.status).toBe(409);
    expect(del.body.summary).toMatch(/^Stream "ev" is used by consumers ev-all, ev-late, ev-orders; delete them first\.$/);
  });

  it('in the config file: applied, exported and read back the same', async () => {
    const text = [
      'streams:',
      '  - {name: ev}',
      'consumers:',
      '  - {name: ev-file, kind: pull, stream: ev, subjects: ["orders.>"]}',
    ].join('\n');
    await applyConfig(f.pool, loadConfig({ text }, {}));
    const exported = await exportConfig(f.pool);
    const c = exported.consumers.find((x) => x.name === 'ev-file')!;
    expect(c).toMatchObject({ source: 'ev', stream: 'ev', subjects: ['orders.>'], tables: [] });
    const yaml = stringifyConfig(exported);
    expect(yaml).toMatch(/- name: ev-file\n\s+stream: ev\n\s+subjects:\n\s+- orders\.>\n\s+kind: pull/);
    const again = loadConfig({ text: yaml }, {});
    expect(again.consumers.find((x) => x.name === 'ev-file')).toEqual(c);
    expect(() => loadConfig({ text: text.replace('stream: ev,', 'stream: evv,') }, {})).toThrow(/consumers\[0\]\.stream: no stream named "evv" \(did you mean "ev"\?\)/);
  });
});
