// The latest retained change of some tables of a consumer's source: what
// "try a transform" runs on when no sample is given.
import type { Pool, PoolClient } from '../db/pool.js';

/** How far back the search looks: the log has no index by table, so a rare table is not searched for forever. */
export const LATEST_LOOKBACK = 100_000;

export interface LatestChange {
  /** int8 as decimal text. */
  commit_lsn: string;
  commit_idx: number;
  table: string;
  /** Stored JSON text (without metadata.consumer). */
  payload: string;
}

const LATEST = `SELECT l.commit_lsn::text, l.commit_idx, l.schema_name || '.' || l.table_name AS table, l.payload
  FROM (SELECT * FROM sluice.log
        WHERE source_no = (SELECT r.source_no FROM sluice.consumer_route($1) r)
        ORDER BY commit_lsn DESC, commit_idx DESC LIMIT ${LATEST_LOOKBACK}) l
  WHERE (l.schema_name || '.' || l.table_name) = ANY ($2::text[])
  LIMIT 1`;

/** Null when none of the last LATEST_LOOKBACK retained changes is of these tables. */
export async function latestChange(db: Pool | PoolClient, consumerId: string, tables: string[]): Promise<LatestChange | null> {
  const { rows } = await db.query<LatestChange>(LATEST, [consumerId, tables]);
  return rows[0] ?? null;
}
