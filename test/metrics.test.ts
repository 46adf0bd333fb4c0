// GET /metrics through the whole gateway on a real Postgres: after a scripted
// run (changes captured, pull acks and nacks, webhook deliveries to a real
// receiver on 127.0.0.1, a failing receiver whose messages become dead
// letters) the scraped counters equal what happened, exactly; the text parses
// with a Prometheus text-format parser; the endpoint wants its token.
import http from 'node:http';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config/load.js';
import { Gateway } from '../src/gateway.js';
import { createLogger } from '../src/log.js';
import { eventually } from './helpers/capture.js';
import { startTestPg, type TestPg } from './helpers/pg.js';
import { TEST_SECRET } from './helpers/receiver.js';

const TOKEN = 'metrics-admin-token-0123456789';
const SCRAPER = 'metrics-scraper-token-0123456789';
let pgh: TestPg;
let url: string;
let gateway: Gateway;
const receivers: http.Server[] = [];
let okRequests = 0;
let badRequests = 0;

async function call(method: string, path: string, body?: unknown, token = TOKEN): Promise<{ status: number; body: any }> {
  const r = await fetch(`${gateway.httpAddress}${path}`, {
    method,
    headers: { ...(token && { authorization: `Bearer ${token}` }), ...(body !== undefined && { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let parsed: any = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // the metrics text
  }
  return { status: r.status, body: parsed };
}

async function receiver(status: number, count: () => void): Promise<number> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      count();
      res.writeHead(status).end();
    });
  });
  receivers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return (server.address() as { port: number }).port;
}

type Family = { name: string; type: string; metrics: Array<{ value?: string; labels?: Record<string, string>; count?: string; buckets?: Record<string, string> }> };

interface Scrape {
  families: Map<string, Family>;
  text: string;
}

// A sample line of the text exposition format, strictly: name, optional
// labels with quoted (escaped) values, one value.
const SAMPLE_LINE = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\["\\n])*",?)*\})? ([-+]?\d+(\.\d+)?([eE][-+]?\d+)?|NaN|[-+]Inf)$/;

async function scrape(): Promise<Scrape> {
  const r = await call('GET', '/metrics', undefined, SCRAPER);
  expect(r.status).toBe(200);
  const text = r.body as string;
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
    expect(line).toMatch(SAMPLE_LINE);
  }
  const families = parsePrometheusTextFormat(text) as Family[];
  return { families: new Map(families.map((f) => [f.name, f])), text };
}

/**
 * The sample of `family` with these labels: a counter's or gauge's value,
 * or a histogram's _count (read from the text: the parser keeps the labels
 * of unlabelled histograms only).
 */
function sample(m: Scrape, family: string, labels: Record<string, string>): number | undefined {
  const f = m.families.get(family);
  if (f?.type === 'HISTOGRAM') {
    const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
    const line = m.text.split('\n').find((l) => l.startsWith(`${family}_count{`) && wanted.every((w) => l.includes(w)));
    return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  const s = f?.metrics.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v));
  return s === undefined ? undefined : Number(s.value);
}

beforeAll(async () => {
  pgh = await startTestPg();
  url = await pgh.createDatabase('metrics');
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await c.query('CREATE TABLE public.orders (id int PRIMARY KEY, status text)');
  await c.end();
  const ok = await receiver(204, () => okRequests++);
  const bad = await receiver(500, () => badRequests++);
  const hook = (port: number, extra = '') => `
    kind: webhook
    webhook:
      url: http://127.0.0.1:${port}/hook
      secrets: ["${TEST_SECRET}"]
      batch_size: 1
      batch_timeout: 0ms
      allow_private_ranges: ["127.0.0.0/8"]${extra}`;
  const config = loadConfig(
    {
      text: `
http: { host: 127.0.0.1, port: 0 }
auth: { admin_token: ${TOKEN} }
metrics: { token: ${SCRAPER} }
sources:
  - name: app
    tables: [public.orders]
consumers:
  - name: puller
    source: app
    tables: [public.orders]
    kind: pull
  - name: spent
    source: app
    tables: [public.orders]
    kind: pull
    pull: { max_deliver: 2 }
  - name: hook-ok
    source: app
    tables: [public.orders]${hook(ok)}
  - name: hook-bad
    source: app
    tables: [public.orders]${hook(bad, `
      retry: { initial: 10ms, cap: 20ms, max_attempts: 2 }`)}
`,
    },
    {},
  );
  gateway = new Gateway({ config, bufferUrl: url, log: createLogger('silent') });
  await gateway.start();
}, 60_000);

