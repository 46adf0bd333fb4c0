// The buffer's side of publishing (migrations/0021_streams.sql): one
// transaction per group of publishes to a stream, holding the stream's row so
// that positions are handed out in commit order across gateway processes.
import type { Pool, PoolClient } from '../db/pool.js';

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
}

// A stream's rows are one table named ".<stream>" to the walks and admissions
// (migrations/0022_stream_consumers.sql). Its durable position, as a source's
// confirmed LSN, is one past the last message: "now" for a new consumer.
// One statement for the log rows, the keys, the stream's last position and
// its durable position (read by retention as a source's confirmed LSN), and
// the consumers' wake-up: one round trip besides the lock and the key check.
const STORE = `
WITH ins AS (
  INSERT INTO sluice.log (source_no, commit_lsn, commit_idx, schema_name, table_name, action, group_key, committed_at, payload, subject)
  SELECT $1::int, p, 0, '', $10, 'publish', g, $6::timestamptz, m, s
  FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[]) AS x(p, s, g, m)
  RETURNING 1
), keys AS (
  INSERT INTO sluice.stream_keys (stream_no, key, position, published_at)
  SELECT $1::int, k, p, $6::timestamptz FROM unnest($7::text[], $8::bigint[]) AS y(k, p)
), stream AS (
  UPDATE sluice.streams SET last_position = $9::bigint WHERE log_no = $1
), pos AS (
  INSERT INTO sluice.source_positions AS sp (source_name, confirmed_lsn, last_commit_at, updated_at)
  VALUES ($10, '0/0'::pg_lsn + ($9::numeric + 1), $6::timestamptz, now())
  ON CONFLICT (source_name) DO UPDATE
    SET confirmed_lsn = GREATEST(sp.confirmed_lsn, EXCLUDED.confirmed_lsn), last_commit_at = EXCLUDED.last_commit_at, updated_at = now()
)
SELECT (SELECT count(*) FROM ins) AS inserted, count(pg_notify('sluice_messages', c)) FROM unnest($11::text[]) c`;

export async function storePublished(
  db: PoolClient,
  stream: { name: string; log_no: number },
  rows: PublishedRow[],
  publishedAt: string,
  wake: readonly string[],
): Promise<void> {
  const keyed = rows.filter((r) => r.key !== null);
  await db.query(STORE, [
    stream.log_no,
    rows.map((r) => r.position.toString()),
    rows.map((r) => r.subject),
    rows.map((r) => r.groupKey),
    rows.map((r) => r.payload),
    publishedAt,
    keyed.map((r) => r.key),
    keyed.map((r) => r.position.toString()),
    rows[rows.length - 1].position.toString(),
    stream.name,
    wake,
  ]);
}
