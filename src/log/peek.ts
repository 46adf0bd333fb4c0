// A consumer's latest retained changes, newest first, with where each stands
// in its delivery: what GET /api/consumers/{name}/messages shows. Reads only;
// nothing here takes a change in, claims or acks it.
//
// The log is read backwards from its end a chunk at a time, as the walks read
// it forwards (sluice.walk_log): a chunk is the source's newest rows before a
// key (an index range scan with its LIMIT), and only the rows the consumer
// would be routed (its tables and outbox streams, its actions, no other
// consumer's backfill rows) carry their payload, to be tested here against its
// where filter and subjects as a claim tests them. Reading stops once `limit`
// pass or MAX_READ rows were read, so a rarely matching consumer costs at most
// a few index scans, never the whole log.
import type { Pool } from '../db/pool.js';
import type { ConsumerFilter } from '../pipeline/filter/consumer-filter.js';

export type PeekStatus = 'delivered' | 'pending' | 'in_flight' | 'dead_lettered';

export interface PeekRow {
  /** int64 as decimal text. */
  commit_lsn: string;
  commit_idx: number;
  committed_at: Date | null;
  status: PeekStatus;
  /** Stored JSON text, without metadata.consumer (the renderer adds it). */
  payload: string;
}

interface ChunkRow {
  commit_lsn: string;
  commit_idx: number;
  committed_at: Date | null;
  table_name: string;
  payload: string | null;
  status: PeekStatus;
}

export const MAX_READ = 10_000;
const CHUNK = 500;

// Status, in one snapshot with the log: a row in sluice.messages is the
// change's delivery state (dead letter; out: received and not acked within
// its visibility, or in a webhook batch; else waiting). Without one, the
// change is done if the consumer's position is past it (taken in and acked,
// or discarded as a dead letter, or older than the consumer's start), and
// still to come if not.
const CHUNK_SQL = `
SELECT l.commit_lsn::text AS commit_lsn, l.commit_idx, l.committed_at, w.qualified AS table_name,
       CASE WHEN w.qualified = ANY (r.tables) AND (r.actions IS NULL OR l.action = ANY (r.actions))
                 AND (l.for_consumer IS NULL OR l.for_consumer = $1)
            THEN l.payload END AS payload,
       CASE WHEN m.state = 1 THEN 'dead_lettered'
            WHEN m.state IS NOT NULL AND ((m.delivery_token IS NOT NULL AND m.visible_at > now()) OR m.batch_id IS NOT NULL) THEN 'in_flight'
            WHEN m.state IS NOT NULL THEN 'pending'
            WHEN (l.commit_lsn, l.commit_idx) <= (p.commit_lsn, p.commit_idx) THEN 'delivered'
            ELSE 'pending' END AS status
  FROM sluice.consumer_route($1) r
  JOIN sluice.consumer_positions p ON p.consumer_id = $1
  CROSS JOIN LATERAL (
    SELECT l.commit_lsn, l.commit_idx, l.committed_at, l.schema_name, l.table_name, l.action, l.payload, l.for_consumer
      FROM sluice.log l
     WHERE l.source_no = r.source_no AND (l.commit_lsn, l.commit_idx) < ($2::bigint, $3::int)
     ORDER BY l.commit_lsn DESC, l.commit_idx DESC
     LIMIT $4) l
  CROSS JOIN LATERAL (SELECT l.schema_name || '.' || l.table_name AS qualified) w
  -- A probe per change (the primary key; LIMIT 1 keeps the planner from
  -- turning it into a join that reads every row of the consumer).
  LEFT JOIN LATERAL (
    SELECT m.state, m.delivery_token, m.visible_at, m.batch_id FROM sluice.messages m
     WHERE m.consumer_id = $1 AND m.commit_lsn = l.commit_lsn AND m.commit_idx = l.commit_idx LIMIT 1) m ON true
 ORDER BY l.commit_lsn DESC, l.commit_idx DESC`;

/** Up to `limit` of the consumer's latest changes that pass its filter (null: none), newest first. */
export async function peekMessages(pool: Pool, consumerId: string, limit: number, filter: ConsumerFilter | null): Promise<PeekRow[]> {
  const out: PeekRow[] = [];
  // After every real key: the first chunk is the log's end.
  let before: [string, number] = ['9223372036854775807', 2147483647];
  for (let read = 0; read < MAX_READ && out.length < limit; ) {
    // The first chunk about as long as what is wanted (most consumers take
    // most of their source's changes); the later ones longer, for the rest.
    const size = Math.min(read === 0 ? Math.max(limit, 100) : CHUNK, MAX_READ - read);
    const { rows } = await pool.query<ChunkRow>(CHUNK_SQL, [consumerId, ...before, size]);
    for (const r of rows) {
      if (r.payload === null || (filter && !filter.passes(r.table_name, r.payload))) continue;
      out.push({ commit_lsn: r.commit_lsn, commit_idx: r.commit_idx, committed_at: r.committed_at, status: r.status, payload: r.payload });
      if (out.length === limit) break;
    }
    if (rows.length < size) break;
    const last = rows[rows.length - 1];
    before = [last.commit_lsn, last.commit_idx];
    read += rows.length;
  }
  return out;
}
