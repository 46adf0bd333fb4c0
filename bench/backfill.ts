// Backfill: a table of N rows of ~200 bytes read into the log as read
// messages for one pull consumer (not draining: max_backlog 0, so what is
// measured is the backfill into the buffer), by the real runner beside a real capture,
// while one client writes to the same table as fast as it can (its rate is
// printed before and during, so the backfill's cost to the source shows).
// Prints rows/s, the writer's rates and the process's peak RSS; asserts nothing.
//   npx tsx bench/backfill.ts [rows] [chunk_size]
import { pathToFileURL } from 'node:url';
import { createBackfills } from '../src/backfill/queries.js';
import { planBackfills } from '../src/backfill/create.js';
import { consumerConfig, insertConsumer, sourceConfig, startCapture } from '../test/helpers/capture.js';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startEmbedded } from '../src/db/embedded.js';

export interface BackfillBenchResult {
  rows: number;
  chunkSize: number;
  rowsPerSecond: number;
  seconds: number;
  writerBefore: number;
  writerDuring: number;
  peakRssMb: number;
}

export async function runBackfillBench(rows = 1_000_000, chunkSize = 1000, log = console.log): Promise<BackfillBenchResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-'));
  chmodSync(dir, 0o755);
  const pgh = await startEmbedded({ dataDir: path.join(dir, 'pg'), persistent: false, extraFlags: ['-c', 'max_wal_size=4GB', '-c', 'shared_buffers=512MB'] });
  let peakRss = process.memoryUsage().rss;
  const rssTimer = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 100);
  try {
    const url = pgh.url;
    const capture = await (async () => {
      const { createPool } = await import('../src/db/pool.js');
      const setup = createPool(url, { max: 2 });
      await setup.query(`CREATE TABLE public.events (id bigint PRIMARY KEY, account uuid NOT NULL, kind text NOT NULL,
        amount numeric NOT NULL, payload text NOT NULL, created_at timestamptz NOT NULL)`);
      const fill0 = performance.now();
      await setup.query(`INSERT INTO public.events
        SELECT g, md5(g::text)::uuid, 'kind-' || (g % 17), (g % 100000) / 100.0, repeat(md5(g::text), 3), now() - g * interval '1 second'
        FROM generate_series(1, $1) g`, [rows]);
      await setup.query('VACUUM ANALYZE public.events');
      log(`backfill: ${rows.toLocaleString('en')} rows loaded in ${((performance.now() - fill0) / 1000).toFixed(1)} s`);
      await setup.end();
      return startCapture(url, sourceConfig('main', ['public.events']), []);
    })();
    const pool = capture.pool;
    const consumerId = await insertConsumer(pool, consumerConfig('bench', 'main', ['public.events']));

    // The writer: single-row updates, one client, back to back.
    let writes = 0;
    let writing = true;
    const writer = (async () => {
      while (writing) {
        await pool.query('UPDATE public.events SET amount = amount + 1 WHERE id = $1', [1 + Math.floor(Math.random() * rows)]);
        writes++;
      }
    })();
    await new Promise((r) => setTimeout(r, 3000));
    const writerBefore = writes / 3;

    const planned = await planBackfills({ id: consumerId, config: { tables: ['public.events'] } }, { chunk_size: chunkSize, max_backlog: 0 }, url);
    if (!planned.ok) throw new Error(JSON.stringify(planned.issues));
    const writes0 = writes;
    const t0 = performance.now();
    await createBackfills(pool, planned.backfills);
    for (;;) {
      const { rows: r } = await pool.query(`SELECT state, rows_read::int AS n FROM sluice.backfills`);
      if (r[0].state !== 'running') break;
      await new Promise((res) => setTimeout(res, 50));
    }
    const seconds = (performance.now() - t0) / 1000;
    const writerDuring = (writes - writes0) / seconds;
    writing = false;
    await writer;
    const { rows: done } = await pool.query(`SELECT rows_read::int AS n, rows_sent::int AS s FROM sluice.backfills`);
    const result = {
      rows: done[0].n,
      chunkSize,
      rowsPerSecond: Math.round(done[0].n / seconds),
      seconds,
      writerBefore: Math.round(writerBefore),
      writerDuring: Math.round(writerDuring),
      peakRssMb: Math.round(peakRss / 1048576),
    };
    log(`backfill: ${result.rows.toLocaleString('en')} rows (${done[0].s.toLocaleString('en')} sent) in ${seconds.toFixed(1)} s: ${result.rowsPerSecond.toLocaleString('en')} rows/s, chunk ${chunkSize}; writer ${result.writerBefore}/s before, ${result.writerDuring}/s during; peak RSS ${result.peakRssMb} MB`);
    await capture.stop();
    return result;
  } finally {
    clearInterval(rssTimer);
    await pgh.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [rows, chunk] = process.argv.slice(2).map(Number);
  await runBackfillBench(rows || undefined, chunk || undefined);
}
