// Pull throughput: a backlog of N messages for one consumer, drained by W
// concurrent HTTP workers doing receive(batch) → ack against a real listening
// app on 127.0.0.1. Prints messages/s and per-call latencies; asserts nothing.
//   npx tsx bench/pull.ts [messages] [workers] [batch]
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { startEmbedded } from '../src/db/embedded.js';
import { migrate } from '../src/db/migrate.js';
import { createPool } from '../src/db/pool.js';
import { createConsumer, deleteConsumers, insertSeries } from '../test/helpers/buffer.js';
import { buildPullTestApp } from '../test/fixtures/pull-app.js';
import { patchConsumer, type PushBenchOptions } from './push.js';
import { Jobs } from '../src/jobs/index.js';
import { clientsInline, drainInline, startClientProcess, type ClientPlan, type ClientTally } from './pull-client.js';

export interface PullBenchOptions {
  messages?: number;
  workers?: number;
  batchSize?: number;
  /** Distinct group keys (0 = grouping off). Default: one group per 10 messages' worth of rows. */
  groups?: number;
  /** An existing server instead of an embedded one. */
  databaseUrl?: string;
  log?: (line: string) => void;
  /**
   * Instead of the default backlog: fills the buffer for the consumer itself
   * and returns how many messages the workers then drain (bench/rewind.ts).
   */
  prepare?: (pool: ReturnType<typeof createPool>, consumerId: string) => Promise<number>;
  /** Merged into the consumer's stored config (a filter, a transform), with the column types a where filter needs. */
  consumerPatch?: NonNullable<PushBenchOptions['consumerPatch']>;
}

export interface PullBenchResult {
  messages: number;
  seconds: number;
  messagesPerSecond: number;
  receive: Latency;
  ack: Latency;
  setupSeconds: number;
  /** CPU seconds during the drain: this process (the gateway, and the HTTP workers when inline), the workers' own process, and the database server. */
  nodeCpuSeconds: number;
  clientCpuSeconds: number | null;
  dbCpuSeconds: number | null;
}

interface Latency {
  calls: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

// CPU seconds of a Postgres server (postmaster and all its children), from
// /proc on Linux; null elsewhere. Tells the database's share of the machine.
function serverCpuSeconds(postmasterPid: number): number | null {
  try {
    let ticks = 0;
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(entry) !== postmasterPid && Number(fields[1]) !== postmasterPid) continue;
      ticks += Number(fields[11]) + Number(fields[12]);
    }
    return ticks / 100;
  } catch {
    return null;
  }
}

