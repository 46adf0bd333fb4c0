// The whole gateway as `sluice start` wires it (config → capture → buffer →
// pull API and dispatcher), driven from outside: real inserts, the pull API
// over HTTP, and `sluice tail` as a child process.
import { spawn } from 'node:child_process';
import http from 'node:http';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import { Gateway } from '../src/gateway.js';
import { createLogger } from '../src/log.js';
import { verifyWebhook } from '../src/receive/index.js';
import { eventually, sql } from './helpers/capture.js';
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
    tables: [public.orders]
consumers:
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

    // `sluice tail --ack`: prints and acks the same three changes.
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'tail', 'orders-pull', '--ack', '--max', '3'], {
        env: { ...process.env, SLUICE_URL: gateway.httpAddress!, SLUICE_TOKEN: TOKEN },
      });
      let text = '';
      child.stdout.on('data', (d) => (text += d));
      child.stderr.on('data', (d) => (text += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      child.on('exit', (code) => {
        clearTimeout(timer);
        if (code === 0) resolve(text);
        else reject(new Error(`tail exited ${code}: ${text}`));
      });
    });
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
