// Where a consumer reads its source's log from: the start of a new consumer
// and a rewind. A log position is the last key a consumer has taken in
// (sluice.consumer_positions, migration 0010); "from commit LSN L on" is the
// position (L, -1), since commit_idx -1 precedes every change of a commit.
//
// Points are refused (ConfigError at `field`: a config error with its path, a
// 422 naming the field through the API) when retention has already dropped
// changes at or after them: the consumer would silently miss them.
import pg from 'pg';
import { ConfigError } from '../config/errors.js';
import type { SourceConfig } from '../config/types.js';
import type { Pool, PoolClient } from '../db/pool.js';
import { formatLsn, type LogPoint } from './points.js';

type Db = Pool | PoolClient;

export interface LogPosition {
  commit_lsn: bigint;
  commit_idx: number;
}

/** Before every change the log holds or will hold ("earliest"). */
const MIN_LSN = -(2n ** 63n);

const CONNECT_TIMEOUT_MS = 5_000;

// A source's log or a stream's (their names never clash).
const SOURCE_NO = 'SELECT log_no FROM sluice.sources WHERE name = $1 UNION ALL SELECT log_no FROM sluice.streams WHERE name = $1';
// What retention has dropped of a source, the oldest change it kept, and
// whether a time ($2, may be null) lies before that change (or, with none
// kept, before the drop: whatever was dropped had been committed by then).
// FOR SHARE: a retention run that moves the horizon waits for this transaction.
const HORIZON = `SELECT h.dropped_lsn::text AS lsn, h.dropped_at, f.commit_lsn::text AS first_lsn, f.committed_at AS first_at,
    $2::timestamptz < coalesce(f.committed_at, h.dropped_at) AS time_before
  FROM sluice.log_horizons h
  LEFT JOIN LATERAL (
    SELECT l.commit_lsn, l.committed_at FROM sluice.log l
    WHERE l.source_no = h.source_no AND l.commit_lsn >= h.dropped_lsn
    ORDER BY l.commit_lsn, l.commit_idx LIMIT 1) f ON true
  WHERE h.source_no = $1
  FOR SHARE OF h`;
// Commit times follow LSN order closely; the BRIN index on committed_at finds them.
const FIRST_AT_TIME = 'SELECT min(commit_lsn)::text AS lsn FROM sluice.log WHERE source_no = $1 AND committed_at >= $2::timestamptz';
const FIRST_OF_TABLES = `SELECT commit_lsn::text AS lsn, committed_at FROM sluice.log
  WHERE source_no = $1 AND commit_lsn >= $2::bigint AND (schema_name || '.' || table_name) = ANY ($3::text[])
    AND ($4::text[] IS NULL OR action = ANY ($4::text[]))
  ORDER BY commit_lsn, commit_idx LIMIT 1`;
const SET_POSITION = `UPDATE sluice.consumer_positions SET commit_lsn = $2::bigint, commit_idx = $3::integer, updated_at = now()
  WHERE consumer_id = $1`;
const REWIND = 'SELECT sluice.rewind_consumer($1, $2::bigint, $3::integer)::text AS n';
// The insert position, not pg_current_wal_lsn() (what is written out so far):
// a transaction committed asynchronously may not be written yet, and its
// commit LSN would be past the write position although it committed before.
const CURRENT_WAL = "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint::text AS lsn";

/** The source database's current WAL position, or null when it cannot be asked (unreachable, a standby). */
export async function currentWal(source: SourceConfig, bufferUrl: string): Promise<bigint | null> {
  const client = new pg.Client({
    connectionString: source.url || bufferUrl,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    application_name: 'sluice-start',
  });
  client.on('error', () => {});
  try {
    await client.connect();
    return BigInt((await client.query<{ lsn: string }>(CURRENT_WAL)).rows[0].lsn);
  } catch {
    return null;
  } finally {
    await client.end().catch(() => {});
  }
}

export async function sourceNo(db: Db, sourceName: string): Promise<number> {
  const no = (await db.query<{ log_no: number }>(SOURCE_NO, [sourceName])).rows[0]?.log_no;
  if (no === undefined) throw new Error(`source "${sourceName}" is not stored`);
  return no;
}

