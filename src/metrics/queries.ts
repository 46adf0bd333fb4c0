// The buffer's state a metrics scrape (and the console's GET /api/overview)
// reads: one statement for every source, one for every consumer, whatever
// their number (neither may cost a query per consumer). Cheaper than GET /api/consumers/{name}/stats, which
// also counts the changes not yet taken in: here those show only through the
// oldest pending age (the first change after the consumer's position, one
// index probe per consumer).
import type { Pool } from '../db/pool.js';

export interface SourceGauges {
  name: string;
  /** The durable position, as a byte offset; null before the first write. */
  position: number | null;
  /** The same position as Postgres prints an LSN ("16/B374D848"). */
  lsn: string | null;
  lag_seconds: number | null;
}

export interface ConsumerGauges {
  name: string;
  /** The source or stream it reads. */
  source: string;
  kind: string;
  state: string;
  pending: number;
  in_flight: number;
  dead_lettered: number;
  /** null when nothing is pending. */
  oldest_pending_age_seconds: number | null;
}

const SOURCES = `
SELECT s.name,
       (p.confirmed_lsn - '0/0'::pg_lsn)::float8 AS position,
       p.confirmed_lsn::text AS lsn,
       greatest(extract(epoch FROM now() - p.last_commit_at), 0)::float8 AS lag_seconds
  FROM sluice.sources s
  LEFT JOIN sluice.source_positions p ON p.source_name = s.name
 ORDER BY s.name`;

// A webhook consumer's messages in a batch out count as in flight (as in the
// stats endpoint, src/buffer/dead-letters.ts). A consumer reads the log of
// its source or stream (source_name names either).
const CONSUMERS = `
WITH msg AS (
  SELECT consumer_id,
         count(*) FILTER (WHERE state = 0 AND NOT (delivery_token IS NOT NULL AND visible_at > now())) AS waiting,
         count(*) FILTER (WHERE state = 0 AND delivery_token IS NOT NULL AND visible_at > now()) AS invisible,
         count(*) FILTER (WHERE state = 1) AS dead,
         min(created_at) FILTER (WHERE state = 0) AS oldest
    FROM sluice.messages GROUP BY consumer_id
), batched AS (
  SELECT consumer_id, sum(cardinality(lsns)) AS n FROM sluice.webhook_batches GROUP BY consumer_id
)
SELECT c.name, c.source_name AS source, c.kind, c.state,
       greatest(coalesce(m.waiting, 0) - coalesce(b.n, 0), 0)::float8 AS pending,
       (coalesce(m.invisible, 0) + coalesce(b.n, 0))::float8 AS in_flight,
       coalesce(m.dead, 0)::float8 AS dead_lettered,
       greatest(extract(epoch FROM now() - least(m.oldest, nxt.committed_at)), 0)::float8 AS oldest_pending_age_seconds
  FROM sluice.consumers c
  LEFT JOIN msg m ON m.consumer_id = c.id
  LEFT JOIN batched b ON b.consumer_id = c.id
  LEFT JOIN sluice.consumer_positions p ON p.consumer_id = c.id
  LEFT JOIN LATERAL (
    SELECT l.committed_at FROM sluice.log l
     WHERE l.source_no = coalesce((SELECT s.log_no FROM sluice.sources s WHERE s.name = c.source_name),
                                  (SELECT st.log_no FROM sluice.streams st WHERE st.name = c.source_name))
       AND (l.commit_lsn, l.commit_idx) > (p.commit_lsn, p.commit_idx)
       AND (l.for_consumer IS NULL OR l.for_consumer = c.id)
     ORDER BY l.commit_lsn, l.commit_idx LIMIT 1) nxt ON true
 ORDER BY c.name`;

// The console's overview counts, besides, the changes each consumer has not
// yet taken in from the log, as GET …/stats does, but reading at most
// BACKLOG_SCAN log entries past each consumer's position (an index range scan
// on (source_no, commit_lsn, commit_idx)): a caught-up consumer costs one
// probe, and one far behind costs a bounded scan and is reported as "at least".
export const BACKLOG_SCAN = 1000;
const BACKLOG = `
SELECT c.name, a.n::float8 AS ahead, (a.scanned >= $1) AS capped
  FROM sluice.consumers c
  JOIN sluice.consumer_positions p ON p.consumer_id = c.id
  CROSS JOIN LATERAL sluice.consumer_route(c.id) r
  CROSS JOIN LATERAL (
    SELECT count(*) AS scanned,
           count(*) FILTER (WHERE (x.schema_name || '.' || x.table_name) = ANY (r.tables)
                              AND (r.actions IS NULL OR x.action = ANY (r.actions))
                              AND (x.for_consumer IS NULL OR x.for_consumer = c.id)) AS n
      FROM (SELECT l.schema_name, l.table_name, l.action, l.for_consumer FROM sluice.log l
             WHERE l.source_no = r.source_no AND (l.commit_lsn, l.commit_idx) > (p.commit_lsn, p.commit_idx)
             ORDER BY l.commit_lsn, l.commit_idx LIMIT $1) x) a`;

/** Per consumer: changes past its position not yet taken in (among the first BACKLOG_SCAN log entries), and whether there may be more. */
export async function readConsumerBacklog(pool: Pool): Promise<Map<string, { ahead: number; capped: boolean }>> {
  const { rows } = await pool.query<{ name: string; ahead: number; capped: boolean }>(BACKLOG, [BACKLOG_SCAN]);
  return new Map(rows.map((r) => [r.name, { ahead: r.ahead, capped: r.capped }]));
}

export async function readSourceGauges(pool: Pool): Promise<SourceGauges[]> {
  return (await pool.query<SourceGauges>(SOURCES)).rows;
}

export async function readConsumerGauges(pool: Pool): Promise<ConsumerGauges[]> {
  return (await pool.query<ConsumerGauges>(CONSUMERS)).rows;
}
