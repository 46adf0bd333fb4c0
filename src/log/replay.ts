// Replay by query: deliver to a consumer again the retained changes of a
// range that match a query (tables, actions, a where filter). A replay is a
// row of sluice.replays (migrations/0016_replays.sql) with a cursor; the
// gateway walks it a chunk before each claim of the consumer
// (replay-runner.ts), so the first matching changes go out at once however
// long the range, and a kill at any point resumes from the cursor.
import { ConfigError } from '../config/errors.js';
import type { ChangeAction } from '../config/types.js';
import type { Pool, PoolClient } from '../db/pool.js';
import { consumerFilter, type ConsumerFilter } from '../pipeline/filter/consumer-filter.js';
import { checkWhereFilters, type FilterColumns } from '../pipeline/filter/save-check.js';
import { formatLsn, parseLogPoint, type LogPoint } from './points.js';
import { pointKey, sourceNo } from './positions.js';

export interface ReplayQuery {
  /** A log point (default "earliest"): changes committed at or after it. */
  from?: string;
  /** A log point (default: the consumer's position): changes committed before it. */
  to?: string;
  /** Among the consumer's tables (default: all of them). */
  tables?: string[];
  actions?: ChangeAction[];
  /** One expression for every table, or one per table. */
  where?: string | Record<string, string>;
}

export interface ReplayRow {
  id: string;
  from: { commit_lsn: string | null };
  to: { commit_lsn: string | null };
  tables: string[];
  actions: ChangeAction[] | null;
  where: Record<string, string> | null;
  walked: number;
  matched: number;
  status: 'running' | 'done';
  created_at: string;
  finished_at: string | null;
}

interface Consumer {
  id: string;
  name: string;
  source: string;
  tables: string[];
}

const POSITION = 'SELECT commit_lsn::text AS lsn, commit_idx FROM sluice.consumer_positions WHERE consumer_id = $1';
const INSERT = `INSERT INTO sluice.replays
    (consumer_id, cursor_lsn, cursor_idx, to_lsn, to_idx, tables, actions, filter_where, filter_columns)
  VALUES ($1, $2::bigint, $3, $4::bigint, $5, $6::text[], $7::text[], $8::jsonb, $9::jsonb)
  RETURNING id`;
const COLUMNS = `id, cursor_lsn::text, cursor_idx, to_lsn::text, to_idx, tables, actions, filter_where, filter_columns,
  walked::int, matched::int, created_at, finished_at`;
const SELECT_ONE = `SELECT ${COLUMNS} FROM sluice.replays WHERE id = $1`;
const ACTIVE = `SELECT ${COLUMNS} FROM sluice.replays WHERE consumer_id = $1 AND finished_at IS NULL ORDER BY created_at LIMIT 1`;
// Nothing left in its range to walk: done.
const FINISH = 'UPDATE sluice.replays SET finished_at = now() WHERE id = $1 AND finished_at IS NULL';
const LIST = `SELECT ${COLUMNS} FROM sluice.replays WHERE consumer_id = $1 ORDER BY created_at DESC LIMIT 100`;
const WALK = `SELECT cursor_lsn::text, cursor_idx, commit_lsn::text, commit_idx, table_name, payload
  FROM sluice.walk_replay($1, $2::bigint, $3, $4)`;
const ADMIT = 'SELECT sluice.replay_admit($1, $2::bigint, $3, $4::bigint, $5, $6::bigint[], $7::int[], $8) AS n';

interface Raw {
  id: string;
  cursor_lsn: string;
  cursor_idx: number;
  to_lsn: string;
  to_idx: number;
  tables: string[];
  actions: ChangeAction[] | null;
  filter_where: Record<string, string> | null;
  filter_columns: FilterColumns | null;
  walked: number;
  matched: number;
  created_at: Date;
  finished_at: Date | null;
}

const refuse = (issues: Array<{ path: string; reason: string }>) => new ConfigError(issues);
const MIN_LSN = -(2n ** 63n);

