// The attempts and rotate-secret routes (fastify, app.inject), the scheduled
// prune, and the demo receiver.
import Fastify, { type FastifyInstance } from 'fastify';
import { Webhook as StandardWebhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorHandler } from '../src/http/errors.js';
import { attemptsRoutes } from '../src/http/routes/attempts.js';
import { schemaCompiler } from '../src/http/schemas/validator.js';
import { Jobs } from '../src/jobs/index.js';
import { startDemoReceiver } from '../src/push/demo-receiver.js';
import { verifyWebhook } from '../src/receive/index.js';
import { publicKeyOf } from '../src/signing/secrets.js';
import { webhookHeaders } from '../src/signing/sign.js';
import { consumerConfig, eventually, insertConsumer, quietLog } from './helpers/capture.js';
import { insertMessages, insertWebhookConsumer, messagesFor, TEST_SECRET, usePushEnv, webhookSettings } from './helpers/receiver.js';

const env = usePushEnv('push_api');
let app: FastifyInstance;

beforeAll(async () => {
  app = Fastify();
  app.setValidatorCompiler(schemaCompiler());
  app.setErrorHandler(errorHandler);
  await app.register(
    async (api) => {
      await api.register(attemptsRoutes, { deps: { pool: env.pool, consumers: env.registry, instanceId: 'test' } });
    },
    { prefix: '/api' },
  );
});
afterAll(async () => {
  await app?.close();
});

const get = (url: string) => app.inject({ method: 'GET', url });

describe('GET /api/consumers/:name/attempts', () => {
  it('lists attempts newest first, filtered and paged, with the endpoint health', async () => {
    const r = await env.receiver((d) => ({ status: d.n <= 2 ? 500 : 200, body: d.n <= 2 ? 'boom' : 'ok' }));
    const retry = { initial_ms: 20, factor: 1, cap_ms: 20, max_attempts: 10 };
    const id = await insertWebhookConsumer(env.pool, 'listed', webhookSettings(r.url, { retry }));
    await env.run();
    await insertMessages(env.pool, id, messagesFor(['a'], 1));
    await eventually(async () => (await env.remaining(id)) === 0);

    const all = (await get('/api/consumers/listed/attempts')).json();
    expect(all.data.map((a: any) => [a.attempt, a.outcome, a.status])).toEqual([
      [3, 'delivered', 200],
      [2, 'retry', 500],
      [1, 'retry', 500],
    ]);
    expect(all.data[0].webhook_id).toBe(all.data[2].webhook_id);
    expect(all.data[0].webhook_id).toBe(r.deliveries[0].id);
    expect(all.data[1].response_excerpt).toBe('boom');
    expect(all.next_cursor).toBeNull();
    expect(all.health).toMatchObject({ consecutive_failures: 0, first_failure_at: null, last_error: 'HTTP 500: boom' });
    expect(all.health.last_success_at).not.toBeNull();

    expect((await get('/api/consumers/listed/attempts?status=failed')).json().data).toHaveLength(2);
    expect((await get('/api/consumers/listed/attempts?status=succeeded')).json().data).toHaveLength(1);
    expect((await get('/api/consumers/listed/attempts?http_status=500')).json().data).toHaveLength(2);

    const page1 = (await get('/api/consumers/listed/attempts?limit=2')).json();
    expect(page1.data).toHaveLength(2);
    const page2 = (await get(`/api/consumers/listed/attempts?limit=2&cursor=${page1.next_cursor}`)).json();
    expect(page2.data.map((a: any) => a.attempt)).toEqual([1]);
    expect(page2.next_cursor).toBeNull();
  });

  it('answers errors in the one error shape', async () => {
    await insertConsumer(env.pool, consumerConfig('pulled', 'src', ['public.orders']));
    const missing = await get('/api/consumers/nope/attempts');
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toEqual({ summary: 'Consumer "nope" does not exist.' });
    const pull = await get('/api/consumers/pulled/attempts');
    expect(pull.statusCode).toBe(409);
    expect(pull.json().summary).toMatch(/pull consumer/);
    const bad = await get('/api/consumers/pulled/attempts?status=maybe&color=red');
    expect(bad.statusCode).toBe(422);
    expect(Object.keys(bad.json().validation_errors).sort()).toEqual(['color', 'status']);
  });
});

