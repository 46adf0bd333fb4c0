// Reading the attempt log and endpoint health (attempts API), and pruning the
// log (scheduled job).
import type { Pool } from '../db/pool.js';

export type AttemptOutcome = 'delivered' | 'retry' | 'dead_letter' | 'paused';

export interface AttemptRow {
  /** bigint as decimal text: the page cursor. */
  id: string;
  batch_id: string;
  attempt: number;
  started_at: Date;
  duration_ms: number;
  status: number | null;
  outcome: AttemptOutcome;
  error: string | null;
  response_excerpt: string | null;
  message_count: number;
  instance_id: string | null;
}

export interface HealthRow {
  last_success_at: Date | null;
  last_failure_at: Date | null;
  first_failure_at: Date | null;
  consecutive_failures: number;
  last_error: string | null;
}

export interface AttemptFilter {
  /** succeeded: delivered; failed: anything else. */
  status?: 'succeeded' | 'failed';
  httpStatus?: number;
  /** Attempts older than this id (the previous page's next_cursor). */
  before?: string;
  limit: number;
}

// Newest first, paged by id through the (consumer_id, id) index.
const LIST = `SELECT id, batch_id, attempt, started_at, duration_ms, status, outcome, error, response_excerpt, message_count, instance_id
  FROM sluice.webhook_attempts
  WHERE consumer_id = $1 AND id < $2::bigint
    AND ($3::text IS NULL OR (outcome = 'delivered') = ($3::text = 'succeeded'))
    AND ($4::int IS NULL OR status = $4::int)
  ORDER BY id DESC
  LIMIT $5`;

const INT64_MAX = '9223372036854775807';

export async function listAttempts(pool: Pool, consumerId: string, f: AttemptFilter): Promise<AttemptRow[]> {
  const { rows } = await pool.query<AttemptRow>(LIST, [consumerId, f.before ?? INT64_MAX, f.status ?? null, f.httpStatus ?? null, f.limit]);
  return rows;
}

export async function getHealth(pool: Pool, consumerId: string): Promise<HealthRow | null> {
  const { rows } = await pool.query<HealthRow>(
    `SELECT last_success_at, last_failure_at, first_failure_at, consecutive_failures, last_error
     FROM sluice.webhook_health WHERE consumer_id = $1`,
    [consumerId],
  );
  return rows[0] ?? null;
}

// In slices, so a prune after a busy week never holds one huge delete.
const PRUNE_SLICE = `DELETE FROM sluice.webhook_attempts WHERE id IN (
    SELECT id FROM sluice.webhook_attempts WHERE started_at < now() - $1::float8 * interval '1 millisecond' LIMIT $2)`;

/** Deletes attempts older than `retentionMs`; returns how many. Bounded: at most maxSlices slices. */
export async function pruneAttempts(pool: Pool, retentionMs: number, slice = 10_000, maxSlices = 1000): Promise<number> {
  let total = 0;
  for (let i = 0; i < maxSlices; i++) {
    const n = (await pool.query(PRUNE_SLICE, [retentionMs, slice])).rowCount ?? 0;
    total += n;
    if (n < slice) break;
  }
  return total;
}
