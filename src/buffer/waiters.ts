// Long-polling receivers registered in sluice.pull_waiters, so that max_waiting
// counts the waiters of every gateway process (see migrations/0002_pull.sql).
import type { Pool } from '../db/pool.js';

const BEGIN = `SELECT sluice.pull_wait_begin($1, $2, $3, $4, $5) AS admitted`;
const END = `DELETE FROM sluice.pull_waiters WHERE waiter_id = $1`;

/**
 * Registers a waiter unless `max` already wait on the consumer. The row expires
 * by itself after `expiresMs`, so a process that dies mid-wait frees its slot.
 */
export async function beginWait(
  pool: Pool,
  w: { consumerId: string; waiterId: string; instanceId: string; max: number; expiresMs: number },
): Promise<boolean> {
  const { rows } = await pool.query<{ admitted: boolean }>(BEGIN, [
    w.consumerId,
    w.waiterId,
    w.instanceId,
    w.max,
    Math.ceil(w.expiresMs),
  ]);
  return rows[0].admitted;
}

export async function endWait(pool: Pool, waiterId: string): Promise<void> {
  await pool.query(END, [waiterId]);
}