describe('POST /api/consumers/:name/rotate-secret', () => {
  it('signs with the new and the old secret until the overlap ends', async () => {
    const r = await env.receiver();
    const id = await insertWebhookConsumer(env.pool, 'rotated', webhookSettings(r.url));
    await env.run();
    const res = await app.inject({ method: 'POST', url: '/api/consumers/rotated/rotate-secret', payload: { overlap: '1h' } });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.secret).toMatch(/^whsec_/);
    expect(body.secrets).toHaveLength(2);
    expect(body.secrets[0]).toEqual({ secret: `whsec_…${body.secret.slice(-4)}`, expires_at: null });
    expect(body.secrets[1].secret).toBe(`whsec_…${TEST_SECRET.slice(-4)}`);
    expect(Date.parse(body.secrets[1].expires_at) - Date.now()).toBeGreaterThan(3_500_000);
    expect(JSON.stringify(body.secrets)).not.toContain(TEST_SECRET);

    // The registry reloaded (as every gateway does on the config notification): the worker signs with both.
    await insertMessages(env.pool, id, messagesFor(['a'], 1));
    await eventually(async () => r.accepted().length === 1);
    const d = r.deliveries[0];
    const h = { 'webhook-id': d.id, 'webhook-timestamp': d.timestamp, 'webhook-signature': d.signature };
    expect(() => new StandardWebhook(body.secret).verify(d.raw.toString(), h)).not.toThrow();
    expect(() => new StandardWebhook(TEST_SECRET).verify(d.raw.toString(), h)).not.toThrow();

    // A second rotation with no overlap: only the newest secret signs.
    const again = (await app.inject({ method: 'POST', url: '/api/consumers/rotated/rotate-secret', payload: { overlap: '0s' } })).json();
    expect(again.secrets).toHaveLength(3);
    await insertMessages(env.pool, id, messagesFor(['b'], 1, 7000));
    await eventually(async () => r.accepted().length === 2);
    const last = r.deliveries[1];
    expect(last.signature.split(' ')).toHaveLength(1);
    const h2 = { 'webhook-id': last.id, 'webhook-timestamp': last.timestamp, 'webhook-signature': last.signature };
    expect(() => new StandardWebhook(again.secret).verify(last.raw.toString(), h2)).not.toThrow();
  });

  it('rotates to an ed25519 key (scheme v1a): its public key in the response, v1 and v1a during the overlap, v1a kept on the next rotation', async () => {
    const r = await env.receiver();
    const id = await insertWebhookConsumer(env.pool, 'to-v1a', webhookSettings(r.url));
    await env.run();
    const res = await app.inject({ method: 'POST', url: '/api/consumers/to-v1a/rotate-secret', payload: { overlap: '1h', scheme: 'v1a' } });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.secret).toMatch(/^whsk_/);
    expect(body.public_key).toBe(publicKeyOf(body.secret));
    expect(body.secrets[0]).toEqual({ secret: `whsk_…${body.secret.slice(-4)}`, expires_at: null });

    await insertMessages(env.pool, id, messagesFor(['k'], 1));
    await eventually(async () => r.accepted().length === 1);
    const d = r.deliveries[0];
    const h = { 'webhook-id': d.id, 'webhook-timestamp': d.timestamp, 'webhook-signature': d.signature };
    expect(d.signature.split(' ').map((e) => e.split(',')[0]).sort()).toEqual(['v1', 'v1a']);
    expect(verifyWebhook(d.raw, h, body.public_key)).toMatchObject({ id: d.id });
    expect(() => new StandardWebhook(TEST_SECRET).verify(d.raw.toString(), h)).not.toThrow();

    // Without a scheme, a rotation keeps the current one.
    const again = (await app.inject({ method: 'POST', url: '/api/consumers/to-v1a/rotate-secret', payload: { overlap: '0s' } })).json();
    expect(again.secret).toMatch(/^whsk_/);
    expect(again.public_key).toBe(publicKeyOf(again.secret));
    const back = (await app.inject({ method: 'POST', url: '/api/consumers/to-v1a/rotate-secret', payload: { scheme: 'v1' } })).json();
    expect(back.secret).toMatch(/^whsec_/);
    expect(back.public_key).toBeNull();

    const bad = await app.inject({ method: 'POST', url: '/api/consumers/to-v1a/rotate-secret', payload: { scheme: 'v2' } });
    expect(bad.statusCode).toBeGreaterThanOrEqual(400);
    expect(bad.statusCode).toBeLessThan(500);
    expect(bad.json().summary).toMatch(/scheme/);
  });

  it('refuses a bad overlap and pull consumers', async () => {
    await insertWebhookConsumer(env.pool, 'hooked', webhookSettings('http://127.0.0.1:9/hook'));
    await insertConsumer(env.pool, consumerConfig('pulled2', 'src', ['public.orders']));
    const bad = await app.inject({ method: 'POST', url: '/api/consumers/hooked/rotate-secret', payload: { overlap: 'soon' } });
    expect(bad.statusCode).toBe(422);
    expect(bad.json().validation_errors).toHaveProperty('overlap');
    const pull = await app.inject({ method: 'POST', url: '/api/consumers/pulled2/rotate-secret' });
    expect(pull.statusCode).toBe(409);
  });
});

