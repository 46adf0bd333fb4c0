// An eager VACUUM of the message buffer, which is a queue table.
import type { Pool } from '../db/pool.js';

// Arbitrary constant: "vacuum the buffer", so gateways take turns.
const VACUUM_LOCK_KEY = 7_346_221_004;
const BATCHES_MIN_DEAD_TUPLES = 5000;

/**
 * VACUUMs sluice.messages when at least `minDeadTuples` deleted or outdated
 * rows wait for it, and sluice.webhook_batches past 5,000 (or that, if lower), when
 * no other gateway is doing it. Acked and claimed rows leave dead entries at
 * the head of the queue's indexes, which every claim steps over until VACUUM
 * removes them (a pick of 100 went from 0.9 to 5.9 ms over 290k claims);
 * autovacuum's defaults wait for 20% of the table and check once a minute.
 * webhook_batches lives one row per request, and every webhook claim reads all
 * of a consumer's rows. Returns the dead tuples vacuumed, or null when nothing
 * ran.
 */
export async function vacuumBufferIfNeeded(pool: Pool, minDeadTuples: number): Promise<number | null> {
  const { rows } = await pool.query<{ relname: string; dead: string }>(
    `SELECT relname, n_dead_tup AS dead FROM pg_stat_user_tables WHERE schemaname = 'sluice' AND relname IN ('messages', 'webhook_batches')`,
  );
  const due = rows.filter((r) => Number(r.dead) >= (r.relname === 'messages' ? minDeadTuples : Math.min(minDeadTuples, BATCHES_MIN_DEAD_TUPLES)));
  if (due.length === 0) return null;
  const client = await pool.connect();
  try {
    const { rows: got } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [VACUUM_LOCK_KEY]);
    if (!got[0].ok) return null;
    try {
      // Fixed names from the list above, never user input.
      for (const r of due) await client.query(`VACUUM (ANALYZE) sluice.${r.relname === 'messages' ? 'messages' : 'webhook_batches'}`);
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [VACUUM_LOCK_KEY]);
    }
    return due.reduce((n, r) => n + Number(r.dead), 0);
  } finally {
    client.release();
  }
}