/** A point as a key bound: (lsn, -1) precedes every change of commit lsn. */
async function boundOf(db: PoolClient, source: number, text: string | undefined, field: string, fallback: bigint | null): Promise<bigint | null> {
  if (text === undefined) return fallback;
  const point = parseLogPoint(text);
  if (!point || point.kind === 'now') {
    throw refuse([{ path: field, reason: 'must be "earliest", an RFC 3339 timestamp such as "2026-12-01T09:30:00Z", or an LSN such as "16/B374D848"' }]);
  }
  return pointKey(db, source, point as Exclude<LogPoint, { kind: 'now' }>, field);
}

/** The query checked and resolved against the consumer and its source; refusals are ConfigErrors naming the field. */
async function resolve(db: PoolClient, c: Consumer, q: ReplayQuery, sourceUrl: string) {
  // Outbox messages (".<stream>", migrations/0023_source_outbox.sql) have no
  // row for a where to test: a replay with a where selects rows only.
  const tables = q.tables ?? (q.where ? c.tables.filter((t) => !t.startsWith('.')) : c.tables);
  const unknown = tables.filter((t) => !c.tables.includes(t));
  if (unknown.length > 0) {
    throw refuse([{ path: 'tables', reason: `${unknown.join(', ')} ${unknown.length === 1 ? 'is' : 'are'} not among the consumer's tables (${c.tables.join(', ')})` }]);
  }
  let where: Record<string, string> | null = null;
  if (typeof q.where === 'string') where = Object.fromEntries(tables.filter((t) => !t.startsWith('.')).map((t) => [t, q.where as string]));
  else if (q.where && Object.keys(q.where).length > 0) {
    const outside = Object.keys(q.where).filter((t) => !tables.includes(t));
    if (outside.length > 0) throw refuse(outside.map((t) => ({ path: `where["${t}"]`, reason: `"${t}" is not among the tables replayed` })));
    where = q.where;
  }
  let columns: FilterColumns | null = null;
  if (where) {
    const check = await checkWhereFilters({ filter: { where } }, sourceUrl);
    if (!check.ok) {
      const path = (t: string) => (typeof q.where === 'string' ? 'where' : `where["${t}"]`);
      throw refuse(check.issues.map((i) => ({ path: path(i.table), reason: typeof q.where === 'string' ? `on ${i.table}, ${i.reason}` : i.reason })));
    }
    columns = check.columns;
  }
  const source = await sourceNo(db, c.source);
  const pos = (await db.query<{ lsn: string; commit_idx: number }>(POSITION, [c.id])).rows[0];
  const from = await boundOf(db, source, q.from, 'from', MIN_LSN);
  const toPoint = await boundOf(db, source, q.to, 'to', null);
  const fromPoint = q.from === undefined ? undefined : parseLogPoint(q.from);
  const toParsed = q.to === undefined ? undefined : parseLogPoint(q.to);
  // Same kinds compare as given (two times with no change between them
  // resolve to the same key); mixed kinds by the keys they resolve to.
  const reversed =
    fromPoint?.kind === 'time' && toParsed?.kind === 'time'
      ? Date.parse(fromPoint.at) > Date.parse(toParsed.at)
      : fromPoint?.kind === 'lsn' && toParsed?.kind === 'lsn'
        ? fromPoint.lsn > toParsed.lsn
        : from !== null && toPoint !== null && from > toPoint;
  if (reversed) throw refuse([{ path: 'to', reason: `is before from (${q.from})` }]);
  if (q.to !== undefined && toParsed?.kind === 'earliest') throw refuse([{ path: 'to', reason: 'must be after from; "earliest" is the start of the log' }]);
  // Up to the consumer's position (changes past it are yet to be delivered
  // anyway), and before `to`: (to, -1) precedes every change of that commit.
  const position: [bigint, number] = [BigInt(pos.lsn), pos.commit_idx];
  const toKey: [bigint, number] = toPoint !== null && toPoint <= position[0] ? [toPoint, -1] : position;
  // A from after every retained change: an empty range.
  const cursor: [bigint, number] = from === null ? toKey : [from, -1];
  return { from, cursor, toKey, tables, actions: q.actions ?? null, where, columns };
}

