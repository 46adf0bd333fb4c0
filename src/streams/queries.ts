// The buffer's side of publishing (migrations/0021_streams.sql): one
// transaction per group of publishes to a stream, holding the stream's row so
// that positions are handed out in commit order across gateway processes.
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import type { Pool, PoolClient } from '../db/pool.js';
import { copyText } from '../buffer/copy-text.js';

export interface LockedStream {
  log_no: number;
  last_position: bigint;
}

export async function streamLogNo(db: Pool, name: string): Promise<number | undefined> {
  return (await db.query<{ log_no: number }>('SELECT log_no FROM sluice.streams WHERE name = $1', [name])).rows[0]?.log_no;
}

/** The stream, locked until the transaction ends (publishers of it wait); undefined when it does not exist. */
export async function lockStream(db: PoolClient, name: string): Promise<LockedStream | undefined> {
  const { rows } = await db.query<{ log_no: number; last_position: string }>(
    'SELECT log_no, last_position FROM sluice.streams WHERE name = $1 FOR UPDATE',
    [name],
  );
  return rows[0] && { log_no: rows[0].log_no, last_position: BigInt(rows[0].last_position) };
}

/** Of `keys`, those already stored for the stream, with the position they were stored at. */
export async function storedKeys(db: PoolClient, streamNo: number, keys: string[]): Promise<Map<string, bigint>> {
  if (keys.length === 0) return new Map();
  const { rows } = await db.query<{ key: string; position: string }>(
    'SELECT key, position FROM sluice.stream_keys WHERE stream_no = $1 AND key = ANY($2::text[])',
    [streamNo, keys],
  );
  return new Map(rows.map((r) => [r.key, BigInt(r.position)]));
}

export interface PublishedRow {
  position: bigint;
  subject: string;
  groupKey: string;
  payload: string;
  /** The publisher's idempotency_key, if it gave one. */
  key: string | null;
  /** ISO 8601: when it was published (the API's clock, or the outbox transaction's commit). */
  publishedAt: string;
}

// A stream's rows are one table named ".<stream>" to the walks and admissions
// (migrations/0022_stream_consumers.sql). Its durable position, as a source's
// confirmed LSN, is one past the last message: "now" for a new consumer.
// The rows go in by COPY (as capture's: several times faster than INSERT
// from arrays, whose parsing dominated). Then one statement for the keys, the
// stream's last position and its durable position (read by retention as a
// source's confirmed LSN), and the consumers' wake-up.
const COPY_LOG =
  'COPY sluice.log (source_no, commit_lsn, commit_idx, schema_name, table_name, action, group_key, committed_at, payload, subject) FROM STDIN';
const RECORD = `
WITH keys AS (
  INSERT INTO sluice.stream_keys (stream_no, key, position, published_at)
  SELECT $1::int, k, p, t FROM unnest($3::text[], $4::bigint[], $8::timestamptz[]) AS y(k, p, t)
), stream AS (
  UPDATE sluice.streams SET last_position = $5::bigint WHERE log_no = $1
), pos AS (
  INSERT INTO sluice.source_positions AS sp (source_name, confirmed_lsn, last_commit_at, updated_at)
  VALUES ($6, '0/0'::pg_lsn + ($5::numeric + 1), $2::timestamptz, now())
  ON CONFLICT (source_name) DO UPDATE
    SET confirmed_lsn = GREATEST(sp.confirmed_lsn, EXCLUDED.confirmed_lsn), last_commit_at = EXCLUDED.last_commit_at, updated_at = now()
)
SELECT count(pg_notify('sluice_messages', c)) FROM unnest($7::text[]) c`;

/** Stores `rows` (in position order) in the stream's log, under its lock. */
export async function storePublished(
  db: PoolClient,
  stream: { name: string; log_no: number },
  rows: PublishedRow[],
  wake: readonly string[],
): Promise<void> {
  await pipeline(Readable.from(copyRows(stream, rows)), db.query(copyFrom(COPY_LOG)));
  const keyed = rows.filter((r) => r.key !== null);
  const last = rows[rows.length - 1];
  await db.query(RECORD, [
    stream.log_no,
    last.publishedAt,
    keyed.map((r) => r.key),
    keyed.map((r) => r.position.toString()),
    last.position.toString(),
    stream.name,
    wake,
    keyed.map((r) => r.publishedAt),
  ]);
}

function* copyRows(stream: { name: string; log_no: number }, rows: PublishedRow[]): Generator<string> {
  const head = stream.log_no + '\t';
  const mid = '\t0\t\t' + copyText(stream.name) + '\tpublish\t';
  let chunk = '';
  for (const r of rows) {
    // Subjects hold no character COPY escapes (A-Z a-z 0-9 _ - .).
    chunk += head + r.position + mid + copyText(r.groupKey) + '\t' + r.publishedAt + '\t' + copyText(r.payload) + '\t' + r.subject + '\n';
    if (chunk.length > 262_144) {
      yield chunk;
      chunk = '';
    }
  }
  if (chunk) yield chunk;
}
