// The buffer's side of backfills (sluice.backfills; migrations/0019_backfills.sql
// and 0020). A chunk's rows never come here: they wait in memory (staged.ts).
import { withTransaction, type Pool, type PoolClient } from '../db/pool.js';

type Q = { query: (sql: string, params?: unknown[]) => Promise<{ rows: any[]; rowCount?: number | null }> };

export type BackfillState = 'running' | 'done' | 'cancelled' | 'failed';

export interface BackfillRow {
  id: string;
  consumer_id: string;
  consumer_name: string;
  source_name: string;
  schema_name: string;
  table_name: string;
  key_columns: string[];
  start_column: string | null;
  start_from: string | null;
  chunk_size: number;
  max_rows_per_second: number | null;
  max_backlog: number;
  state: BackfillState;
  last_key: string[] | null;
  chunk_no: number;
  chunk_low_lsn: string | null;
  /** The low watermark of the last chunk stored. */
  last_low_lsn: string | null;
  rows_read: string;
  rows_sent: string;
  rows_estimate: string | null;
  error: string | null;
  created_at: Date;
  updated_at: Date;
  finished_at: Date | null;
}

const SELECT = `
SELECT b.id::text, b.consumer_id, c.name AS consumer_name, c.source_name, b.schema_name, b.table_name, b.key_columns,
       b.start_column, b.start_from, b.chunk_size, b.max_rows_per_second, b.max_backlog, b.state, b.last_key, b.chunk_no,
       b.chunk_low_lsn::text, b.last_low_lsn::text, b.rows_read::text, b.rows_sent::text, b.rows_estimate::text, b.error,
       b.created_at, b.updated_at, b.finished_at
FROM sluice.backfills b JOIN sluice.consumers c ON c.id = b.consumer_id`;

export interface NewBackfill {
  consumerId: string;
  schema: string;
  table: string;
  keyColumns: string[];
  startColumn: string | null;
  startFrom: string | null;
  chunkSize: number;
  maxRowsPerSecond: number | null;
  maxBacklog: number;
  estimate: number | null;
}

/** Creates backfills, all or none; a table with one running already: the name of that table. */
export async function createBackfills(pool: Pool, list: NewBackfill[]): Promise<{ ids: string[] } | { running: string }> {
  try {
    return await insertAll(pool, list);
  } catch (err) {
    if (err instanceof RunningAlready) return { running: err.table };
    throw err;
  }
}

class RunningAlready extends Error {
  constructor(readonly table: string) {
    super(`a backfill of ${table} is running`);
  }
}

async function insertAll(pool: Pool, list: NewBackfill[]): Promise<{ ids: string[] }> {
  return withTransaction(pool, (c) => insertBackfills(c, list));
}

/**
 * Inserts backfills in the caller's transaction; throws (rolling it back) when
 * one of a table is running already. A consumer created in the same
 * transaction has none running, so it never throws for it.
 */
export async function insertBackfills(c: PoolClient, list: NewBackfill[]): Promise<{ ids: string[] }> {
  const ids: string[] = [];
  for (const b of list) {
    const { rows } = await c.query<{ id: string }>(
      `INSERT INTO sluice.backfills (consumer_id, schema_name, table_name, key_columns, start_column, start_from,
                                     chunk_size, max_rows_per_second, max_backlog, rows_estimate)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
       ON CONFLICT (consumer_id, schema_name, table_name) WHERE state = 'running' DO NOTHING
       RETURNING id::text`,
      [b.consumerId, b.schema, b.table, b.keyColumns, b.startColumn, b.startFrom, b.chunkSize, b.maxRowsPerSecond, b.maxBacklog, b.estimate],
    );
    // Thrown: the transaction rolls back, so none of the list starts.
    if (rows.length === 0) throw new RunningAlready(`${b.schema}.${b.table}`);
    ids.push(rows[0].id);
  }
  return { ids };
}

export async function listBackfills(db: Q, consumerId: string): Promise<BackfillRow[]> {
  const { rows } = await db.query(`${SELECT} WHERE b.consumer_id = $1 ORDER BY b.id`, [consumerId]);
  return rows;
}

export async function getBackfill(db: Q, id: string): Promise<BackfillRow | null> {
  const { rows } = await db.query(`${SELECT} WHERE b.id = $1::bigint`, [id]);
  return rows[0] ?? null;
}