const refuse = (field: string, reason: string) => new ConfigError([{ path: field, reason }]);

/**
 * The first log key from `point` on ("earliest": before everything), or null
 * for a time after every captured change. Refused at `field` when retention
 * has dropped changes from there on. Not for "now" (see setStartPosition).
 */
export async function pointKey(db: Db, source: number, point: Exclude<LogPoint, { kind: 'now' }>, field: string): Promise<bigint | null> {
  if (point.kind === 'earliest') return MIN_LSN;
  const at = point.kind === 'time' ? point.at : null;
  const h = (await db.query<Horizon>(HORIZON, [source, at])).rows[0];
  if (h && (point.kind === 'lsn' ? point.lsn < BigInt(h.lsn) : h.time_before)) {
    const asked = point.kind === 'lsn' ? `LSN ${formatLsn(point.lsn)}` : point.at;
    const kept = h.first_lsn
      ? `the oldest retained change of this source is at LSN ${formatLsn(h.first_lsn)}, committed at ${h.first_at!.toISOString()}`
      : `retention dropped every change of this source before LSN ${formatLsn(h.lsn)} (at ${h.dropped_at.toISOString()}) and none is retained since`;
    throw refuse(field, `${asked} is older than what the log retains: ${kept}. Use that point or a later one, or "earliest"`);
  }
  if (point.kind === 'lsn') return point.lsn;
  const lsn = (await db.query<{ lsn: string | null }>(FIRST_AT_TIME, [source, point.at])).rows[0].lsn;
  return lsn === null ? null : BigInt(lsn);
}

interface Horizon {
  lsn: string;
  dropped_at: Date;
  first_lsn: string | null;
  first_at: Date | null;
  time_before: boolean | null;
}

/**
 * Moves a just-created consumer (its trigger gave it a row at the log's tail)
 * to where `point` says, in the caller's transaction. `now` is the source
 * database's current WAL, read before (see currentWal); null keeps the tail.
 */
export async function setStartPosition(
  db: PoolClient,
  consumer: { id: string; source: string },
  point: LogPoint,
  now: bigint | null,
  field = 'start',
): Promise<void> {
  let position: LogPosition | null;
  if (point.kind === 'now') {
    position = now === null ? null : { commit_lsn: now, commit_idx: -1 };
  } else {
    const key = await pointKey(db, await sourceNo(db, consumer.source), point, field);
    // A time after every captured change: from the tail on, as the trigger left it.
    position = key === null ? null : { commit_lsn: key, commit_idx: -1 };
  }
  if (position) await db.query(SET_POSITION, [consumer.id, String(position.commit_lsn), position.commit_idx]);
}

export interface RewindResult {
  /** Retained changes of the consumer's tables from the point on: what is delivered again. */
  redelivering: number;
  /** The first of them, or nulls when there is none. */
  from: { commit_lsn: string | null; committed_at: string | null };
}

/**
 * Rewinds a consumer to `point` (not "now") in the caller's transaction: every
 * retained change of its tables from there on is delivered again, in order
 * per group (sluice.rewind_consumer). Refused at `field` when retention has
 * dropped changes from there on.
 */
export async function rewindConsumer(
  db: PoolClient,
  consumer: { id: string; source: string; tables: string[]; actions?: readonly string[] },
  point: Exclude<LogPoint, { kind: 'now' }>,
  field = 'to',
): Promise<RewindResult> {
  const source = await sourceNo(db, consumer.source);
  const lsn = await pointKey(db, source, point, field);
  const none: RewindResult = { redelivering: 0, from: { commit_lsn: null, committed_at: null } };
  // A time after every captured change: nothing to deliver again.
  if (lsn === null) return none;
  // Idx 0: the point is the commit's first change; the position goes just before it.
  const n = (await db.query<{ n: string | null }>(REWIND, [consumer.id, String(lsn), 0])).rows[0].n;
  const first = (await db.query<{ lsn: string; committed_at: Date }>(FIRST_OF_TABLES, [source, String(lsn), consumer.tables, consumer.actions ?? null])).rows[0];
  return {
    redelivering: Number(n ?? 0),
    from: first ? { commit_lsn: formatLsn(first.lsn), committed_at: first.committed_at.toISOString() } : none.from,
  };
}
