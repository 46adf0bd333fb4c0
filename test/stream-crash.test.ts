// Publishing survives kill -9: two gateway processes (`sluice start`) on one
// buffer take publishes to one stream from clients spread over both, and one
// of them is killed with SIGKILL twice in the middle of a publish burst (and
// started again). Every publish that was answered 200 is delivered to the
// stream's webhook consumer, each message of a key in publish order; publishes
// cut off by a kill (no answer) may or may not be, never twice under two keys.
// Beside them, application transactions publish through the outbox (an order
// row and sluice.publish in one transaction) while the gateway capturing
// their source is killed: every committed one's message is delivered, once,
// to the stream's consumer and, among the order rows, to the table's consumer
// that names the stream in `outbox`.
import http from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Child } from './helpers/child.js';
import { startGateway, type Gateway } from './helpers/gateway-process.js';
import { startTestPg, type TestPg } from './helpers/pg.js';
import { sleep, TEST_SECRET, type Receiver } from './helpers/receiver.js';

const TOKEN = 'stream-crash-admin-token';
let db: TestPg;
let url: string;
let dir: string;
let server: http.Server;
const children = new Set<Child>();
/** Per message id: the sequences it was delivered under, in arrival order. */
const delivered = new Map<string, number[]>();
/** Per key: the ids delivered, in arrival order. */
const byKey = new Map<string, number[]>();
/** The source's consumer reading the outbox among its changes: per order id, the commit_lsn of its row and of its message. */
const togetherRows = new Map<string, number>();
const togetherMessages = new Map<string, number>();

beforeAll(async () => {
  db = await startTestPg();
  url = await db.createDatabase('stream_crash');
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await c.query('CREATE TABLE public.orders (id text PRIMARY KEY, n int)');
  await c.end();
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/together') {
        // The table's consumer with outbox: [events]: the order rows and the outbox messages.
        for (const m of JSON.parse(Buffer.concat(chunks).toString('utf8')).data) {
          if (m.subject !== undefined) togetherMessages.set(m.data.id, m.metadata.commit_lsn);
          else togetherRows.set(m.record.id, m.metadata.commit_lsn);
        }
        res.writeHead(200).end();
        return;
      }
      for (const m of JSON.parse(Buffer.concat(chunks).toString('utf8')).data) {
        const seqs = delivered.get(m.data.id) ?? [];
        if (!seqs.includes(m.metadata.sequence)) {
          seqs.push(m.metadata.sequence);
          if (!byKey.has(m.metadata.key)) byKey.set(m.metadata.key, []);
          byKey.get(m.metadata.key)!.push(m.data.n);
        }
        delivered.set(m.data.id, seqs);
      }
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const hook = `http://127.0.0.1:${(server.address() as { port: number }).port}/hook`;
  dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-stream-crash-'));
  writeFileSync(
    path.join(dir, 'sluice.yaml'),
    `
http: { host: 127.0.0.1, port: 0 }
auth: { admin_token: ${TOKEN} }
sources:
  - name: app
    tables: [public.orders]
streams:
  - name: events
consumers:
  - name: hook
    stream: events
    kind: webhook
    webhook:
      url: ${hook}
      secrets: ["${TEST_SECRET}"]
      batch_size: 200
      batch_timeout: 0ms
      max_in_flight: 4
      timeout: 3s
      retry: { initial: 100ms, cap: 1s }
      allow_private_ranges: ["127.0.0.0/8"]
  - name: together
    source: app
    tables: [public.orders]
    outbox: [events]
    kind: webhook
    webhook:
      url: ${hook.replace(/\/hook$/, '/together')}
      secrets: ["${TEST_SECRET}"]
      batch_size: 200
      batch_timeout: 0ms
      timeout: 3s
      retry: { initial: 100ms, cap: 1s }
      allow_private_ranges: ["127.0.0.0/8"]
`,
  );
}, 60_000);

