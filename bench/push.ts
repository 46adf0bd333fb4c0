// Push throughput on the embedded Postgres: messages pre-inserted with
// generate_series, drained by a Dispatcher to a node:http receiver on 127.0.0.1
// (in a worker thread, so it parses JSON on its own core) that answers 200.
//   npx tsx bench/push.ts            all scenarios, prints figures
//   BENCH_SCALE=0.1 npx tsx bench/push.ts   a tenth of the messages
// Asserts nothing: the figures go into docs/webhooks.md.
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { ConsumerRegistry } from '../src/buffer/consumers.js';
import { startEmbedded } from '../src/db/embedded.js';
import { migrate } from '../src/db/migrate.js';
import { createPool, type Pool } from '../src/db/pool.js';
import type { WebhookSettings } from '../src/config/types.js';
import { Jobs } from '../src/jobs/index.js';
import { Dispatcher } from '../src/push/dispatcher.js';
import { Metrics } from '../src/metrics/metrics.js';
import { generateSecret } from '../src/signing/secrets.js';

export interface PushBenchOptions {
  /** Buffer database; unset: a fresh embedded Postgres. */
  url?: string;
  messages: number;
  groups: number;
  batchSize: number;
  maxInFlight: number;
  /** One group the receiver answers 500 for (a batch holding any of its messages fails). */
  failingGroup?: boolean;
  /** Give up (and report what was drained) after this long. */
  timeoutMs?: number;
  /** Run the gateway's buffer VACUUM job, as `sluice start` does (default true). */
  vacuumJob?: boolean;
  /** Count deliveries in a Metrics registry and scrape it this often during the drain (bench/metrics.ts). */
  scrapeEveryMs?: number;
  /** Merged into the consumer's stored config (a filter, a transform), with the column types a where filter needs. */
  consumerPatch?: { config: Record<string, unknown>; filterColumns?: Record<string, Record<string, string>> };
}

export interface PushBenchResult {
  delivered: number;
  seconds: number;
  perSecond: number;
  /** Throughput until 95% of the target was delivered (leaves out a tail waiting on retries). */
  perSecondTo95: number;
  requests: number;
  failedRequests: number;
  /** CPU time per 1,000 messages delivered: this process (dispatcher + receiver thread), and Postgres. */
  cpuMsPer1k: { gateway: number; postgres: number } | null;
}

// Postgres CPU (utime + stime, in ms) of the postmaster's children, from /proc:
// the machine may be shared, so CPU per message is steadier than wall time.
export function postgresCpuMs(dataDir: string): number | null {
  try {
    const postmaster = readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0].trim();
    let ticks = 0;
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      try {
        const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
        if (f[1] === postmaster || pid === postmaster) ticks += Number(f[11]) + Number(f[12]);
      } catch {
        // the process ended meanwhile
      }
    }
    return ticks * 10;
  } catch {
    return null;
  }
}

export const gatewayCpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

// CommonJS, evaluated in a worker thread: the receiver a user would run, minus verification.
const RECEIVER = `
const { parentPort, workerData } = require('node:worker_threads');
const http = require('node:http');
let delivered = 0, requests = 0, failed = 0;
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    requests++;
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    const messages = Array.isArray(body.data) ? body.data : [body];
    if (workerData.failGroup && messages.some((m) => m.record.group === workerData.failGroup)) {
      failed++;
      res.writeHead(500).end();
      return;
    }
    delivered += messages.length;
    res.writeHead(200).end();
  });
});
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => parentPort.postMessage({ port: server.address().port }));
parentPort.on('message', () => parentPort.postMessage({ delivered, requests, failed }));
`;

interface ReceiverCounts {
  delivered: number;
  requests: number;
  failed: number;
}

export async function startReceiverThread(failGroup: string | null) {
  const worker = new Worker(RECEIVER, { eval: true, workerData: { failGroup } });
  const port = await new Promise<number>((resolve) => worker.once('message', (m: { port: number }) => resolve(m.port)));
  const counts = () =>
    new Promise<ReceiverCounts>((resolve) => {
      worker.once('message', resolve);
      worker.postMessage('counts');
    });
  return { port, counts, stop: () => worker.terminate() };
}

/** The bench's webhook settings: batch_timeout 0, a 30 s timeout, retries from 1 s doubling (5 attempts unless `retry` says). */
export function benchWebhook(port: number, batchSize: number, maxInFlight: number, retry: Partial<WebhookSettings['retry']> = {}): WebhookSettings {
  return {
    url: `http://127.0.0.1:${port}/hook`,
    headers: {},
    secrets: [generateSecret()],
    batch_size: batchSize,
    batch_timeout_ms: 0,
    max_in_flight: maxInFlight,
    timeout_ms: 30_000,
    max_response_bytes: 65_536,
    retry: { initial_ms: 1000, factor: 2, cap_ms: 60_000, max_attempts: 5, ...retry },
    allow_private_ranges: ['127.0.0.0/8'],
  };
}

