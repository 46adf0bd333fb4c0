// The pull routes over real HTTP and app.inject, against a real Postgres:
// Sequin's documented curl flow, every route, scope, and every malformed input.
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { retryDeadLetters } from '../src/buffer/dead-letters.js';
import { migrate } from '../src/db/migrate.js';
import { createPool, type Pool } from '../src/db/pool.js';
import { buildPullTestApp, type PullTestApp } from './fixtures/pull-app.js';
import { countMessages, createConsumer, insertMessages, snapshotMessages, type TestConsumer } from './helpers/buffer.js';
import { startTestPg, type TestPg } from './helpers/pg.js';

let pg: TestPg;
let pool: Pool;
let t: PullTestApp;
let origin: string;
let seq = 0;

beforeAll(async () => {
  pg = await startTestPg();
  pool = createPool(await pg.createDatabase('pull_http'));
  await migrate(pool);
  t = await buildPullTestApp(pool, { bodyLimitBytes: 64 * 1024 });
  await t.app.listen({ port: 0, host: '127.0.0.1' });
  const addr = t.app.server.address();
  origin = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
});
afterAll(async () => {
  await t?.close();
  await pool?.end();
  await pg?.stop();
});

async function consumerWith(messages: number, extra: Partial<TestConsumer> = {}) {
  const name = `orders-pull-${++seq}`;
  const id = await createConsumer(pool, { name, annotations: { team: 'billing' }, ...extra });
  if (messages) await insertMessages(pool, id, Array.from({ length: messages }, (_, i) => ({ lsn: 1000 + i })));
  await t.registry.reload();
  return { name, id };
}

/** A raw HTTP request, so the test decides every header (or none). */
function raw(method: string, path: string, body?: string, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; type: string | undefined; json: any }>((resolve, reject) => {
    const req = http.request(origin + path, { method, headers: { ...headers, ...(body ? { 'content-length': String(Buffer.byteLength(body)) } : {}) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], json: text ? JSON.parse(text) : undefined });
      });
    });
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

const P = '/api/http_pull_consumers';

