// Writes captured changes into sluice.messages. Rows go in by COPY (measured: a
// 5,000-row batch of ~550-byte payloads loads at ~120k rows/s by COPY, ~33k by
// INSERT … unnest($n::text[]), ~53k by json_to_recordset: array-literal parsing
// dominated), and the source's durable position is advanced inside the same
// transaction, so it can never be committed without the messages before it.
//
// COPY has no ON CONFLICT. Duplicates are prevented instead by clearTail(): only
// one process can stream a slot, and on every (re)start it deletes the rows a
// previous session wrote past the durable position (chunks of a transaction whose
// commit was not yet stored); they are then captured again, once.
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
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
  /**
   * Awaited after the rows are sent and before anything commits (the position
   * included); a rejection rolls the write back. Lets a capture session send a
   * batch while the previous one is still committing, and still commit in order.
   */
  beforeCommit?: () => Promise<void>;
}

const COPY_MESSAGES = 'COPY sluice.messages (consumer_id, commit_lsn, commit_idx, group_key, payload) FROM STDIN';

// The source's position moves with the rows ($1 source, $2 end LSN or null,
// $3 last commit time); GREATEST: it never moves back.
const ADVANCE_POSITION = `
  INSERT INTO sluice.source_positions AS p (source_name, confirmed_lsn, last_commit_at, updated_at)
  SELECT $1, '0/0'::pg_lsn + $2::numeric, $3::timestamptz, now() WHERE $2::numeric IS NOT NULL
  ON CONFLICT (source_name) DO UPDATE
    SET confirmed_lsn = GREATEST(p.confirmed_lsn, EXCLUDED.confirmed_lsn),
        last_commit_at = COALESCE(EXCLUDED.last_commit_at, p.last_commit_at),
        updated_at = now()`;

// pg_notify only wakes readers; they re-read the table, so a lost notification
// costs latency, never a message.
const ADVANCE_AND_NOTIFY = `
WITH pos AS (${ADVANCE_POSITION})
SELECT count(pg_notify('sluice_messages', c)) FROM unnest($4::text[]) c`;

const SPECIAL = /[\\\t\n\r]/;
const SPECIAL_ALL = /[\\\t\n\r]/g;
const ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

/** A value in COPY's text format. */
function copyText(s: string): string {
  return SPECIAL.test(s) ? s.replace(SPECIAL_ALL, (c) => ESCAPES[c]) : s;
}

function* copyChunks(rows: BufferRow[]): Generator<string> {
  // ~256 KB chunks: few stream writes, no single multi-megabyte string.
  let chunk = '';
  for (const r of rows) {
    chunk +=
      r.consumerId + '\t' + r.commitLsn + '\t' + r.commitIdx + '\t' +
      (r.groupKey === null ? '\\N' : copyText(r.groupKey)) + '\t' + copyText(r.payload) + '\n';
    if (chunk.length > 262_144) {
      yield chunk;
      chunk = '';
    }
  }
  if (chunk) yield chunk;
}

// Small batches (the steady trickle of a busy but not saturated source) take
// one round trip: rows, position and wake-up in one statement, its own
// transaction. COPY needs four (BEGIN, COPY, position, COMMIT), which only pays
// off for large batches. ON CONFLICT here is belt and braces: clearTail already
// keeps replays out.
const SMALL_BATCH = 200;

const INSERT_SMALL = `
WITH pos AS (${ADVANCE_POSITION}), ins AS (
  INSERT INTO sluice.messages (consumer_id, commit_lsn, commit_idx, group_key, payload)
  SELECT * FROM unnest($5::uuid[], $6::bigint[], $7::int[], $8::text[], $9::text[])
  ON CONFLICT DO NOTHING
  RETURNING 1
)
SELECT (SELECT count(*) FROM ins) AS inserted, count(pg_notify('sluice_messages', c)) FROM unnest($4::text[]) c`;

export async function writeBatch(pool: Pool, batch: BatchWrite): Promise<void> {
  const consumers = [...new Set(batch.rows.map((r) => r.consumerId))];
  const checkpoint = batch.checkpoint === null ? null : batch.checkpoint.toString();
  if (batch.rows.length <= SMALL_BATCH) {
    const rows = batch.rows;
    // One statement commits at once: it waits its turn first.
    await batch.beforeCommit?.();
    await pool.query(INSERT_SMALL, [
      batch.sourceName,
      checkpoint,
      batch.lastCommitAt,
      consumers,
      rows.map((r) => r.consumerId),
      rows.map((r) => r.commitLsn.toString()),
      rows.map((r) => r.commitIdx),
      rows.map((r) => r.groupKey),
      rows.map((r) => r.payload),
    ]);
    return;
  }
  const client = await pool.connect();
  // A server that ends the connection between two statements emits 'error' on
  // the client rather than failing a query; unheard, that would crash the
  // process. The failed statement that follows reports it instead.
  let lost: Error | null = null;
  const onError = (err: Error) => (lost = err);
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    await pipeline(Readable.from(copyChunks(batch.rows)), client.query(copyFrom(COPY_MESSAGES)));
    // The position and the rows' visibility come with COMMIT, so waiting here
    // keeps both in order while the COPY above overlapped the previous write.
    await batch.beforeCommit?.();
    await client.query(ADVANCE_AND_NOTIFY, [batch.sourceName, checkpoint, batch.lastCommitAt, consumers]);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.off('error', onError);
    // A broken connection is destroyed, not returned to the pool.
    client.release(lost ?? undefined);
  }
}

const READ_POSITION = `SELECT (confirmed_lsn - '0/0'::pg_lsn)::bigint::text AS lsn FROM sluice.source_positions WHERE source_name = $1`;

/** The durable position of a source, or null before its first write. */
export async function readPosition(pool: Pool, sourceName: string): Promise<bigint | null> {
  const { rows } = await pool.query<{ lsn: string }>(READ_POSITION, [sourceName]);
  return rows.length ? BigInt(rows[0].lsn) : null;
}

// A transaction whose commit record starts at or after the durable position was
// not completely stored (its end would be past the position).
// A webhook batch holding any of those rows goes too (its other messages are
// sent again in a new batch): the replay stores the rows anew, and a batch must
// not name a row that is also fresh.
const CLEAR_TAIL = `
WITH batches AS (
  DELETE FROM sluice.webhook_batches
   WHERE consumer_id IN (SELECT id FROM sluice.consumers WHERE source_name = $1)
     AND $2::bigint <= ANY (lsns)
)
DELETE FROM sluice.messages
 WHERE consumer_id IN (SELECT id FROM sluice.consumers WHERE source_name = $1)
   AND commit_lsn >= $2::bigint`;

/** Deletes rows a previous session stored past the durable position; returns how many. */
export async function clearTail(pool: Pool, sourceName: string, durableLsn: bigint): Promise<number> {
  const { rowCount } = await pool.query(CLEAR_TAIL, [sourceName, durableLsn.toString()]);
  return rowCount ?? 0;
}
