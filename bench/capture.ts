// Capture throughput: a backlog of N changes (100-row transactions of ~200-byte
// rows) drained from the slot into the buffer, beside the ceiling: the same
// backlog read by the replication library alone, discarding every message.
// Prints figures (and CPU by process role); asserts nothing.
//   BENCH_CHANGES=300000     backlog size (default 1,000,000)
//   BENCH_MAX_BATCH=5000     the source's max_batch_changes (default 10,000)
//   BENCH_CAPTURE_CONSUMERS=10  pull consumers on the same table (default 1)
// Also measures what the capture added to the buffer: the size of every table
// of the sluice schema (heap, TOAST, indexes; log partitions included) and the
// WAL the server generated while capturing (the backlog's own WAL is written
// before; this includes checkpoints' full-page images and anything autovacuum
// writes meanwhile).
import { mkdtempSync, chmodSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { ConsumerRegistry } from '../src/buffer/consumers.js';
import { ReplicationStream } from '../src/capture/replication.js';
import { ensureSource } from '../src/capture/setup.js';
import * as q from '../src/capture/setup-queries.js';
import { lsnToBigInt } from '../src/capture/lsn.js';
import { SourceCapture } from '../src/capture/source-capture.js';
import { DEFAULT_RETENTION } from '../src/config/normalise.js';
import { startEmbedded } from '../src/db/embedded.js';
import { createPool } from '../src/db/pool.js';
import { migrate } from '../src/db/migrate.js';

const quiet = { info() {}, warn() {}, error() {} };

export interface CaptureBenchResult {
  changes: number;
  captureSeconds: number;
  captureRate: number;
  ceilingSeconds: number;
  ceilingRate: number;
  ratio: number;
  peakRssMb: number;
  /** RSS as the capture started: what the bench process held before (in bench/run.ts, every benchmark's modules). */
  startRssMb: number;
  consumers: number;
  /** Growth of the sluice schema's tables (heap, TOAST, indexes) during the capture. */
  tableBytes: number;
  /** WAL generated during the capture (pg_current_wal_lsn() delta). */
  walBytes: number;
  /** (tableBytes + walBytes) / changes. */
  bytesPerChange: number;
}

// Every table of the sluice schema, log partitions included (relkind 'r'; a
// partitioned parent holds nothing itself), with its TOAST and indexes.
const SLUICE_BYTES = `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint AS b
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'sluice' AND c.relkind IN ('r', 'm')`;

// CPU seconds (utime + stime) of the Postgres server's processes by role, from
// /proc on Linux: shows which side of the capture is busy. Empty elsewhere.
function serverCpuByRole(dataDir: string): Map<string, number> {
  const out = new Map<string, number>();
  try {
    const postmaster = readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0].trim();
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        if (f[1] !== postmaster && pid !== postmaster) continue;
        const title = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
        const role = /walsender/.test(title) ? 'walsender' : /autovacuum/.test(title) ? 'autovacuum'
          : /checkpointer|background writer|walwriter/.test(title) ? 'checkpointer, bgwriter, walwriter'
          : /postgres: \S+ \S+ [\d.]+\(/.test(title) ? 'client backends' : 'other';
        out.set(role, (out.get(role) ?? 0) + (Number(f[11]) + Number(f[12])) / 100);
      } catch {
        // the process ended meanwhile
      }
    }
  } catch {
    // not Linux, or no pid file
  }
  return out;
}

function cpuDelta(before: Map<string, number>, after: Map<string, number>): string {
  return [...after].map(([role, s]) => `${role} ${(s - (before.get(role) ?? 0)).toFixed(1)} s`).join(', ');
}

function rssSampler() {
  let peak = process.memoryUsage().rss;
  const t = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 50);
  return { stop: () => (clearInterval(t), Math.max(peak, process.memoryUsage().rss)) };
}

export interface CaptureBenchOptions {
  /** Pull consumers on the bench table (default 1, or BENCH_CAPTURE_CONSUMERS). */
  consumers?: number;
}

