// The SQL of log retention (src/log/retention.ts) and of the log's status.
// Partition names come from sluice.log_partitions, written by log_cover; they
// are quoted anyway where DDL needs them as identifiers.
import type { Pool, PoolClient } from '../db/pool.js';
import { quoteIdent } from '../capture/sql-ident.js';
import type { ConsumerBound, PartitionFacts, SourceBounds } from './retention-plan.js';

type Db = Pool | PoolClient;

export interface StoredSource {
  name: string;
  log_no: number;
  /** As stored: SourceConfig.retention ({ max_age_ms, max_size_bytes }), or null. */
  retention: { max_age_ms?: number; max_size_bytes?: number } | null;
  /** sluice.log_horizons.dropped_lsn: every change below it is gone. */
  dropped_lsn: bigint | null;
}

// Every log: the sources' and the streams' (retained alike; names are distinct).
const LOGS = `(SELECT name, log_no, config FROM sluice.sources UNION ALL SELECT name, log_no, config FROM sluice.streams)`;

const SOURCES = `SELECT s.name, s.log_no, s.config -> 'retention' AS retention, h.dropped_lsn
  FROM ${LOGS} s LEFT JOIN sluice.log_horizons h ON h.source_no = s.log_no
  WHERE $1::text IS NULL OR s.name = $1 ORDER BY s.name`;

export async function storedSources(db: Db, name: string | null = null): Promise<StoredSource[]> {
  const { rows } = await db.query(SOURCES, [name]);
  return rows.map((r) => ({ ...r, dropped_lsn: r.dropped_lsn === null ? null : BigInt(r.dropped_lsn) }));
}

// The attached partitions of a source, oldest first. First and last change by
// the primary key (one index probe each; commit times follow LSN order). Size
// from the files; the count, once made (migrations/0011), else the statistics'.
const PARTITIONS = `SELECT p.relname, p.lo, p.hi, p.created_at,
    pg_total_relation_size(c.oid) AS bytes,
    coalesce(p.changes, greatest(st.n_live_tup, c.reltuples::bigint, 0)) AS changes,
    (SELECT l.committed_at FROM sluice.log l WHERE l.source_no = p.source_no AND l.commit_lsn >= p.lo AND l.commit_lsn < p.hi
     ORDER BY l.commit_lsn, l.commit_idx LIMIT 1) AS oldest_at,
    (SELECT l.committed_at FROM sluice.log l WHERE l.source_no = p.source_no AND l.commit_lsn >= p.lo AND l.commit_lsn < p.hi
     ORDER BY l.commit_lsn DESC, l.commit_idx DESC LIMIT 1) AS newest_at
  FROM sluice.log_partitions p
  JOIN pg_class c ON c.oid = to_regclass(format('sluice.%I', p.relname))
  JOIN pg_inherits i ON i.inhrelid = c.oid AND i.inhparent = 'sluice.log'::regclass AND NOT i.inhdetachpending
  LEFT JOIN pg_stat_user_tables st ON st.relid = c.oid
  WHERE p.source_no = $1
  ORDER BY p.lo`;

export async function partitionFacts(db: Db, sourceNo: number): Promise<PartitionFacts[]> {
  const { rows } = await db.query(PARTITIONS, [sourceNo]);
  return rows.map((r) => ({
    relname: r.relname,
    lo: BigInt(r.lo),
    hi: BigInt(r.hi),
    bytes: Number(r.bytes),
    changes: Number(r.changes),
    oldestAt: r.oldest_at,
    newestAt: r.newest_at,
    createdAt: r.created_at,
  }));
}

// Per consumer of the source, whatever its state: the smallest commit LSN it
// may still need, its position (changes after it are still to come) or its
// oldest message (waiting, in flight, in a batch, dead). Position and oldest
// message are one index probe each.
const CONSUMER_BOUNDS = `SELECT c.name, c.state,
    least(p.commit_lsn,
          (SELECT m.commit_lsn FROM sluice.messages m WHERE m.consumer_id = c.id ORDER BY m.commit_lsn, m.commit_idx LIMIT 1)) AS bound
  FROM sluice.consumers c LEFT JOIN sluice.consumer_positions p ON p.consumer_id = c.id
  WHERE c.source_name = $1`;
const CONFIRMED = `SELECT (confirmed_lsn - '0/0'::pg_lsn)::bigint AS lsn FROM sluice.source_positions WHERE source_name = $1`;

export async function sourceBounds(db: Db, sourceName: string): Promise<SourceBounds> {
  const consumers = (await db.query(CONSUMER_BOUNDS, [sourceName])).rows.map(
    (r): ConsumerBound => ({ name: r.name, state: r.state, bound: r.bound === null ? null : BigInt(r.bound) }),
  );
  const confirmed = (await db.query(CONFIRMED, [sourceName])).rows[0]?.lsn;
  return { confirmed: confirmed === undefined ? null : BigInt(confirmed), consumers };
}

// Monotonic: a horizon never moves back.
const ADVANCE_HORIZON = `INSERT INTO sluice.log_horizons AS h (source_no, dropped_lsn) VALUES ($1, $2)
  ON CONFLICT (source_no) DO UPDATE
  SET dropped_lsn = greatest(h.dropped_lsn, EXCLUDED.dropped_lsn),
      dropped_at = CASE WHEN EXCLUDED.dropped_lsn > h.dropped_lsn THEN now() ELSE h.dropped_at END`;

