// Retention: the cost of dropping a retention window of N changes (one log
// partition filled with INSERT … SELECT generate_series), timed as one run of
// the retention job (plan, horizon, DETACH PARTITION … CONCURRENTLY, DROP
// TABLE), and the dead rows it leaves in the log (none: nothing to VACUUM).
// Prints figures; asserts nothing.
//   npx tsx bench/retention.ts [changes]
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { startEmbedded } from '../src/db/embedded.js';
import { migrate } from '../src/db/migrate.js';
import { createPool } from '../src/db/pool.js';
import { RetentionJob } from '../src/log/retention.js';
import { createConsumer, insertSeries, testSource } from '../test/helpers/buffer.js';

export interface RetentionBenchResult {
  changes: number;
  partitionBytes: number;
  fillSeconds: number;
  /** The whole job run that dropped the window. */
  dropMs: number;
  /** Dead rows left in the log's partitions afterwards. */
  deadRows: number;
}

export async function runRetentionBench(changes = 1_000_000, log = console.log): Promise<RetentionBenchResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-retention-'));
  chmodSync(dir, 0o755);
  const embedded = await startEmbedded({
    dataDir: path.join(dir, 'pg'),
    persistent: false,
    extraFlags: ['-c', 'shared_buffers=512MB', '-c', 'max_wal_size=4GB'],
  });
  const pool = createPool(embedded.url, { max: 4, name: 'sluice-bench-retention' });
  try {
    await migrate(pool);
    const consumerId = await createConsumer(pool, { name: 'bench-retention' });
    const source = testSource('bench-retention');
    const fillStart = performance.now();
    const chunk = 250_000;
    for (let at = 0; at < changes; at += chunk) await insertSeries(pool, consumerId, 1_000 + at, Math.min(chunk, changes - at), 1000);
    const fillSeconds = (performance.now() - fillStart) / 1000;
    const [window] = (await pool.query('SELECT source_no, lo, hi, pg_total_relation_size(format($$sluice.%I$$, relname)::regclass) AS bytes FROM sluice.log_partitions')).rows;
    // Capture moved on: a newer partition, confirmed past the window, which the consumer has taken in and acked.
    await pool.query('SELECT sluice.log_cover($1, $2, $2, 3600)', [window.source_no, window.hi]);
    await pool.query(`INSERT INTO sluice.source_positions (source_name, confirmed_lsn) VALUES ($1, '0/0'::pg_lsn + $2::numeric)`, [source, window.hi]);
    await pool.query('UPDATE sluice.consumer_positions SET commit_lsn = $2, commit_idx = -1 WHERE consumer_id = $1', [consumerId, window.hi]);
    // Expired: a retention of one millisecond.
    await pool.query(`UPDATE sluice.sources SET config = config || '{"retention": {"max_age_ms": 1}}' WHERE name = $1`, [source]);
    await pool.query('CHECKPOINT');
    log(`retention: ${changes.toLocaleString('en')} changes (${(Number(window.bytes) / 2 ** 20).toFixed(0)} MiB) in one partition, filled in ${fillSeconds.toFixed(1)} s`);

    const job = new RetentionJob(pool, { log: { info: () => {}, warn: (o, m) => log(`warn: ${m} ${JSON.stringify(o)}`), error: (o, m) => log(`error: ${m} ${JSON.stringify(o)}`) } });
    const start = performance.now();
    const run = await job.run();
    const dropMs = performance.now() - start;
    const dropped = run?.sources.find((s) => s.source === source)?.dropped ?? 0;
    if (dropped !== 1) throw new Error(`bench: expected the window's partition dropped, got ${JSON.stringify(run)}`);
    const left = (await pool.query('SELECT count(*)::int AS n FROM sluice.log')).rows[0].n;
    const dead = (await pool.query(`SELECT coalesce(sum(n_dead_tup), 0)::int AS n FROM pg_stat_user_tables WHERE schemaname = 'sluice' AND relname LIKE 'log\\_%'`)).rows[0].n;
    log(`retention: dropped the window in ${dropMs.toFixed(0)} ms (one job run); ${left} changes left in the log, ${dead} dead rows (no VACUUM needed)`);
    return { changes, partitionBytes: Number(window.bytes), fillSeconds, dropMs, deadRows: dead };
  } finally {
    await pool.end().catch(() => {});
    await embedded.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [changes] = process.argv.slice(2).map(Number);
  await runRetentionBench(changes || undefined);
}
