// Writes captured changes into the retained log (sluice.log), once per change
// whatever the number of consumers (migrations/0010_log.sql). Rows go in by COPY (measured: a
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
import { withTransaction, type Pool, type PoolClient } from '../db/pool.js';
import { unpack, type StagedChunk } from '../backfill/staged.js';
import { idempotencyKey } from './message.js';
import { coverLog, forgetCover, isNoPartition } from '../log/partitions.js';
import { LogRows, SMALL_BATCH } from './log-rows.js';
import { BinaryCopy, uuidBytes } from './copy-binary.js';
import { coverOutbox, forgetOutboxCovers, storeOutbox, type OutboxWrite } from '../streams/outbox.js';

/** One captured change, as stored in the log (once, whatever the number of consumers). */
export interface LogRow {
  commitLsn: bigint;
  commitIdx: number;
  schema: string;
  table: string;
  action: string;
  /** The default group ("schema.table:" and the primary key values); null never for captured rows. */
  groupKey: string | null;
  /** ISO 8601, shared by the rows of one transaction. */
  committedAt: string;
  payload: string;
  /** Consumers of this change's table, to wake when it is stored (shared per table, not per row). */
  wake: readonly string[];
}

/** A backfill chunk's high watermark met in a transaction of the batch (src/capture/backfill-mark.ts), with the chunk's rows. */
export interface BackfillMark {
  backfillId: string;
  chunk: number;
  rows: StagedChunk;
  /** Commit LSN of the watermark's transaction: where the chunk's rows go. */
  commitLsn: bigint;
  committedAt: string;
  databaseName: string;
}

/** A watermark whose chunk capture sealed (migrations/0028): its rows go into the log after the batch commits (storeChunk). */
export interface SealedChunk extends BackfillMark {
  /** The consumer the rows belong to. */
  consumer: string;
}

export interface BatchWrite {
  sourceName: string;
  /** The source's log number (sluice.sources.log_no). */
  sourceNo: number;
  /** The batch's changes (capture collects them as LogRows, encoded for COPY as they come). */
  rows: LogRows | readonly LogRow[];
  /** Backfill watermarks: each chunk is sealed with the batch, its rows stored after it commits (storeChunk). */
  marks?: BackfillMark[];
  /** Outbox messages of the batch's complete transactions, for their streams' logs (src/streams/outbox.ts). */
  outbox?: OutboxWrite;
  /** End LSN of the last complete transaction in this batch; null for a chunk of an unfinished one. */
  checkpoint: bigint | null;
  lastCommitAt: string | null;
  /** How much time of WAL a new log partition should cover (see sluice.log_cover); default one hour. */
  partitionSeconds?: number;
  /**
   * Awaited after the rows are sent and before anything commits (the position
   * included); a rejection rolls the write back. Lets a capture session send a
   * batch while the previous one is still committing, and still commit in order.
   */
  beforeCommit?: () => Promise<void>;
}

const COPY_LOG =
  'COPY sluice.log (source_no, commit_lsn, commit_idx, schema_name, table_name, action, group_key, committed_at, payload) FROM STDIN (FORMAT binary)';
const COPY_READS =
  'COPY sluice.log (source_no, commit_lsn, commit_idx, schema_name, table_name, action, group_key, committed_at, payload, for_consumer) FROM STDIN (FORMAT binary)';

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

/**
 * A backfill chunk as read messages in COPY's binary format, each the
 * envelope of a change (src/capture/decoder.ts builds those) with action
 * "read" and the watermark's position: commit_lsn is its commit, commit_idx
 * the row's index.
 */
