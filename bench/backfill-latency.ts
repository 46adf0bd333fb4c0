// Live changes during a backfill: the whole gateway (sluice start's Gateway,
// HTTP API and all) backfills a table of N rows of ~200 bytes for one pull
// consumer (not drained: max_backlog 0) while a producer updates rows of the
// same table at a steady rate in 1-row transactions, and a second consumer of
// the table takes those changes by long-poll receive. Each change's latency is
// from its source commit (metadata.commit_timestamp, same clock) to its
// receipt. Prints the backfill's rate and the latency p50/p99 during it, and
// the gateway's peak RSS: the gateway runs as its own process, started as the
// Docker image starts it (node bin/sluice.js start), so the figure is its
// high-water mark (VmHWM) alone, not the load generators' beside it.
//   npx tsx bench/backfill-latency.ts [rows] [rate] [chunk_size]   (BENCH_NODE_ARGS: the gateway's node flags)
import { spawn } from 'node:child_process';
import { appendFileSync, chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import { startEmbedded } from '../src/db/embedded.js';
import { pct } from './latency.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** A process's peak resident set (VmHWM, Linux), in bytes. */
function peakRss(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error('no VmHWM in /proc/<pid>/status (Linux only)');
  return Number(m[1]) * 1024;
}

export interface BackfillLatencyResult {
  rows: number;
  rate: number;
  rowsPerSecond: number;
  changes: number;
  p50: number;
  p99: number;
  max: number;
  /** The gateway process's peak RSS (VmHWM) over the whole run, start included. */
  peakRssMb: number;
}

const TOKEN = 'bench-token-0123456789';

export async function runBackfillLatencyBench(rows = 1_000_000, rate = 500, chunkSize = 1000, log = console.log): Promise<BackfillLatencyResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-bflat-'));
  chmodSync(dir, 0o755);
  const pgh = await startEmbedded({ dataDir: path.join(dir, 'pg'), persistent: false, extraFlags: ['-c', 'max_wal_size=4GB', '-c', 'shared_buffers=512MB'] });
  const setup = new pg.Client({ connectionString: pgh.url });
  await setup.connect();
  await setup.query(`CREATE TABLE public.events (id bigint PRIMARY KEY, account uuid NOT NULL, kind text NOT NULL,
    amount numeric NOT NULL, payload text NOT NULL, created_at timestamptz NOT NULL)`);
  await setup.query(`INSERT INTO public.events
    SELECT g, md5(g::text)::uuid, 'kind-' || (g % 17), (g % 100000) / 100.0, repeat(md5(g::text), 3), now() - g * interval '1 second'
    FROM generate_series(1, $1) g`, [rows]);
  await setup.query('VACUUM ANALYZE public.events');
  const configFile = path.join(dir, 'sluice.yaml');
  writeFileSync(configFile, `
http: { host: 127.0.0.1, port: 0 }
auth: { admin_token: ${TOKEN} }
sources:
  - { name: app, tables: [public.events], heartbeat_interval: 1h }
consumers:
  - { name: bulk, source: app, kind: pull, tables: [public.events] }
  - { name: live, source: app, kind: pull, tables: [public.events] }
`);
  // BENCH_NODE_ARGS: flags for the gateway's node (--cpu-prof, a V8 setting).
  const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const gateway = spawn(process.execPath, [...nodeArgs, path.join(ROOT, 'bin/sluice.js'), 'start', '--config', configFile], {
    cwd: ROOT,
    // Info level whatever the bench's own (LOG_LEVEL=warn npm run bench): its start is read from its log.
    env: { ...process.env, DATABASE_URL: pgh.url, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((r) => gateway.once('exit', () => r()));
  // Its HTTP address from its log, once it says it started (capture running).
  const api = await new Promise<string>((resolve, reject) => {
    // A gateway that does not start is not left running (with its Postgres, which could not stop for it).
    const fail = (err: Error) => {
      gateway.kill('SIGKILL');
      reject(err);
    };
    let address = '';
    const timer = setTimeout(() => fail(new Error('the gateway did not start within 60 s')), 60_000);
    gateway.once('exit', (code) => reject(new Error(`the gateway exited (${code})`)));
    // BENCH_GATEWAY_LOG: a file to keep the gateway's stdout in (--trace-gc lines, say).
    const keep = process.env.BENCH_GATEWAY_LOG;
    createInterface({ input: gateway.stdout! }).on('line', (line) => {
      if (keep) appendFileSync(keep, line + '\n');
      if (line.includes('"msg":"http listening"')) address = JSON.parse(line).address;
      if (line.includes('"msg":"sluice started"') && address) {
        clearTimeout(timer);
        resolve(`${address}/api`);
      }
    });
  });
  const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
  // Started and idle: what the backfill adds is the peak minus this.
  const startRssMb = Math.round(Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${gateway.pid}/status`, 'utf8'))![1]) / 1024);

  const samples: number[] = [];
  let stop = false;
  const pullers = Array.from({ length: 2 }, async () => {
    while (!stop) {
      const r = await fetch(`${api}/http_pull_consumers/live/receive`, { method: 'POST', headers, body: JSON.stringify({ batch_size: 100, wait_for: 500 }) });
      const items = ((await r.json()) as { data: Array<{ ack_id: string; data: { metadata: { commit_timestamp: string } } }> }).data;
      const now = Date.now();
      for (const it of items) samples.push(now - Date.parse(it.data.metadata.commit_timestamp));
      if (items.length) await fetch(`${api}/http_pull_consumers/live/ack`, { method: 'POST', headers, body: JSON.stringify({ ack_ids: items.map((i) => i.ack_id) }) });
    }
  });

  const started = await fetch(`${api}/consumers/bulk/backfills`, { method: 'POST', headers, body: JSON.stringify({ chunk_size: chunkSize, max_backlog: 0 }) });
  if (started.status !== 201) throw new Error(`backfill refused: ${await started.text()}`);
  const t0 = performance.now();
  // The producer: 1-row updates at `rate`/s until the backfill ends, from
  // four clients (one alone cannot keep the pace while the database is busy).
  let produced = 0;
  let backfilling = true;
  const clients = await Promise.all(Array.from({ length: 4 }, async () => {
    const c = new pg.Client({ connectionString: pgh.url });
    await c.connect();
    return c;
  }));
  const producer = Promise.all(clients.map(async (c) => {
    while (backfilling) {
      const due = t0 + (produced++ * 1000) / rate;
      const wait = due - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      await c.query('UPDATE public.events SET amount = amount + 1 WHERE id = $1', [1 + Math.floor(Math.random() * rows)]);
    }
  }));
  let progress: { state: string; rows_read: number } = { state: 'running', rows_read: 0 };
  while (progress.state === 'running') {
    await new Promise((r) => setTimeout(r, 100));
    const r = await fetch(`${api}/consumers/bulk/backfills`, { headers });
    progress = ((await r.json()) as { data: Array<{ state: string; rows_read: number }> }).data[0];
  }
  const seconds = (performance.now() - t0) / 1000;
  backfilling = false;
  await producer;
  await Promise.all(clients.map((c) => c.end()));
  const rateDone = produced / seconds;
  const deadline = Date.now() + 30_000;
  while (samples.length < produced && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  stop = true;
  await Promise.all(pullers);
  await setup.end();
  // How long capture's buffer writes took (a chunk's rows go in with the changes around its watermark).
  const scrape = await (await fetch(`${api.replace(/\/api$/, '')}/metrics`, { headers })).text();
  const writes = scrape.split('\n').filter((l) => l.startsWith('sluice_source_write_duration_seconds_bucket')).map((l) => {
    const le = /le="([^"]+)"/.exec(l)![1];
    return `≤${le}s: ${l.split(' ').pop()}`;
  });
  log(`backfill latency: buffer writes ${writes.join(', ')}`);
  const peak = peakRss(gateway.pid!);
  gateway.kill('SIGTERM');
  await exited;
  await pgh.stop().catch(() => {});
  rmSync(dir, { recursive: true, force: true });

  const sorted = [...samples].sort((a, b) => a - b);
  const result: BackfillLatencyResult = {
    rows: progress.rows_read,
    rate,
    rowsPerSecond: Math.round(progress.rows_read / seconds),
    changes: samples.length,
    p50: pct(sorted, 0.5),
    p99: pct(sorted, 0.99),
    max: sorted[sorted.length - 1],
    peakRssMb: Math.round(peak / 1048576),
  };
  log(
    `backfill latency: ${result.rows.toLocaleString('en')} rows backfilled at ${result.rowsPerSecond.toLocaleString('en')} rows/s (chunk ${chunkSize}) ` +
      `while ${result.changes}/${produced} live updates at ${rate}/s (${Math.round(rateDone)}/s held) reached another consumer: commit → long-poll receive p50 ${result.p50} ms, p99 ${result.p99} ms, max ${result.max} ms; gateway peak RSS ${result.peakRssMb} MB (${startRssMb} MB once started)`,
  );
  return result;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [rows, rate, chunk] = process.argv.slice(2).map(Number);
  await runBackfillLatencyBench(rows || undefined, rate || undefined, chunk || undefined);
}
