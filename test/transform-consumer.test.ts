// Transforms attached to consumers, through the real API on a real capture:
// a webhook consumer with a where filter and a function transform receives
// exactly the matching changes, transformed, in order, over HTTP; a message
// the function refuses (throws, loops, returns no JSON) becomes a dead letter
// with the reason and holds up nobody; pull serves path and template
// transforms, and a rewind is served with the current transform; the try-out
// endpoint and `sluice transform test` run a transform before it is saved.
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsumerRegistry } from '../src/buffer/consumers.js';
import { transformTestCommand } from '../src/cli/transform-test.js';
import { formatStatus, statusReport } from '../src/cli/status.js';
import { ConfigError } from '../src/config/errors.js';
import { loadConfig } from '../src/config/load.js';
import { Dispatcher } from '../src/push/dispatcher.js';
import { closeTransforms } from '../src/render/transforms.js';
import { ADMIN_TOKEN, startApi, type ApiFixture } from './api-fixture.js';
import { eventually, quietLog, sourceConfig, startCapture, type CaptureFixture } from './helpers/capture.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';

let f: ApiFixture;
let capture: CaptureFixture;
let receiver: Receiver;
const TABLES = ['public.tickets', 'public.orders'];

async function logCount(): Promise<number> {
  return (await f.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM sluice.log')).rows[0].n;
}

/** Writes, then waits until capture has logged them all. */
async function write(statements: string[]): Promise<void> {
  const before = await logCount();
  for (const s of statements) await f.pool.query(s);
  await eventually(async () => ((await logCount()) >= before + statements.length ? true : null), 20_000);
}

async function receive(name: string, ack = true): Promise<any[]> {
  const r = await f.call('POST', `/api/http_pull_consumers/${name}/receive`, { batch_size: 100 });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  const items = r.body.data as Array<{ ack_id: string; data: any }>;
  if (ack && items.length) expect((await f.call('POST', `/api/http_pull_consumers/${name}/ack`, { ack_ids: items.map((i) => i.ack_id) })).status).toBe(200);
  return items.map((i) => i.data);
}

async function deadLetters(name: string): Promise<any[]> {
  const r = await f.call('GET', `/api/consumers/${name}/dead-letters`);
  expect(r.status).toBe(200);
  return r.body.data;
}

beforeAll(async () => {
  f = await startApi('transform_consumer');
  await f.pool.query(`CREATE TABLE public.tickets (id bigint PRIMARY KEY, status text, note text, amount numeric(40, 10))`);
  receiver = await startReceiver();
  expect((await f.call('POST', '/api/sources', { name: 'main', tables: TABLES })).status).toBe(201);
  capture = await startCapture(f.url, sourceConfig('main', TABLES), []);
}, 60_000);

afterAll(async () => {
  await capture?.stop();
  await receiver?.close();
  await closeTransforms();
  await f?.stop();
});

const FUNCTION = `(m) => {
  if (m.record.note === 'boom') throw new Error('cannot handle ' + m.record.id);
  if (m.record.note === 'loop') { for (;;) {} }
  if (m.record.note === 'nothing') return undefined;
  return { id: m.record.id, kind: m.action, status: m.record.status, by: m.metadata.consumer.name };
}`;

describe('a webhook consumer with a where filter and a function transform', () => {
  it('receives exactly the matching changes, transformed, in order; a failing transform dead-letters only its own message', async () => {
    const created = await f.call('POST', '/api/consumers', {
      name: 'hook', source: 'main', kind: 'webhook', tables: ['public.tickets'], start: 'earliest',
      filter: { where: { tickets: "status <> 'draft'" } },
      transform: { function: FUNCTION, timeout_ms: 100 },
      webhook: { url: `http://127.0.0.1:${receiver.port}/hook`, batch_size: 10, allow_private_ranges: ['127.0.0.0/8'] },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body.transform).toEqual({ function: FUNCTION, timeout_ms: 100 });
    await write([
      `INSERT INTO tickets VALUES (1, 'open', NULL, 1)`,
      `INSERT INTO tickets VALUES (2, 'draft', NULL, 1)`, // filtered out
      `INSERT INTO tickets VALUES (3, 'open', 'boom', 1)`, // throws: dead letter
      `UPDATE tickets SET status = 'closed', note = NULL WHERE id = 3`, // its group moves on
      `INSERT INTO tickets VALUES (4, 'open', 'loop', 1)`, // times out: dead letter
      `INSERT INTO tickets VALUES (5, 'open', 'nothing', 1)`, // no JSON value: dead letter
      `UPDATE tickets SET status = 'closed' WHERE id = 1`,
      `INSERT INTO tickets VALUES (6, 'open', NULL, 1)`,
    ]);
    const registry = new ConsumerRegistry(f.pool);
    await registry.reload();
    const dispatcher = new Dispatcher({ pool: f.pool, consumers: registry, instanceId: 'test', log: quietLog });
    dispatcher.start();
    try {
      await eventually(async () => (receiver.accepted().length >= 4 ? true : null), 20_000);
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      await dispatcher.stop();
    }
    const got = receiver.accepted();
    // Exactly the matching changes, each once, transformed; across rows the
    // order may interleave, within a row it holds.
    expect(got.map((g: any) => JSON.stringify(g)).sort()).toEqual(
      [
        { id: 1, kind: 'insert', status: 'open', by: 'hook' },
        { id: 1, kind: 'update', status: 'closed', by: 'hook' },
        { id: 3, kind: 'update', status: 'closed', by: 'hook' },
        { id: 6, kind: 'insert', status: 'open', by: 'hook' },
      ].map((g) => JSON.stringify(g)).sort(),
    );
    expect(got.filter((g: any) => g.id === 1).map((g: any) => g.kind)).toEqual(['insert', 'update']);
    const dead = await deadLetters('hook');
    expect(dead.map((d) => [d.message.record.id, d.message.record.note])).toEqual([[3, 'boom'], [4, 'loop'], [5, 'nothing']]);
    expect(dead[0].last_error).toMatch(/^transform: .*cannot handle 3/);
    expect(dead[1].last_error).toMatch(/^transform: .*longer than its limit of 100 ms/);
    expect(dead[2].last_error).toMatch(/^transform: /);
    // The dead letter shows the message as captured (the input the function refused).
    expect(dead[0].message.metadata.consumer.name).toBe('hook');
    // Nothing else is left for the consumer.
    const stats = await f.call('GET', '/api/consumers/hook/stats');
    expect(stats.body).toMatchObject({ pending: 0, in_flight: 0, dead_lettered: 3 });
  });
});

describe('pull consumers', () => {
  it('serve a path or a template transform; a rewind is served with the current transform', async () => {
    expect((await f.call('POST', '/api/consumers', {
      name: 'ids', source: 'main', kind: 'pull', tables: ['public.orders'], start: 'earliest',
      transform: { path: 'record' },
    })).status).toBe(201);
    await write([`INSERT INTO orders VALUES (9007199254740993, 'new')`, `UPDATE orders SET status = 'paid' WHERE id = 9007199254740993`]);
    // The path's value, digits intact (the raw text, not a double); one row: one at a time, in order.
    for (const status of ['new', 'paid']) {
      const r = await f.call('POST', '/api/http_pull_consumers/ids/receive', { batch_size: 10 });
      expect(r.raw).toContain(`"data":{"id":9007199254740993,"status":"${status}"}`);
      await f.call('POST', '/api/http_pull_consumers/ids/ack', { ack_ids: r.body.data.map((i: any) => i.ack_id) });
    }

    const patched = await f.call('PATCH', '/api/consumers/ids', {
      transform: { template: { key: 'record.id', what: 'action', table: 'metadata.table_name', missing: 'record.nope' } },
    });
    expect(patched.status, JSON.stringify(patched.body)).toBe(200);
    expect((await f.call('POST', '/api/consumers/ids/rewind', { to: 'earliest' })).status).toBe(200);
    const again = await f.call('POST', '/api/http_pull_consumers/ids/receive', { batch_size: 10 });
    expect(again.raw).toContain('"data":{"key":9007199254740993,"what":"insert","table":"orders","missing":null}');
    await f.call('POST', '/api/http_pull_consumers/ids/ack', { ack_ids: again.body.data.map((i: any) => i.ack_id) });

    const report = await statusReport(f.pool, null, f.url);
    expect(formatStatus(report)).toContain('transform: template {key, what, table, missing}');
    // null removes it: the message as captured again.
    const removed = await f.call('PATCH', '/api/consumers/ids', { transform: null });
    expect(removed.status).toBe(200);
    expect(removed.body.transform).toBeUndefined();
    await f.pool.query(`UPDATE orders SET status = 'shipped' WHERE id = 9007199254740993`);
    // The rewind's update comes first (one message of a row at a time), then the new one: both whole envelopes.
    const raws: string[] = [];
    await eventually(async () => {
      const r = await f.call('POST', '/api/http_pull_consumers/ids/receive', { batch_size: 10 });
      if (r.body.data.length) await f.call('POST', '/api/http_pull_consumers/ids/ack', { ack_ids: r.body.data.map((i: any) => i.ack_id) });
      raws.push(r.raw);
      return r.raw.includes('"shipped"') ? true : null;
    });
    expect(raws.join('\n')).toMatch(/"data":\{"record":\{"id":9007199254740993,"status":"shipped"\}/);
  });

  it('a function that fails dead-letters its message, the others are served, and the gateway keeps serving', async () => {
    expect((await f.call('POST', '/api/consumers', {
      name: 'pulled', source: 'main', kind: 'pull', tables: ['public.tickets'],
      transform: { function: FUNCTION, timeout_ms: 50 },
    })).status).toBe(201);
    await write([
      `INSERT INTO tickets VALUES (20, 'open', 'boom', 1)`,
      `INSERT INTO tickets VALUES (21, 'open', NULL, 1)`,
      `INSERT INTO tickets VALUES (22, 'open', 'loop', 1)`,
      `INSERT INTO tickets VALUES (23, 'open', NULL, 1)`,
    ]);
    const served = await receive('pulled');
    expect(served.map((m) => m.id)).toEqual([21, 23]);
    expect(served[0]).toEqual({ id: 21, kind: 'insert', status: 'open', by: 'pulled' });
    expect((await deadLetters('pulled')).map((d) => d.message.record.id)).toEqual([20, 22]);
    // Retried dead letters are served through the (fixed) transform.
    expect((await f.call('PATCH', '/api/consumers/pulled', { transform: { path: 'record.id' } })).status).toBe(200);
    expect((await f.call('POST', '/api/consumers/pulled/dead-letters/retry', { all: true })).status).toBe(200);
    expect(await receive('pulled')).toEqual([20, 22]);
    expect((await f.call('GET', '/api/health')).status).toBeLessThan(500);
  });
});

describe('bad transforms are refused when saved', () => {
  it('a function that does not compile: 422 with the line and column, nothing saved', async () => {
    const r = await f.call('POST', '/api/consumers', {
      name: 'broken', source: 'main', kind: 'pull', tables: ['public.orders'],
      transform: { function: '(m) => {\n  return m.record.;\n}' },
    });
    expect(r.status).toBe(422);
    expect(r.body.validation_errors['transform.function'][0]).toMatch(/^line 2, column \d+: /);
    expect((await f.call('GET', '/api/consumers/broken')).status).toBe(404);
    for (const transform of [{}, { path: 'a', function: '(m) => m' }, { path: 'record', timeout_ms: 5 }, { function: '(m) => m', timeout_ms: 5000 }, { template: { a: 7 } }]) {
      const bad = await f.call('POST', '/api/consumers', { name: 'broken', source: 'main', kind: 'pull', tables: ['public.orders'], transform });
      expect(bad.status, JSON.stringify(transform)).toBe(422);
      expect(bad.body.summary).toMatch(/transform/);
    }
  });

  it('in a config file: the path and the line and column', () => {
    const yaml = `sources: [{name: main, tables: [public.orders]}]
consumers:
  - name: c
    source: main
    kind: pull
    tables: [public.orders]
    transform:
      function: |
        (m) => {
          return m.record..id
        }
`;
    let err: unknown;
    try {
      loadConfig({ text: yaml, origin: 'sluice.yaml' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect(String((err as Error).message)).toMatch(/consumers\[0\]\.transform\.function: line 2, column \d+/);
  });
});

describe('POST /api/consumers/{name}/transform/test', () => {
  it('runs a transform on a sample message or the latest retained change, and reports the filter and the error', async () => {
    const sample = { action: 'insert', record: { id: 5, status: 'paid', note: 'boom' }, changes: null, metadata: { table_schema: 'public', table_name: 'tickets' } };
    let r = await f.call('POST', '/api/consumers/hook/transform/test', { message: sample });
    expect(r.status, r.raw).toBe(200);
    expect(r.body).toMatchObject({ from: { kind: 'sample' }, filter: { passed: true, reason: null }, output: null });
    expect(r.body.error).toMatch(/cannot handle 5/);

    r = await f.call('POST', '/api/consumers/hook/transform/test', {
      message: { ...sample, record: { ...sample.record, status: 'draft', note: null } },
      transform: { template: { id: 'record.id' } },
    });
    expect(r.body).toMatchObject({ filter: { passed: false }, output: { id: 5 }, error: null });
    expect(r.body.filter.reason).toMatch(/where on public.tickets is false/);

    // The latest retained change of a table, with the consumer's metadata; digits intact.
    r = await f.call('POST', '/api/consumers/ids/transform/test', { table: 'orders', transform: { path: 'record.id' } });
    expect(r.status, r.raw).toBe(200);
    expect(r.body.from.kind).toBe('log');
    expect(r.raw).toContain('"output":9007199254740993');
    expect(r.body.input.metadata.consumer.name).toBe('ids');

    // A trial filter is checked against the source, as when saved.
    r = await f.call('POST', '/api/consumers/ids/transform/test', { filter: { where: { orders: 'colour = 1' } } });
    expect(r.status).toBe(422);
    expect(Object.keys(r.body.validation_errors)).toEqual(['filter.where["public.orders"]']);
    r = await f.call('POST', '/api/consumers/ids/transform/test', { transform: { function: 'm => {' } });
    expect(r.status).toBe(422);
    expect(r.body.validation_errors['transform.function'][0]).toMatch(/^line 1, column \d+: /);
    r = await f.call('POST', '/api/consumers/ids/transform/test', { table: 'public.tickets' });
    expect(r.status).toBe(422);
    r = await f.call('POST', '/api/consumers/ids/transform/test', { table: 'orders', message: sample });
    expect(r.status).toBe(422);
    expect((await f.call('POST', '/api/consumers/nope/transform/test', {})).status).toBe(404);
  });

  it('sluice transform test prints the output, or the error with exit 1', async () => {
    await f.app.listen({ host: '127.0.0.1', port: 0 });
    const port = (f.app.server.address() as AddressInfo).port;
    const env = { SLUICE_URL: `http://127.0.0.1:${port}`, SLUICE_TOKEN: ADMIN_TOKEN };
    const lines: string[] = [];
    await transformTestCommand(['test', 'ids'], { table: 'public.orders', path: 'record.status' }, env, (t) => lines.push(t));
    expect(lines.join('\n')).toMatch(/latest retained change[\s\S]*filter: passes[\s\S]*"shipped"/);
    const message = JSON.stringify({ action: 'insert', record: { id: 1, note: 'boom' }, metadata: { table_schema: 'public', table_name: 'tickets' } });
    await expect(transformTestCommand(['test', 'hook'], { message: '-' }, env, () => {}, () => message)).rejects.toThrow(/failed on this message/);
    await expect(transformTestCommand(['test', 'hook'], { function: '-' }, env, () => {}, () => 'm => {')).rejects.toThrow(/422[\s\S]*transform.function: line 1/);
  });
});
