// Dead letters (state 1) and per-consumer counts, for the management API.
// A dead letter is named by its commit position, which never changes.
import type { Pool } from '../db/pool.js';
import { withTransaction } from '../db/pool.js';

export interface MessageKey {
  /** int64 as decimal text. */
  commit_lsn: string;
  commit_idx: number;
}

export interface DeadLetter extends MessageKey {
  group_key: string | null;
  deliver_count: number;
  last_delivered_at: Date | null;
  last_error: string | null;
  created_at: Date;
  /** Stored JSON text, without metadata.consumer (see withConsumer). */
  payload: string;
}

export interface ConsumerStats {
  /** Waiting to be delivered (never delivered, nacked, or visibility ran out). */
  pending: number;
  /** Delivered and not yet acked, visibility still running (webhook: in a batch sent or awaiting its retry). */
  in_flight: number;
  dead_lettered: number;
  /** Age of the oldest message not yet acked (dead letters aside); null when there is none. */
  oldest_pending_age_ms: number | null;
  /** Counted with a scan limit that was reached: `pending` is a lower bound. */
  pending_at_least: boolean;
}

// The payload is the change's, in the log (migrations/0010_log.sql).
const LIST = `SELECT m.commit_lsn, m.commit_idx, m.group_key, m.deliver_count, m.last_delivered_at, m.last_error, m.created_at, l.payload
  FROM sluice.messages m
  JOIN sluice.log l ON l.source_no = (SELECT r.source_no FROM sluice.consumer_route($1) r)
    AND l.commit_lsn = m.commit_lsn AND l.commit_idx = m.commit_idx
  WHERE m.consumer_id = $1 AND m.state = 1 AND (m.commit_lsn, m.commit_idx) > ($2::bigint, $3::int)
  ORDER BY m.commit_lsn, m.commit_idx
  LIMIT $4`;

// Retry must not race a claim: the claim lock (same key as sluice.claim_messages)
// keeps a claim from handing out a later message of a group while its earlier,
// just-retried message becomes pending again.
const LOCK_CLAIMS = `SELECT pg_advisory_xact_lock(736001, hashtext($1::text))`;

const RETRY_KEYS = `UPDATE sluice.messages m
  SET state = 0, deliver_count = 0, delivery_token = NULL, visible_at = '-infinity', last_error = NULL
  FROM unnest($2::bigint[], $3::int[]) AS k(lsn, idx)
  WHERE m.consumer_id = $1 AND m.commit_lsn = k.lsn AND m.commit_idx = k.idx AND m.state = 1`;
const RETRY_ALL = `UPDATE sluice.messages
  SET state = 0, deliver_count = 0, delivery_token = NULL, visible_at = '-infinity', last_error = NULL
  WHERE consumer_id = $1 AND state = 1`;
const NOTIFY = `SELECT pg_notify('sluice_messages', $1::text)`;
// Retried rows are never-delivered again, usually below the claim cursor
// (migrations/0002_pull.sql): the next claim must scan from the start.
const RESET_CURSOR = `DELETE FROM sluice.claim_cursors WHERE consumer_id = $1`;

const DISCARD_KEYS = `DELETE FROM sluice.messages m
  USING unnest($2::bigint[], $3::int[]) AS k(lsn, idx)
  WHERE m.consumer_id = $1 AND m.commit_lsn = k.lsn AND m.commit_idx = k.idx AND m.state = 1`;
const DISCARD_ALL = `DELETE FROM sluice.messages WHERE consumer_id = $1 AND state = 1`;