function present(r: Raw): ReplayRow {
  return {
    id: r.id,
    from: { commit_lsn: BigInt(r.cursor_lsn) === MIN_LSN ? null : formatLsn(r.cursor_lsn) },
    to: { commit_lsn: formatLsn(r.to_lsn) },
    tables: r.tables,
    actions: r.actions,
    where: r.filter_where,
    walked: r.walked,
    matched: r.matched,
    status: r.finished_at ? 'done' : 'running',
    created_at: r.created_at.toISOString(),
    finished_at: r.finished_at?.toISOString() ?? null,
  };
}

/** Starts a replay in the caller's transaction. */
export async function createReplay(db: PoolClient, c: Consumer, q: ReplayQuery, sourceUrl: string): Promise<ReplayRow> {
  const r = await resolve(db, c, q, sourceUrl);
  const { rows } = await db.query<{ id: string }>(INSERT, [
    c.id, String(r.cursor[0]), r.cursor[1], String(r.toKey[0]), r.toKey[1], r.tables, r.actions,
    r.where && JSON.stringify(r.where), r.columns && JSON.stringify(r.columns),
  ]);
  const raw = (await db.query<Raw>(SELECT_ONE, [rows[0].id])).rows[0];
  // The from shown is the asked one; the cursor moves from there.
  return { ...present(raw), from: { commit_lsn: r.from === null || r.from === MIN_LSN ? null : formatLsn(r.from) } };
}

export async function listReplays(db: Pool | PoolClient, consumerId: string): Promise<ReplayRow[]> {
  return (await db.query<Raw>(LIST, [consumerId])).rows.map(present);
}

/** What a replay would deliver, without delivering: the count (within the bounds) and the first few messages. */
export interface DryRun {
  matched: number;
  walked: number;
  /** false when the walk stopped at its bounds (DRY_RUN_MAX_WALKED, DRY_RUN_MAX_MS) before the range's end. */
  complete: boolean;
  /** The first messages as stored (JSON text; metadata.consumer is added when they are delivered). */
  first: string[];
}

const DRY_RUN_MAX_WALKED = 2_000_000;
const DRY_RUN_MAX_MS = 10_000;
const DRY_RUN_FIRST = 5;

/** Walks the replay's range in a transaction that is rolled back: nothing is kept. */
export async function dryRunReplay(db: PoolClient, c: Consumer, q: ReplayQuery, sourceUrl: string): Promise<DryRun> {
  await db.query('SAVEPOINT dry_run');
  try {
    const replay = await createReplay(db, c, q, sourceUrl);
    const raw = (await db.query<Raw>(SELECT_ONE, [replay.id])).rows[0];
    const filter = replayFilter(raw);
    const out: DryRun = { matched: 0, walked: 0, complete: false, first: [] };
    const deadline = Date.now() + DRY_RUN_MAX_MS;
    let after: [string | null, number | null] = [null, null];
    while (out.walked < DRY_RUN_MAX_WALKED && Date.now() < deadline) {
      const rows = (await db.query<WalkRow>(WALK, [replay.id, ...after, CHUNK])).rows;
      for (const r of rows) {
        if (r.payload !== null && (!filter || filter.passes(r.table_name, r.payload))) {
          out.matched++;
          if (out.first.length < DRY_RUN_FIRST) out.first.push(r.payload);
        }
      }
      out.walked += rows.length;
      if (rows.length < CHUNK) {
        out.complete = true;
        break;
      }
      after = [rows[rows.length - 1].commit_lsn, rows[rows.length - 1].commit_idx];
    }
    return out;
  } finally {
    await db.query('ROLLBACK TO SAVEPOINT dry_run');
  }
}

