// An eager VACUUM of the message buffer, which is a queue table.
import type { Pool } from '../db/pool.js';

// Arbitrary constant: "vacuum the buffer", so gateways take turns.
const VACUUM_LOCK_KEY = 7_346_221_004;

/**
 * VACUUMs sluice.messages when at least `minDeadTuples` deleted or outdated
 * rows wait for it, and no other gateway is doing it. Acked and claimed rows
 * leave dead entries at the head of the queue's indexes, which every claim
 * steps over until VACUUM removes them (a pick of 100 went from 0.9 to 5.9 ms
 * over 290k claims); autovacuum's defaults wait for 20% of the table and check
 * once a minute. Returns the dead tuples seen, or null when it did not run.
 */
export async function vacuumBufferIfNeeded(pool: Pool, minDeadTuples: number): Promise<number | null> {
  const { rows } = await pool.query<{ dead: string }>(
    `SELECT n_dead_tup AS dead FROM pg_stat_user_tables WHERE schemaname = 'sluice' AND relname = 'messages'`,
  );
  const dead = Number(rows[0]?.dead ?? 0);
  if (dead < minDeadTuples) return null;
  const client = await pool.connect();
  try {
    const { rows: got } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [VACUUM_LOCK_KEY]);
    if (!got[0].ok) return null;
    try {
      await client.query('VACUUM (ANALYZE) sluice.messages');
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [VACUUM_LOCK_KEY]);
    }
    return dead;
  } finally {
    client.release();
  }
}
