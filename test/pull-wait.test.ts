// Long-polling: woken by NOTIFY, acks, nacks and visibility expiry within
// milliseconds; no busy loop; max_waiting across gateway instances; the
// LISTEN connection comes back after it is killed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ack, claim, nack } from '../src/buffer/claim.js';
import { Wakeup } from '../src/buffer/wakeup.js';
import { migrate } from '../src/db/migrate.js';
import { createPool, type Pool } from '../src/db/pool.js';
import { buildPullTestApp, type PullTestApp } from './fixtures/pull-app.js';
import { createConsumer, insertMessages, type TestConsumer } from './helpers/buffer.js';
import { startTestPg, type TestPg } from './helpers/pg.js';

let pg: TestPg;
let pool: Pool;
let other: Pool;
let t: PullTestApp;
let origin: string;
let seq = 0;

beforeAll(async () => {
  pg = await startTestPg();
  const url = await pg.createDatabase('pull_wait');
  pool = createPool(url, { max: 30 });
  other = createPool(url, { max: 4 });
  await migrate(pool);
  t = await buildPullTestApp(pool, { instanceId: 'gateway-a' });
  await t.app.listen({ port: 0, host: '127.0.0.1' });
  const addr = t.app.server.address();
  origin = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
});
afterAll(async () => {
  await t?.close();
  await other?.end();
  await pool?.end();
  await pg?.stop();
});

const P = '/api/http_pull_consumers';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function consumer(extra: Partial<TestConsumer> = {}) {
  const name = `waiting-${++seq}`;
  const id = await createConsumer(pool, { name, ...extra });
  await t.registry.reload();
  return { name, id };
}

async function waitersOf(consumerId: string): Promise<number> {
  const { rows } = await pool.query('SELECT count(*)::int AS n FROM sluice.pull_waiters WHERE consumer_id = $1', [consumerId]);
  return rows[0].n;
}

/** Polls (bounded) until `cond` holds. */
async function until(cond: () => Promise<boolean> | boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await sleep(10);
  }
  throw new Error('condition not reached');
}

function receive(name: string, query: string, signal?: AbortSignal) {
  const started = Date.now();
  return fetch(`${origin}${P}/${name}/receive?${query}`, { signal }).then(async (r) => ({
    status: r.status,
    body: (await r.json()) as { data: { ack_id: string; data: any }[]; summary?: string },
    ms: Date.now() - started,
    at: Date.now(),
  }));
}

describe('long-poll wake-ups', () => {
  it('wakes within milliseconds of a NOTIFY from another connection, without polling meanwhile', async () => {
    const { name, id } = await consumer();
    const claimsBefore = t.service.counters.claims;
    const pending = receive(name, 'wait_for=10000&batch_size=5');
    await until(async () => (await waitersOf(id)) === 1);
    await sleep(700);
    // One claim before registering, and at most one safety re-check in 700 ms.
    expect(t.service.counters.claims - claimsBefore).toBeLessThanOrEqual(2);
    // As capture does: insert and notify in one statement, from another pool.
    await insertMessages(other, id, [{ lsn: 1 }, { lsn: 2 }]);
    const insertedAt = Date.now();
    const res = await pending;
    expect(res.body.data.map((d) => d.data.record.id)).toEqual([1, 2]);
    expect(res.at - insertedAt).toBeLessThan(200);
    expect(await waitersOf(id)).toBe(0);
  });

  it('is not a polling loop: an idle wait re-checks about once a second', async () => {
    const { name } = await consumer();
    const claimsBefore = t.service.counters.claims;
    const res = await receive(name, 'wait_for=2500');
    expect(res.body.data).toEqual([]);
    expect(res.ms).toBeGreaterThanOrEqual(2400);
    expect(t.service.counters.claims - claimsBefore).toBeLessThanOrEqual(5);
  });

  it('wakes when an ack in this process frees the group', async () => {
    const { name, id } = await consumer();
    await insertMessages(pool, id, [{ lsn: 1, group: 'a' }, { lsn: 2, group: 'a' }], { notify: false });
    const first = await receive(name, 'batch_size=5');
    expect(first.body.data).toHaveLength(1);
    const pending = receive(name, 'wait_for=10000');
    await until(async () => (await waitersOf(id)) === 1);
    const r = await fetch(`${origin}${P}/${name}/ack`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ack_ids: [first.body.data[0].ack_id] }) });
    const ackedAt = Date.now();
    expect(r.status).toBe(200);
    const res = await pending;
    expect(res.body.data.map((d) => d.data.record.id)).toEqual([2]);
    expect(res.at - ackedAt).toBeLessThan(200);
  });

  it('wakes on a nack made by another process', async () => {
    const { name, id } = await consumer({ pull: { ack_wait_ms: 60_000 } });
    await insertMessages(pool, id, [{ lsn: 1 }], { notify: false });
    const first = await receive(name, '');
    const pending = receive(name, 'wait_for=10000');
    await until(async () => (await waitersOf(id)) === 1);
    await sleep(50);
    // The nack function notifies; this process only learns of it through LISTEN.
    expect((await nack(other, id, [first.body.data[0].ack_id])).applied).toBe(1);
    const nackedAt = Date.now();
    const res = await pending;
    expect(res.body.data.map((d) => d.data.record.id)).toEqual([1]);
    expect(res.at - nackedAt).toBeLessThan(200);
  });

  it('wakes when an in-flight message becomes visible again, before any safety re-check', async () => {
    const { name, id } = await consumer({ pull: { ack_wait_ms: 400 } });
    await insertMessages(pool, id, [{ lsn: 1 }], { notify: false });
    const first = await receive(name, '');
    const deliveredAt = Date.now();
    const res = await receive(name, 'wait_for=5000');
    expect(res.body.data.map((d) => d.data.metadata.commit_lsn)).toEqual([1]);
    expect(res.body.data[0].ack_id).not.toBe(first.body.data[0].ack_id);
    expect(res.at - deliveredAt).toBeGreaterThanOrEqual(380);
    expect(res.at - deliveredAt).toBeLessThan(700);
  });
});