// One pass over the consumer's rows, and over the log after its position
// (changes not yet taken in): stats are for dashboards, not the hot path.
// A webhook consumer's messages in a batch out (sluice.webhook_batches: in
// flight or awaiting a retry) count as in flight; its rows never carry a
// delivery token, as a pull consumer's never are in a batch. Ages count from
// the change's commit. $2, when not null, bounds the log entries read past the
// position (LIMIT NULL reads them all): a console polling a consumer far
// behind must not count millions of entries every few seconds.
const BATCHED = `(SELECT coalesce(sum(cardinality(lsns)), 0) FROM sluice.webhook_batches WHERE consumer_id = $1)`;
const STATS = `WITH route AS (
    SELECT r.source_no, r.tables, r.actions, p.commit_lsn, p.commit_idx
    FROM sluice.consumer_route($1) r, sluice.consumer_positions p WHERE p.consumer_id = $1
  ), ahead AS (
    SELECT count(*) FILTER (WHERE x.routed) AS n, count(*) AS scanned, min(x.committed_at) FILTER (WHERE x.routed) AS oldest FROM (
      SELECT l.committed_at,
             (l.schema_name || '.' || l.table_name) = ANY (r.tables)
               AND (r.actions IS NULL OR l.action = ANY (r.actions))
               AND (l.for_consumer IS NULL OR l.for_consumer = $1) AS routed
      FROM route r
      JOIN sluice.log l ON l.source_no = r.source_no AND (l.commit_lsn, l.commit_idx) > (r.commit_lsn, r.commit_idx)
      ORDER BY l.commit_lsn, l.commit_idx LIMIT $2) x
  ), mine AS (
    SELECT
      count(*) FILTER (WHERE state = 0 AND NOT (delivery_token IS NOT NULL AND visible_at > now())) AS pending,
      count(*) FILTER (WHERE state = 0 AND delivery_token IS NOT NULL AND visible_at > now()) AS in_flight,
      count(*) FILTER (WHERE state = 1) AS dead,
      min(created_at) FILTER (WHERE state = 0) AS oldest
    FROM sluice.messages WHERE consumer_id = $1
  )
  SELECT (mine.pending - ${BATCHED} + coalesce(ahead.n, 0))::float8 AS pending,
    (mine.in_flight + ${BATCHED})::float8 AS in_flight,
    mine.dead::float8 AS dead_lettered,
    (extract(epoch FROM now() - least(mine.oldest, ahead.oldest)) * 1000)::float8 AS oldest_pending_age_ms,
    coalesce(ahead.scanned >= $2, false) AS pending_at_least
  FROM mine LEFT JOIN ahead ON true`;

export async function listDeadLetters(
  pool: Pool,
  consumerId: string,
  opts: { limit: number; after?: MessageKey },
): Promise<DeadLetter[]> {
  // (−2^63, −2^31) precedes every real position, so "no cursor" is the same query.
  const after = opts.after ?? { commit_lsn: '-9223372036854775808', commit_idx: -2147483648 };
  const { rows } = await pool.query<DeadLetter>(LIST, [consumerId, after.commit_lsn, after.commit_idx, opts.limit]);
  return rows;
}

function keyArrays(keys: readonly MessageKey[]): [string[], number[]] {
  return [keys.map((k) => k.commit_lsn), keys.map((k) => k.commit_idx)];
}

/** Back to pending, deliver_count 0, visible at once; returns how many. They keep their commit position, so their order. */
export async function retryDeadLetters(pool: Pool, consumerId: string, keys: readonly MessageKey[] | 'all'): Promise<number> {
  return withTransaction(pool, async (c) => {
    await c.query(LOCK_CLAIMS, [consumerId]);
    const res =
      keys === 'all' ? await c.query(RETRY_ALL, [consumerId]) : await c.query(RETRY_KEYS, [consumerId, ...keyArrays(keys)]);
    const n = res.rowCount ?? 0;
    if (n > 0) {
      await c.query(RESET_CURSOR, [consumerId]);
      // Delivered with the commit: long-pollers in every process re-check.
      await c.query(NOTIFY, [consumerId]);
    }
    return n;
  });
}

/** Deletes dead letters; returns how many. */
export async function discardDeadLetters(pool: Pool, consumerId: string, keys: readonly MessageKey[] | 'all'): Promise<number> {
  const res =
    keys === 'all'
      ? await pool.query(DISCARD_ALL, [consumerId])
      : await pool.query(DISCARD_KEYS, [consumerId, ...keyArrays(keys)]);
  return res.rowCount ?? 0;
}

/** `scanLimit`: read at most this many log entries past the position (else all of them). */
export async function consumerStats(pool: Pool, consumerId: string, scanLimit?: number): Promise<ConsumerStats> {
  const { rows } = await pool.query<ConsumerStats>(STATS, [consumerId, scanLimit ?? null]);
  const r = rows[0];
  return {
    pending: r.pending,
    in_flight: r.in_flight,
    dead_lettered: r.dead_lettered,
    oldest_pending_age_ms: r.oldest_pending_age_ms === null ? null : Math.max(0, Math.round(r.oldest_pending_age_ms)),
    pending_at_least: r.pending_at_least,
  };
}
