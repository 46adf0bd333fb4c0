// Durations and counts have maxima that the database and timers hold (config
// files and the API alike), and a consumer whose claims fail anyway (a setting
// stored before the maxima existed) shows as failing with the reason, in the
// API and in `sluice status`, never as active. Real Postgres, the real app,
// a real dispatcher.
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { statusReport } from '../src/cli/status.js';
import { ConfigError, loadConfig, validateConsumer } from '../src/config/load.js';
import * as q from '../src/config/queries.js';
import { MAXIMA } from '../src/config/schema.js';
import type { ConsumerConfig } from '../src/config/types.js';
import { Dispatcher } from '../src/push/dispatcher.js';
import { PULL_CONSUMER, SOURCE, startApi, type ApiFixture } from './api-fixture.js';

const THIRTY_DAYS_MS = 30 * 86_400_000;
const quiet = { info() {}, warn() {}, error() {} };

let f: ApiFixture;
beforeAll(async () => {
  f = await startApi('consumer_limits');
  expect((await f.call('POST', '/api/sources', SOURCE)).status).toBe(201);
});
afterAll(async () => {
  await f?.stop();
});

const hookAt = (name: string, webhook: Record<string, unknown>) => ({
  name,
  source: 'main',
  kind: 'webhook',
  tables: ['public.orders'],
  webhook: { url: 'https://example.com/hook', ...webhook },
});

/** Polls `check` every 50 ms until it holds (10 s at most). */
async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  const until = Date.now() + 10_000;
  while (Date.now() < until) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`not within 10 s: ${what}`);
}

describe('maxima', () => {
  const issues = (consumer: unknown): Record<string, string> => {
    try {
      loadConfig({ text: stringify({ sources: [SOURCE], consumers: [consumer] }) }, {});
      return {};
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      return Object.fromEntries(err.issues.map((i) => [i.path, i.reason]));
    }
  };

  it('a config file past a maximum stops with the path and the maximum, whether written "30d" or in milliseconds', () => {
    expect(issues({ ...PULL_CONSUMER, pull: { ack_wait: '30d', max_deliver: 5 } })).toEqual({ 'consumers[0].pull.ack_wait': 'must be at most 12h' });
    expect(issues({ ...PULL_CONSUMER, pull: { max_ack_pending: 1e300, max_waiting: 10_001 } })).toEqual({
      'consumers[0].pull.max_ack_pending': 'must be at most 1000000',
      'consumers[0].pull.max_waiting': 'must be at most 10000',
    });
    expect(issues({ ...PULL_CONSUMER, pull: { ack_wait: THIRTY_DAYS_MS } })).toEqual({ 'consumers[0].pull.ack_wait': 'must be at most 12h' });
    expect(issues({ ...PULL_CONSUMER, pull: { ack_wait: 1e300 } })).toEqual({ 'consumers[0].pull.ack_wait': 'must be at most 12h' });
    expect(
      issues(hookAt('h', { timeout: '30d', batch_timeout: '1h', disable_after: '90d', max_response_bytes: '1GB', retry: { initial: '2d', cap: '30d', max_age: '60d' } })),
    ).toMatchObject({
      'consumers[0].webhook.timeout': 'must be at most 15m',
      'consumers[0].webhook.batch_timeout': 'must be at most 10m',
      'consumers[0].webhook.disable_after': 'must be at most 30d',
      'consumers[0].webhook.max_response_bytes': 'must be at most 16MB',
      'consumers[0].webhook.retry.initial': 'must be at most 24h',
      'consumers[0].webhook.retry.cap': 'must be at most 7d',
      'consumers[0].webhook.retry.max_age': 'must be at most 30d',
    });
  });

  it('the API refuses the same values with a 422 naming the field, and stores nothing', async () => {
    const cases: Array<[unknown, string]> = [
      [{ ...PULL_CONSUMER, pull: { ack_wait: '30d' } }, 'pull.ack_wait'],
      [{ ...PULL_CONSUMER, pull: { max_ack_pending: 1e300 } }, 'pull.max_ack_pending'],
      [{ ...PULL_CONSUMER, pull: { max_waiting: 1e9 } }, 'pull.max_waiting'],
      [hookAt('orders-hook', { timeout: '30d' }), 'webhook.timeout'],
      [hookAt('orders-hook', { retry: { factor: 1e300 } }), 'webhook.retry.factor'],
    ];
    for (const [body, field] of cases) {
      const r = await f.call('POST', '/api/consumers', body);
      expect(r.status, field).toBe(422);
      expect(Object.keys(r.body.validation_errors), field).toEqual([field]);
    }
    const r = await f.call('POST', '/api/sources', { ...SOURCE, name: 'slow', slot: 'slow_slot', heartbeat_interval: '30d' });
    expect(r.body.validation_errors).toEqual({ heartbeat_interval: ['must be at most 24h'] });
    expect((await f.pool.query('SELECT count(*)::int AS n FROM sluice.consumers')).rows[0].n).toBe(0);
  });

  it('a consumer at every maximum is claimed without error (the maxima fit the database)', async () => {
    const P = MAXIMA.pull;
    const pull = await f.call('POST', '/api/consumers', { ...PULL_CONSUMER, name: 'pull-max', pull: P });
    expect(pull.status).toBe(201);
    const receive = await f.call('POST', '/api/http_pull_consumers/pull-max/receive', { batch_size: 10 });
    expect(receive.status).toBe(200);

    const W = MAXIMA.webhook;
    const hook = await f.call('POST', '/api/consumers', hookAt('hook-max', { ...W, retry: MAXIMA.retry }));
    expect(hook.status, JSON.stringify(hook.body)).toBe(201);
    const dispatcher = new Dispatcher({ pool: f.pool, consumers: f.deps.consumers, instanceId: 'limits', log: quiet });
    dispatcher.start();
    try {
      // A fault left from an earlier start is cleared by the first good claim; none appears.
      await f.pool.query(`INSERT INTO sluice.consumer_faults (consumer_id, reason) SELECT id, 'stale' FROM sluice.consumers WHERE name = 'hook-max'`);
      await eventually(async () => (await f.call('GET', '/api/consumers/hook-max')).body.state === 'active', 'hook-max active');
    } finally {
      await dispatcher.stop();
    }
    for (const name of ['pull-max', 'hook-max']) expect((await f.call('DELETE', `/api/consumers/${name}`)).status).toBe(204);
  });
});