async function postmasterPidOf(pool: ReturnType<typeof createPool>): Promise<number | null> {
  try {
    const { rows } = await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    const stat = readFileSync(`/proc/${rows[0].pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return null;
  }
}

function latency(samples: number[]): Latency {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => (s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))] : 0);
  const r = (v: number) => Math.round(v * 100) / 100;
  return { calls: s.length, p50: r(at(0.5)), p95: r(at(0.95)), p99: r(at(0.99)), max: r(s[s.length - 1] ?? 0) };
}

export async function runPullBench(opts: PullBenchOptions = {}): Promise<PullBenchResult> {
  let total = opts.messages ?? 1_000_000;
  const workers = opts.workers ?? 8;
  const batchSize = opts.batchSize ?? 100;
  const groups = opts.groups ?? Math.max(1, Math.floor(total / 10));
  const log = opts.log ?? console.log;

  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-pull-'));
  chmodSync(dir, 0o755);
  const embedded = opts.databaseUrl
    ? null
    : await startEmbedded({
        dataDir: path.join(dir, 'pg'),
        persistent: false,
        extraFlags: ['-c', 'shared_buffers=512MB', '-c', 'max_wal_size=4GB'],
      });
  const url = opts.databaseUrl ?? embedded!.url;
  const pool = createPool(url, { max: 16, name: 'sluice-bench-pull' });
  let t: Awaited<ReturnType<typeof buildPullTestApp>> | undefined;
  let child: Awaited<ReturnType<typeof startClientProcess>> | null = null;
  try {
    await migrate(pool);
    const name = `bench-${Date.now()}`;
    const consumerId = await createConsumer(pool, { name, pull: { ack_wait_ms: 60_000, max_ack_pending: 10_000 } });
    if (opts.consumerPatch) await patchConsumer(pool, consumerId, opts.consumerPatch);
    const setupStart = performance.now();
    if (opts.prepare) total = await opts.prepare(pool, consumerId);
    else {
      const chunk = 100_000;
      for (let at = 0; at < total; at += chunk) await insertSeries(pool, consumerId, 1_000 + at, Math.min(chunk, total - at), groups);
      await pool.query('VACUUM ANALYZE sluice.log');
    }
    const setupSeconds = (performance.now() - setupStart) / 1000;
    log(`setup: ${total} messages to drain, set up in ${setupSeconds.toFixed(1)} s`);

    t = await buildPullTestApp(pool);
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const addr = t.app.server.address();
    const origin = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
    const base = `/api/http_pull_consumers/${name}`;
    // The gateway's housekeeping, as in production (and bench/push.ts): its
    // VACUUMs of the queue tables are part of what a drain costs.
    const quietLog = { info: () => {}, warn: () => {}, error: (obj: Record<string, unknown>, m?: string) => console.error(m, obj) };
    const jobs = process.env.BENCH_VACUUM === '0' ? null : new Jobs({ pool, log: quietLog });
    jobs?.start();
    let acked = 0;
    const inline = clientsInline();
    child = inline ? null : await startClientProcess();
    const postmasterPid = await postmasterPidOf(pool);
    const dbCpu0 = postmasterPid ? serverCpuSeconds(postmasterPid) : null;
    const nodeCpu0 = process.cpuUsage();
    const start = performance.now();
    let lastReport = 0;
    const progress = setInterval(() => {
      const s = (performance.now() - start) / 1000;
      log(`  ${s.toFixed(0)} s: ${acked} acked (${Math.round((acked - lastReport) / 5)} msg/s over the last 5 s)`);
      lastReport = acked;
    }, 5000);
    const plan: ClientPlan = { origin, base, batchSize, workers, total, deadline: Date.now() + 10 * 60_000 };
    let tally: ClientTally;
    try {
      tally = child
        ? await child.drain(plan, (n) => (acked = n))
        : { ...(await drainInline(plan, (n) => (acked = n))), cpuSeconds: null };
    } finally {
      clearInterval(progress);
      await jobs?.stop();
    }
    acked = tally.acked;
    const { receiveMs, ackMs } = tally;
    const seconds = (performance.now() - start) / 1000;
    const nodeCpu = process.cpuUsage(nodeCpu0);
    const dbCpu1 = postmasterPid ? serverCpuSeconds(postmasterPid) : null;
    const result: PullBenchResult = {
      messages: acked,
      seconds,
      messagesPerSecond: Math.round(acked / seconds),
      receive: latency(receiveMs),
      ack: latency(ackMs),
      setupSeconds,
      nodeCpuSeconds: Math.round((nodeCpu.user + nodeCpu.system) / 1e4) / 100,
      clientCpuSeconds: tally.cpuSeconds,
      dbCpuSeconds: dbCpu0 !== null && dbCpu1 !== null ? Math.round((dbCpu1 - dbCpu0) * 100) / 100 : null,
    };
    log(`drained ${acked} messages with ${workers} workers (batch ${batchSize}) in ${seconds.toFixed(1)} s: ${result.messagesPerSecond} msg/s`);
    log(`receive latency ms: ${JSON.stringify(result.receive)}`);
    log(`ack latency ms:     ${JSON.stringify(result.ack)}`);
    log(`database claims: ${t.service.counters.claims} for ${receiveMs.length} receives (concurrent receives share a claim)`);
    const clients = inline ? 'clients inline' : `clients (own process) ${result.clientCpuSeconds} s`;
    log(`CPU during the drain: gateway ${result.nodeCpuSeconds} s, ${clients}, postgres ${result.dbCpuSeconds ?? 'n/a'} s (wall ${seconds.toFixed(1)} s)`);
    return result;
  } finally {
    // Whatever failed, the clients' process does not outlive the benchmark.
    child?.stop();
    await t?.close().catch(() => {});
    // On a server of the caller's, leave nothing behind.
    if (opts.databaseUrl) await deleteConsumers(pool, 'bench-').catch(() => {});
    await pool.end().catch(() => {});
    await embedded?.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [messages, workers, batchSize] = process.argv.slice(2).map(Number);
  await runPullBench({
    messages: messages || undefined,
    workers: workers || undefined,
    batchSize: batchSize || undefined,
    databaseUrl: process.env.BENCH_DATABASE_URL,
  });
}
