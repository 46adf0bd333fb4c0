// The whole gateway as `sluice start` wires it (config → capture → buffer →
// pull API and dispatcher), driven from outside: real inserts, the pull API
// over HTTP, and `sluice tail` as a child process.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import { Gateway } from '../src/gateway.js';
import { createLogger } from '../src/log.js';
import { verifyWebhook } from '../src/receive/index.js';
import { eventually, sql } from './helpers/capture.js';
import { runCli } from './helpers/child.js';
import { startTestPg, type TestPg } from './helpers/pg.js';

const TOKEN = 'test-admin-token-0123456789';
let pgh: TestPg;
let url: string;
let gateway: Gateway;
let receiver: http.Server;
const received: Array<{ id: string; body: string; headers: http.IncomingHttpHeaders }> = [];

beforeAll(async () => {
  pgh = await startTestPg();
  url = await pgh.createDatabase('gateway');
  await sql(url, 'CREATE TABLE orders (id bigint PRIMARY KEY, status text NOT NULL)');
  await sql(url, 'CREATE TABLE audits (id bigint PRIMARY KEY, what text NOT NULL)');
  receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      received.push({ id: String(req.headers['webhook-id']), body: Buffer.concat(chunks).toString(), headers: req.headers });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', () => r()));
  const port = (receiver.address() as { port: number }).port;
  const config = loadConfig(
    {
      text: `
http: { host: 127.0.0.1, port: 0 }
auth: { admin_token: ${TOKEN} }
sources:
  - name: app
    tables: [public.orders, public.audits]
    annotations: { team: payments }
consumers:
  - name: audits-pull
    source: app
    kind: pull
    tables: [public.audits]
  - name: orders-pull
    source: app
    kind: pull
    tables: [public.orders]
  - name: orders-hook
    source: app
    kind: webhook
    tables: [public.orders]
    webhook:
      url: http://127.0.0.1:${port}/hook
      batch_timeout: 0ms
      allow_private_ranges: ["127.0.0.0/8"]
`,
    },
    {},
  );
  gateway = new Gateway({ config, bufferUrl: url, log: createLogger('silent') });
  await gateway.start();
  await eventually(async () => gateway.status().every((s) => s.running));
});

afterAll(async () => {
  await gateway?.stop();
  receiver?.close();
  await pgh?.stop();
});

/** `sluice tail orders-pull --ack …` as a child process. */
const tail = (args: string[], env: Record<string, string | undefined>) =>
  runCli(['tail', 'orders-pull', '--ack', ...args], { SLUICE_TOKEN: undefined, SLUICE_URL: gateway.httpAddress!, ...env });