function* readChunks(sourceNo: number, m: BackfillMark, consumer: string): Generator<Buffer> {
  const c = m.rows;
  const lsn = m.commitLsn.toString();
  // The group key capture gives a row change: "<schema>.<table>:" and its record_pks.
  const qualified = c.schema + '.' + c.table + ':';
  const meta = '"metadata":{"table_schema":' + JSON.stringify(c.schema) + ',"table_name":' + JSON.stringify(c.table) +
    ',"commit_timestamp":"' + m.committedAt + '","commit_lsn":' + lsn + ',"commit_idx":';
  const database = ',"database_name":' + JSON.stringify(m.databaseName) + ',"transaction_annotations":null}}';
  const forConsumer = uuidBytes(consumer);
  const out = new BinaryCopy();
  for (let i = 0; i < c.recordEnds.length; i++) {
    const pks = unpack(c.pks, c.pkEnds, i);
    const payload = '{"record":' + unpack(c.records, c.recordEnds, i) + ',"changes":null,"action":"read",' + meta + i +
      ',"idempotency_key":"' + idempotencyKey(lsn, i) + '","record_pks":' + pks + database;
    const group = qualified + pks;
    out.row(10, c.schema.length + c.table.length + 4 + group.length + payload.length);
    out.int4(sourceNo);
    out.int8(m.commitLsn);
    out.int4(i);
    out.text(c.schema);
    out.text(c.table);
    out.text('read');
    out.text(group);
    out.timestamptz(m.committedAt);
    out.text(payload);
    out.bytes(forConsumer);
    yield* out.take();
  }
  yield* out.end();
}

// Small batches (the steady trickle of a busy but not saturated source) take
// one round trip: rows, position and wake-up in one statement, its own
// transaction. COPY needs four (BEGIN, COPY, position, COMMIT), which only pays
// off for large batches (SMALL_BATCH, src/buffer/log-rows.ts). ON CONFLICT
// here is belt and braces: clearTail already keeps replays out.
const INSERT_SMALL = `
WITH pos AS (${ADVANCE_POSITION}), ins AS (
  INSERT INTO sluice.log (source_no, commit_lsn, commit_idx, schema_name, table_name, action, group_key, committed_at, payload)
  SELECT $5::int, * FROM unnest($6::bigint[], $7::int[], $8::text[], $9::text[], $10::text[], $11::text[], $12::timestamptz[], $13::text[])
  ON CONFLICT DO NOTHING
  RETURNING 1
)
SELECT (SELECT count(*) FROM ins) AS inserted, count(pg_notify('sluice_messages', c)) FROM unnest($4::text[]) c`;

// migrations/0028_backfill_seal.sql
const BACKFILL_SEAL = 'SELECT sluice.backfill_seal($1::bigint, $2, $3::bigint) AS consumer';
const BACKFILL_STORE_SEALED = 'SELECT sluice.backfill_store_sealed($1, $2::bigint, $3) AS sent';
const BACKFILL_SEALED = 'SELECT 1 FROM sluice.backfill_seals WHERE backfill_id = $1::bigint AND chunk_no = $2';

/** Makes sure log partitions cover the batch's LSNs: a round trip only when it reaches past the newest one. */
async function cover(pool: Pool, batch: BatchWrite, rows: LogRows): Promise<void> {
  if (batch.outbox?.messages.length) await coverOutbox(pool, batch.outbox.messages);
  const marks = batch.marks ?? [];
  const range = rows.range();
  if (!range && marks.length === 0) return;
  // Rows and marks are each in commit order; a batch's marks may lie past its last row.
  let [min, max] = range ?? [marks[0].commitLsn, marks[marks.length - 1].commitLsn];
  if (marks.length) {
    if (marks[0].commitLsn < min) min = marks[0].commitLsn;
    if (marks[marks.length - 1].commitLsn > max) max = marks[marks.length - 1].commitLsn;
  }
  await coverLog(pool, batch.sourceNo, min, max, batch.partitionSeconds ?? 3600);
}

/** Stores a batch; returns the backfill chunks it sealed, to be stored once it has committed (storeChunk). */
export async function writeBatch(pool: Pool, batch: BatchWrite): Promise<SealedChunk[]> {
  const rows = batch.rows instanceof LogRows ? batch.rows : LogRows.of(batch.sourceNo, batch.rows);
  try {
    await cover(pool, batch, rows);
    return await write(pool, batch, rows);
  } catch (err) {
    // A partition this process thought present was dropped (the source deleted
    // and its number reused never happens: numbers come from a sequence): learn
    // again and retry once.
    if (!isNoPartition(err)) throw err;
    forgetCover(batch.sourceNo);
    forgetOutboxCovers();
    await cover(pool, batch, rows);
    return await write(pool, batch, rows);
  }
}