describe('a consumer whose claims fail is failing, not active', () => {
  /** As stored before the maxima existed: written straight to the table, past validation. */
  async function storeUnchecked(body: unknown, change: (c: ConsumerConfig) => void): Promise<void> {
    const config = validateConsumer(body, { sources: [{ ...SOURCE, tables: SOURCE.tables } as never] });
    change(config);
    await q.insertConsumer(f.pool, config);
    await f.deps.consumers.reload();
  }

  async function expectFailing(name: string, reason: RegExp) {
    const api = await f.call('GET', `/api/consumers/${name}`);
    expect(api.body.state).toBe('failing');
    expect(api.body.state_reason).toMatch(reason);
    const listed = (await f.call('GET', '/api/consumers')).body.data.find((c: { name: string }) => c.name === name);
    expect(listed.state).toBe('failing');
    const status = (await statusReport(f.pool, null, f.url)).consumers.find((c) => c.name === name);
    expect(status).toMatchObject({ state: 'failing', state_reason: expect.stringMatching(reason) });
  }

  it('pull: ack_wait of 30 days stored earlier; receive is a 500, the consumer shows why; fixing it clears that', async () => {
    await storeUnchecked({ ...PULL_CONSUMER, name: 'old-pull' }, (c) => (c.pull!.ack_wait_ms = THIRTY_DAYS_MS));
    const receive = await f.call('POST', '/api/http_pull_consumers/old-pull/receive', { batch_size: 1 });
    expect(receive.status).toBe(500);
    expect(receive.body).toEqual({ summary: 'internal error', request_id: expect.any(String) });
    await eventually(async () => (await f.call('GET', '/api/consumers/old-pull')).body.state === 'failing', 'old-pull failing');
    await expectFailing('old-pull', /cannot be claimed: .*out of range for type integer \(SQLSTATE 22003\)/);

    expect((await f.call('PATCH', '/api/consumers/old-pull', { pull: { ack_wait: '1m' } })).status).toBe(200);
    expect((await f.call('POST', '/api/http_pull_consumers/old-pull/receive', { batch_size: 1 })).status).toBe(200);
    await eventually(async () => (await f.call('GET', '/api/consumers/old-pull')).body.state === 'active', 'old-pull active again');
    expect((await f.call('GET', '/api/consumers/old-pull')).body.state_reason).toBeNull();
  });

  it('webhook: timeout of 30 days stored earlier; the dispatcher cannot claim, the consumer shows why; fixing it clears that', async () => {
    await storeUnchecked(hookAt('old-hook', {}), (c) => (c.webhook!.timeout_ms = THIRTY_DAYS_MS));
    const dispatcher = new Dispatcher({ pool: f.pool, consumers: f.deps.consumers, instanceId: 'limits', log: quiet });
    dispatcher.start();
    try {
      await eventually(async () => (await f.call('GET', '/api/consumers/old-hook')).body.state === 'failing', 'old-hook failing');
      await expectFailing('old-hook', /cannot be claimed: .*out of range for type integer \(SQLSTATE 22003\)/);
      // A paused consumer claims nothing: it shows as paused, with its own reason.
      expect((await f.call('POST', '/api/consumers/old-hook/pause', { reason: 'fixing it' })).body).toMatchObject({ state: 'paused', state_reason: 'fixing it' });
      expect((await f.call('PATCH', '/api/consumers/old-hook', { webhook: { timeout: '10s' } })).status).toBe(200);
      expect((await f.call('POST', '/api/consumers/old-hook/resume')).status).toBe(200);
      await eventually(async () => (await f.call('GET', '/api/consumers/old-hook')).body.state === 'active', 'old-hook active again');
      const status = (await statusReport(f.pool, null, f.url)).consumers.find((c) => c.name === 'old-hook');
      expect(status).toMatchObject({ state: 'active', state_reason: null });
    } finally {
      await dispatcher.stop();
    }
  });
});