interface WalkRow {
  cursor_lsn: string;
  cursor_idx: number;
  commit_lsn: string;
  commit_idx: number;
  table_name: string;
  payload: string | null;
}

const CHUNK = 5_000;
// One step (before one claim) walks until it has `want` matches or this many changes.
const STEP_MAX_WALKED = 20_000;

function replayFilter(r: Pick<Raw, 'id' | 'filter_where' | 'filter_columns'>): ConsumerFilter | null {
  if (!r.filter_where) return null;
  return consumerFilter({ name: `replay ${r.id}`, config: { filter: { where: r.filter_where } }, filter_columns: r.filter_columns });
}

/** The consumer's oldest running replay, or null. */
async function activeReplay(db: Pool, consumerId: string): Promise<ActiveReplay | null> {
  const r = (await db.query<Raw>(ACTIVE, [consumerId])).rows[0];
  return r ? { id: r.id, filter: replayFilter(r) } : null;
}

interface ActiveReplay {
  id: string;
  filter: ConsumerFilter | null;
}

// Per consumer, its running replay as this process last saw it. "None" is
// looked up again after NONE_RECHECK_MS: a replay started through another
// process (or behind this one's back) is picked up within that.
const NONE_RECHECK_MS = 1_000;
const known = new Map<string, { replay: ActiveReplay | null; at: number }>();

/** A replay was started for this consumer in this process: look at once. */
export function replayStarted(consumerId: string): void {
  known.delete(consumerId);
}

/**
 * Before a claim of the consumer: one step of its running replay, if it has
 * one (the matching changes of the step are then waiting for the claim).
 */
export async function runReplays(db: Pool, consumerId: string, want: number): Promise<void> {
  // A replay found done (its last step had reached its end) hands the claim
  // on to the next one at once: a claim is never spent on a finished replay.
  for (let i = 0; i < 3; i++) {
    let k = known.get(consumerId);
    if (!k || (k.replay === null && (i > 0 || Date.now() - k.at >= NONE_RECHECK_MS))) {
      k = { replay: await activeReplay(db, consumerId), at: Date.now() };
      known.set(consumerId, k);
    }
    if (!k.replay || (await replayStep(db, k.replay, want))) return;
    known.delete(consumerId);
  }
}

/**
 * Walks the replay a step and takes in what matched (in commit order);
 * returns false when the replay is done (or gone).
 */
async function replayStep(db: Pool, replay: { id: string; filter: ConsumerFilter | null }, want: number): Promise<boolean> {
  let cursor: [string, number] | null = null;
  let after: [string | null, number | null] = [null, null];
  const lsns: string[] = [];
  const idxs: number[] = [];
  let walked = 0;
  let end: [string, number] | null = null;
  while (walked < STEP_MAX_WALKED) {
    const rows = (await db.query<WalkRow>({ name: 'sluice_walk_replay', text: WALK, values: [replay.id, ...after, CHUNK] })).rows;
    if (rows.length === 0) break;
    cursor ??= [rows[0].cursor_lsn, rows[0].cursor_idx];
    for (const r of rows) {
      if (r.payload !== null && (!replay.filter || replay.filter.passes(r.table_name, r.payload))) {
        lsns.push(r.commit_lsn);
        idxs.push(r.commit_idx);
      }
    }
    walked += rows.length;
    end = [rows[rows.length - 1].commit_lsn, rows[rows.length - 1].commit_idx];
    after = end;
    if (rows.length < CHUNK || lsns.length >= want) break;
  }
  if (cursor === null || end === null) {
    // Nothing left to walk (the range's end was reached by a step that
    // stopped on a busy group, or the range is empty): done.
    await db.query(FINISH, [replay.id]);
    return false;
  }
  return (await db.query<{ n: number }>(ADMIT, [replay.id, cursor[0], cursor[1], end[0], end[1], lsns, idxs, walked])).rows[0].n >= 0;
}