describe('max_waiting', () => {
  it('refuses the 21st waiting receive with 429, counting other gateway instances too', async () => {
    const { name, id } = await consumer();
    const second = await buildPullTestApp(pool, { instanceId: 'gateway-b' });
    try {
      const abort = new AbortController();
      // 15 wait on this instance, 5 on the other: they share the limit of 20.
      const waiting = Array.from({ length: 15 }, () => receive(name, 'wait_for=20000', abort.signal).catch(() => null));
      const onB = Array.from({ length: 5 }, () => second.app.inject({ url: `${P}/${name}/receive?wait_for=20000` }));
      await until(async () => (await waitersOf(id)) === 20);
      const refused = await receive(name, 'wait_for=1000');
      expect(refused.status).toBe(429);
      expect(refused.body.summary).toMatch(/max_waiting is 20/);
      const refusedB = await second.app.inject({ url: `${P}/${name}/receive?wait_for=1000` });
      expect(refusedB.statusCode).toBe(429);
      // A receive that does not wait is never refused.
      expect((await receive(name, '')).status).toBe(200);
      // One message wakes one waiter; its slot frees and a new waiter fits again.
      await insertMessages(other, id, [{ lsn: 1 }]);
      await until(async () => (await waitersOf(id)) === 19);
      const late = receive(name, 'wait_for=600');
      await until(async () => (await waitersOf(id)) === 20);
      expect((await late).body.data).toEqual([]);
      // Clients that hang up free their slots.
      abort.abort();
      await until(async () => (await waitersOf(id)) <= 5);
      await Promise.all(waiting);
      await insertMessages(other, id, Array.from({ length: 5 }, (_, i) => ({ lsn: 10 + i })));
      const served = await Promise.all(onB);
      expect(served.reduce((n, r) => n + r.json().data.length, 0)).toBe(5);
      expect(await waitersOf(id)).toBe(0);
    } finally {
      await second.close();
    }
  });
});

describe('shutdown', () => {
  it('ends long-polls at once when the app closes', async () => {
    const { name, id } = await consumer();
    const closing = await buildPullTestApp(pool, { instanceId: 'gateway-c' });
    const pending = closing.app.inject({ url: `${P}/${name}/receive?wait_for=30000` });
    await until(async () => (await waitersOf(id)) === 1);
    const started = Date.now();
    await closing.close();
    expect((await pending).json()).toEqual({ data: [] });
    expect(Date.now() - started).toBeLessThan(1000);
    expect(await waitersOf(id)).toBe(0);
  });
});

describe('Wakeup', () => {
  it('reconnects after its connection is killed, and tells waiters to look again', async () => {
    const w = Wakeup.fromPool(pool, { minBackoffMs: 20, maxBackoffMs: 200 });
    await w.start();
    try {
      expect(w.listening).toBe(true);
      const woken = w.wait('anyone', 10_000);
      await other.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'sluice-wakeup'`);
      expect(await woken).toBe('notified');
      await until(() => w.listening, 5000);
      const started = Date.now();
      const again = w.wait('c-1', 10_000);
      await other.query(`SELECT pg_notify('sluice_messages', 'c-1')`);
      expect(await again).toBe('notified');
      expect(Date.now() - started).toBeLessThan(200);
    } finally {
      await w.stop();
    }
  });

  it('does not miss a wake-up that lands between a check and the wait', async () => {
    const w = new Wakeup({ connection: {} });
    const epoch = w.epoch('c');
    w.notify('c');
    expect(await w.wait('c', 5000, undefined, epoch)).toBe('notified');
    expect(await w.wait('c', 20, undefined, w.epoch('c'))).toBe('timeout');
    const abort = new AbortController();
    const p = w.wait('c', 5000, abort.signal);
    abort.abort();
    expect(await p).toBe('aborted');
  });

  it('keeps claims and acks working while nobody listens', async () => {
    const { id } = await consumer();
    await insertMessages(pool, id, [{ lsn: 1 }]);
    const c = await claim(pool, { consumerId: id, limit: 1, visibilityMs: 1000, deadLetterBlocksGroup: false });
    expect((await ack(pool, id, c.messages.map((m) => m.ackId))).applied).toBe(1);
  });
});
