// What GET /metrics costs. Prints figures, asserts nothing.
//   1. A scrape with 500 consumers (half pull, half webhook) on one source whose
//      log holds 100,000 changes, each consumer with 100 messages taken in
//      (some in flight, some dead): the time of Metrics.text(), 30 scrapes.
//   2. The push batch-1 drain (bench/push.ts: 100,000 changes, 10k groups,
//      max_in_flight 128) with a scrape every second beside it, against the
//      same drain without, alternating: delivery rate and the gateway's CPU
//      per 1,000 messages.
//   npx tsx bench/metrics.ts [consumers] [rounds]
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { startEmbedded } from '../src/db/embedded.js';
import { migrate } from '../src/db/migrate.js';
import { createPool } from '../src/db/pool.js';
import { Metrics } from '../src/metrics/metrics.js';
import { pct } from './latency.js';
import { runPushBench } from './push.js';

export interface MetricsBenchResult {
  consumers: number;
  scrapeP50Ms: number;
  scrapeMaxMs: number;
  push: Array<{ scraping: boolean; perSecond: number; gatewayCpuMsPer1k: number | null }>;
}

const CONSUMERS = `
INSERT INTO sluice.consumers (name, source_name, kind, config)
SELECT 'c' || i, 'src', k.kind,
       jsonb_build_object('name', 'c' || i, 'source', 'src', 'kind', k.kind, 'tables', '["public.orders"]'::jsonb,
                          'group_by', true, 'dead_letter_blocks_group', false, 'annotations', '{}'::jsonb)
  FROM generate_series(1, $1::int) i CROSS JOIN LATERAL (SELECT CASE WHEN i % 2 = 0 THEN 'pull' ELSE 'webhook' END AS kind) k`;
// 100 messages per consumer: 80 waiting, 15 in flight, 5 dead.
const MESSAGES = `
INSERT INTO sluice.messages (consumer_id, commit_lsn, commit_idx, group_key, state, delivery_token, visible_at, created_at)
SELECT c.id, g, 0, 'g' || g, CASE WHEN g > 95 THEN 1 ELSE 0 END,
       CASE WHEN g BETWEEN 81 AND 95 THEN 1 END, CASE WHEN g BETWEEN 81 AND 95 THEN now() + interval '1 hour' ELSE '-infinity' END,
       now() - interval '1 minute'
  FROM sluice.consumers c, generate_series(1, 100) g`;
const LOG = `
INSERT INTO sluice.log (source_no, commit_lsn, commit_idx, schema_name, table_name, action, group_key, committed_at, payload)
SELECT s.log_no, g, 0, 'public', 'orders', 'insert', 'g' || g, now() - interval '1 minute', '{}'
  FROM sluice.sources s, generate_series(1, 100000) g WHERE s.name = 'src'`;

export async function runMetricsBench(consumers = 500, rounds = 2, log = console.log): Promise<MetricsBenchResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-metrics-'));
  chmodSync(dir, 0o755);
  const pg = await startEmbedded({ dataDir: path.join(dir, 'pg'), persistent: false });
  const pool = createPool(pg.url, { max: 4 });
  const scrapes: number[] = [];
  try {
    await migrate(pool);
    await pool.query(`INSERT INTO sluice.sources (name, config) VALUES ('src', '{"name": "src", "tables": ["public.orders"]}')`);
    await pool.query(`SELECT sluice.log_cover(log_no, 1, 100000, 3600) FROM sluice.sources WHERE name = 'src'`);
    await pool.query(LOG);
    await pool.query(CONSUMERS, [consumers]);
    // From the start of the log: every consumer's oldest pending age is a probe that finds a row.
    await pool.query('UPDATE sluice.consumer_positions SET commit_lsn = 0, commit_idx = -1');
    await pool.query(MESSAGES);
    await pool.query('VACUUM ANALYZE');
    const metrics = new Metrics();
    for (let i = 0; i < 35; i++) {
      const t = performance.now();
      const text = await metrics.text({ pool });
      if (i >= 5) scrapes.push(performance.now() - t);
      if (i === 0 && !text.includes('sluice_consumer_pending_messages{consumer="c1"} 80')) throw new Error('unexpected scrape');
    }
  } finally {
    await pool.end();
    await pg.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  scrapes.sort((a, b) => a - b);
  const r = (x: number) => Math.round(x * 10) / 10;
  log(`metrics: a scrape with ${consumers} consumers (100 messages each, a 100,000-change log) takes p50 ${r(pct(scrapes, 0.5))} ms, max ${r(scrapes[scrapes.length - 1])} ms (30 scrapes)`);

  // Push batch 1, alternating: without, with a scrape every second, …
  const push: MetricsBenchResult['push'] = [];
  for (let i = 0; i < rounds * 2; i++) {
    const scraping = i % 2 === 1;
    const res = await runPushBench({ messages: 100_000, groups: 10_000, batchSize: 1, maxInFlight: 128, scrapeEveryMs: scraping ? 1000 : undefined });
    push.push({ scraping, perSecond: res.perSecond, gatewayCpuMsPer1k: res.cpuMsPer1k?.gateway ?? null });
    log(`metrics: push batch 1, ${scraping ? 'scraped every second' : 'no scrape'}: ${res.perSecond.toLocaleString('en')}/s, gateway CPU ${res.cpuMsPer1k?.gateway ?? '?'} ms per 1,000`);
  }
  return { consumers, scrapeP50Ms: r(pct(scrapes, 0.5)), scrapeMaxMs: r(scrapes[scrapes.length - 1]), push };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [consumers, rounds] = process.argv.slice(2).map(Number);
  await runMetricsBench(consumers || undefined, rounds || undefined);
}
