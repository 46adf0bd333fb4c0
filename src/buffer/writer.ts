// Writes captured changes into sluice.messages. One statement per batch stores
// the rows, advances the source's durable position and wakes waiting readers, so
// the position can never be committed without the messages before it.
import type { Pool } from '../db/pool.js';

export interface BufferRow {
  consumerId: string;
  commitLsn: bigint;
  commitIdx: number;
  groupKey: string | null;
  payload: string;
}

export interface BatchWrite {
  sourceName: string;
  rows: BufferRow[];
  /** End LSN of the last complete transaction in this batch; null for a chunk of an unfinished one. */
  checkpoint: bigint | null;
  lastCommitAt: string | null;
}

// ON CONFLICT DO NOTHING: a change replayed after a crash (stored, not yet
// confirmed) is recognised by its (consumer, commit_lsn, commit_idx) and kept once.
// GREATEST: a replayed older batch never moves the position back.
const WRITE_BATCH = `
WITH ins AS (
  INSERT INTO sluice.messages (consumer_id, commit_lsn, commit_idx, group_key, payload)
  SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::int[], $4::text[], $5::text[])
  ON CONFLICT DO NOTHING
  RETURNING consumer_id
), pos AS (
  INSERT INTO sluice.source_positions AS p (source_name, confirmed_lsn, last_commit_at, updated_at)
  SELECT $6, '0/0'::pg_lsn + $7::numeric, $8::timestamptz, now() WHERE $7::numeric IS NOT NULL
  ON CONFLICT (source_name) DO UPDATE
    SET confirmed_lsn = GREATEST(p.confirmed_lsn, EXCLUDED.confirmed_lsn),
        last_commit_at = COALESCE(EXCLUDED.last_commit_at, p.last_commit_at),
        updated_at = now()
)
SELECT count(*)::int AS inserted, count(pg_notify('sluice_messages', c::text)) AS notified
FROM (SELECT DISTINCT consumer_id AS c FROM ins) d`;

export async function writeBatch(pool: Pool, batch: BatchWrite): Promise<void> {
  const n = batch.rows.length;
  const consumerIds = new Array<string>(n);
  const lsns = new Array<string>(n);
  const idxs = new Array<number>(n);
  const groups = new Array<string | null>(n);
  const payloads = new Array<string>(n);
  for (let i = 0; i < n; i++) {
    const r = batch.rows[i];
    consumerIds[i] = r.consumerId;
    lsns[i] = r.commitLsn.toString();
    idxs[i] = r.commitIdx;
    groups[i] = r.groupKey;
    payloads[i] = r.payload;
  }
  await pool.query(WRITE_BATCH, [
    consumerIds,
    lsns,
    idxs,
    groups,
    payloads,
    batch.sourceName,
    batch.checkpoint === null ? null : batch.checkpoint.toString(),
    batch.lastCommitAt,
  ]);
}

const READ_POSITION = `SELECT (confirmed_lsn - '0/0'::pg_lsn)::bigint::text AS lsn FROM sluice.source_positions WHERE source_name = $1`;

/** The durable position of a source, or null before its first write. */
export async function readPosition(pool: Pool, sourceName: string): Promise<bigint | null> {
  const { rows } = await pool.query<{ lsn: string }>(READ_POSITION, [sourceName]);
  return rows.length ? BigInt(rows[0].lsn) : null;
}
