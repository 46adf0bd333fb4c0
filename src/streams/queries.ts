// The buffer's side of publishing (migrations/0021_streams.sql): one
// transaction per group of publishes to a stream, holding the stream's row so
// that positions are handed out in commit order across gateway processes:
// the publish API's in one statement (PUBLISH), the outbox's inside
// capture's transaction (lockStream, storedKeys, storePublished).
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import type { Pool, PoolClient } from '../db/pool.js';
import { BinaryCopy } from '../buffer/copy-binary.js';

export interface LockedStream {
  log_no: number;
  last_position: bigint;
}

/** The stream's log number and last position, or undefined when it does not exist. */
export async function streamLogNo(db: Pool, name: string): Promise<LockedStream | undefined> {
  const { rows } = await db.query<{ log_no: number; last_position: string }>('SELECT log_no, last_position FROM sluice.streams WHERE name = $1', [name]);
  return rows[0] && { log_no: rows[0].log_no, last_position: BigInt(rows[0].last_position) };
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

// A publish in one statement (one round trip; without idempotency keys, its
// own transaction). $3 new messages get the positions from max(last + 1,
// $2 the clock in microseconds) on, under the stream's row lock (held to
// COMMIT), filled into the payloads' templates
// (src/streams/envelope.ts envelopeTemplate), the rows, the stream's durable
// position and the wake-up. The payloads travel as one text split on the
// record separator (U+001E, which JSON text never holds): parsing a text[]
// of JSON (quotes escaped) costs the server several times more
// (string_to_table: Postgres 14 and later). With them
// go the idempotency keys ($10, each with $11 its message's index), the
// stream's durable position (read by retention as a source's confirmed LSN:
// one past the last message) and the consumers' wake-up ($9, delivered at
// COMMIT). No row when the stream is gone or is another of the same name
// ($4: the log number expected).
const PUBLISH = `
WITH st AS (
  UPDATE sluice.streams SET last_position = greatest(last_position + 1, $2::bigint) + $3::int - 1
   WHERE name = $1 AND log_no = $4 RETURNING log_no, last_position - $3::int + 1 AS first, last_position
), ins AS (
  INSERT INTO sluice.log (source_no, commit_lsn, commit_idx, schema_name, table_name, action, group_key, committed_at, payload, subject)
  SELECT st.log_no, st.first + m.i - 1, 0, '', $1, 'publish', m.key, $5::timestamptz,
         replace(replace(m.payload, E'\\x1f', (st.first + m.i - 1)::text),
                 E'\\x1d', encode(convert_to((st.first + m.i - 1)::text || ':0', 'UTF8'), 'base64')),
         m.subject
    FROM st, ROWS FROM (string_to_table($6, E'\\x1e'), unnest($7::text[]), unnest($8::text[])) WITH ORDINALITY AS m(payload, subject, key, i)
), keys AS (
  INSERT INTO sluice.stream_keys (stream_no, key, position, published_at)
  SELECT st.log_no, y.k, st.first + y.i, $5::timestamptz FROM st, unnest($10::text[], $11::int[]) AS y(k, i)
), pos AS (
  INSERT INTO sluice.source_positions AS sp (source_name, confirmed_lsn, last_commit_at, updated_at)
  SELECT $1, '0/0'::pg_lsn + (st.last_position::numeric + 1), $5::timestamptz, now() FROM st
  ON CONFLICT (source_name) DO UPDATE
    SET confirmed_lsn = GREATEST(sp.confirmed_lsn, EXCLUDED.confirmed_lsn), last_commit_at = EXCLUDED.last_commit_at, updated_at = now()
)
SELECT st.first::text AS first, (SELECT count(pg_notify('sluice_messages', c)) FROM unnest($9::text[]) c) AS woken FROM st`;

/**
 * Stores new messages (PUBLISH): returns the first one's position, or
 * undefined when the stream numbered `log_no` is gone. `keys`: the
 * idempotency keys given, with the index of the message each belongs to.
 */
export async function publishRows(
  db: Pool | PoolClient,
  stream: { name: string; log_no: number },
  nowUs: bigint,
  messages: Array<{ template: string; subject: string; groupKey: string }>,
  publishedAt: string,
  wake: readonly string[],
  keys: { keys: string[]; indexes: number[] } = { keys: [], indexes: [] },
): Promise<bigint | undefined> {
  let payloads = '';
  for (let i = 0; i < messages.length; i++) payloads += (i ? '\x1e' : '') + messages[i].template;
  const { rows } = await db.query<{ first: string }>(PUBLISH, [
    stream.name,
    nowUs.toString(),
    messages.length,
    stream.log_no,
    publishedAt,
    payloads,
    messages.map((m) => m.subject),
    messages.map((m) => m.groupKey),
    wake,
    keys.keys,
    keys.indexes,
  ]);
  return rows[0] ? BigInt(rows[0].first) : undefined;
}

/** Copies rows (in position order) into the stream's log. */
export async function copyPublished(db: PoolClient, logNo: number, name: string, rows: PublishedRow[]): Promise<void> {
  await pipeline(Readable.from(copyRows({ name, log_no: logNo }, rows)), db.query(copyFrom(COPY_LOG)));
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
  'COPY sluice.log (source_no, commit_lsn, commit_idx, schema_name, table_name, action, group_key, committed_at, payload, subject) FROM STDIN (FORMAT binary)';
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
  await copyPublished(db, stream.log_no, stream.name, rows);
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

function* copyRows(stream: { name: string; log_no: number }, rows: PublishedRow[]): Generator<Buffer> {
  // COPY's binary format, as capture's rows (src/buffer/copy-binary.ts).
  const out = new BinaryCopy();
  for (const r of rows) {
    out.row(10, stream.name.length + 7 + r.groupKey.length + r.payload.length + r.subject.length);
    out.int4(stream.log_no);
    out.int8(r.position);
    out.int4(0);
    out.text('');
    out.text(stream.name);
    out.text('publish');
    out.text(r.groupKey);
    out.timestamptz(r.publishedAt);
    out.text(r.payload);
    out.text(r.subject);
    yield* out.take();
  }
  yield* out.end();
}
