// A real webhook receiver on 127.0.0.1:0 (node:http), scripted per request to
// answer, fail, hang, reset or trickle; plus the buffer fixtures push tests use
// (webhook consumers and message rows inserted directly, as capture would).
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { ConsumerRegistry } from '../../src/buffer/consumers.js';
import { idempotencyKey } from '../../src/buffer/message.js';
import { Wakeup } from '../../src/buffer/wakeup.js';
import type { ConsumerConfig, WebhookSettings } from '../../src/config/types.js';
import { migrate } from '../../src/db/migrate.js';
import { createPool, type Pool } from '../../src/db/pool.js';
import { Dispatcher, type DispatcherDeps } from '../../src/push/dispatcher.js';
import { ensureSource, insertLogRows, remainingFor, startAtEarliest } from './buffer.js';
import { consumerConfig, insertConsumer, quietLog } from './capture.js';
import { startTestPg, type TestPg } from './pg.js';

export interface Delivery {
  n: number;
  path: string;
  id: string;
  timestamp: string;
  signature: string;
  headers: http.IncomingHttpHeaders;
  raw: Buffer;
  /** The messages in the body (a bare message counts as one). */
  messages: any[];
  receivedAt: number;
  /** When the request began (its first bytes), and when it was answered (unset until then, and for a reset or hang). */
  startedAt: number;
  answeredAt?: number;
  /** What the script answered (0: no answer: reset or hang). */
  status: number;
}

export type Action =
  | { status: number; headers?: Record<string, string>; body?: string; delayMs?: number; trickleMs?: number }
  | { reset: true }
  | { hang: true };

export type Script = (d: Delivery) => Action | Promise<Action>;

export interface Receiver {
  url: string;
  port: number;
  deliveries: Delivery[];
  /** TCP connections accepted so far. */
  connections: number;
  script: Script;
  /** Messages of every 2xx delivery, in arrival order. */
  accepted(): any[];
  close(): Promise<void>;
}

export const ok: Script = () => ({ status: 200 });

function parseMessages(raw: Buffer): any[] {
  try {
    const v = JSON.parse(raw.toString('utf8'));
    return Array.isArray(v?.data) ? v.data : [v];
  } catch {
    return [];
  }
}

export async function startReceiver(script: Script = ok): Promise<Receiver> {
  const sockets = new Set<Socket>();
  const deliveries: Delivery[] = [];
  const r: Receiver = {
    url: '',
    port: 0,
    deliveries,
    connections: 0,
    script,
    accepted: () => deliveries.filter((d) => d.status >= 200 && d.status < 300).flatMap((d) => d.messages),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((res) => server.close(() => res()));
    },
  };
  const server = http.createServer((req, res) => {
    const startedAt = Date.now();
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const raw = Buffer.concat(chunks);
      const h = req.headers;
      const d: Delivery = {
        n: deliveries.length + 1,
        path: req.url ?? '',
        id: String(h['webhook-id'] ?? ''),
        timestamp: String(h['webhook-timestamp'] ?? ''),
        signature: String(h['webhook-signature'] ?? ''),
        headers: h,
        raw,
        messages: parseMessages(raw),
        receivedAt: Date.now(),
        startedAt,
        status: 0,
      };
      deliveries.push(d);
      const action = await r.script(d);
      if ('reset' in action) return req.socket.destroy();
      if ('hang' in action) return;
      if (action.delayMs) await new Promise((s) => setTimeout(s, action.delayMs));
      d.status = action.status;
      d.answeredAt = Date.now();
      res.writeHead(action.status, action.headers ?? {});
      if (action.trickleMs) {
        // Headers now, the body a byte at a time: a slow response body.
        res.write('x');
        const t = setInterval(() => (res.writableEnded ? clearInterval(t) : res.write('x')), action.trickleMs);
        res.on('close', () => clearInterval(t));
        return;
      }
      res.end(action.body ?? '');
    });
  });
  server.on('connection', (s) => {
    r.connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', () => res()));
  r.port = (server.address() as AddressInfo).port;
  r.url = `http://127.0.0.1:${r.port}/hook`;
  return r;
}

// ---- buffer fixtures --------------------------------------------------------

export const TEST_SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

export function webhookSettings(url: string, extra: Partial<WebhookSettings> = {}): WebhookSettings {
  return {
    url,
    headers: {},
    secrets: [TEST_SECRET],
    batch_size: 10,
    batch_timeout_ms: 0,
    max_in_flight: 4,
    timeout_ms: 2000,
    max_response_bytes: 65536,
    retry: { initial_ms: 50, factor: 2, cap_ms: 400, max_attempts: 20 },
    allow_private_ranges: ['127.0.0.0/8'],
    ...extra,
  };
}

export async function insertWebhookConsumer(
  pool: Pool,
  name: string,
  webhook: WebhookSettings,
  extra: Partial<ConsumerConfig> = {},
): Promise<string> {
  // A stored source of its own unless told (see test/helpers/buffer.ts), read from its start.
  const source = extra.source ?? `test-${name}`;
  await ensureSource(pool, source);
  const id = await insertConsumer(pool, consumerConfig(name, source, ['public.orders'], { kind: 'webhook', pull: undefined, webhook, ...extra }));
  await startAtEarliest(pool, id);
  return id;
}

/** A stored payload as capture writes it (metadata last, transaction_annotations last in it). */
export function storedPayload(lsn: number, idx: number, group: string, seq: number): string {
  return JSON.stringify({
    record: { id: group, seq, amount: '12345678901234567890.5' },
    changes: null,
    action: 'insert',
    metadata: {
      table_schema: 'public',
      table_name: 'orders',
      commit_timestamp: '2026-01-01T00:00:00.000000Z',
      commit_lsn: lsn,
      commit_idx: idx,
      idempotency_key: idempotencyKey(lsn, idx),
      record_pks: [group],
      database_name: 'app',
      transaction_annotations: null,
    },
  });
}

export interface FixtureMessage {
  lsn: number;
  idx: number;
  group: string | null;
  seq: number;
}

/** `count` messages round-robin over `groups` groups (seq numbers each group's messages from 0). */
export function messagesFor(groups: string[], count: number, firstLsn = 1000): FixtureMessage[] {
  const seqs = new Map<string, number>();
  return Array.from({ length: count }, (_, i) => {
    const group = groups[i % groups.length];
    const seq = seqs.get(group) ?? 0;
    seqs.set(group, seq + 1);
    return { lsn: firstLsn + i, idx: 0, group, seq };
  });
}

/** Inserts the changes into the consumer's source's log and notifies sluice_messages, as capture's writer does. */
export async function insertMessages(pool: Pool, consumerId: string, msgs: FixtureMessage[]): Promise<void> {
  await insertLogRows(
    pool,
    consumerId,
    msgs.map((m) => ({ lsn: m.lsn, idx: m.idx, group: m.group, payload: storedPayload(m.lsn, m.idx, m.group ?? 'none', m.seq) })),
  );
}

/** Per group, the seq numbers in the order the receiver accepted them. */
export function seqsByGroup(messages: any[]): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const m of messages) {
    const g = String(m.record.id);
    if (!out.has(g)) out.set(g, []);
    out.get(g)!.push(m.record.seq);
  }
  return out;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Ids whose deliveries did not all carry the same messages (a retry must resend its batch whole). */
