// What a failing group costs the healthy groups beside it, as their users feel
// it: a producer commits messages of 1,001 groups at a steady rate into the
// embedded Postgres (as capture would: rows plus a sluice_messages NOTIFY);
// one Dispatcher sends them (batch 100, max_in_flight 8) to a node:http
// receiver on 127.0.0.1 in a worker thread. With `failingGroup`, the receiver
// answers 500 to every request holding a message of group g0.
//
// Per healthy message: commit → receipt (the insert's commit as the producer
// saw it, to the receiver's first 200 for it); and for the *neighbours*, the
// healthy messages that were in a request refused because of g0, how long they
// were held back (from the first refused request that carried them, when they
// would have arrived without g0, to their receipt). Run it with and without the
// failing group and compare. Asserts nothing.
//   npx tsx bench/neighbours.ts [rate] [seconds]      default 5000/s for 20 s
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { ConsumerRegistry } from '../src/buffer/consumers.js';
import { startEmbedded } from '../src/db/embedded.js';
import { migrate } from '../src/db/migrate.js';
import { createPool } from '../src/db/pool.js';
import { Dispatcher } from '../src/push/dispatcher.js';
import { benchWebhook, fillLog, gatewayCpuMs, insertBenchConsumer, postgresCpuMs } from './push.js';

export interface NeighboursOptions {
  /** Messages committed per second, in 10 ms ticks. */
  rate: number;
  seconds: number;
  failingGroup: boolean;
  groups?: number;
  batchSize?: number;
  maxInFlight?: number;
}