describe('jobs', () => {
  it('prunes attempts past retention; start and stop are idempotent', async () => {
    await env.pool.query(
      `INSERT INTO sluice.webhook_attempts (consumer_id, batch_id, attempt, started_at, duration_ms, outcome, message_count)
       SELECT gen_random_uuid(), gen_random_uuid(), 1, now() - (i || ' days')::interval, 1, 'delivered', 1 FROM generate_series(1, 10) i`,
    );
    let lagReports = 0;
    const jobs = new Jobs({ pool: env.pool, log: quietLog, reportSlotLag: () => lagReports++, schedules: { slotLag: '* * * * * *' } });
    jobs.start();
    jobs.start();
    expect(await jobs.runPrune()).toBe(4);
    const { rows } = await env.pool.query('SELECT count(*)::int AS n FROM sluice.webhook_attempts');
    expect(rows[0].n).toBe(6);
    await eventually(async () => lagReports > 0, 5000);
    await jobs.stop();
    await jobs.stop();
    const after = lagReports;
    await new Promise((s) => setTimeout(s, 1200));
    expect(lagReports).toBe(after);
  });
});

describe('buffer vacuum job', () => {
  it('vacuums sluice.messages once enough dead rows wait', async () => {
    const id = await insertWebhookConsumer(env.pool, 'vacuumed', webhookSettings('http://127.0.0.1:9/hook'));
    // 500 delivery rows (as claims take changes in), then acked.
    await env.pool.query(`INSERT INTO sluice.messages (consumer_id, commit_lsn, commit_idx) SELECT $1, g, 0 FROM generate_series(1, 500) g`, [id]);
    await env.pool.query('DELETE FROM sluice.messages WHERE consumer_id = $1', [id]);
    const never = new Jobs({ pool: env.pool, log: quietLog, vacuumMinDeadTuples: 1_000_000 });
    expect(await never.runVacuum()).toBeNull();
    const jobs = new Jobs({ pool: env.pool, log: quietLog, vacuumMinDeadTuples: 100 });
    // Table statistics reach pg_stat_user_tables within a second or so.
    const dead = await eventually(() => jobs.runVacuum(), 10_000, 200);
    expect(dead).toBeGreaterThanOrEqual(100);
    // Postgres 14's statistics collector reports the vacuum a moment later (15+ at once).
    await eventually(async () => {
      const { rows } = await env.pool.query(`SELECT last_vacuum FROM pg_stat_user_tables WHERE schemaname = 'sluice' AND relname = 'messages'`);
      return rows[0].last_vacuum !== null;
    }, 10_000, 100);
  });
});

describe('demo receiver', () => {
  it('verifies deliveries and prints one line per message', async () => {
    const lines: string[] = [];
    const demo = await startDemoReceiver({ port: 0, consumerId: 'x', secret: TEST_SECRET, log: quietLog, print: (l) => lines.push(l) });
    try {
      const message = (pk: string, action: string, consumerId = 'x') => ({
        record: { id: pk },
        changes: null,
        action,
        metadata: { table_schema: 'public', table_name: 'orders', record_pks: [pk], consumer: { id: consumerId, name: 'orders-hook', annotations: {} } },
      });
      const body = JSON.stringify({ data: [message('1', 'insert'), message('2', 'delete')] });
      const headers = webhookHeaders({ id: 'msg_demo', body }, [TEST_SECRET]);
      const okRes = await fetch(demo.url, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body });
      expect(okRes.status).toBe(204);
      expect(lines).toEqual(['orders-hook  public.orders  insert  1', 'orders-hook  public.orders  delete  2']);
      const forged = await fetch(demo.url, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: body + ' ' });
      expect(forged.status).toBe(401);
      // Signed with the same secret but made for another consumer: refused, so never acked.
      const strangerBody = JSON.stringify({ data: [message('3', 'insert'), message('4', 'insert', 'y')] });
      const stranger = await fetch(demo.url, {
        method: 'POST',
        headers: { ...webhookHeaders({ id: 'msg_other', body: strangerBody }, [TEST_SECRET]), 'content-type': 'application/json' },
        body: strangerBody,
      });
      expect(stranger.status).toBe(409);
      expect(lines).toHaveLength(2);
    } finally {
      await demo.close();
    }
  });
});