export function inconsistentBatches(deliveries: Delivery[]): string[] {
  const seen = new Map<string, string>();
  const bad = new Set<string>();
  for (const d of deliveries) {
    const keys = d.messages.map((m) => `${m.metadata.commit_lsn}:${m.metadata.commit_idx}`).join(',');
    if (seen.has(d.id) && seen.get(d.id) !== keys) bad.add(d.id);
    seen.set(d.id, keys);
  }
  return [...bad];
}

// ---- one embedded Postgres per test file, a dispatcher per test -------------

export interface PushEnv {
  /** The test database's URL (for child processes). */
  url: string;
  pool: Pool;
  registry: ConsumerRegistry;
  /** Reloads the registry and starts a Dispatcher (stopped after each test). */
  run(opts?: Partial<DispatcherDeps>): Promise<Dispatcher>;
  receiver(script?: Script): Promise<Receiver>;
  /** What the consumer still has to do (any state, or this one; see remainingFor). */
  remaining(consumerId: string, state?: number): Promise<number>;
  attempts(consumerId: string): Promise<any[]>;
}

/** Registers the file's hooks; call at the top level of a test file. */
export function usePushEnv(dbName: string): PushEnv {
  let pg: TestPg;
  let wakeup: Wakeup | undefined;
  const dispatchers: Dispatcher[] = [];
  const receivers: Receiver[] = [];
  const env = { registry: undefined as unknown as ConsumerRegistry, pool: undefined as unknown as Pool } as PushEnv;

  beforeAll(async () => {
    pg = await startTestPg();
    env.url = await pg.createDatabase(dbName);
    env.pool = createPool(env.url);
    await migrate(env.pool);
    env.registry = new ConsumerRegistry(env.pool);
    // Started first, as the gateway does: its connect-time "re-check everything" is over before dispatch begins.
    wakeup = Wakeup.fromPool(env.pool);
    await wakeup.start();
  });
  afterEach(async () => {
    for (const d of dispatchers.splice(0)) await d.stop();
    for (const r of receivers.splice(0)) await r.close();
    await env.pool.query('DELETE FROM sluice.messages; DELETE FROM sluice.consumers; DELETE FROM sluice.webhook_attempts; DELETE FROM sluice.webhook_batches');
  });
  afterAll(async () => {
    await wakeup?.stop();
    await env.pool?.end();
    await pg?.stop();
  });

  env.run = async (opts = {}) => {
    await env.registry.reload();
    const d = new Dispatcher({ pool: env.pool, consumers: env.registry, wakeup, instanceId: 'test', log: quietLog, ...opts });
    dispatchers.push(d);
    d.start();
    return d;
  };
  env.receiver = async (script) => {
    const r = await startReceiver(script);
    receivers.push(r);
    return r;
  };
  env.remaining = (consumerId, state) => remainingFor(env.pool, consumerId, state);
  env.attempts = async (consumerId) =>
    (await env.pool.query('SELECT * FROM sluice.webhook_attempts WHERE consumer_id = $1 ORDER BY id', [consumerId])).rows;
  return env;
}