async function write(pool: Pool, batch: BatchWrite, logRows: LogRows): Promise<SealedChunk[]> {
  const consumers = logRows.wakeList();
  const checkpoint = batch.checkpoint === null ? null : batch.checkpoint.toString();
  const marks = batch.marks ?? [];
  const small = logRows.rows();
  if (small && small.length <= SMALL_BATCH && marks.length === 0 && !batch.outbox?.messages.length) {
    const rows = small;
    // One statement commits at once: it waits its turn first.
    await batch.beforeCommit?.();
    await pool.query(INSERT_SMALL, [
      batch.sourceName,
      checkpoint,
      batch.lastCommitAt,
      consumers,
      batch.sourceNo,
      rows.map((r) => r.commitLsn.toString()),
      rows.map((r) => r.commitIdx),
      rows.map((r) => r.schema),
      rows.map((r) => r.table),
      rows.map((r) => r.action),
      rows.map((r) => r.groupKey),
      rows.map((r) => r.committedAt),
      rows.map((r) => r.payload),
    ]);
    return [];
  }
  return (await inTransaction(pool, async (client) => {
    if (logRows.length > 0) {
      await pipeline(Readable.from(logRows.copyData()), client.query(copyFrom(COPY_LOG)));
    }
    // A backfill chunk whose watermark is in this batch is sealed at the
    // watermark's position, if it is still the chunk staged; its rows go in
    // after this commits, beside the writes that follow (storeChunk), so live
    // changes never wait for a chunk's copy.
    const sealed: SealedChunk[] = [];
    for (const m of marks) {
      const { rows } = await client.query<{ consumer: string | null }>(BACKFILL_SEAL, [m.backfillId, m.chunk, m.commitLsn.toString()]);
      const consumer = rows[0]?.consumer;
      if (consumer) sealed.push({ ...m, consumer });
    }
    // The position and the rows' visibility come with COMMIT, so waiting here
    // keeps both in order while the COPY above overlapped the previous write.
    await batch.beforeCommit?.();
    // Also after it: positions in a stream are handed out in commit order,
    // and a stream's lock is held only from here to COMMIT.
    if (batch.outbox?.messages.length) await storeOutbox(client, batch.outbox);
    await client.query(ADVANCE_AND_NOTIFY, [batch.sourceName, checkpoint, batch.lastCommitAt, consumers]);
    return sealed;
  })) as SealedChunk[];
}

/**
 * Stores a sealed chunk (migrations/0028): its rows at the watermark's
 * position, for its consumer; then backfill_store_sealed leaves out those
 * whose row changed in the chunk's window, records the progress and drops the
 * seal. Called once the batch that sealed it has committed, so every change
 * before the watermark is in the log. Returns false when the seal is gone
 * (cancelled, dropped) or the chunk before it was not stored: nothing is
 * stored, and the chunk is read again.
 */
export async function storeChunk(pool: Pool, sourceNo: number, m: SealedChunk): Promise<boolean> {
  await coverLog(pool, sourceNo, m.commitLsn, m.commitLsn, 3600);
  const stored = await inTransaction(pool, async (client) => {
    // Gone already (stored, dropped, the backfill ended): no copy for nothing.
    if ((await client.query(BACKFILL_SEALED, [m.backfillId, m.chunk])).rows.length === 0) return ROLLBACK;
    // The rows first, the backfill's row locked only after (a seal of the
    // next chunk, in capture's write, would otherwise wait for the copy).
    await pipeline(Readable.from(readChunks(sourceNo, m, m.consumer)), client.query(copyFrom(COPY_READS)));
    const { rows } = await client.query<{ sent: number | null }>(BACKFILL_STORE_SEALED, [sourceNo, m.backfillId, m.chunk]);
    return rows[0].sent === null ? ROLLBACK : true;
  });
  return stored === true;
}

/** What a transaction's function returns to end it without committing. */
const ROLLBACK = Symbol('rollback');

/**
 * A transaction on a connection of its own, committed unless `fn` returns
 * ROLLBACK or throws. A server that ends the connection between two
 * statements emits 'error' on the client rather than failing a query;
 * unheard, that would crash the process. The failed statement that follows
 * reports it instead, and the broken connection is destroyed, not returned to
 * the pool.
 */