/** Running backfills of a source's consumers, oldest first. */
export async function runningBackfills(db: Q, sourceName: string): Promise<BackfillRow[]> {
  const { rows } = await db.query(`${SELECT} WHERE c.source_name = $1 AND b.state = 'running' ORDER BY b.id`, [sourceName]);
  return rows;
}

/** Cancels a running backfill (its staged chunk is dropped, so its watermark stores nothing); false if it was not running. */
export async function cancelBackfill(db: Q, id: string): Promise<boolean> {
  const { rows } = await db.query(
    `UPDATE sluice.backfills SET state = 'cancelled', chunk_low_lsn = NULL, finished_at = now(), updated_at = now()
     WHERE id = $1::bigint AND state = 'running' RETURNING id`,
    [id],
  );
  return rows.length > 0;
}

export async function failBackfill(db: Q, id: string, error: string): Promise<void> {
  await db.query(
    `UPDATE sluice.backfills SET state = 'failed', error = $2, chunk_low_lsn = NULL, finished_at = now(), updated_at = now()
     WHERE id = $1::bigint AND state = 'running'`,
    [id, error],
  );
}

/** The last chunk read nothing: the backfill is done (no watermark needed). */
export async function finishBackfill(db: Q, id: string): Promise<void> {
  await db.query(
    `UPDATE sluice.backfills SET state = 'done', chunk_low_lsn = NULL, finished_at = now(), updated_at = now()
     WHERE id = $1::bigint AND state = 'running'`,
    [id],
  );
}

/** What the buffer keeps of a chunk read (its rows wait in memory: src/backfill/staged.ts). */
export interface ChunkProgress {
  lowLsn: bigint;
  /** The last key of the chunk before (sealed or stored), null for the first: the chunk is stored only after that one. */
  afterKey: string[] | null;
  lastKey: string[];
  rows: number;
  final: boolean;
}

/**
 * Records a chunk as staged (replacing any staged before): its low watermark,
 * last key and size, stored as progress when its rows are. Returns its number,
 * or null when the backfill is no longer running.
 */
export async function stageChunk(pool: Pool, id: string, chunk: ChunkProgress): Promise<number | null> {
  const { rows } = await pool.query<{ chunk_no: number }>(
    `UPDATE sluice.backfills SET chunk_no = chunk_no + 1, chunk_low_lsn = $2::bigint, chunk_last_key = $3,
            chunk_rows = $4, chunk_final = $5, chunk_after_key = $6, updated_at = now()
     WHERE id = $1::bigint AND state = 'running' RETURNING chunk_no`,
    [id, chunk.lowLsn.toString(), chunk.lastKey, chunk.rows, chunk.final, chunk.afterKey],
  );
  return rows.length === 0 ? null : rows[0].chunk_no;
}

/**
 * Where a staged chunk stands: sealed by capture (and maybe stored since),
 * gone (replaced, or the backfill ended), or still waiting for its watermark.
 */
export async function chunkSealed(db: Q, id: string, chunk: number): Promise<'sealed' | 'gone' | 'waiting'> {
  const { rows } = await db.query(
    `SELECT chunk_no, chunk_low_lsn IS NULL AS unstaged, state FROM sluice.backfills WHERE id = $1::bigint`,
    [id],
  );
  if (rows.length === 0) return 'gone';
  const r = rows[0];
  if (r.state !== 'running' || r.chunk_no !== chunk) return 'gone';
  return r.unstaged ? 'sealed' : 'waiting';
}

/**
 * Drops the backfill's seals but those of chunks `keep` (being stored by this
 * process): the others' rows are gone (migrations/0028: sluice.backfill_unseal).
 * Returns how many were dropped.
 */
export async function unsealChunks(db: Q, id: string, keep: number[]): Promise<number> {
  const { rows } = await db.query('SELECT sluice.backfill_unseal($1::bigint, $2::int[]) AS n', [id, keep]);
  return rows[0].n;
}

/** Changes of the consumer's source not yet taken in by it, counted up to `limit`. */
export async function consumerBacklog(db: Q, consumerId: string, limit: number): Promise<number> {
  const { rows } = await db.query(
    `SELECT count(*)::int AS n FROM (
       SELECT 1 FROM sluice.consumer_positions p
       JOIN sluice.consumers c ON c.id = p.consumer_id
       JOIN sluice.sources s ON s.name = c.source_name
       JOIN sluice.log l ON l.source_no = s.log_no AND (l.commit_lsn, l.commit_idx) > (p.commit_lsn, p.commit_idx)
       WHERE p.consumer_id = $1 LIMIT $2) x`,
    [consumerId, limit],
  );
  return rows[0].n;
}