export async function advanceHorizon(db: Db, sourceNo: number, lsn: bigint): Promise<void> {
  await db.query(ADVANCE_HORIZON, [sourceNo, lsn.toString()]);
}

// Consumers of the source holding messages for changes in [lo, hi): only a
// rewind that landed in the partition while it was being detached makes one.
const USERS_OF_RANGE = `SELECT c.name FROM sluice.consumers c
  WHERE c.source_name = $1 AND EXISTS (
    SELECT 1 FROM sluice.messages m WHERE m.consumer_id = c.id AND m.commit_lsn >= $2 AND m.commit_lsn < $3)`;

export async function usersOfRange(db: Db, sourceName: string, lo: bigint, hi: bigint): Promise<string[]> {
  return (await db.query(USERS_OF_RANGE, [sourceName, lo.toString(), hi.toString()])).rows.map((r) => r.name);
}

// Partitions are counted once they lie below the confirmed position: no change
// can land in them any more (migrations/0011). One pass over each, once.
const COUNT_SEALED = `UPDATE sluice.log_partitions p
  SET changes = (SELECT count(*) FROM sluice.log l WHERE l.source_no = p.source_no AND l.commit_lsn >= p.lo AND l.commit_lsn < p.hi)
  WHERE p.source_no = $1 AND p.changes IS NULL AND p.hi <= $2`;

/** Returns how many partitions were counted. */
export async function countSealedPartitions(db: Db, sourceNo: number, confirmed: bigint): Promise<number> {
  return (await db.query(COUNT_SEALED, [sourceNo, confirmed.toString()])).rowCount ?? 0;
}

/** Catalogue rows whose table is detached (or detaching), gone, or whose source was deleted. */
export interface LeftOver {
  relname: string;
  source_no: number;
  /** Of the source, when it still exists. */
  source_name: string | null;
  lo: bigint;
  hi: bigint;
  /** attached: only for a deleted source's partitions; pending: a DETACH … CONCURRENTLY was interrupted. */
  table: 'attached' | 'pending' | 'detached' | 'gone';
}

const LEFT_OVERS = `SELECT p.relname, p.source_no, s.name AS source_name, p.lo, p.hi,
    CASE WHEN c.oid IS NULL THEN 'gone'
         WHEN i.inhrelid IS NULL THEN 'detached'
         WHEN i.inhdetachpending THEN 'pending'
         ELSE 'attached' END AS "table"
  FROM sluice.log_partitions p
  LEFT JOIN ${LOGS} s ON s.log_no = p.source_no
  LEFT JOIN pg_class c ON c.oid = to_regclass(format('sluice.%I', p.relname))
  LEFT JOIN pg_inherits i ON i.inhrelid = c.oid AND i.inhparent = 'sluice.log'::regclass
  WHERE s.log_no IS NULL OR c.oid IS NULL OR i.inhrelid IS NULL OR i.inhdetachpending
  ORDER BY p.source_no, p.lo`;

export async function leftOvers(db: Db): Promise<LeftOver[]> {
  const { rows } = await db.query(LEFT_OVERS);
  return rows.map((r) => ({ ...r, lo: BigInt(r.lo), hi: BigInt(r.hi) }));
}

/** A stream's idempotency keys of messages below its horizon (dropped): published again, they are new. */
export async function forgetStreamKeys(db: Db, logNo: number): Promise<void> {
  await db.query(
    'DELETE FROM sluice.stream_keys k USING sluice.log_horizons h WHERE k.stream_no = $1 AND h.source_no = $1 AND k.position < h.dropped_lsn',
    [logNo],
  );
}

/** Horizons of deleted sources and streams: nothing reads them. */
export async function deleteOrphanHorizons(db: Db): Promise<void> {
  await db.query(`DELETE FROM sluice.log_horizons h WHERE NOT EXISTS (SELECT 1 FROM ${LOGS} s WHERE s.log_no = h.source_no)`);
}

// DDL: identifiers cannot be parameters. DETACH … CONCURRENTLY cannot run in a
// transaction block, so it is a statement of its own.
export const detachConcurrently = (relname: string) => `ALTER TABLE sluice.log DETACH PARTITION sluice.${quoteIdent(relname)} CONCURRENTLY`;
export const detachFinalize = (relname: string) => `ALTER TABLE sluice.log DETACH PARTITION sluice.${quoteIdent(relname)} FINALIZE`;
export const reattach = (relname: string, sourceNo: number, lo: bigint, hi: bigint) =>
  `ALTER TABLE sluice.log ATTACH PARTITION sluice.${quoteIdent(relname)} FOR VALUES FROM (${sourceNo}, ${lo}) TO (${sourceNo}, ${hi})`;
export const dropTable = (relname: string) => `DROP TABLE IF EXISTS sluice.${quoteIdent(relname)}`;

export async function forgetPartition(db: Db, relname: string): Promise<void> {
  await db.query('DELETE FROM sluice.log_partitions WHERE relname = $1', [relname]);
}