export async function runCaptureBench(changes = 1_000_000, log = console.log, opts: CaptureBenchOptions = {}): Promise<CaptureBenchResult> {
  const consumers = opts.consumers ?? Number(process.env.BENCH_CAPTURE_CONSUMERS ?? 1);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-'));
  chmodSync(dir, 0o755);
  const pgh = await startEmbedded({ dataDir: path.join(dir, 'pg'), persistent: false, extraFlags: ['-c', 'max_wal_size=4GB', '-c', 'shared_buffers=512MB', '-c', 'synchronous_commit=on'] });
  const pool = createPool(pgh.url);
  try {
    await migrate(pool);
    // Experiments that show what bounds the rate (not how Sluice runs):
    //   BENCH_CAPTURE_VARIANT=no-autovacuum       autovacuum off on sluice.messages
    //   BENCH_CAPTURE_VARIANT=no-claim-indexes    without the claim index (messages_fresh_idx)
    const variant = process.env.BENCH_CAPTURE_VARIANT;
    if (variant === 'no-autovacuum') await pool.query(`ALTER TABLE sluice.messages SET (autovacuum_enabled = false)`);
    if (variant === 'no-claim-indexes') await pool.query(`DROP INDEX sluice.messages_fresh_idx`);
    if (variant) log(`  variant: ${variant}`);
    await pool.query(`CREATE TABLE bench_orders (
      id bigint PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL,
      amount numeric(12,2) NOT NULL, note text NOT NULL, created_at timestamptz NOT NULL)`);
    const source = {
      name: 'bench', tables: ['public.bench_orders'], schemas: [], publication: 'sluice_bench', slot: 'sluice_bench',
      create_if_missing: true, heartbeat_interval_ms: 3_600_000, lag_warning_bytes: 2 ** 40, max_batch_changes: Number(process.env.BENCH_MAX_BATCH ?? 10_000),
      retention: DEFAULT_RETENTION,
    };
    await ensureSource(pool, source);
    await pool.query(`INSERT INTO sluice.sources (name, config) VALUES ('bench', $1)`, [JSON.stringify(source)]);
    // The ceiling's own slot, at the same starting point.
    await q.createSlot(pool, 'bench_ceiling');
    for (let i = 1; i <= consumers; i++) {
      const name = i === 1 ? 'bench' : `bench-${i}`;
      const consumerCfg = { name, source: 'bench', kind: 'pull', tables: ['public.bench_orders'], group_by: true,
        dead_letter_blocks_group: false, annotations: {}, pull: { ack_wait_ms: 30000, max_ack_pending: 10000, max_waiting: 20 } };
      await pool.query(`INSERT INTO sluice.consumers (name, source_name, kind, config) VALUES ($2, 'bench', 'pull', $1)`, [JSON.stringify(consumerCfg), name]);
    }

    const txs = Math.ceil(changes / 100);
    log(`capture bench (${consumers} consumer${consumers === 1 ? '' : 's'} on the table): writing a backlog of ${txs * 100} changes in ${txs} transactions of 100 rows…`);
    const t0 = Date.now();
    await pool.query(`DO $$ BEGIN
      FOR i IN 0..${txs - 1} LOOP
        INSERT INTO bench_orders
        SELECT g, g % 1000, 'pending', (g % 100000) / 100.0,
               repeat('x', 120) || g::text, '2026-11-23 20:15:01.123456+00'::timestamptz + g * interval '1 second'
          FROM generate_series(i * 100 + 1, i * 100 + 100) g;
        COMMIT;
      END LOOP; END $$`);
    const total = txs * 100;
    log(`  backlog written in ${((Date.now() - t0) / 1000).toFixed(1)} s; row text ≈ ${(await pool.query(`SELECT avg(length(t::text))::int AS n FROM bench_orders t`)).rows[0].n} bytes`);

    // Sluice first, so its peak RSS is its own (the ceiling's garbage would
    // otherwise still be in the heap), then the ceiling on its own slot.
    const registry = new ConsumerRegistry(pool);
    await registry.reload();
    const rss = rssSampler();
    const startRssMb = process.memoryUsage().rss / 1024 / 1024;
    const capture = new SourceCapture(source, { bufferPool: pool, sourceUrl: pgh.url, consumers: registry, log: quiet });
    await pool.query('CHECKPOINT');
    const bytes0 = BigInt((await pool.query(SLUICE_BYTES)).rows[0].b);
    const wal0 = (await pool.query(`SELECT pg_current_wal_lsn()::text AS l`)).rows[0].l as string;
    const pgCpu0 = serverCpuByRole(pgh.dataDir);
    const nodeCpu0 = process.cpuUsage();
    const s0 = Date.now();
    capture.start();
    const deadline = Date.now() + 20 * 60_000;
    while (capture.written < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const captureSeconds = (Date.now() - s0) / 1000;
    const peakRssMb = rss.stop() / 1024 / 1024;
    const nodeCpu = process.cpuUsage(nodeCpu0);
    const cpuLine = `CPU during the capture: node ${((nodeCpu.user + nodeCpu.system) / 1e6).toFixed(1)} s; postgres: ${cpuDelta(pgCpu0, serverCpuByRole(pgh.dataDir))}`;
    await capture.stop();
    const walBytes = Number((await pool.query(`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::bigint AS b`, [wal0])).rows[0].b);
    const tableBytes = Number(BigInt((await pool.query(SLUICE_BYTES)).rows[0].b) - bytes0);
    // Ceiling: the library alone, every message discarded.
    const endLsn = lsnToBigInt((await pool.query(`SELECT pg_current_wal_lsn()::text AS l`)).rows[0].l);
    let seen = 0;
    let ceilingStream: ReplicationStream;
    const c0 = Date.now();
    await new Promise<void>((resolve, reject) => {
      ceilingStream = new ReplicationStream({
        url: pgh.url, slot: 'bench_ceiling', publication: 'sluice_bench', startLsn: 0n,
        durableLsn: () => 0n,
        onEvent: (e) => {
          if (e.tag === 'insert') seen++;
          else if (e.tag === 'commit' && (seen >= total || e.endLsn >= endLsn)) resolve();
        },
      });
      ceilingStream.run().catch(reject);
    });
    const ceilingSeconds = (Date.now() - c0) / 1000;
    await ceilingStream!.stop();
    // The walsender may outlive the client for a moment; the slot is busy until it exits.
    for (let i = 0; i < 100; i++) {
      try {
        await pool.query(`SELECT pg_drop_replication_slot('bench_ceiling')`);
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }

    const stored = Number((await pool.query(`SELECT count(*) AS n FROM sluice.log`)).rows[0].n);
    const result = {
      changes: total,
      captureSeconds,
      captureRate: total / captureSeconds,
      ceilingSeconds,
      ceilingRate: seen / ceilingSeconds,
      ratio: (total / captureSeconds) / (seen / ceilingSeconds),
      peakRssMb,
      startRssMb,
      consumers,
      tableBytes,
      walBytes,
      bytesPerChange: (tableBytes + walBytes) / total,
    };
    log(`  ceiling (library alone, discarding): ${seen} changes in ${ceilingSeconds.toFixed(2)} s = ${Math.round(result.ceilingRate).toLocaleString('en')} changes/s`);
    log(`  sluice capture into the buffer:      ${total} changes in ${captureSeconds.toFixed(2)} s = ${Math.round(result.captureRate).toLocaleString('en')} changes/s (${stored} log rows stored)`);
    log(`  ratio to ceiling: ${(result.ratio * 100).toFixed(0)}%   peak RSS (Node process): ${peakRssMb.toFixed(0)} MB (${startRssMb.toFixed(0)} MB as it started)`);
    log(`  ${cpuLine}`);
    log(`  buffer bytes written by the capture: tables ${tableBytes} (heap, TOAST, indexes) + WAL ${walBytes} = ${result.bytesPerChange.toFixed(1)} bytes/change`);
    return result;
  } finally {
    await pool.end();
    await pgh.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runCaptureBench(Number(process.env.BENCH_CHANGES ?? 1_000_000));
}