afterAll(async () => {
  await gateway?.stop();
  for (const r of receivers) r.close();
  await pgh?.stop();
});

describe('GET /metrics', () => {
  it('wants metrics.token or an admin token: not none, not a scoped one', async () => {
    const none = await call('GET', '/metrics', undefined, '');
    expect(none.status).toBe(401);
    expect(none.body.summary).toMatch(/metrics\.token or an admin token/);
    expect((await call('GET', '/metrics', undefined, 'wrong-token-0123456789abcdef')).status).toBe(401);
    const scoped = await call('POST', '/api/tokens', { name: 'reader', consumers: ['puller'] });
    expect(scoped.status, JSON.stringify(scoped.body)).toBe(201);
    expect((await call('GET', '/metrics', undefined, scoped.body.token)).status).toBe(403);
    const admin = await call('GET', '/metrics');
    expect(admin.status).toBe(200);
    expect(admin.body).toMatch(/^# HELP /m);
  });

  it('counts what happened, exactly', async () => {
    const app = new pg.Client({ connectionString: url });
    await app.connect();
    for (let i = 1; i <= 5; i++) await app.query('INSERT INTO public.orders VALUES ($1, $2)', [i, 'new']);
    await app.end();

    // Pull: five received, three acked, two nacked.
    const items: Array<{ ack_id: string }> = [];
    await eventually(async () => {
      const r = await call('POST', '/api/http_pull_consumers/puller/receive', { batch_size: 10 });
      items.push(...r.body.data);
      return items.length >= 5;
    });
    expect(items.length).toBe(5);
    expect((await call('POST', '/api/http_pull_consumers/puller/ack', { ack_ids: items.slice(0, 3).map((i) => i.ack_id) })).body.applied).toBe(3);
    expect((await call('POST', '/api/http_pull_consumers/puller/nack', { ack_ids: items.slice(3).map((i) => i.ack_id) })).body.applied).toBe(2);

    // A consumer with max_deliver 2: five received and nacked twice; the third receive dead-letters them.
    for (let round = 0; round < 2; round++) {
      const got: Array<{ ack_id: string }> = [];
      await eventually(async () => {
        const r = await call('POST', '/api/http_pull_consumers/spent/receive', { batch_size: 10 });
        got.push(...r.body.data);
        return got.length >= 5;
      });
      expect((await call('POST', '/api/http_pull_consumers/spent/nack', { ack_ids: got.map((i) => i.ack_id) })).body.applied).toBe(5);
    }
    expect((await call('POST', '/api/http_pull_consumers/spent/receive', { batch_size: 10 })).body.data).toEqual([]);

    // Webhooks: five delivered one by one; five refused twice, then dead letters.
    await eventually(async () => {
      const m = await scrape();
      return sample(m, 'sluice_consumer_delivered_total', { consumer: 'hook-ok' }) === 5 &&
        sample(m, 'sluice_consumer_dead_letter_messages', { consumer: 'hook-bad' }) === 5;
    }, 20_000);
    await new Promise((r) => setTimeout(r, 200));
    const m = await scrape();

    expect(sample(m, 'sluice_source_changes_captured_total', { source: 'app' })).toBe(5);
    expect(sample(m, 'sluice_source_write_duration_seconds', { source: 'app' })).toBeGreaterThanOrEqual(1);
    expect(sample(m, 'sluice_source_capturing', { source: 'app' })).toBe(1);
    expect(sample(m, 'sluice_source_position_bytes', { source: 'app' })).toBeGreaterThan(0);

    expect(sample(m, 'sluice_consumer_delivered_total', { consumer: 'puller' })).toBe(3);
    expect(sample(m, 'sluice_consumer_failed_total', { consumer: 'puller' })).toBe(2);
    expect(sample(m, 'sluice_consumer_commit_to_ack_seconds', { consumer: 'puller' })).toBe(3);
    expect(sample(m, 'sluice_consumer_dead_lettered_total', { consumer: 'spent' })).toBe(5);
    expect(sample(m, 'sluice_consumer_dead_letter_messages', { consumer: 'spent' })).toBe(5);
    expect(sample(m, 'sluice_consumer_failed_total', { consumer: 'spent' })).toBe(10);
    expect(sample(m, 'sluice_consumer_pending_messages', { consumer: 'puller' })).toBe(2);
    expect(sample(m, 'sluice_consumer_in_flight_messages', { consumer: 'puller' })).toBe(0);

    expect(sample(m, 'sluice_consumer_delivered_total', { consumer: 'hook-ok' })).toBe(5);
    expect(sample(m, 'sluice_webhook_responses_total', { consumer: 'hook-ok', class: '2xx' })).toBe(okRequests);
    expect(okRequests).toBe(5);
    expect(sample(m, 'sluice_webhook_attempt_duration_seconds', { consumer: 'hook-ok' })).toBe(5);
    expect(sample(m, 'sluice_consumer_commit_to_ack_seconds', { consumer: 'hook-ok' })).toBe(5);
    expect(sample(m, 'sluice_consumer_pending_messages', { consumer: 'hook-ok' })).toBe(0);
    expect(sample(m, 'sluice_consumer_oldest_pending_age_seconds', { consumer: 'hook-ok' })).toBe(0);

    expect(badRequests).toBe(10);
    expect(sample(m, 'sluice_webhook_responses_total', { consumer: 'hook-bad', class: '5xx' })).toBe(10);
    expect(sample(m, 'sluice_consumer_failed_total', { consumer: 'hook-bad' })).toBe(10);
    expect(sample(m, 'sluice_consumer_dead_lettered_total', { consumer: 'hook-bad' })).toBe(5);
    expect(sample(m, 'sluice_consumer_delivered_total', { consumer: 'hook-bad' })).toBeUndefined();
    expect(sample(m, 'sluice_consumer_state', { consumer: 'hook-bad', state: 'active' })).toBe(1);
    // Ten failures in a row: its endpoint counts as down; the healthy one's does not.
    expect(sample(m, 'sluice_webhook_circuit_open', { consumer: 'hook-bad' })).toBe(1);
    expect(sample(m, 'sluice_webhook_circuit_open', { consumer: 'hook-ok' })).toBe(0);

    // The process's own: event-loop lag, heap; the buffer pool.
    expect(m.families.has('nodejs_eventloop_lag_seconds')).toBe(true);
    expect(m.families.has('nodejs_heap_size_used_bytes')).toBe(true);
    expect(sample(m, 'sluice_buffer_pool_waiting_clients', {})).toBe(0);
    // Conventions: counters end in _total; no label carries a URL or token.
    for (const f of m.families.values()) if (f.type === 'COUNTER') expect(f.name).toMatch(/_total$/);
    const text = (await call('GET', '/metrics')).body as string;
    expect(text).not.toContain('127.0.0.1');
    expect(text).not.toContain(SCRAPER);
  });
});

describe('the metrics config', () => {
  it('refuses a short token, and a token with access: open, naming the path', () => {
    const load = (metrics: string) => () => loadConfig({ text: `metrics: ${metrics}\n` }, {});
    expect(load('{ token: short }')).toThrow(ConfigError);
    expect(load('{ token: short }')).toThrow(/metrics\.token.*at least 24 characters/);
    expect(load(`{ access: open, token: ${SCRAPER} }`)).toThrow(/metrics\.token.*only used with access: token/);
    expect(load('{ access: sometimes }')).toThrow(/metrics\.access/);
    expect(loadConfig({ text: 'metrics: { access: open }\n' }, {}).metrics).toEqual({ access: 'open' });
  });
});