export interface Percentiles {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

export interface NeighboursResult {
  committed: number;
  /** Healthy messages received (g0's never are when it fails). */
  delivered: number;
  /** Commit → receipt of every healthy message received. */
  latency: Percentiles;
  /** Healthy messages that shared a refused request with g0: commit → receipt. */
  neighbourLatency: Percentiles;
  /** The same messages: first refused request → receipt (the delay g0 added). */
  heldBack: Percentiles;
  requests: number;
  refused: number;
  /** CPU time per 1,000 messages committed: this process (producer, dispatcher, receiver thread), and Postgres. */
  cpuMsPer1k: { gateway: number; postgres: number } | null;
}

// CommonJS, evaluated in a worker thread. Records the first 200 for each
// message id, and the first refused request that carried each healthy message.
const RECEIVER = `
const { parentPort, workerData } = require('node:worker_threads');
const http = require('node:http');
const received = new Map(), heldSince = new Map();
let requests = 0, refused = 0;
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const now = Date.now();
    requests++;
    const messages = JSON.parse(Buffer.concat(chunks).toString('utf8')).data;
    if (workerData.failGroup && messages.some((m) => m.record.group === workerData.failGroup)) {
      refused++;
      for (const m of messages) if (m.record.group !== workerData.failGroup && !heldSince.has(m.record.id)) heldSince.set(m.record.id, now);
      res.writeHead(500).end();
      return;
    }
    for (const m of messages) if (!received.has(m.record.id)) received.set(m.record.id, now);
    res.writeHead(200).end();
  });
});
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => parentPort.postMessage({ port: server.address().port }));
parentPort.on('message', (what) =>
  parentPort.postMessage(what === 'all' ? { received: [...received], heldSince: [...heldSince], requests, refused } : { delivered: received.size }),
);
`;

interface ReceiverReport {
  received: Array<[number, number]>;
  heldSince: Array<[number, number]>;
  requests: number;
  refused: number;
}

async function startReceiver(failGroup: string | null) {
  const worker = new Worker(RECEIVER, { eval: true, workerData: { failGroup } });
  const port = await new Promise<number>((resolve) => worker.once('message', (m: { port: number }) => resolve(m.port)));
  const ask = <T>(what: 'count' | 'all') =>
    new Promise<T>((resolve) => {
      worker.once('message', resolve);
      worker.postMessage(what);
    });
  return { port, delivered: async () => (await ask<{ delivered: number }>('count')).delivered, report: () => ask<ReceiverReport>('all'), stop: () => worker.terminate() };
}

export function percentiles(values: number[]): Percentiles {
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
  return { count: s.length, p50: at(0.5), p99: at(0.99), max: s.length ? s[s.length - 1] : NaN };
}

export async function runNeighboursBench(o: NeighboursOptions): Promise<NeighboursResult> {
  const groups = o.groups ?? 1001;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-neighbours-'));
  chmodSync(dir, 0o755);
  const embedded = await startEmbedded({ dataDir: path.join(dir, 'pg'), persistent: false });
  const pool = createPool(embedded.url, { max: 12 });
  const failGroup = o.failingGroup ? 'g0' : null;
  const receiver = await startReceiver(failGroup);
  let dispatcher: Dispatcher | null = null;
  try {
    await migrate(pool);
    // Retries from 1 s, doubling; g0's batch is a dead letter after 3 attempts
    // (~1.5-3 s), so its next message meets new neighbours several times a run.
    const webhook = benchWebhook(receiver.port, o.batchSize ?? 100, o.maxInFlight ?? 8, { max_attempts: 3 });
    const consumerId = await insertBenchConsumer(pool, webhook);
    const registry = new ConsumerRegistry(pool);
    await registry.reload();
    // g0's dead letters are logged as errors: expected here.
    const error = (obj: Record<string, unknown>, m?: string) => obj.outcome !== 'dead_letter' && console.error(m, obj);
    const log = { info: () => {}, warn: () => {}, error };
    dispatcher = new Dispatcher({ pool, consumers: registry, instanceId: 'bench', log });
    dispatcher.start();

    // Ids from 1; id i is in group i % groups (g0: every `groups`-th message).
    const total = Math.round(o.rate * o.seconds);
    const committedAt = new Float64Array(total + 1);
    const pgCpu0 = postgresCpuMs(embedded.dataDir);
    const cpu0 = gatewayCpuMs();
    const started = performance.now();
    let next = 1;
    while (next <= total) {
      const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * o.rate));
      if (due >= next) {
        const count = due - next + 1;
        await fillLog(pool, consumerId, count, groups, next);
        const now = Date.now();
        committedAt.fill(now, next, next + count);
        await pool.query(`SELECT pg_notify('sluice_messages', $1)`, [consumerId]);
        next += count;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    const healthy = total - Math.floor(total / groups);
    const deadline = Date.now() + 30_000;
    while ((await receiver.delivered()) < healthy && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));

    const pgCpu1 = postgresCpuMs(embedded.dataDir);
    const per1k = (ms: number) => Math.round((ms / total) * 1000);
    const cpuMsPer1k = pgCpu0 !== null && pgCpu1 !== null ? { gateway: per1k(gatewayCpuMs() - cpu0), postgres: per1k(pgCpu1 - pgCpu0) } : null;
    const report = await receiver.report();
    const receivedAt = new Map(report.received);
    const latency = report.received.map(([id, at]) => at - committedAt[id]);
    const neighbours = report.heldSince.filter(([id]) => receivedAt.has(id));
    return {
      committed: total,
      delivered: report.received.length,
      latency: percentiles(latency),
      neighbourLatency: percentiles(neighbours.map(([id]) => receivedAt.get(id)! - committedAt[id])),
      heldBack: percentiles(neighbours.map(([id, since]) => receivedAt.get(id)! - since)),
      requests: report.requests,
      refused: report.refused,
      cpuMsPer1k,
    };
  } finally {
    await dispatcher?.stop();
    await receiver.stop();
    await pool.end();
    await embedded.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export const fmtPercentiles = (p: Percentiles) => (p.count ? `p50 ${p.p50}, p99 ${p.p99}, max ${p.max} ms` : 'none');
const fmtCpu = (r: NeighboursResult) => (r.cpuMsPer1k ? `; cpu/1k msgs: bench process ${r.cpuMsPer1k.gateway} ms, postgres ${r.cpuMsPer1k.postgres} ms` : '');

/** Both runs, the same load: with no failing group, then with g0 failing. */
export async function compareNeighbours(rate: number, seconds: number, log = console.log) {
  const baseline = await runNeighboursBench({ rate, seconds, failingGroup: false });
  log(`no failing group:  ${baseline.delivered}/${baseline.committed} delivered, commit → receipt ${fmtPercentiles(baseline.latency)}, ${baseline.requests} requests${fmtCpu(baseline)}`);
  const failing = await runNeighboursBench({ rate, seconds, failingGroup: true });
  log(
    `g0 failing:        ${failing.delivered}/${failing.committed} delivered, commit → receipt ${fmtPercentiles(failing.latency)}; ` +
      `${failing.refused} of ${failing.requests} requests refused${fmtCpu(failing)}`,
  );
  log(
    `  ${failing.heldBack.count} neighbours (healthy messages in a refused request): commit → receipt ${fmtPercentiles(failing.neighbourLatency)}; ` +
      `held back ${fmtPercentiles(failing.heldBack)}`,
  );
  return { baseline, failing };
}

if (process.argv[1]?.endsWith(path.join('bench', 'neighbours.ts'))) {
  const [rate, seconds] = process.argv.slice(2).map(Number);
  await compareNeighbours(rate || 5000, seconds || 20);
}