async function inTransaction<T>(pool: Pool, fn: (client: PoolClient) => Promise<T | typeof ROLLBACK>): Promise<T | typeof ROLLBACK> {
  const client = await pool.connect();
  let lost: Error | null = null;
  const onError = (err: Error) => (lost = err);
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    const out = await fn(client);
    await client.query(out === ROLLBACK ? 'ROLLBACK' : 'COMMIT');
    return out;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.off('error', onError);
    client.release(lost ?? undefined);
  }
}

const READ_POSITION = `SELECT (confirmed_lsn - '0/0'::pg_lsn)::bigint::text AS lsn FROM sluice.source_positions WHERE source_name = $1`;

/** The durable position of a source, or null before its first write. */
export async function readPosition(pool: Pool, sourceName: string): Promise<bigint | null> {
  const { rows } = await pool.query<{ lsn: string }>(READ_POSITION, [sourceName]);
  return rows.length ? BigInt(rows[0].lsn) : null;
}

const READ_SOURCE_NO = 'SELECT log_no FROM sluice.sources WHERE name = $1';

/** The log number of a stored source, or null when the source is not stored. */
export async function readSourceNo(pool: Pool, sourceName: string): Promise<number | null> {
  const { rows } = await pool.query<{ log_no: number }>(READ_SOURCE_NO, [sourceName]);
  return rows.length ? rows[0].log_no : null;
}

// A transaction whose commit record starts at or after the durable position was
// not completely stored (its end would be past the position): its log rows go,
// and so does every consumer's state of them. A webhook batch holding any of
// those rows goes too (its other messages are sent again in a new batch): the
// replay stores the rows anew, and a batch must not name a row that is also
// fresh. Positions past the cut move back to it, so the replayed rows are
// taken in again; but not positions past every row cleared: those were never
// reached by admission (which stops at a stored row) but set by a consumer's
// start ("now": the source's WAL as it was created, maybe past what capture
// had stored), and the replayed rows before them were committed before it.
const CLEAR_TAIL = `
WITH mine AS (
  SELECT id FROM sluice.consumers WHERE source_name = $1
), newest AS (
  SELECT l.commit_lsn, l.commit_idx FROM sluice.log l
   WHERE l.source_no = (SELECT log_no FROM sluice.sources WHERE name = $1) AND l.commit_lsn >= $2::bigint
   ORDER BY l.commit_lsn DESC, l.commit_idx DESC LIMIT 1
), batches AS (
  DELETE FROM sluice.webhook_batches
   WHERE consumer_id IN (SELECT id FROM mine) AND $2::bigint <= ANY (lsns)
), messages AS (
  DELETE FROM sluice.messages
   WHERE consumer_id IN (SELECT id FROM mine) AND commit_lsn >= $2::bigint
), positions AS (
  UPDATE sluice.consumer_positions SET commit_lsn = $2::bigint, commit_idx = -1, updated_at = now()
   WHERE consumer_id IN (SELECT id FROM mine) AND (commit_lsn, commit_idx) >= ($2::bigint, 0)
     AND (commit_lsn, commit_idx) <= (SELECT n.commit_lsn, n.commit_idx FROM newest n)
)
DELETE FROM sluice.log
 WHERE source_no = (SELECT log_no FROM sluice.sources WHERE name = $1) AND commit_lsn >= $2::bigint`;

// Claims take changes in from the log under their consumer's lock (736001,
// see migrations/0010_log.sql). A claim running beside the clear could take in
// a tail row after the clear's snapshot: its consumer's row would outlive the
// log row, and be sent ahead of the changes captured again before it. So the
// clear holds the lock of every consumer of the source (in id order: a claim
// takes one, so no deadlock), then reads with a fresh snapshot.
const LOCK_CONSUMERS = `SELECT count(pg_advisory_xact_lock(736001, hashtext(id::text)))
  FROM (SELECT id FROM sluice.consumers WHERE source_name = $1 ORDER BY id) c`;

/** Deletes what a previous session stored past the durable position; returns how many log rows. */
export async function clearTail(pool: Pool, sourceName: string, durableLsn: bigint): Promise<number> {
  return withTransaction(pool, async (c) => {
    await c.query(LOCK_CONSUMERS, [sourceName]);
    const { rowCount } = await c.query(CLEAR_TAIL, [sourceName, durableLsn.toString()]);
    return rowCount ?? 0;
  });
}
