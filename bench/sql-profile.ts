// Where Postgres spends its time during a benchmark: runs the pull or push
// benchmark against an embedded Postgres with pg_stat_statements (nested
// statements inside the plpgsql claims included) and prints the top statements
// by total time. A profiling aid, not part of `npm run bench`.
//   npx tsx bench/sql-profile.ts pull|pull-where|push-100|push-1|push-1001 [messages]
// (push-1001: batch 100 over 1,001 groups; pull-where: the pull drain with
// bench/filters.ts's 3-condition where, which every change passes)
// PROFILE_EXPLAIN=<ms> also logs the plans of statements slower than that
// (auto_explain, nested ones included) to sluice-plans.log in the temp folder.
import { appendFileSync, chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startEmbedded } from '../src/db/embedded.js';
import { createPool } from '../src/db/pool.js';
import { PULL_WHERE_PATCH } from './filters.js';
import { runPullBench } from './pull.js';
import { runPushBench } from './push.js';

const which = process.argv[2] ?? 'pull';
const messages = Number(process.argv[3] ?? 200_000);
const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-prof-'));
chmodSync(dir, 0o755);
const explainMs = process.env.PROFILE_EXPLAIN;
const plans = path.join(os.tmpdir(), 'sluice-plans.log');
const pg = await startEmbedded({
  dataDir: path.join(dir, 'pg'),
  persistent: false,
  extraFlags: [
    '-c', `shared_preload_libraries=pg_stat_statements${explainMs ? ',auto_explain' : ''}`,
    '-c', 'pg_stat_statements.track=all', '-c', 'pg_stat_statements.track_planning=on',
    ...(explainMs ? ['-c', `auto_explain.log_min_duration=${explainMs}`, '-c', 'auto_explain.log_nested_statements=on', '-c', 'auto_explain.log_analyze=on'] : []),
  ],
  onLog: explainMs ? (line) => appendFileSync(plans, `${line}\n`) : undefined,
});
const pool = createPool(pg.url, { max: 2 });
try {
  await pool.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  const reset = () => pool.query('SELECT pg_stat_statements_reset()');
  if (which === 'pull' || which === 'pull-where') {
    const consumerPatch = which === 'pull-where' ? PULL_WHERE_PATCH : undefined;
    await runPullBench({ databaseUrl: pg.url, messages, consumerPatch, log: (l) => { console.log(l); if (l.startsWith('setup:')) void reset(); } });
  } else {
    const batchSize = which === 'push-1' ? 1 : 100;
    const r = await runPushBench({ url: pg.url, messages, groups: which === 'push-1001' ? 1001 : 10_000, batchSize, maxInFlight: batchSize === 1 ? 128 : 8, vacuumJob: true });
    console.log(`${r.perSecond}/s`, r.cpuMsPer1k);
  }
  const { rows } = await pool.query(
    `SELECT round(total_exec_time)::int AS ms, round(total_plan_time)::int AS plan_ms, calls, round(mean_exec_time::numeric, 3) AS mean, rows,
            shared_blks_hit + shared_blks_read AS blks, wal_bytes::bigint AS wal, left(regexp_replace(query, '\\s+', ' ', 'g'), 160) AS q
     FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 25`,
  );
  console.log('exec ms', 'plan ms', 'calls', 'mean ms', 'rows', 'WAL bytes', 'statement');
  for (const r of rows) console.log(String(r.ms).padStart(7), String(r.plan_ms).padStart(7), String(r.calls).padStart(8), String(r.mean).padStart(8), String(r.rows).padStart(9), String(r.wal).padStart(11), r.q);
  // Row traffic on the delivery tables (since the server started: setup included).
  await pool.query('SELECT pg_stat_force_next_flush()');
  const tables = await pool.query(
    `SELECT relname, n_tup_ins AS ins, n_tup_upd AS upd, n_tup_hot_upd AS hot, n_tup_del AS del, n_dead_tup AS dead, vacuum_count + autovacuum_count AS vacuums
     FROM pg_stat_user_tables WHERE schemaname = 'sluice' AND relname IN ('messages', 'webhook_batches', 'claim_cursors', 'consumer_positions') ORDER BY relname`,
  );
  console.table(tables.rows);
} finally {
  await pool.end();
  await pg.stop();
  rmSync(dir, { recursive: true, force: true });
}