describe('the Sequin curl flow over real HTTP', () => {
  it('receives a batch, then acks with no Content-Type and with a form Content-Type', async () => {
    const { name, id } = await consumerWith(12);
    // curl -X GET .../receive?batch_size=10 -H "Authorization: Bearer …"
    const res = await fetch(`${origin}${P}/${name}/receive?batch_size=10`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const body = (await res.json()) as { data: { ack_id: string; data: any }[] };
    expect(body.data).toHaveLength(10);
    const first = body.data[0];
    expect(Object.keys(first)).toEqual(['ack_id', 'data']);
    expect(first.data.record).toEqual({ id: 1000 });
    expect(first.data.action).toBe('insert');
    expect(first.data.metadata.commit_lsn).toBe(1000);
    expect(first.data.metadata.consumer).toEqual({ id, name, annotations: { team: 'billing' } });
    const ids = body.data.map((d) => d.ack_id);

    // fetch with a Uint8Array body sends no Content-Type at all.
    const noType = await fetch(`${origin}${P}/${name}/ack`, {
      method: 'POST',
      body: new TextEncoder().encode(JSON.stringify({ ack_ids: ids.slice(0, 5) })),
    });
    expect(await noType.json()).toEqual({ success: true, applied: 5, ignored: 0 });
    // curl -d '{"ack_ids": [...]}' sends application/x-www-form-urlencoded.
    const form = await raw('POST', `${P}/${name}/ack`, JSON.stringify({ ack_ids: ids.slice(5) }), {
      'content-type': 'application/x-www-form-urlencoded',
    });
    expect(form).toMatchObject({ status: 200, json: { success: true, applied: 5, ignored: 0 } });
    // And node's http.request with no header at all.
    const rest = (await (await fetch(`${origin}${P}/${name}/receive?batch_size=10`)).json()) as { data: { ack_id: string }[] };
    expect(rest.data).toHaveLength(2);
    const bare = await raw('POST', `${P}/${name}/ack`, JSON.stringify({ ack_ids: rest.data.map((d) => d.ack_id) }));
    expect(bare).toMatchObject({ status: 200, json: { applied: 2 } });
    expect((await countMessages(pool, id)).total).toBe(0);
  });

  it('serves the same routes under /api/sequin_streams and by consumer id, GET or POST', async () => {
    const { name, id } = await consumerWith(6);
    const a = await t.app.inject({ method: 'GET', url: `/api/sequin_streams/${name}/receive?max_batch_size=2` });
    expect(a.json().data).toHaveLength(2);
    // As off_broadway_sequin asks: POST, JSON body, max_batch_size and a 2-minute wait_for.
    const started = Date.now();
    const b = await t.app.inject({ method: 'POST', url: `${P}/${id}/receive`, payload: { max_batch_size: 3, wait_for: 120_000 } });
    expect(b.json().data).toHaveLength(3);
    expect(Date.now() - started).toBeLessThan(1000);
    // POST with an empty JSON body: no parameters.
    const c = await t.app.inject({ method: 'POST', url: `/api/sequin_streams/${id}/receive`, headers: { 'content-type': 'application/json' }, payload: '' });
    expect(c.json().data).toHaveLength(1);
    const ack = await t.app.inject({
      method: 'POST',
      url: `/api/sequin_streams/${name}/ack`,
      payload: { ack_ids: [...a.json().data, ...b.json().data, ...c.json().data].map((d: { ack_id: string }) => d.ack_id) },
    });
    expect(ack.json()).toEqual({ success: true, applied: 6, ignored: 0 });
  });

  it('nacks and changes visibility over HTTP; unknown ids change nothing', async () => {
    const { name, id } = await consumerWith(2, { pull: { ack_wait_ms: 60_000 } });
    const got = (await t.app.inject({ url: `${P}/${name}/receive?batch_size=2` })).json().data as { ack_id: string }[];
    const nack = await t.app.inject({ method: 'POST', url: `${P}/${name}/nack`, payload: { ack_ids: [got[0].ack_id, 'AAAAAAAAAAAAAAAAAAAAAA'] } });
    expect(nack.json()).toEqual({ success: true, applied: 1, ignored: 1 });
    const again = (await t.app.inject({ url: `${P}/${name}/receive?batch_size=2` })).json().data as { ack_id: string; data: any }[];
    expect(again.map((d) => d.data.record.id)).toEqual([1000]);
    const mv = await t.app.inject({
      method: 'POST',
      url: `/api/sequin_streams/${name}/modify-visibility`,
      payload: { ack_ids: [got[1].ack_id], visibility_timeout_ms: 0 },
    });
    expect(mv.json()).toEqual({ success: true, applied: 1, ignored: 0 });
    const third = (await t.app.inject({ url: `${P}/${name}/receive` })).json().data as { data: any }[];
    expect(third.map((d) => d.data.record.id)).toEqual([1001]);
    expect((await countMessages(pool, id)).inFlight).toBe(2);
  });

  it('returns an empty list for a paused consumer, after the wait', async () => {
    const { name } = await consumerWith(3, { state: 'paused' });
    expect((await t.app.inject({ url: `${P}/${name}/receive?batch_size=3` })).json()).toEqual({ data: [] });
    const started = Date.now();
    expect((await t.app.inject({ url: `${P}/${name}/receive?wait_for=500` })).json()).toEqual({ data: [] });
    expect(Date.now() - started).toBeGreaterThanOrEqual(450);
  });
});

describe('limits over HTTP', () => {
  const receiveIds = async (name: string, q = '') =>
    ((await t.app.inject({ url: `${P}/${name}/receive?${q}` })).json().data as { ack_id: string; data: any }[]);
  const post = (name: string, route: string, ackIds: string[]) =>
    t.app.inject({ method: 'POST', url: `${P}/${name}/${route}`, payload: { ack_ids: ackIds } });

  it('max_ack_pending: receives return fewer, then none, until acks free room', async () => {
    const { name } = await consumerWith(10, { pull: { max_ack_pending: 3 } });
    const first = await receiveIds(name, 'batch_size=10');
    expect(first).toHaveLength(3);
    expect(await receiveIds(name, 'batch_size=10')).toEqual([]);
    await post(name, 'ack', [first[0].ack_id]);
    expect(await receiveIds(name, 'batch_size=10')).toHaveLength(1);
  });

  it('max_deliver: a message nacked max_deliver times is dead-lettered, its group moves on, retry brings it back first', async () => {
    const name = `dl-${++seq}`;
    const id = await createConsumer(pool, { name, pull: { max_deliver: 2 } });
    await insertMessages(pool, id, [{ lsn: 1, group: 'a' }, { lsn: 2, group: 'a' }]);
    await t.registry.reload();
    for (let i = 0; i < 2; i++) {
      const got = await receiveIds(name);
      expect(got.map((d) => d.data.metadata.commit_lsn)).toEqual([1]);
      await post(name, 'nack', [got[0].ack_id]);
    }
    const next = await receiveIds(name);
    expect(next.map((d) => d.data.metadata.commit_lsn)).toEqual([2]);
    expect(await retryDeadLetters(pool, id, 'all')).toBe(1);
    await post(name, 'nack', [next[0].ack_id]);
    expect((await receiveIds(name, 'batch_size=5')).map((d) => d.data.metadata.commit_lsn)).toEqual([1]);
  });
});

describe('scope', () => {
  it('refuses a token scoped to other consumers with 403, and serves its own', async () => {
    const { name } = await consumerWith(1);
    const other = { 'x-test-principal': JSON.stringify({ admin: false, consumers: ['someone-else'] }) };
    const own = { 'x-test-principal': JSON.stringify({ admin: false, consumers: [name] }) };
    const refused = await t.app.inject({ url: `${P}/${name}/receive`, headers: other });
    expect(refused.statusCode).toBe(403);
    expect(refused.json().summary).toMatch(/may not use consumer/);
    // No existence oracle: an unknown name is 403 for a scoped token too.
    expect((await t.app.inject({ url: `${P}/nope/receive`, headers: other })).statusCode).toBe(403);
    expect((await t.app.inject({ method: 'POST', url: `${P}/${name}/ack`, headers: other, payload: { ack_ids: [] } })).statusCode).toBe(403);
    expect((await t.app.inject({ url: `${P}/${name}/receive`, headers: own })).json().data).toHaveLength(1);
  });
});

describe('malformed input: its 4xx, a clear summary, and nothing changed', () => {
  type Case = [label: string, status: number, method: 'GET' | 'POST', path: string, payload?: string, headers?: Record<string, string>];
  const json = { 'content-type': 'application/json' };
  const cases = (name: string): Case[] => [
    ['non-JSON body', 400, 'POST', `${P}/${name}/ack`, '{"ack_ids": [', json],
    ['non-JSON body without Content-Type', 400, 'POST', `${P}/${name}/ack`, 'ack_ids=abc'],
    ['a JSON array body', 400, 'POST', `${P}/${name}/ack`, '["x"]', json],
    ['a JSON null body', 400, 'POST', `${P}/${name}/nack`, 'null', json],
    ['no body at all', 400, 'POST', `${P}/${name}/ack`],
    ['a __proto__ key', 400, 'POST', `${P}/${name}/ack`, '{"ack_ids": [], "__proto__": {"x": 1}}', json],
    ['ack_ids not a list', 422, 'POST', `${P}/${name}/ack`, '{"ack_ids": "abc"}', json],
    ['ack_ids not strings', 422, 'POST', `${P}/${name}/ack`, '{"ack_ids": [1, 2]}', json],
    ['ack_ids missing', 422, 'POST', `${P}/${name}/nack`, '{}', json],
    ['an unknown field', 422, 'POST', `${P}/${name}/ack`, '{"ack_ids": [], "all": true}', json],
    ['batch_size 0', 422, 'GET', `${P}/${name}/receive?batch_size=0`],
    ['batch_size 1001', 422, 'GET', `${P}/${name}/receive?batch_size=1001`],
    ['batch_size not a number', 422, 'GET', `${P}/${name}/receive?batch_size=ten`],
    ['batch_size fractional in a body', 422, 'POST', `${P}/${name}/receive`, '{"batch_size": 1.5}', json],
    ['batch_size of the wrong type', 422, 'POST', `${P}/${name}/receive`, '{"batch_size": true}', json],
    ['max_batch_size 1001', 422, 'GET', `${P}/${name}/receive?max_batch_size=1001`],
    ['wait_for below 500', 422, 'GET', `${P}/${name}/receive?wait_for=100`],
    ['wait_for above 300000', 422, 'GET', `${P}/${name}/receive?wait_for=300001`],
    ['wait_for of 6 minutes', 422, 'GET', `${P}/${name}/receive?wait_for=6m`],
    ['wait_for unparsable', 422, 'GET', `${P}/${name}/receive?wait_for=soon`],
    ['wait_for in hours', 422, 'POST', `${P}/${name}/receive`, '{"wait_for": "1h"}', json],
    ['an unknown query parameter', 422, 'GET', `${P}/${name}/receive?batch=3`],
    ['visibility_timeout_ms negative', 422, 'POST', `${P}/${name}/modify-visibility`, '{"ack_ids": [], "visibility_timeout_ms": -1}', json],
    ['visibility_timeout_ms missing', 422, 'POST', `${P}/${name}/modify-visibility`, '{"ack_ids": []}', json],
    ['an unknown consumer', 404, 'GET', `${P}/no-such-consumer/receive`],
    ['an oversize body', 413, 'POST', `${P}/${name}/ack`, JSON.stringify({ ack_ids: Array.from({ length: 5000 }, () => 'A'.repeat(22)) }), json],
  ];

  it('answers each with its status and the error shape', async () => {
    const { name, id } = await consumerWith(3);
    const before = await snapshotMessages(pool, id);
    for (const [label, status, method, path, payload, headers] of cases(name)) {
      const res = await raw(method, path, payload, headers);
      expect({ label, status: res.status }).toEqual({ label, status });
      expect(res.type, label).toMatch(/^application\/json/);
      expect(typeof res.json.summary, label).toBe('string');
      expect(res.json.summary.length, label).toBeGreaterThan(10);
      if (status === 422) expect(Object.keys(res.json.validation_errors ?? {}).length, label).toBeGreaterThan(0);
    }
    expect(await snapshotMessages(pool, id)).toEqual(before);
  });

  it('names the field and the rule', async () => {
    const { name } = await consumerWith(0);
    const r = (await t.app.inject({ url: `${P}/${name}/receive?batch_size=0&wait_for=1h` })).json();
    expect(r.validation_errors).toEqual({
      batch_size: ['must be an integer from 1 to 1000'],
      wait_for: [expect.stringContaining('500 to 300000')],
    });
    expect(r.summary).toMatch(/^Invalid request: batch_size must be an integer from 1 to 1000 \(and 1 more\)\.$/);
    const a = (await t.app.inject({ method: 'POST', url: `${P}/${name}/ack`, payload: { ack_ids: ['ok', 7] } })).json();
    expect(a.validation_errors).toEqual({ 'ack_ids[1]': ['must be string'] });
  });

  it('treats a webhook consumer as no pull consumer (404)', async () => {
    const name = `hook-${++seq}`;
    await createConsumer(pool, { name, kind: 'webhook' });
    await t.registry.reload();
    const r = await t.app.inject({ url: `${P}/${name}/receive` });
    expect(r.statusCode).toBe(404);
    expect(r.json().summary).toMatch(/No pull consumer named/);
  });
});