/** Replaces whatever the buffer held with one webhook consumer, 'bench' (grouped by row, dead letters not blocking), on a stored source 'src' whose log it reads from the start; returns its id. */
export async function insertBenchConsumer(pool: Pool, webhook: WebhookSettings): Promise<string> {
  await pool.query('DELETE FROM sluice.messages; DELETE FROM sluice.consumers');
  await pool.query(`INSERT INTO sluice.sources (name, config) VALUES ('src', '{"name": "src", "tables": ["public.orders"]}') ON CONFLICT (name) DO NOTHING`);
  const config = { name: 'bench', source: 'src', kind: 'webhook', tables: ['public.orders'], group_by: true, dead_letter_blocks_group: false, annotations: {}, webhook };
  const { rows } = await pool.query<{ id: string }>(
    `INSERT INTO sluice.consumers (name, source_name, kind, config) VALUES ('bench', 'src', 'webhook', $1) RETURNING id`,
    [JSON.stringify(config)],
  );
  // Before every change: the rows filled into the log are its to deliver.
  await pool.query('UPDATE sluice.consumer_positions SET commit_lsn = -9223372036854775808, commit_idx = -1 WHERE consumer_id = $1', [rows[0].id]);
  return rows[0].id;
}

/** Merges `patch.config` into the consumer's stored config (as an API PATCH would, after its checks). */
export async function patchConsumer(pool: Pool, consumerId: string, patch: NonNullable<PushBenchOptions['consumerPatch']>): Promise<void> {
  await pool.query('UPDATE sluice.consumers SET config = config || $2::jsonb, filter_columns = $3::jsonb WHERE id = $1', [
    consumerId,
    JSON.stringify(patch.config),
    patch.filterColumns ? JSON.stringify(patch.filterColumns) : null,
  ]);
}

// Capture's payload shape (metadata last, transaction_annotations last in it), built in SQL,
// written into the log of the consumer's source (its partitions covered first: see fillLog).
const FILL = `INSERT INTO sluice.log (source_no, commit_lsn, commit_idx, schema_name, table_name, action, group_key, committed_at, payload)
  SELECT s.log_no, i, 0, 'public', 'orders', 'insert', 'g' || (i % $3), now(),
    format('{"record":{"id":%s,"group":"g%s","status":"paid","amount":"19.90","note":"an order of some size"},'
      '"changes":null,"action":"insert","metadata":{"table_schema":"public","table_name":"orders",'
      '"commit_timestamp":"2026-01-01T00:00:00.000000Z","commit_lsn":%s,"commit_idx":0,"idempotency_key":"%s",'
      '"record_pks":["%s"],"database_name":"app","transaction_annotations":null}}',
      i, i % $3, i, encode(convert_to(i || ':0', 'UTF8'), 'base64'), i)
  FROM sluice.consumers c JOIN sluice.sources s ON s.name = c.source_name, generate_series($4::bigint, $4::bigint + $2 - 1) AS i
  WHERE c.id = $1`;
const COVER = `SELECT sluice.log_cover(s.log_no, $2::bigint, $3::bigint, 3600)
  FROM sluice.consumers c JOIN sluice.sources s ON s.name = c.source_name WHERE c.id = $1`;

/** Writes `count` changes at LSN start… into the consumer's source's log, spread over `groups` groups. */
export async function fillLog(pool: Pool, consumerId: string, count: number, groups: number, start: number): Promise<void> {
  await pool.query(COVER, [consumerId, start, start + count - 1]);
  await pool.query(FILL, [consumerId, count, groups, start]);
}

async function fill(pool: Pool, consumerId: string, count: number, groups: number): Promise<void> {
  const chunk = 200_000;
  for (let start = 1; start <= count; start += chunk) await fillLog(pool, consumerId, Math.min(chunk, count - start + 1), groups, start);
  await pool.query('VACUUM ANALYZE sluice.log');
}