afterAll(async () => {
  await Promise.all([...children].map((c) => c.kill9()));
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  await db?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('publishing with a gateway killed -9 during a burst', () => {
  it('delivers every publish that was answered, in order per key', async () => {
    const receiver = { deliveries: [] } as unknown as Receiver;
    const gateways: Gateway[] = [await startGateway(url, dir, receiver, children), await startGateway(url, dir, receiver, children)];
    const acked = new Set<string>();
    let cut = 0;
    let n = 0;
    let publishing = true;
    // Per key, the order publishes were answered in: a key's next publish
    // waits for the previous answer (so "publish order" is well defined).
    const clients = Array.from({ length: 8 }, async (_, c) => {
      const key = `key-${c}`;
      for (let i = 0; publishing; i++) {
        const g = gateways[i % 2];
        const batch = Array.from({ length: 20 }, () => ({ id: `m${n}`, n: n++ }));
        try {
          const r = await fetch(`http://${g.api.replace(/^https?:\/\//, '')}/api/streams/events/messages`, {
            method: 'POST',
            headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
            body: JSON.stringify({ messages: batch.map((d) => ({ subject: 'orders.new', data: d, key })) }),
            signal: AbortSignal.timeout(5000),
          });
          if (r.status === 200) for (const d of batch) acked.add(d.id);
          else cut++;
        } catch {
          cut++; // killed mid-request: no answer, so no promise made
          await sleep(50);
        }
      }
    });
    // The outbox: its function is installed when capture first sets the source up.
    const app = new pg.Pool({ connectionString: url, max: 4 });
    for (let i = 0; i < 200; i++) {
      const { rows } = await app.query(`SELECT to_regprocedure('sluice.publish(text,text,jsonb,text,text)') IS NOT NULL AS ok`);
      if (rows[0].ok) break;
      await sleep(50);
    }
    const committed = new Set<string>();
    let outboxCut = 0;
    const writers = Array.from({ length: 4 }, async (_, c) => {
      const key = `outbox-${c}`;
      while (publishing) {
        const id = `o${n}`;
        const data = { id, n: n++ };
        const client = await app.connect();
        try {
          await client.query('BEGIN');
          await client.query('INSERT INTO public.orders VALUES ($1, $2)', [id, data.n]);
          await client.query(`SELECT sluice.publish('events', 'orders.outbox', $1, $2)`, [JSON.stringify(data), key]);
          await client.query('COMMIT');
          committed.add(id);
        } catch {
          outboxCut++;
          await client.query('ROLLBACK').catch(() => {});
        } finally {
          client.release();
        }
      }
    });
    for (let k = 0; k < 2; k++) {
      await sleep(1500);
      const victim = gateways[k % 2];
      victim.child.proc.kill('SIGKILL');
      await victim.child.kill9();
      gateways[k % 2] = await startGateway(url, dir, receiver, children);
    }
    await sleep(1000);
    publishing = false;
    await Promise.all([...clients, ...writers]);
    await app.end();
    expect(acked.size).toBeGreaterThan(2000);
    // The source's database stays up: every outbox transaction commits.
    expect(outboxCut).toBe(0);
    expect(committed.size).toBeGreaterThan(200);
    for (const id of committed) acked.add(id);
    // The kills did cut publishes off (refused connections while down count too).
    expect(cut).toBeGreaterThan(0);
    const missing = () => [...acked].filter((id) => !delivered.has(id));
    for (const until = Date.now() + 90_000; missing().length > 0 && Date.now() < until; ) await sleep(100);
    expect(missing().slice(0, 10)).toEqual([]);
    // Never stored twice: one sequence per message (a redelivery keeps it).
    expect([...delivered.values()].filter((s) => s.length > 1)).toEqual([]);
    // Per key, in the order published (n rises with each client's publishes).
    for (const [key, ns] of byKey) expect(ns, key).toEqual([...ns].sort((a, b) => a - b));
    // The table's consumer with outbox: every committed transaction's row and
    // message, the message carrying its row's transaction.
    const notTogether = () => [...committed].filter((id) => !togetherRows.has(id) || !togetherMessages.has(id));
    for (const until = Date.now() + 60_000; notTogether().length > 0 && Date.now() < until; ) await sleep(100);
    expect(notTogether().slice(0, 10)).toEqual([]);
    for (const id of committed) expect(togetherMessages.get(id), id).toBe(togetherRows.get(id));
  }, 240_000);
});