describe('the gateway end to end', () => {
  it('captures inserts and serves them to the pull API, the webhook and `sluice tail`', async () => {
    await sql(url, `INSERT INTO orders VALUES (1, 'new'), (2, 'new')`);
    await sql(url, `UPDATE orders SET status = 'paid' WHERE id = 1`);

    // Webhook: every change arrives signed with the generated secret.
    const secrets = gateway.consumers.get('orders-hook')!.config.webhook!.secrets;
    expect(secrets[0]).toMatch(/^whsec_/);
    const hooks = await eventually(async () => {
      const msgs = received.flatMap((r) => verifyWebhook(r.body, r.headers, secrets).data);
      return msgs.length >= 3 ? msgs : null;
    });
    expect(hooks.map((m) => `${m.action}:${(m.record as { id: number }).id}`)).toEqual(['insert:1', 'insert:2', 'update:1']);
    // Sequin's metadata.database: the source the change came from.
    const { rows: src } = await sql(url, `SELECT id FROM sluice.sources WHERE name = 'app'`);
    expect(hooks[0].metadata.database).toEqual({ id: src[0].id, name: 'app', annotations: { team: 'payments' }, database: 'gateway', hostname: '127.0.0.1' });

    // `sluice tail --ack`: prints and acks the same three changes.
    const tailed = await tail(['--max', '3'], { SLUICE_TOKEN: TOKEN });
    expect(tailed.status, tailed.stderr).toBe(0);
    const out = tailed.stdout;
    const lines = out.trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^public\.orders insert \[1\] \{"id":1,"status":"new"\}$/);
    expect(lines[2]).toMatch(/^public\.orders update \[1\] \{"id":1,"status":"paid"\}$/);

    // Acked by tail: nothing left for the pull consumer.
    const res = await fetch(`${gateway.httpAddress}/api/http_pull_consumers/orders-pull/receive?batch_size=10`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(((await res.json()) as { data: unknown[] }).data).toEqual([]);
  });

  it('`sluice tail` without a token reads the admin token `npm start` keeps in its data folder', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'sluice-tail-'));
    writeFileSync(path.join(dataDir, 'admin-token'), TOKEN + '\n', { mode: 0o600 });
    await sql(url, `INSERT INTO orders VALUES (3, 'new')`);
    try {
      const ok = await tail(['--max', '1'], { SLUICE_DATA_DIR: dataDir });
      expect(ok.stderr).toBe('');
      expect(ok.status).toBe(0);
      expect(ok.stdout).toMatch(/^public\.orders insert \[3\]/);
      const none = await tail(['--max', '1'], { SLUICE_DATA_DIR: path.join(dataDir, 'nothing-here') });
      expect(none.status).toBe(2);
      expect(none.stderr).toMatch(/a token is needed: SLUICE_TOKEN=slk_… or --token slk_…/);
      expect(none.stderr).not.toMatch(/\n\s+at /);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it("serves Sequin's transaction annotations, set and cleared inside a transaction through the real slot", async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      const emit = (prefix: string, content: string) => c.query('SELECT pg_logical_emit_message(true, $1, $2)', [prefix, content]);
      await c.query('BEGIN');
      await c.query(`INSERT INTO audits VALUES (1, 'before any set')`);
      await emit('sequin:transaction_annotations.set', '{"user_id": "u-7", "request": {"id": "r-1"}}');
      await c.query(`INSERT INTO audits VALUES (2, 'annotated')`);
      await c.query(`UPDATE audits SET what = 'annotated too' WHERE id = 1`);
      await emit('sequin:transaction_annotations.clear', '');
      await c.query(`INSERT INTO audits VALUES (3, 'after clear')`);
      await emit('sequin:transaction_annotations.set', 'not json');
      await c.query(`INSERT INTO audits VALUES (4, 'bad annotations are ignored')`);
      await emit('sequin:transaction_annotations.set', '{"user_id": "u-8"}');
      await c.query('COMMIT');
      // Annotations end with their transaction.
      await c.query(`INSERT INTO audits VALUES (5, 'next transaction')`);
    } finally {
      await c.end();
    }
    // Received and acked until all six are in (a row's update waits for its insert's ack).
    type Item = { ack_id: string; data: { action: string; record: { id: number }; metadata: Record<string, unknown> } };
    const items: Item[] = [];
    const pullApi = `${gateway.httpAddress}/api/http_pull_consumers/audits-pull`;
    const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
    await eventually(async () => {
      const res = await fetch(`${pullApi}/receive?batch_size=10`, { headers });
      const got = ((await res.json()) as { data: Item[] }).data;
      items.push(...got);
      if (got.length) await fetch(`${pullApi}/ack`, { method: 'POST', headers, body: JSON.stringify({ ack_ids: got.map((i) => i.ack_id) }) });
      return items.length >= 6;
    });
    items.sort((a, b) => Number(a.data.metadata.commit_lsn) - Number(b.data.metadata.commit_lsn) || Number(a.data.metadata.commit_idx) - Number(b.data.metadata.commit_idx));
    const annotations = items.map((i) => [i.data.action, i.data.record.id, i.data.metadata.transaction_annotations]);
    expect(annotations).toEqual([
      ['insert', 1, null],
      ['insert', 2, { user_id: 'u-7', request: { id: 'r-1' } }],
      ['update', 1, { user_id: 'u-7', request: { id: 'r-1' } }],
      ['insert', 3, null],
      ['insert', 4, null],
      ['insert', 5, null],
    ]);
    expect(items[0].data.metadata.database).toMatchObject({ name: 'app', database: 'gateway', annotations: { team: 'payments' } });
  });

  it('a table added through the API is captured from the moment the call returns, with no restart', async () => {
    await sql(url, 'CREATE TABLE audit_items (id bigint PRIMARY KEY)');
    const api = async (method: string, path: string, body: unknown) => {
      const res = await fetch(`${gateway.httpAddress}/api${path}`, {
        method,
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    const patched = await api('PATCH', '/sources/app', { tables: ['public.orders', 'public.audits', 'public.audit_items'] });
    expect(patched.status).toBe(200);
    const created = await api('POST', '/consumers', { name: 'audit-items-pull', source: 'app', kind: 'pull', tables: ['public.audit_items'] });
    expect(created.status).toBe(201);
    await sql(url, 'INSERT INTO audit_items VALUES (1), (2)'); // no wait after the 201
    const items = await eventually(async () => {
      const res = await api('POST', '/http_pull_consumers/audit-items-pull/receive', { batch_size: 10 });
      const data = res.body.data as Array<{ data: { record: { id: number } } }>;
      return data.length ? data : null;
    });
    expect(items.map((i) => i.data.record.id).sort()).toEqual([1, 2]);
    // Annotations are read when messages are served: changing them does not restart capture.
    const running = gateway.captures[0];
    expect((await api('PATCH', '/sources/app', { annotations: { team: 'billing' } })).status).toBe(200);
    expect(gateway.captures[0]).toBe(running);
    // Nor retention: the retention job reads it, capture sizes new log partitions by it as they come.
    expect((await api('PATCH', '/sources/app', { retention: { max_age: '1d' } })).status).toBe(200);
    expect(gateway.captures[0]).toBe(running);
  });

  it('reports ready while capture runs, with its connections named sluice-*', async () => {
    const ready = await fetch(`${gateway.httpAddress}/ready`);
    expect(ready.status).toBe(200);
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    const { rows } = await c.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'sluice%'`);
    await c.end();
    expect(rows[0].n).toBeGreaterThan(0);
  });
});