export async function runPushBench(o: PushBenchOptions): Promise<PushBenchResult> {
  const dir = o.url ? null : mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-'));
  // As root, Postgres runs as the 'postgres' OS user, which must reach the folder.
  if (dir) chmodSync(dir, 0o755);
  const embedded = dir ? await startEmbedded({ dataDir: path.join(dir, 'pg'), persistent: false }) : null;
  const pool = createPool(o.url ?? embedded!.url, { max: 12 });
  const failGroup = o.failingGroup ? 'g0' : null;
  const receiver = await startReceiverThread(failGroup);
  let dispatcher: Dispatcher | null = null;
  let jobs: Jobs | null = null;
  let scraper: NodeJS.Timeout | undefined;
  try {
    await migrate(pool);
    const consumerId = await insertBenchConsumer(pool, benchWebhook(receiver.port, o.batchSize, o.maxInFlight));
    if (o.consumerPatch) await patchConsumer(pool, consumerId, o.consumerPatch);
    await fill(pool, consumerId, o.messages, o.groups);
    const target = failGroup ? o.messages - Math.ceil(o.messages / o.groups) : o.messages;

    const registry = new ConsumerRegistry(pool);
    await registry.reload();
    const log = { info: () => {}, warn: () => {}, error: (obj: Record<string, unknown>, m?: string) => console.error(m, obj) };
    const metrics = o.scrapeEveryMs ? new Metrics() : undefined;
    dispatcher = new Dispatcher({ pool, consumers: registry, instanceId: 'bench', log, metrics });
    if (metrics) {
      scraper = setInterval(() => void metrics.text({ pool }).catch((err: Error) => console.error('scrape failed', err.message)), o.scrapeEveryMs);
    }
    if (o.vacuumJob ?? true) jobs = new Jobs({ pool, log });
    const pgDir = embedded?.dataDir;
    const pgCpu0 = pgDir ? postgresCpuMs(pgDir) : null;
    const cpu0 = gatewayCpuMs();
    const started = Date.now();
    let at95 = 0;
    dispatcher.start();
    jobs?.start();
    const deadline = started + (o.timeoutMs ?? 600_000);
    let counts = await receiver.counts();
    let lastReport = started;
    while (counts.delivered < target && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      counts = await receiver.counts();
      if (!at95 && counts.delivered >= target * 0.95) at95 = Date.now();
      if (process.env.BENCH_PROGRESS && Date.now() - lastReport >= 1000) {
        lastReport = Date.now();
        console.log(`  ${((lastReport - started) / 1000).toFixed(1)} s: ${counts.delivered} delivered, ${counts.requests} requests, ${counts.failed} failed`);
      }
    }
    const seconds = (Date.now() - started) / 1000;
    const pgCpu1 = pgDir ? postgresCpuMs(pgDir) : null;
    const per1k = (ms: number) => Math.round((ms / counts.delivered) * 1000);
    return {
      delivered: counts.delivered,
      seconds,
      perSecond: Math.round(counts.delivered / seconds),
      perSecondTo95: at95 ? Math.round((target * 0.95) / ((at95 - started) / 1000)) : 0,
      cpuMsPer1k: pgCpu0 !== null && pgCpu1 !== null ? { gateway: per1k(gatewayCpuMs() - cpu0), postgres: per1k(pgCpu1 - pgCpu0) } : null,
      requests: counts.requests,
      failedRequests: counts.failed,
    };
  } finally {
    clearInterval(scraper);
    await jobs?.stop();
    await dispatcher?.stop();
    await receiver.stop();
    await pool.end();
    await embedded?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

const isMain = process.argv[1] && path.resolve(process.argv[1]).endsWith(path.join('bench', 'push.ts'));
if (isMain) {
  const scale = Number(process.env.BENCH_SCALE ?? 1);
  const n = (x: number) => Math.max(1000, Math.round(x * scale));
  const only = process.env.BENCH_ONLY?.split(',');
  const vacuumJob = process.env.BENCH_VACUUM !== '0';
  const scenarios: Array<[string, PushBenchOptions]> = [
    ['batch 100, 10k groups', { messages: n(1_000_000), groups: 10_000, batchSize: 100, maxInFlight: 8 }],
    // One POST per change needs requests in parallel: throughput is max_in_flight
    // over the round trip. 128 (BENCH_IN_FLIGHT to change it; 64 gave ~6.5k/s).
    ['batch 1, 10k groups', { messages: n(100_000), groups: 10_000, batchSize: 1, maxInFlight: Number(process.env.BENCH_IN_FLIGHT ?? 128) }],
    ['batch 100, 1,001 groups, all healthy', { messages: n(300_000), groups: 1001, batchSize: 100, maxInFlight: 8 }],
    ['batch 100, 1,001 groups, one failing', { messages: n(300_000), groups: 1001, batchSize: 100, maxInFlight: 8, failingGroup: true }],
  ];
  for (const [name, opts] of scenarios) {
    if (only && !only.includes(name.split(',')[0] + (name.includes('failing') ? ' failing' : ''))) continue;
    const r = await runPushBench({ ...opts, vacuumJob });
    const cpu = r.cpuMsPer1k ? `  cpu/1k msgs: gateway ${r.cpuMsPer1k.gateway} ms, postgres ${r.cpuMsPer1k.postgres} ms` : '';
    console.log(
      `${name.padEnd(38)} ${String(r.delivered).padStart(8)} msgs ${r.seconds.toFixed(1).padStart(6)} s ` +
        `${String(r.perSecond).padStart(6)}/s (to 95%: ${r.perSecondTo95}/s)  ${r.requests} req (${r.failedRequests} failed)${cpu}`,
    );
  }
}
