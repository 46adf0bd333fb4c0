// Eager VACUUMs of the buffer's queue tables.
import type { Pool } from '../db/pool.js';

type QueueTable = 'messages' | 'webhook_batches';

// Arbitrary constants, one per table: gateways take turns on a table, and the
// small table's frequent vacuum never waits behind the big one's.
const LOCK_KEYS: Record<QueueTable, number> = { messages: 7_346_221_004, webhook_batches: 7_346_221_005 };
// PARALLEL 0: the tables are a few MB, vacuumed every second or two under
// load (20-30 ms of CPU a run, from VACUUM VERBOSE in a drain): two
// background processes started per run for indexes of a few hundred pages
// are overhead on the machine the claims share.
const VACUUM: Record<QueueTable, string> = {
  messages: 'VACUUM (PARALLEL 0, ANALYZE) sluice.messages',
  webhook_batches: 'VACUUM (PARALLEL 0, ANALYZE) sluice.webhook_batches',
};
export const BATCHES_MIN_DEAD_TUPLES = 5000;
// A table holding many live rows (a long backlog taken in, dead letters) is
// vacuumed once its dead rows reach this share of them too: each VACUUM reads
// its indexes whole, so a fixed threshold would cost more as the table grows.
const LIVE_SHARE = 0.2;

/**
 * VACUUMs each table whose dead rows reached its threshold, unless another
 * gateway is vacuuming it. Returns the dead tuples of the tables vacuumed, or
 * null when none was.
 */
async function vacuumIfNeeded(pool: Pool, thresholds: Partial<Record<QueueTable, number>>): Promise<number | null> {
  const { rows } = await pool.query<{ relname: QueueTable; dead: string; live: string }>(
    `SELECT relname, n_dead_tup AS dead, n_live_tup AS live FROM pg_stat_user_tables WHERE schemaname = 'sluice' AND relname = ANY($1::text[])`,
    [Object.keys(thresholds)],
  );
  const due = rows.filter((r) => Number(r.dead) >= Math.max(thresholds[r.relname] ?? Infinity, Number(r.live) * LIVE_SHARE));
  if (due.length === 0) return null;
  const client = await pool.connect();
  try {
    let vacuumed = 0;
    let ran = false;
    for (const r of due) {
      const { rows: got } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [LOCK_KEYS[r.relname]]);
      if (!got[0].ok) continue;
      try {
        await client.query(VACUUM[r.relname]);
        vacuumed += Number(r.dead);
        ran = true;
      } finally {
        await client.query('SELECT pg_advisory_unlock($1)', [LOCK_KEYS[r.relname]]);
      }
    }
    return ran ? vacuumed : null;
  } finally {
    client.release();
  }
}

/**
 * VACUUMs sluice.messages when at least `minDeadTuples` deleted or outdated
 * rows wait for it (and a fifth of its live rows), and sluice.webhook_batches
 * past 5,000 (or that, if lower). Acked and claimed rows leave dead entries at
 * the head of the queue's indexes, which every claim steps over until VACUUM
 * removes them: the scans cannot mark them dead themselves while admissions
 * keep writing the same index pages. A webhook claim's first pick of 100 read
 * ~4,300 heap tuples to find its 800 live ones in a drain vacuumed every 100k
 * dead rows; every 10k, the drain ran 10-35% faster (docs/benchmarks.md).
 * Autovacuum's defaults wait for 20% of the table and check once a minute.
 */
export function vacuumBufferIfNeeded(pool: Pool, minDeadTuples: number): Promise<number | null> {
  return vacuumIfNeeded(pool, { messages: minDeadTuples, webhook_batches: Math.min(minDeadTuples, BATCHES_MIN_DEAD_TUPLES) });
}

/**
 * VACUUMs sluice.webhook_batches alone. It lives one row per request (thousands
 * a second with batch size 1), and every webhook claim reads all of a
 * consumer's rows through an index that keeps the dead ones until VACUUM; the
 * table is small, so vacuuming it every few seconds is cheap.
 */
export function vacuumBatchesIfNeeded(pool: Pool, minDeadTuples = BATCHES_MIN_DEAD_TUPLES): Promise<number | null> {
  return vacuumIfNeeded(pool, { webhook_batches: minDeadTuples });
}
